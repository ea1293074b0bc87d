"""A process that cannot start says why in one line (no traceback) and stores nothing: a
missing secret, a wrong database URL, a Redis or Ray address where nothing answers. Real
processes of ``plot`` against the real Postgres, started side by side (forked from one
process that imported ``api.cli`` once: tests/integration/forked.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import inspect

from api.db.session import make_engine
from api.errors import ConfigError
from api.preflight import ray_endpoint
from tests.integration.conftest import PG_ADMIN_URL, free_port
from tests.integration.forked import ForkedRun, Forker

PG_HOST = PG_ADMIN_URL.rsplit("/", 1)[0]
Run = tuple[list[str], dict[str, str]]


def run_plot(forker: Forker, runs: list[Run], data_dir: Path
             ) -> list[subprocess.CompletedProcess[str]]:
    """Run ``plot ARGS`` with each env (no other PLOT_* variable) at once; wait for all."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PLOT_")}
    return forker.run([ForkedRun(args, {**clean, "PLOT_DATA_DIR": str(data_dir), **env})
                       for args, env in runs])


def assert_one_line(result: subprocess.CompletedProcess[str], variable: str, reason: str
                    ) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and variable in lines[0] and reason in lines[0], lines
    return lines[0]


def test_a_database_that_does_not_exist_stops_every_command(plot_forker: Forker,
                                                            tmp_path: Path) -> None:
    env = {"PLOT_DATABASE_URL": f"{PG_HOST}/plot_no_such_db"}
    commands = [["scheduler"], ["serve"], ["admin", "purge", "0" * 32]]
    for result in run_plot(plot_forker, [(command, env) for command in commands], tmp_path):
        assert_one_line(result, "PLOT_DATABASE_URL",
                        'database "plot_no_such_db" does not exist')


def test_malformed_settings_are_refused_before_connecting(plot_forker: Forker,
                                                         tmp_path: Path) -> None:
    mysql, garbled, port, log_format = run_plot(plot_forker, [
        (["serve"], {"PLOT_DATABASE_URL": "mysql://plot:pw@db/plot"}),
        (["db", "upgrade"], {"PLOT_DATABASE_URL": "postgres//plot:pw@db"}),
        (["serve"], {"PLOT_PORT": "eighty"}),
        (["scheduler"], {"PLOT_LOG_FORMAT": "xml"}),
    ], tmp_path)
    assert "pw" not in assert_one_line(mysql, "PLOT_DATABASE_URL",
                                       "unsupported database 'mysql'")  # never echo a URL
    assert "pw" not in assert_one_line(garbled, "PLOT_DATABASE_URL", "not a database URL")
    assert_one_line(port, "PLOT_PORT", "(got 'eighty')")
    assert_one_line(log_format, "PLOT_LOG_FORMAT", "'text' or 'json' (got 'xml')")


def test_a_deployed_service_without_the_database_secret_stops(plot_forker: Forker,
                                                              tmp_path: Path) -> None:
    deployed = {"PLOT_HOST": "0.0.0.0", "PLOT_ALLOW_REMOTE": "true",
                "PLOT_DATABASE_URL": f"{PG_HOST}/test"}
    missing, placeholder = run_plot(plot_forker, [
        (["serve"], deployed),
        (["scheduler"], {**deployed, "PLOT_DATABASE_PASSWORD": "change-me"}),
    ], tmp_path)
    assert_one_line(missing, "PLOT_DATABASE_PASSWORD", "is not set")
    assert_one_line(placeholder, "PLOT_DATABASE_PASSWORD", "placeholder")
    assert not (tmp_path / "plot.db").exists()


def test_an_unreachable_ray_address_stops_the_scheduler_and_a_worker(
        plot_forker: Forker, postgres_url: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    gcs, client, worker = run_plot(plot_forker, [
        (["scheduler"], {"PLOT_DATABASE_URL": postgres_url,
                         "PLOT_RAY_ADDRESS": f"127.0.0.1:{port}"}),
        (["scheduler"], {"PLOT_DATABASE_URL": postgres_url,
                         "PLOT_RAY_ADDRESS": f"ray://127.0.0.1:{port}"}),
        (["worker"], {"PLOT_RAY_ADDRESS": f"127.0.0.1:{port}"}),
    ], tmp_path)
    assert_one_line(gcs, "PLOT_RAY_ADDRESS", f"no Ray cluster answers at 127.0.0.1:{port}")
    assert_one_line(client, "PLOT_RAY_ADDRESS", f"answers at ray://127.0.0.1:{port}")
    assert_one_line(worker, "PLOT_RAY_ADDRESS", "no Ray cluster answers")


def test_a_dead_redis_stops_serve_before_it_migrates(plot_forker: Forker, tmp_path: Path
                                                     ) -> None:
    dead = {"PLOT_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    (result,) = run_plot(plot_forker, [(["serve"], dead)], tmp_path)
    assert_one_line(result, "PLOT_REDIS_URL", "cannot reach Redis")
    engine = make_engine(f"sqlite:///{tmp_path / 'plot.db'}")
    assert inspect(engine).get_table_names() == []  # the check ran before any migration
    engine.dispose()


@pytest.mark.parametrize(("address", "endpoint"), [
    ("10.0.0.5:6379", ("10.0.0.5", 6379)), ("ray://plot-head-svc:10001", ("plot-head-svc", 10001)),
    ("[::1]:6379", ("::1", 6379)), ("local", None), ("auto", None),
])
def test_ray_addresses_name_their_endpoint(address: str, endpoint: object) -> None:
    assert ray_endpoint(address) == endpoint


@pytest.mark.parametrize("address", ["head", "head:port", "http://head:8265", "ray://:1"])
def test_malformed_ray_addresses_are_refused(address: str) -> None:
    with pytest.raises(ConfigError, match="is not host:port"):
        ray_endpoint(address)


@pytest.mark.parametrize("failures", [1, 2, 3])
def test_a_ray_join_that_fails_is_tried_again_before_the_one_line_error(
        failures: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    import ray

    from api import preflight
    from api.settings import Settings
    from workers import cluster

    tries: list[str] = []

    def connect(address: str, num_cpus: int | None = None) -> None:
        tries.append(address)
        if len(tries) <= failures:
            raise ConnectionError("Initialization failure from server")

    monkeypatch.setattr(cluster, "connect", connect)
    monkeypatch.setattr(ray, "shutdown", lambda: None)  # the session's own Ray stays up
    monkeypatch.setattr(preflight, "JOIN_RETRY_S", 0.0)
    with socket.socket() as head:  # something answers at the address
        head.bind(("127.0.0.1", 0))
        head.listen()
        address = f"127.0.0.1:{head.getsockname()[1]}"
        settings = Settings(ray_address=address, data_dir=tmp_path)
        if failures < preflight.JOIN_ATTEMPTS:
            preflight.check_ray(settings)
            assert len(tries) == failures + 1
        else:
            with pytest.raises(ConfigError, match=r"3 tries.*Initialization failure") as error:
                preflight.check_ray(settings)
            assert error.value.where == "PLOT_RAY_ADDRESS" and len(tries) == 3
