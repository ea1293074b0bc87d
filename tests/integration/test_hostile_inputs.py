"""Hostile inputs against a real ``plot serve`` process (SQLite, and Postgres + Redis): each
is refused with its 4xx within 2 s, the server's memory stays bounded, and ``/healthz``
keeps answering within 1 s while the request runs."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import (
    REDIS_URL,
    create_database,
    drop_database,
    free_port,
    wait_for,
)
from workers.events import RedisStreamBus

log = logging.getLogger(__name__)
MB = 2**20
CHUNK = 64 * 1024
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A ``plot serve`` subprocess and the admin token its first start wrote."""

    port: int
    process: subprocess.Popen[bytes]
    token: str
    model_root: Path

    def reset_peak(self) -> None:
        """Start ``VmHWM`` again from the current resident size."""
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def rss_bytes(self, field_name: str = "VmRSS") -> int:
        """The process's resident memory (``VmHWM``: its peak) from /proc."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field_name} for {self.process.pid}")


def start_server(tmp: Path, env_extra: dict[str, str]) -> Server:
    port = free_port()
    data_dir, model_root = tmp / "data", tmp / "models"
    model_root.mkdir(parents=True)
    env = {**os.environ, "PLOT_DATA_DIR": str(data_dir), "PLOT_MODEL_ROOT": str(model_root),
           "PLOT_RUN_JOBS": "false", "OMP_NUM_THREADS": "1", **env_extra}
    for name in ("PLOT_DATABASE_URL", "PLOT_REDIS_URL"):
        if name not in env_extra:
            env.pop(name, None)
    process = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=REPO)

    def is_up() -> bool:
        assert process.poll() is None, "plot serve exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(is_up, 90, "plot serve to answer /readyz", poll_s=0.2)
    token = (data_dir / "admin-token").read_text().strip()
    return Server(port, process, token, model_root)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"hostile-{request.param}")
    database = create_database() if request.param == "postgres" else None
    prefix = f"plot-hostile-{uuid.uuid4().hex[:8]}"
    env = ({"PLOT_DATABASE_URL": database, "PLOT_REDIS_URL": REDIS_URL,
            "PLOT_REDIS_PREFIX": prefix} if database else {})
    running = start_server(tmp, env)
    try:
        yield running
    finally:
        running.process.terminate()
        running.process.wait(30)
        if database:
            drop_database(database)
            bus = RedisStreamBus(REDIS_URL, prefix)
            bus.delete_prefix()
            bus.close()


@dataclass
class HealthWatch:
    """Polls ``/healthz`` from a thread; records the slowest answer (a failure is inf)."""

    port: int
    slowest_s: float = 0.0
    polls: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=1.0) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                took = time.monotonic() - started if ok else float("inf")
                self.slowest_s, self.polls = max(self.slowest_s, took), self.polls + 1
                self.stop.wait(0.05)


@dataclass
class Answer:
    status: int
    body: dict[str, object]
    seconds: float
    sent_bytes: int


def send_streamed(port: int, token: str, path: str, chunks: Iterator[bytes],
                  content_type: str, length: int | None = None) -> Answer:
    """POST ``chunks`` on a raw socket (chunked, or with ``Content-Length: length``),
    stopping as soon as the server answers, and read that answer."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}"
                 f"\r\nContent-Type: {content_type}\r\n{framing}\r\n\r\n".encode())
    sent = 0
    try:
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered: stop sending
            frame = chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk)
            sock.sendall(frame)
            sent += len(chunk)
        else:
            if length is None:
                sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    response = read_response(sock)
    sock.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return Answer(status, json.loads(body), time.monotonic() - started, sent)


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < body_length(data):
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


def body_length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def repeated(first: bytes, filler: bytes, total: int) -> Iterator[bytes]:
    """``first`` then ``filler`` (one chunk, yielded again and again) up to ``total`` bytes:
    a huge body that is never in memory as a whole."""
    if first:  # an empty chunk would end a chunked body
        yield first
    sent = len(first)
    while sent < total:
        piece = filler[: total - sent]
        yield piece
        sent += len(piece)


