"""``plot admin requeue | cancel | purge`` on the real Postgres and Redis: each moves a job
through the state machine in one transaction, refuses a wrong state with a reason and
changes nothing then, and purge removes the job's rows and its event stream."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.cli import main
from api.db import jobs
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job, JobLevel
from core.spec import JobSpec
from tests.integration.conftest import REDIS_URL, TINY_SPEC
from workers.events import RedisStreamBus, job_events_key
from workers.job_status import JobStatus

SPEC = JobSpec.model_validate(TINY_SPEC)
WORKER = "test-runner"


@dataclass
class Cluster:
    sessions: Any
    bus: RedisStreamBus
    prefix: str

    def job(self, status: str, levels: int = 0) -> str:
        """A job of owner ada moved (by the runner-side transitions) to ``status``; no other
        job may be queued when it is not ``queued``."""
        with self.sessions() as session:
            job_id = jobs.create_job(session, "ada", SPEC, max_queued=50).id
            if status == JobStatus.QUEUED:
                return job_id
            assert jobs.claim_fair(session, WORKER, 60, per_owner_cap=50).id == job_id
            for level in range(levels):
                jobs.save_level(session, job_id, level, {"index": level, "granularity": "x"})
            moves = {
                JobStatus.SUCCEEDED: lambda: jobs.succeed_job(session, job_id, WORKER, {"ok": 1}),
                JobStatus.FAILED: lambda: jobs.fail_job(session, job_id, WORKER, {"type": "E"}),
                JobStatus.CANCELLED: lambda: jobs.cancel_running_job(session, job_id, WORKER),
            }
            if status in moves:
                assert moves[status]()
        return job_id

    def row(self, job_id: str) -> Job | None:
        with self.sessions() as session:
            return session.get(Job, job_id, populate_existing=True)

    def levels(self, job_id: str) -> int:
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(JobLevel)
                                  .where(JobLevel.job_id == job_id)) or 0


@pytest.fixture
def cluster(postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Cluster]:
    prefix = f"plot-admin-{uuid.uuid4().hex[:8]}"
    for name, value in {"PLOT_DATABASE_URL": postgres_url, "PLOT_REDIS_URL": REDIS_URL,
                        "PLOT_REDIS_PREFIX": prefix, "PLOT_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    bus = RedisStreamBus(REDIS_URL, prefix)
    yield Cluster(make_sessions(engine), bus, prefix)
    bus.delete_prefix()
    bus.close()
    engine.dispose()


def test_requeue_gives_a_failed_job_fresh_attempts_and_keeps_its_checkpoints(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = cluster.job(JobStatus.FAILED, levels=2)
    assert main(["admin", "requeue", job_id]) == 0
    assert "resumes after 2 checkpointed level(s)" in capsys.readouterr().out
    job = cluster.row(job_id)
    assert job is not None and job.status == "queued" and job.attempt == 0
    assert job.error is None and job.finished_at is None and cluster.levels(job_id) == 2
    assert [e.kind for e in cluster.bus.read(job_id)] == ["queued"]
    with cluster.sessions() as session:  # and a runner can claim it again
        assert jobs.claim_fair(session, WORKER, 60, per_owner_cap=50).id == job_id


@pytest.mark.parametrize(("status", "reason"), [
    ("queued", "cannot requeue a queued job: it is already waiting"),
    ("running", "cannot requeue a running job: cancel it first"),
    ("succeeded", "cannot requeue a succeeded job: its result would be replaced"),
])
def test_requeue_refuses_a_job_that_is_not_failed_or_cancelled(
        cluster: Cluster, capsys: pytest.CaptureFixture[str], status: str, reason: str) -> None:
    job_id = cluster.job(status)
    before = cluster.row(job_id)
    assert main(["admin", "requeue", job_id]) == 2
    assert capsys.readouterr().err == f"error: {job_id}: {reason}" + (
        "; submit its spec as a new job\n" if status == "succeeded" else "\n")
    after = cluster.row(job_id)
    assert before is not None and after is not None
    assert (after.status, after.attempt, after.result) == (before.status, before.attempt,
                                                           before.result)


def test_cancel_ends_a_queued_job_and_flags_a_running_one(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    # the queued one last: a job is made by claiming the oldest queued job
    running, cancelled, queued = (cluster.job(JobStatus.RUNNING), cluster.job(JobStatus.CANCELLED),
                                  cluster.job(JobStatus.QUEUED))
    assert main(["admin", "cancel", queued]) == 0
    job = cluster.row(queued)
    assert job is not None and job.status == "cancelled"
    assert job.error == {"type": "JobCancelled", "message": "cancelled by an admin",
                         "where": None}
    assert [e.kind for e in cluster.bus.read(queued)] == ["cancelled"]
    assert main(["admin", "cancel", running]) == 0
    job = cluster.row(running)
    assert job is not None and job.status == "running" and job.cancel_requested
    assert "stops at its next batch" in capsys.readouterr().out
    assert main(["admin", "cancel", cancelled]) == 2
    assert "cannot cancel a cancelled job: it already ended" in capsys.readouterr().err


def test_purge_deletes_an_ended_job_its_levels_and_its_stream(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = cluster.job(JobStatus.SUCCEEDED, levels=3)
    kept = cluster.job(JobStatus.SUCCEEDED, levels=1)
    for job in (job_id, kept):
        cluster.bus.publish(job, "finished", {})
    assert main(["admin", "purge", job_id]) == 0
    assert capsys.readouterr().out.strip() == (
        f"purged job {job_id}: 3 level checkpoint(s), its event stream")
    assert cluster.row(job_id) is None and cluster.levels(job_id) == 0
    assert not cluster.bus._client.exists(job_events_key(job_id, cluster.prefix))
    assert cluster.row(kept) is not None and cluster.levels(kept) == 1  # the others stay
    assert [e.kind for e in cluster.bus.read(kept)] == ["finished"]


def test_purge_refuses_a_live_job_and_an_unknown_id(
        cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    running = cluster.job(JobStatus.RUNNING, levels=1)
    assert main(["admin", "purge", running]) == 2
    assert "cannot purge a running job: cancel it first" in capsys.readouterr().err
    assert cluster.row(running) is not None and cluster.levels(running) == 1
    unknown = "f" * 32
    assert main(["admin", "purge", unknown]) == 2
    assert capsys.readouterr().err == f"error: {unknown}: no such job\n"
