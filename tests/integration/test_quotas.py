"""Per-owner quotas hold under parallel submissions on both backends: a count and the insert
it allows are one step (an advisory lock per owner on Postgres, BEGIN IMMEDIATE on SQLite)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job
from api.errors import QuotaError
from core.spec import JobSpec
from tests.integration.conftest import create_database, drop_database
from workers.job_status import JobStatus

SPEC = JobSpec.model_validate({"task": {"builtin": "hierarchical_equality"}})
LIMIT = 20
SUBMISSIONS = 40


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path
             ) -> Iterator[sessionmaker[Session]]:
    """A migrated database of the test's own, on each backend."""
    url = create_database() if request.param == "postgres" else f"sqlite:///{tmp_path}/q.db"
    upgrade_database(url)
    engine = make_engine(url)
    try:
        yield make_sessions(engine)
    finally:
        engine.dispose()
        if request.param == "postgres":
            drop_database(url)


def count_queued(sessions: sessionmaker[Session], owner: str) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(
            Job.owner == owner, Job.status == JobStatus.QUEUED)) or 0)


def submit_in_parallel(sessions: sessionmaker[Session], owner: str, count: int
                       ) -> dict[str, Any]:
    """``count`` threads, each with its own session, call ``create_job`` at once; a watcher
    reads the queued count meanwhile. Returns accepted/refused counts and the peak seen."""
    start = threading.Barrier(count + 1)
    outcomes: list[str] = []
    lock = threading.Lock()
    done = threading.Event()
    peak = [0]

    def submit() -> None:
        start.wait()
        with sessions() as session:
            try:
                jobs.create_job(session, owner, SPEC, max_queued=LIMIT)
                outcome = "accepted"
            except QuotaError:
                outcome = "refused"
        with lock:
            outcomes.append(outcome)

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], count_queued(sessions, owner))

    threads = [threading.Thread(target=submit) for _ in range(count)]
    for thread in threads:
        thread.start()
    watcher = threading.Thread(target=watch)
    watcher.start()
    start.wait()
    for thread in threads:
        thread.join(120)
    done.set()
    watcher.join(30)
    return {"accepted": outcomes.count("accepted"), "refused": outcomes.count("refused"),
            "peak": max(peak[0], count_queued(sessions, owner))}


@pytest.mark.parametrize("existing", [LIMIT - 1, LIMIT - 5])
def test_parallel_submissions_at_the_limit_edge_never_pass_it(
        sessions: sessionmaker[Session], existing: int) -> None:
    with sessions() as session:
        for _ in range(existing):
            jobs.create_job(session, "ada", SPEC, max_queued=LIMIT)
        jobs.create_job(session, "bob", SPEC, max_queued=LIMIT)  # another owner's queue
    seen = submit_in_parallel(sessions, "ada", SUBMISSIONS)
    assert seen["accepted"] == LIMIT - existing, seen
    assert seen["refused"] == SUBMISSIONS - (LIMIT - existing), seen
    assert seen["peak"] == LIMIT == count_queued(sessions, "ada"), seen
    assert count_queued(sessions, "bob") == 1


def test_one_owners_lock_does_not_hold_up_another_owner(
        sessions: sessionmaker[Session]) -> None:
    """Submissions of different owners at once all pass (each under its own limit)."""
    with sessions() as session:
        for _ in range(LIMIT - 2):
            jobs.create_job(session, "ada", SPEC, max_queued=LIMIT)
    seen: dict[str, dict[str, Any]] = {}
    threads = [threading.Thread(target=lambda o=owner: seen.update(
        {o: submit_in_parallel(sessions, o, 10)})) for owner in ("ada", "bob")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert seen["ada"]["accepted"] == 2 and seen["bob"]["accepted"] == 10, seen


def test_parallel_uploads_at_the_stored_bytes_edge_never_pass_it(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    from api.auth import Caller
    from api.db.datasets import store_dataset
    from api.db.tables import Dataset
    from core.causal.dataset import write_dataset
    from core.causal.registry import build_task, make_banks
    from core.spec import PairsSpec

    banks = make_banks(build_task("hierarchical_equality"),
                       PairsSpec.model_validate({"fit": 4, "calibration": 2, "test": 2}))
    write_dataset(tmp_path / "rows.jsonl", banks.fit)
    data = (tmp_path / "rows.jsonl").read_bytes()
    limit = 5 * len(data)  # room for 5 of the 40 uploads
    start = threading.Barrier(SUBMISSIONS)
    outcomes: list[str] = []

    def upload() -> None:
        start.wait()
        with sessions() as session:
            try:
                store_dataset(session, Caller("ada", False, "k"), "rows.jsonl", data, tmp_path,
                              limit)
                outcomes.append("accepted")
            except QuotaError:
                outcomes.append("refused")

    threads = [threading.Thread(target=upload) for _ in range(SUBMISSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with sessions() as session:
        stored = session.scalar(select(func.sum(Dataset.size_bytes)).where(
            Dataset.owner == "ada"))
    assert outcomes.count("accepted") == 5 and outcomes.count("refused") == 35
    assert stored == limit
