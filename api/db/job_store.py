"""SqlJobStore: the runner's ``workers.ports.JobStore`` over the jobs tables, one short
session (one transaction) per call."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs
from api.db.tables import Dataset, Job, RegisteredNet
from core.errors import DatasetError, ModelLoadError
from core.spec import JobSpec
from workers.job_status import JobStatus
from workers.ports import ClaimedJob, Heartbeat


def resolve_spec(session: Session, spec: JobSpec) -> JobSpec:
    """Replace a dataset id and a registered net id by the engine's relative file paths.

    Raises:
        DatasetError, ModelLoadError: the id no longer exists.
    """
    update: dict[str, Any] = {}
    if spec.task.dataset is not None:
        dataset = session.get(Dataset, spec.task.dataset)
        if dataset is None:
            raise DatasetError("no such dataset", "task.dataset")
        update["task"] = spec.task.model_copy(update={"dataset": f"{dataset.sha256}.jsonl"})
    if spec.model.id is not None:
        net = session.get(RegisteredNet, spec.model.id)
        if net is None:
            raise ModelLoadError("no such registered model", "model.id")
        update["model"] = spec.model.model_copy(update={"id": None, "path": net.path})
    return spec.model_copy(update=update)


class SqlJobStore:
    """The job state machine of ``api.db.jobs`` behind the runner's port."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def requeue_expired(self, max_attempts: int) -> int:
        with self.sessions() as session:
            return jobs.requeue_expired(session, max_attempts)

    def claim(self, worker: str, lease_s: float, per_owner_cap: int) -> ClaimedJob | None:
        with self.sessions() as session:
            job = jobs.claim_fair(session, worker, lease_s, per_owner_cap)
            if job is None:
                return None
            return ClaimedJob(job.id, job.owner, job.attempt, dict(job.spec))

    def prepare(self, job: ClaimedJob) -> tuple[JobSpec, list[dict[str, Any]]]:
        with self.sessions() as session:
            spec = resolve_spec(session, job.job_spec())
            # a requeued job resumes after the levels an earlier attempt checkpointed
            completed = [dict(level.checkpoint) for level in jobs.list_levels(session, job.id)]
        return spec, completed

    def heartbeat(self, job_id: str, worker: str, lease_s: float | None) -> Heartbeat:
        with self.sessions() as session:
            if lease_s is not None:
                held = jobs.renew_lease(session, job_id, worker, lease_s)
                return Heartbeat(held, jobs.is_cancel_requested(session, job_id))
            row = session.execute(
                select(Job.cancel_requested, Job.status, Job.lease_owner).where(Job.id == job_id)
            ).one_or_none()
        if row is None:  # purged under the runner
            return Heartbeat(held=False, cancel_requested=True)
        return Heartbeat(held=row.status == JobStatus.RUNNING and row.lease_owner == worker,
                         cancel_requested=bool(row.cancel_requested))

    def record_progress(self, job_id: str, worker: str, **values: Any) -> None:
        with self.sessions() as session:
            jobs.record_progress(session, job_id, worker, **values)

    def save_checkpoint(self, job_id: str, index: int, checkpoint: dict[str, Any]) -> None:
        with self.sessions() as session:
            jobs.save_level(session, job_id, index, checkpoint)

    def succeed(self, job_id: str, worker: str, result: dict[str, Any]) -> bool:
        with self.sessions() as session:
            return jobs.succeed_job(session, job_id, worker, result)

    def fail(self, job_id: str, worker: str, error: dict[str, Any]) -> bool:
        with self.sessions() as session:
            return jobs.fail_job(session, job_id, worker, error)

    def cancel(self, job_id: str, worker: str) -> bool:
        with self.sessions() as session:
            return jobs.cancel_running_job(session, job_id, worker)

    def release(self, job_id: str, worker: str) -> bool:
        with self.sessions() as session:
            return jobs.release_job(session, job_id, worker)

    def retry(self, job_id: str, worker: str, max_attempts: int,
              error: dict[str, Any]) -> JobStatus | None:
        with self.sessions() as session:
            return jobs.retry_job(session, job_id, worker, max_attempts, error)
