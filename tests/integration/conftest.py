"""Real backing services for the service tests: a throwaway Postgres database and Redis key
prefix per session, a SQLite file, a real uvicorn serving create_app, and the real engine."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import create_engine, text

from api import auth
from api.app import create_app
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.settings import Settings
from tests.integration.forked import Forker, forker
from workers.events import RedisStreamBus

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
TINY_SPEC: dict[str, Any] = {
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 200, "calibration": 200, "test": 200},
    "levels": [{"granularity": "neuron"}],
    # one cost kind: these tests are about the service, not the choice between kinds
    "coupling": {"epsilons": [0.03], "cost": ["mse"]},
    "calibration": {"top_k": [1, 2], "strengths": [1.0, 2.0]},
}


def create_database() -> str:
    """A new empty Postgres database; returns its URL."""
    name = f"plot_it_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture
def database(postgres_url: str) -> Iterator[tuple[Any, Any]]:
    """(engine, session factory) of the session's Postgres, migrated to head."""
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    yield engine, make_sessions(engine)
    engine.dispose()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
             poll_s: float = 0.05) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(poll_s)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """A running uvicorn + app, with keys for two owners and an admin."""

    url: str
    app: FastAPI
    settings: Settings
    keys: dict[str, str]

    def client(self, who: str = "alice", **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[who]}"} if who else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def new_key(self, owner: str, role: str = "user") -> str:
        with self.app.state.sessions() as session:
            return auth.create_key(session, owner, role)[1]


@dataclass
class Backend:
    name: str
    database_url: str
    redis_url: str | None
    redis_prefix: str


def serve(settings: Settings) -> Generator[Service, None, None]:
    """Run create_app(settings) on a real uvicorn in a thread until the generator closes."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=settings.port, ws="none",
                            log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    service = Service(f"http://127.0.0.1:{settings.port}", app, settings, {})
    service.keys = {"alice": service.new_key("alice"), "bob": service.new_key("bob"),
                    "admin": service.new_key("root", "admin")}
    try:
        yield service
    finally:
        server.should_exit = True
        thread.join(60)


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Backend]:
    """Postgres + Redis Streams, or the embedded SQLite + in-process bus."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "plot.db"
        yield Backend("sqlite", f"sqlite:///{path}", None, "plot")
        return
    url = create_database()
    prefix = f"plot-test-{uuid.uuid4().hex[:8]}"
    try:
        yield Backend("postgres", url, REDIS_URL, prefix)
    finally:
        drop_database(url)
        bus = RedisStreamBus(REDIS_URL, prefix)
        bus.delete_prefix()
        bus.close()


def settings_for(backend: Backend, data_dir: Path, cache: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=data_dir, database_url=backend.database_url,
                    redis_url=backend.redis_url, redis_prefix=backend.redis_prefix,
                    cache_dir=cache, port=free_port(), poll_s=0.1, **overrides)


@pytest.fixture(scope="session")
def service(backend: Backend, engine_cache: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Service]:
    """The whole service with its in-process runner and the real engine."""
    data_dir = tmp_path_factory.mktemp(f"data-{backend.name}")
    yield from serve(settings_for(backend, data_dir, engine_cache))


@pytest.fixture
def api_only(backend: Backend, engine_cache: Path, tmp_path: Path) -> Iterator[Service]:
    """An API replica that runs no jobs (a cluster's API pod), with small limits, on a
    database of its own so queued jobs stay queued."""
    if backend.name == "postgres":
        url = create_database()
        own = Backend("postgres", url, backend.redis_url, backend.redis_prefix)
    else:
        url = ""
        own = Backend("sqlite", f"sqlite:///{tmp_path / 'api.db'}", None, "plot")
    try:
        yield from serve(settings_for(own, tmp_path / "data", engine_cache, run_jobs=False,
                                      max_upload_bytes=64 * 1024, max_queued_jobs_per_owner=3,
                                      max_stored_bytes_per_owner=100 * 1024))
    finally:
        if url:
            drop_database(url)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One small local Ray per test session (2 CPUs, a 256 MiB object store)."""
    import ray

    from workers import cluster

    cluster.connect(cluster.LOCAL, num_cpus=2, object_store_bytes=256 * 2**20)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def plot_forker() -> Iterator[Forker]:
    """Short ``plot`` (or ``python -c``) processes forked from one that imported ``api.cli``
    once (tests/integration/forked.py): start-up checks without an import of torch each."""
    yield from forker()
