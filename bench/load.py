"""Load figures of the PLOT service against a real uvicorn on 127.0.0.1.

Measures, with bounded loops: job submissions/s (POST /v1/jobs), status reads/s
(GET /v1/jobs/{id}), and event latency from a stream write (the runner's
``EventBus.publish``) to the SSE client. Prints a table and writes JSON.

    python bench/load.py --backend postgres   # Postgres + Redis Streams, server in a subprocess
    python bench/load.py --backend sqlite     # embedded SQLite + in-process bus, server in a thread

The API server runs no jobs (``PLOT_RUN_JOBS=false``): these are API figures, not engine ones.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api import auth
from api.client import PlotClient
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from workers.events import RedisStreamBus
from workers.ports import EventBus

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
SPEC = {"task": {"builtin": "hierarchical_equality"}, "pairs": {"fit": 200},
        "levels": [{"granularity": "neuron"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_ready(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def run_concurrently(calls: int, workers: int, call: Callable[[httpx.Client, int], None],
                     url: str, key: str) -> float:
    """Run ``calls`` calls spread over ``workers`` threads (one keep-alive client each);
    returns calls per second."""
    clients = [httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"},
                            timeout=30) for _ in range(workers)]

    def worker(index: int) -> None:
        for i in range(index, calls, workers):
            call(clients[index], i)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(worker, range(workers)))
    elapsed = time.perf_counter() - started
    for client in clients:
        client.close()
    return calls / elapsed


def measure_event_latency(url: str, key: str, job_id: str, bus: EventBus, events: int,
                          gap_s: float) -> list[float]:
    """Publish ``events`` progress events with their wall time; the SSE client records
    arrival - publish in milliseconds."""
    latencies: list[float] = []
    connected = threading.Event()

    def listen() -> None:
        with PlotClient(url, key) as client:
            stream = client.stream_events(job_id)
            for event in stream:
                if event.kind == "queued":
                    connected.set()
                elif event.kind == "progress":
                    latencies.append((time.time() - event.data["t"]) * 1000)

    listener = threading.Thread(target=listen)
    listener.start()
    if not connected.wait(30):
        raise RuntimeError("SSE stream did not open")
    for i in range(events):
        bus.publish(job_id, "progress", {"t": time.time(), "done": i + 1, "total": events,
                                         "stage": "bench", "level": 0})
        time.sleep(gap_s)
    bus.publish(job_id, "cancelled", {"reason": "bench over"})
    listener.join(60)
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def start_postgres_server(port: int, data_dir: Path) -> tuple[subprocess.Popen[bytes], str,
                                                             EventBus, Callable[[], None]]:
    name = f"plot_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    prefix = f"plot-bench-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PLOT_DATABASE_URL": url, "PLOT_REDIS_URL": REDIS_URL,
           "PLOT_REDIS_PREFIX": prefix, "PLOT_DATA_DIR": str(data_dir), "PLOT_RUN_JOBS": "false",
           "PLOT_MAX_QUEUED_JOBS_PER_OWNER": "1000000", "PLOT_PORT": str(port)}
    code = ("import uvicorn; from api.app import create_app; from api.settings import Settings;"
            "s = Settings(); uvicorn.run(create_app(s), host='127.0.0.1', port=s.port, "
            "log_level='warning', ws='none')")
    server = subprocess.Popen([sys.executable, "-c", code], env=env,
                              cwd=Path(__file__).resolve().parents[1])
    bus = RedisStreamBus(REDIS_URL, prefix)

    def cleanup() -> None:
        server.terminate()
        server.wait(30)
        bus.delete_prefix()
        bus.close()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server, url, bus, cleanup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--submissions", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=4000)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--event-gap-ms", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    load_at_start = os.getloadavg()[0]  # the figures are CPU-bound: note what else ran
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="plot-bench-"))
    if args.backend == "postgres":
        _, database_url, bus, cleanup = start_postgres_server(port, data_dir)
    else:
        database_url, bus, cleanup = start_embedded_server(port, data_dir)
    try:
        wait_ready(url)
        upgrade_database(database_url)
        engine = make_engine(database_url)
        with make_sessions(engine)() as session:
            key = auth.create_key(session, "bench")[1]
        engine.dispose()

        job_ids: list[str] = [""] * args.submissions

        def submit(client: httpx.Client, i: int) -> None:
            response = client.post("/v1/jobs", json=SPEC)
            response.raise_for_status()
            job_ids[i] = response.json()["id"]

        def read(client: httpx.Client, i: int) -> None:
            client.get(f"/v1/jobs/{random.choice(job_ids)}").raise_for_status()

        submit_rate = run_concurrently(args.submissions, args.workers, submit, url, key)
        read_rate = run_concurrently(args.reads, args.workers, read, url, key)
        latencies = measure_event_latency(url, key, job_ids[0], bus, args.events,
                                          args.event_gap_ms / 1000)
    finally:
        cleanup()

    figures: dict[str, Any] = {
        "backend": args.backend,
        "cpus": os.cpu_count(),
        "load_average_1m_at_start": round(load_at_start, 2),
        "workers": args.workers,
        "submissions": args.submissions,
        "submissions_per_s": round(submit_rate, 1),
        "reads": args.reads,
        "status_reads_per_s": round(read_rate, 1),
        "events": args.events,
        "events_received": len(latencies),
        "event_latency_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p95": round(percentile(latencies, 0.95), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
    }
    rows = [
        ("backend", args.backend),
        ("cpus / 1-min load at start", f"{os.cpu_count()} / {load_at_start:.2f}"),
        ("client threads", str(args.workers)),
        (f"submissions/s ({args.submissions} POST /v1/jobs)", f"{submit_rate:,.1f}"),
        (f"status reads/s ({args.reads} GET /v1/jobs/{{id}})", f"{read_rate:,.1f}"),
        (f"event latency p50/p95/p99/max ms ({len(latencies)}/{args.events})",
         " / ".join(str(v) for v in figures["event_latency_ms"].values())),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    out = args.out or Path(__file__).resolve().parent / "results" / f"load-{args.backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def start_embedded_server(port: int, data_dir: Path) -> tuple[str, EventBus, Callable[[], None]]:
    """The embedded default (SQLite + in-process bus) served by uvicorn in a thread of this
    process, so the bench can publish on the server's own bus."""
    import uvicorn

    from api.app import create_app
    from api.settings import Settings

    settings = Settings(data_dir=data_dir, port=port, run_jobs=False,
                        max_queued_jobs_per_owner=1_000_000)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, ws="none",
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def cleanup() -> None:
        server.should_exit = True
        thread.join(30)

    return settings.resolved_database_url, app.state.bus, cleanup


if __name__ == "__main__":
    raise SystemExit(main())
