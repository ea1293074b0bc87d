"""The service subcommands: plot db upgrade, plot keys create/list/revoke, plot submit, and
plot serve's first start (a real subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import inspect

from api.cli import main
from api.db.session import make_engine
from tests.integration.conftest import TINY_SPEC, Service, free_port


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("PLOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PLOT_DATABASE_URL", url)
    return url


def test_db_upgrade_and_key_lifecycle(sqlite_env: str, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert main(["db", "upgrade"]) == 0
    assert capsys.readouterr().out.startswith("database at head")
    engine = make_engine(sqlite_env)
    assert "jobs" in inspect(engine).get_table_names()
    engine.dispose()
    assert main(["keys", "create", "--owner", "alice", "--admin"]) == 0
    created = capsys.readouterr().out.splitlines()
    key_id, token = created[0].split()[1], created[1]
    assert token.startswith(f"plot_{key_id}_")
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr().out
    assert key_id in listed and "admin" in listed and "active" in listed
    assert token not in listed
    assert main(["keys", "revoke", key_id]) == 0
    capsys.readouterr()
    main(["keys", "list"])
    assert "revoked" in capsys.readouterr().out
    assert main(["keys", "revoke", "nope"]) == 2  # a PlotError: named, not a traceback


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_submit_follows_the_event_stream_to_the_handles(
    service: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_SPEC))
    code = main(["submit", str(spec_file), "--server", service.url,
                 "--key", service.keys["alice"]])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.splitlines()
    assert "queued" in lines[0] and lines[1] == "queued: priority=0"
    assert any(line.startswith("level 0 started: neuron") for line in lines)
    assert any(line.startswith("finished") for line in lines)
    assert any(line.startswith("WX: ") and "sites=" in line for line in lines)
    assert any(line.startswith("YZ: ") and "sites=" in line for line in lines)


def test_submit_with_a_bad_key_fails_with_the_error_record(
    api_only: Service, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(TINY_SPEC))
    assert main(["submit", str(spec_file), "--server", api_only.url, "--key", "plot_x_y"]) == 2
    assert "AuthError (401)" in capsys.readouterr().err


def test_serve_writes_an_admin_key_to_a_private_file_on_first_start_only(tmp_path: Path) -> None:
    env = {**os.environ, "PLOT_DATA_DIR": str(tmp_path / "data"), "PLOT_RUN_JOBS": "false"}
    env.pop("PLOT_DATABASE_URL", None)
    env.pop("PLOT_REDIS_URL", None)
    outputs = []
    for _ in range(2):
        port = free_port()
        with subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[2],
        ) as server:
            try:
                assert server.stdout is not None
                lines: list[str] = []
                while not (lines and lines[-1].startswith("serving on")):
                    lines.append(server.stdout.readline().strip())
                    assert lines[-1] or server.poll() is None, lines
                deadline = time.monotonic() + 60
                while True:
                    try:
                        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline
                        time.sleep(0.1)
                assert ready.json() == {"status": "ready", "database": "ok", "events": "ok"}
                if lines[0].startswith("first start"):
                    token_file = tmp_path / "data" / "admin-token"
                    assert str(token_file) in lines[0]
                    assert token_file.stat().st_mode & 0o777 == 0o600
                    token = token_file.read_text().strip()
                    assert not any(token in line for line in lines)
                    jobs = httpx.get(f"http://127.0.0.1:{port}/v1/jobs",
                                     headers={"Authorization": f"Bearer {token}"})
                    assert jobs.status_code == 200
                outputs.append(lines)
            finally:
                server.terminate()
    assert outputs[0][0].startswith("first start: created admin key")
    assert not any("first start" in line for line in outputs[1])
    assert (tmp_path / "data" / "plot.db").exists()
