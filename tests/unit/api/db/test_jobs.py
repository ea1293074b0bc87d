"""The job state machine on an embedded SQLite file: fair claims, leases, requeue, cancel,
retry, and runners that lost their lease. Statuses are compared as plain strings.

(tests/integration/test_job_states.py runs the basic transitions on Postgres too.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from api.db import jobs
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job, utcnow
from core.spec import JobSpec

SPEC = JobSpec.model_validate({"task": {"builtin": "hierarchical_equality"}})
ERROR = {"type": "ActorDied", "message": "the node went away", "where": None}
LEASE_S = 60.0


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated to head; each test works on its own copy."""
    path = tmp_path_factory.mktemp("jobs-db") / "template.db"
    upgrade_database(f"sqlite:///{path}")
    return path


@pytest.fixture
def session(migrated: Path, tmp_path: Path) -> Iterator[Session]:
    path = tmp_path / "jobs.db"
    shutil.copy(migrated, path)
    engine = make_engine(f"sqlite:///{path}")
    with make_sessions(engine)() as session:
        yield session
    engine.dispose()


def submit(session: Session, owner: str, priority: int = 0) -> str:
    return jobs.create_job(session, owner, SPEC.model_copy(update={"priority": priority}),
                           max_queued=100).id


def claim(session: Session, cap: int = 100, worker: str = "w") -> str | None:
    job = jobs.claim_fair(session, worker, LEASE_S, per_owner_cap=cap)
    return None if job is None else job.id


def claimed_order(session: Session, cap: int = 100) -> list[str]:
    order: list[str] = []
    while (job_id := claim(session, cap)) is not None:
        order.append(job_id)
    return order


def status(session: Session, job_id: str) -> str:
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    return str(job.status)