def jsonl_rows(row_bytes: int) -> bytes:
    """A chunk of whole, valid-looking JSONL rows of about ``row_bytes`` each."""
    row = json.dumps({"variable": "x", "base": [0.0] * (row_bytes // 5), "source": [0.0],
                      "base_label": 0, "counterfactual_label": 1}).encode() + b"\n"
    return row * max(CHUNK // len(row), 1)


def link_hf_dir_outside(server: Server, outside: Path) -> str:
    """A Hugging Face style directory under the model root whose files all link elsewhere."""
    outside.mkdir(parents=True, exist_ok=True)
    linked = server.model_root / f"hf-{uuid.uuid4().hex[:6]}"
    linked.mkdir()
    (outside / "plot.json").write_text(json.dumps({"arch": "hf", "labels": [" A", " B"]}))
    (outside / "config.json").write_text(json.dumps({"model_type": "gpt2", "secret": 1}))
    for name in ("model.safetensors", "tokenizer.json"):
        (outside / name).write_bytes(b"{}")
    for name in ("plot.json", "config.json", "model.safetensors", "tokenizer.json"):
        (linked / name).symlink_to(outside / name)
    return linked.name


def send_json(server: Server, path: str, body: object) -> Answer:
    started = time.monotonic()
    response = httpx.post(f"http://127.0.0.1:{server.port}{path}", json=body, timeout=10,
                          headers={"Authorization": f"Bearer {server.token}"})
    return Answer(response.status_code, response.json(), time.monotonic() - started,
                  len(response.request.content))


NESTED_YAML = b"task: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"  # 200 KB

HOSTILE: dict[str, tuple[int, str | None]] = {
    # name: (status, where)
    "nested yaml 200 KB": (422, "line 1"),
    "json 100 MB streamed": (413, "body"),
    "json 100 MB declared": (413, "body"),
    "jsonl 60 MB streamed": (413, "body"),
    "jsonl 60 MB declared": (413, "body"),
    "jsonl one 48 MB row": (422, "hostile.jsonl:1"),
    "jsonl 750k short rows": (422, "hostile.jsonl:200001"),
    "hf dir of links out": (422, None),
    "nul byte in path": (422, "path"),
    "1000-character path": (422, "path"),
}


def send_hostile(server: Server, name: str, outside: Path) -> Answer:
    upload = "/v1/datasets?name=hostile.jsonl"
    ndjson = "application/x-ndjson"
    json_start = b'{"task": {"builtin": "' + b"a" * 10
    match name:
        case "nested yaml 200 KB":
            return send_streamed(server.port, server.token, "/v1/specs/yaml",
                                 iter([NESTED_YAML]), "application/yaml", len(NESTED_YAML))
        case "json 100 MB streamed":
            return send_streamed(server.port, server.token, "/v1/jobs",
                                 repeated(json_start, b"a" * CHUNK, 100 * MB),
                                 "application/json")
        case "json 100 MB declared":
            return send_streamed(server.port, server.token, "/v1/jobs",
                                 repeated(json_start, b"a" * CHUNK, 100 * MB),
                                 "application/json", 100 * MB)
        case "jsonl 60 MB streamed":
            return send_streamed(server.port, server.token, upload,
                                 repeated(b"", jsonl_rows(1024), 60 * MB), ndjson)
        case "jsonl 60 MB declared":
            return send_streamed(server.port, server.token, upload,
                                 repeated(b"", jsonl_rows(1024), 60 * MB), ndjson, 60 * MB)
        case "jsonl one 48 MB row":
            return send_streamed(server.port, server.token, upload,
                                 repeated(b'{"base": [', b"0, " * (CHUNK // 3), 48 * MB),
                                 ndjson, 48 * MB)
        case "jsonl 750k short rows":
            return send_streamed(server.port, server.token, upload,
                                 repeated(b"", b'{"variable": "x"}\n' * 3000, 750_000 * 18),
                                 ndjson)
        case "hf dir of links out":
            return send_json(server, "/v1/models",
                             {"path": link_hf_dir_outside(server, outside)})
        case "nul byte in path":
            return send_json(server, "/v1/models", {"path": "nets/\x00heq"})
        case "1000-character path":
            return send_json(server, "/v1/models", {"path": "n" * 1000})
    raise AssertionError(name)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_request_is_refused_fast_while_the_server_keeps_answering(
    server: Server, name: str, tmp_path: Path
) -> None:
    server.reset_peak()
    baseline = server.rss_bytes()
    watch = HealthWatch(server.port)
    poller = threading.Thread(target=watch.run, daemon=True)
    poller.start()
    try:
        answer = send_hostile(server, name, tmp_path / "outside")
        wait_for(lambda: watch.polls > 0, 5, "a /healthz poll")
    finally:
        watch.stop.set()
        poller.join(5)
    grown = server.rss_bytes("VmHWM") - baseline
    status, where = HOSTILE[name]
    log.info("%s: %d in %.2f s after %d bytes; /healthz slowest %.3f s over %d polls; "
             "peak RSS %+.0f MB", name, answer.status, answer.seconds, answer.sent_bytes,
             watch.slowest_s, watch.polls, grown / MB)
    assert answer.status == status, answer.body
    assert set(answer.body) == {"type", "message", "where"}
    if where is not None:
        assert answer.body["where"] == where, answer.body
    assert str(server.model_root) not in json.dumps(answer.body)
    assert answer.seconds < 2.0
    assert watch.polls > 0 and watch.slowest_s < 1.0
    assert grown < 200 * MB


def test_parses_at_once_leave_healthz_answering(server: Server) -> None:
    """Six YAML specs just under the node bound at once (the slowest specs there are):
    all are read, and /healthz keeps answering within 1 s meanwhile."""
    spec = b"task:\n  builtin: hierarchical_equality\nseeds: [" + b"1, " * 19_000 + b"1]\n"
    answers: list[int] = []

    def post() -> None:
        response = httpx.post(f"http://127.0.0.1:{server.port}/v1/specs/yaml", content=spec,
                              headers={"Authorization": f"Bearer {server.token}",
                                       "Content-Type": "application/yaml"}, timeout=60)
        answers.append(response.status_code)

    watch = HealthWatch(server.port)
    threads = [threading.Thread(target=post) for _ in range(6)]
    poller = threading.Thread(target=watch.run, daemon=True)
    poller.start()
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    watch.stop.set()
    poller.join(5)
    log.info("6 parallel YAML parses: %.2f s; /healthz slowest %.3f s over %d polls",
             time.monotonic() - started, watch.slowest_s, watch.polls)
    assert answers == [200] * 6
    assert watch.polls > 0 and watch.slowest_s < 1.0
