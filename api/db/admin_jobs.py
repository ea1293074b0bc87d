"""The maintainer's actions on any owner's job (``plot admin``): requeue, cancel, purge.

Each is one transaction; a job in the wrong state is refused with the reason and what to do
instead.
"""

from __future__ import annotations

from typing import NoReturn

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.db.jobs import count_levels
from api.db.tables import Job, JobLevel, utcnow
from api.errors import ConflictError, NotFoundError
from workers.job_status import TERMINAL, JobStatus


def _refuse(session: Session, job_id: str, action: str, reasons: dict[str, str]) -> NoReturn:
    """Raise the error that explains why ``action`` did not apply to ``job_id``.

    Raises:
        NotFoundError: no such job.
        ConflictError: its status, with what to do instead (from ``reasons``).
    """
    status = session.scalar(select(Job.status).where(Job.id == job_id))
    if status is None:
        raise NotFoundError("no such job", job_id)
    raise ConflictError(f"cannot {action} a {status} job: {reasons.get(status, status)}", job_id)


def requeue_job(session: Session, job_id: str) -> int:
    """Put a failed or cancelled job back in the queue with a fresh set of attempts, in one
    transaction. Its level checkpoints stay, so it resumes after the last one.

    Returns:
        How many checkpointed levels it will skip.

    Raises:
        NotFoundError: no such job.
        ConflictError: it is queued, running or succeeded.
    """
    moved = session.execute(
        update(Job).where(Job.id == job_id, Job.status.in_((JobStatus.FAILED, JobStatus.CANCELLED)))
        .values(status=JobStatus.QUEUED, attempt=0, error=None, cancel_requested=False,
                finished_at=None, lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    ).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    if not moved:
        _refuse(session, job_id, "requeue", {
            JobStatus.QUEUED: "it is already waiting", JobStatus.RUNNING: "cancel it first",
            JobStatus.SUCCEEDED: "its result would be replaced; submit its spec as a new job"})
    return count_levels(session, job_id)


def cancel_job(session: Session, job_id: str) -> JobStatus:
    """Cancel any owner's job in one transaction: a queued job ends now, a running one is
    flagged and its runner stops at the next batch boundary.

    Returns:
        ``cancelled`` (ended now) or ``running`` (flagged).

    Raises:
        NotFoundError: no such job.
        ConflictError: it already ended.
    """
    ended = session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, finished_at=utcnow(),
                error={"type": "JobCancelled", "message": "cancelled by an admin",
                       "where": None})
        .execution_options(synchronize_session=False)
    ).rowcount == 1  # type: ignore[attr-defined]
    flagged = not ended and session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING)
        .values(cancel_requested=True).execution_options(synchronize_session=False)
    ).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    if ended:
        return JobStatus.CANCELLED
    if flagged:
        return JobStatus.RUNNING
    _refuse(session, job_id, "cancel", {status: "it already ended" for status in TERMINAL})


def purge_job(session: Session, job_id: str) -> int:
    """Delete an ended job and its level checkpoints in one transaction (the row is locked
    first, so it cannot be requeued meanwhile).

    Returns:
        How many level checkpoints went with it.

    Raises:
        NotFoundError: no such job.
        ConflictError: it is queued or running (cancel it first).
    """
    status = session.scalar(select(Job.status).where(Job.id == job_id).with_for_update())
    if status not in TERMINAL:
        session.rollback()
        _refuse(session, job_id, "purge", {JobStatus.QUEUED: "cancel it first",
                                           JobStatus.RUNNING: "cancel it first"})
    deleted = session.execute(delete(JobLevel).where(JobLevel.job_id == job_id))
    levels: int = deleted.rowcount  # type: ignore[attr-defined]
    session.execute(delete(Job).where(Job.id == job_id))
    session.commit()
    return levels