def job_row(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    return job


# --- claim_fair ---------------------------------------------------------------------------


def test_claims_go_round_robin_across_owners_before_a_second_job_of_any(
        session: Session) -> None:
    a1, a2, a3 = (submit(session, "ada") for _ in range(3))
    b1 = submit(session, "bo")
    c1 = submit(session, "cy")
    assert claimed_order(session) == [a1, b1, c1, a2, a3]  # FIFO would give a1 a2 a3 b1 c1


def test_priority_orders_an_owners_jobs_and_the_owners_of_one_round(session: Session) -> None:
    a_low = submit(session, "ada")
    b_low = submit(session, "bo")
    a_high = submit(session, "ada", priority=5)
    c_high = submit(session, "cy", priority=3)
    # round 1: each owner's best job (ada's later but higher one), by priority; then round 2
    assert claimed_order(session) == [a_high, c_high, b_low, a_low]


def test_an_owner_whose_last_job_started_longest_ago_goes_first(session: Session) -> None:
    b1 = submit(session, "bo")
    assert claim(session) == b1
    a1 = submit(session, "ada")
    assert claim(session) == a1
    for job_id in (a1, b1):
        assert jobs.succeed_job(session, job_id, "w", {})
    a2 = submit(session, "ada")  # older than b2, but ada ran more recently
    b2 = submit(session, "bo")
    assert claimed_order(session) == [b2, a2]


def test_an_owner_at_its_cap_is_skipped_until_one_of_its_jobs_ends(session: Session) -> None:
    a1, a2 = submit(session, "ada"), submit(session, "ada")
    b1 = submit(session, "bo")
    assert claimed_order(session, cap=1) == [a1, b1]  # a2 waits although a slot is free
    assert jobs.succeed_job(session, a1, "w", {})
    assert claimed_order(session, cap=1) == [a2]


def test_a_claim_starts_a_lease_and_counts_an_attempt(session: Session) -> None:
    job_id = submit(session, "ada")
    before = utcnow()
    assert claim(session, worker="w1") == job_id
    job = job_row(session, job_id)
    assert (job.status, job.attempt, job.lease_owner) == ("running", 1, "w1")
    assert job.lease_expires_at is not None and job.started_at is not None
    assert job.lease_expires_at >= before + timedelta(seconds=LEASE_S)
    assert claim(session) is None  # nothing else is queued


# --- leases and requeue -------------------------------------------------------------------


def test_renewing_a_lease_moves_its_expiry_only_for_its_holder(session: Session) -> None:
    job_id = submit(session, "ada")
    claim(session, worker="w1")
    first = job_row(session, job_id).lease_expires_at
    assert first is not None
    assert jobs.renew_lease(session, job_id, "w1", 600)
    renewed = job_row(session, job_id).lease_expires_at
    assert renewed is not None and renewed > first + timedelta(seconds=500)
    assert not jobs.renew_lease(session, job_id, "w2", 6000)
    assert job_row(session, job_id).lease_expires_at == renewed
    assert jobs.succeed_job(session, job_id, "w1", {})
    assert not jobs.renew_lease(session, job_id, "w1", 600)  # a finished job has no lease


def test_requeue_leaves_live_leases_alone_and_fails_jobs_at_the_attempt_limit(
        session: Session) -> None:
    once, twice, live = submit(session, "ada"), submit(session, "bo"), submit(session, "cy")
    assert claimed_order(session) == [once, twice, live]
    for job_id in (once, twice):
        assert jobs.renew_lease(session, job_id, "w", -1.0)  # its runner stopped renewing
    assert jobs.requeue_expired(session, max_attempts=2) == 2
    assert [status(session, j) for j in (once, twice, live)] == ["queued", "queued", "running"]
    assert job_row(session, once).lease_owner is None
    assert claimed_order(session) == [once, twice]
    assert job_row(session, twice).attempt == 2  # the attempt counts at the claim

    later = utcnow() + timedelta(seconds=LEASE_S + 1)
    assert jobs.requeue_expired(session, max_attempts=2, now=later) == 3
    assert [status(session, j) for j in (once, twice, live)] == ["failed", "failed", "queued"]
    failed = job_row(session, twice)
    assert failed.error is not None and failed.error["type"] == "LeaseExpired"
    assert failed.error["message"] == "runner lost 2 times"
    assert failed.finished_at is not None and failed.lease_owner is None


def test_a_runner_that_lost_its_lease_cannot_finish_fail_or_report(session: Session) -> None:
    job_id = submit(session, "ada")
    claim(session, worker="old")
    assert jobs.requeue_expired(session, 3, now=utcnow() + timedelta(seconds=LEASE_S + 1))
    assert claim(session, worker="new") == job_id
    assert not jobs.succeed_job(session, job_id, "old", {"stale": True})
    assert not jobs.fail_job(session, job_id, "old", ERROR)
    assert not jobs.cancel_running_job(session, job_id, "old")
    assert jobs.retry_job(session, job_id, "old", 3, ERROR) is None
    jobs.record_progress(session, job_id, "old", progress_done=7)
    job = job_row(session, job_id)
    assert (job.status, job.lease_owner, job.result, job.error) == ("running", "new", None,
                                                                    None)
    assert job.progress_done == 0
    jobs.record_progress(session, job_id, "new", progress_done=7)
    assert job_row(session, job_id).progress_done == 7
    assert jobs.fail_job(session, job_id, "new", ERROR)
    assert (status(session, job_id), job_row(session, job_id).error) == ("failed", ERROR)


# --- cancel, release, retry ---------------------------------------------------------------


def test_cancelling_a_queued_job_ends_it_and_a_second_cancel_changes_nothing(
        session: Session) -> None:
    job_id = submit(session, "ada")
    job, ended = jobs.request_cancel(session, job_row(session, job_id))
    assert ended and job.status == "cancelled" and job.finished_at is not None
    assert job.error is not None and job.error["type"] == "JobCancelled"
    again, ended_again = jobs.request_cancel(session, job)
    assert not ended_again and again.status == "cancelled"
    assert claim(session) is None


def test_cancelling_a_running_job_flags_it_for_its_runner(session: Session) -> None:
    job_id = submit(session, "ada")
    claim(session, worker="w1")
    job, ended = jobs.request_cancel(session, job_row(session, job_id))
    assert not ended and job.status == "running" and job.cancel_requested
    assert jobs.is_cancel_requested(session, job_id)
    assert not jobs.cancel_running_job(session, job_id, "w2")
    assert jobs.cancel_running_job(session, job_id, "w1")
    job = job_row(session, job_id)
    assert job.status == "cancelled" and job.lease_owner is None


def test_a_released_job_is_queued_again_unless_its_cancel_was_asked(session: Session) -> None:
    kept, cancelled = submit(session, "ada"), submit(session, "bo")
    assert claimed_order(session) == [kept, cancelled]
    jobs.request_cancel(session, job_row(session, cancelled))
    assert jobs.release_job(session, kept, "w")
    assert not jobs.release_job(session, cancelled, "w")
    assert (status(session, kept), status(session, cancelled)) == ("queued", "cancelled")
    assert claim(session) == kept and job_row(session, kept).attempt == 2


def test_retry_requeues_under_the_limit_and_fails_at_it(session: Session) -> None:
    job_id = submit(session, "ada")
    claim(session)
    assert jobs.retry_job(session, job_id, "w", 2, ERROR) == "queued"
    job = job_row(session, job_id)
    assert (job.status, job.error, job.lease_owner) == ("queued", ERROR, None)
    claim(session)
    assert jobs.retry_job(session, job_id, "w", 2, ERROR) == "failed"
    failed = job_row(session, job_id)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["message"] == "the node went away (attempt limit 2)"
    assert jobs.retry_job(session, job_id, "w", 2, ERROR) is None


def test_retrying_a_job_whose_cancel_was_asked_cancels_it(session: Session) -> None:
    job_id = submit(session, "ada")
    claim(session)
    jobs.request_cancel(session, job_row(session, job_id))
    assert jobs.retry_job(session, job_id, "w", 5, ERROR) == "cancelled"
    assert status(session, job_id) == "cancelled"


def test_finished_jobs_refuse_every_further_move(session: Session) -> None:
    done, failed = submit(session, "ada"), submit(session, "bo")
    claimed_order(session)
    assert jobs.succeed_job(session, done, "w", {"ok": 1})
    assert jobs.fail_job(session, failed, "w", ERROR)
    for job_id in (done, failed):
        assert not jobs.succeed_job(session, job_id, "w", {"again": 1})
        assert not jobs.fail_job(session, job_id, "w", ERROR)
        assert not jobs.release_job(session, job_id, "w")
        assert jobs.retry_job(session, job_id, "w", 5, ERROR) is None
    assert jobs.requeue_expired(session, 5, now=utcnow() + timedelta(days=1)) == 0
    assert (status(session, done), job_row(session, done).result) == ("succeeded", {"ok": 1})
    assert (status(session, failed), job_row(session, failed).error) == ("failed", ERROR)
