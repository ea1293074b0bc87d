"""The job state machine on the real databases: conditional transitions, leases, requeue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from api.auth import Caller
from api.db import jobs
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import utcnow
from api.errors import ConflictError
from core.spec import JobSpec
from tests.integration.conftest import TINY_SPEC

SPEC = JobSpec.model_validate(TINY_SPEC)
ALICE = Caller("alice", is_admin=False, key_id="k")
ADMIN = Caller("root", is_admin=True, key_id="a")


@pytest.fixture(params=["postgres", "sqlite"])
def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'states.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    upgrade_database(url)
    engine = make_engine(url)
    yield make_sessions(engine)
    engine.dispose()


def test_claims_follow_priority_then_age_and_each_job_once(sessions: sessionmaker[Session]
                                                           ) -> None:
    with sessions() as session:
        low = jobs.create_job(session, "alice", SPEC, 10)
        high = jobs.create_job(session, "bob", SPEC.model_copy(update={"priority": 5}), 10)
        later = jobs.create_job(session, "alice", SPEC, 10)
        order = [jobs.claim_fair(session, "w", 60, per_owner_cap=100) for _ in range(4)]
    assert [job.id if job else None for job in order] == [high.id, low.id, later.id, None]
    assert all(job.status == "running" and job.attempt == 1 for job in order if job)


def test_racing_runners_never_claim_a_job_twice(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        created = {jobs.create_job(session, "alice", SPEC, 100).id for _ in range(20)}
    claimed: list[str] = []
    lock = threading.Lock()

    def runner(name: str) -> None:
        while True:
            with sessions() as session:
                job = jobs.claim_fair(session, name, 60, per_owner_cap=100)
                # a claim that lost every race returns None while jobs are still queued
                left = 1 if job else jobs.list_jobs(session, ADMIN, "queued", 1, 0)[1]
            if job is None and left == 0:
                return
            if job is None:
                continue
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=runner, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(created)


def test_an_expired_lease_requeues_then_fails_and_the_stale_runner_cannot_finish(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        job = jobs.create_job(session, "alice", SPEC, 10)
        assert jobs.claim_fair(session, "old", 60, per_owner_cap=100) is not None
        later = utcnow() + timedelta(seconds=61)
        assert jobs.requeue_expired(session, max_attempts=2, now=later) == 1
        assert jobs.get_job(session, ALICE, job.id).status == "queued"
        assert not jobs.succeed_job(session, job.id, "old", {"stale": True})
        assert not jobs.renew_lease(session, job.id, "old", 60)

        again = jobs.claim_fair(session, "new", 60, per_owner_cap=100)
        assert again is not None and again.attempt == 2 and again.lease_owner == "new"
        assert jobs.requeue_expired(session, max_attempts=2, now=later + timedelta(seconds=61))
        failed = jobs.get_job(session, ALICE, job.id)
        assert failed.status == "failed" and failed.error is not None
        assert failed.error["type"] == "LeaseExpired"
        assert not jobs.succeed_job(session, job.id, "new", {"late": True})
        assert failed.result is None


def test_terminal_jobs_do_not_move(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        job = jobs.create_job(session, "alice", SPEC, 10)
        jobs.claim_fair(session, "w", 60, per_owner_cap=100)
        assert jobs.succeed_job(session, job.id, "w", {"ok": 1})
        assert not jobs.fail_job(session, job.id, "w", {"type": "X", "message": "", "where": None})
        assert not jobs.cancel_running_job(session, job.id, "w")
        with pytest.raises(ConflictError):
            jobs.request_cancel(session, jobs.get_job(session, ALICE, job.id))
        done = jobs.get_job(session, ALICE, job.id)
        assert done.status == "succeeded" and done.result == {"ok": 1}
        assert done.cancel_requested is False
