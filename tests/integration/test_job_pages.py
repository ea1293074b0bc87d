"""A page of jobs costs a constant number of queries, whatever its size, and its queue
positions are the fair-share order's."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from api import auth
from api.app import create_app
from api.db import jobs
from api.db.tables import Job, JobLevel, utcnow
from api.settings import Settings
from tests.integration.conftest import TINY_SPEC

OWNERS = ("alice", "bob", "carol", "dave")
STATUSES = ("queued", "queued", "queued", "running", "succeeded", "failed", "cancelled")


@pytest.fixture(params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    """An API replica that runs no jobs, on a database of its own."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pages.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    settings = Settings(data_dir=tmp_path / "data", database_url=url, run_jobs=False,
                        cache_dir=tmp_path / "cache")
    with TestClient(create_app(settings)) as client:
        yield client


def sessions_of(client: TestClient) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = client.app.state.sessions  # type: ignore[attr-defined]
    return factory


def add_jobs(sessions: sessionmaker[Session], count: int) -> None:
    """``count`` jobs of several owners, priorities and statuses; finished ones with a level."""
    start = utcnow() - timedelta(hours=1)
    with sessions() as session:
        for i in range(count):
            status = STATUSES[i % len(STATUSES)]
            job = Job(owner=OWNERS[i % len(OWNERS)], status=status, spec=TINY_SPEC,
                      priority=(i // 7) % 3, created_at=start + timedelta(seconds=i),
                      started_at=None if status == "queued" else start + timedelta(seconds=i))
            session.add(job)
            session.flush()
            if status != "queued":
                session.add(JobLevel(job_id=job.id, level=0, granularity="neuron",
                                     checkpoint={"index": 0}))
        session.commit()


def count_queries(engine: Engine, call: Any) -> tuple[int, Any]:
    """How many SQL statements ``call()`` sends through ``engine``, and what it returned."""
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        value = call()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(statements), value


def test_a_page_of_jobs_costs_the_same_few_queries_at_any_size(client: TestClient) -> None:
    sessions = sessions_of(client)
    add_jobs(sessions, 200)
    with sessions() as session:
        token = auth.create_key(session, "root", "admin")[1]
    headers = {"Authorization": f"Bearer {token}"}
    engine = sessions.kw["bind"]
    small, page = count_queries(engine, lambda: client.get("/v1/jobs?limit=10",
                                                           headers=headers))
    large, full = count_queries(engine, lambda: client.get("/v1/jobs?limit=200",
                                                           headers=headers))
    assert page.status_code == full.status_code == 200
    assert len(full.json()["items"]) == 200
    assert small == large <= 8, (small, large)
    queued = [item["queue_position"] for item in full.json()["items"]
              if item["status"] == "queued"]
    assert sorted(queued) == list(range(len(queued)))  # the whole queue, each place once
    with sessions() as session:
        for item in full.json()["items"]:
            job = session.get(Job, item["id"])
            assert job is not None
            assert item["queue_position"] == jobs.queue_position(session, job)
            assert item["levels_done"] == jobs.count_levels(session, job.id)
