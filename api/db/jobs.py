"""The job state machine: queued → running → succeeded | failed | cancelled.

Every transition is one transaction: a conditional ``UPDATE … WHERE status = expected`` whose
row count says whether it happened. Runner-side transitions also require the caller's lease,
so a runner whose lease expired (and whose job was requeued) cannot finish it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.owned import get_owned
from api.db.quota_lock import lock_owner_quota
from api.db.results import without_levels
from api.db.tables import Job, JobLevel, join_tags, utcnow
from api.errors import ConflictError, QuotaError
from core.errors import SpecError
from core.spec import JobSpec
from workers.job_status import JobStatus


def _transition(
    session: Session,
    job_id: str,
    expected: JobStatus,
    target: JobStatus,
    *conditions: ColumnElement[bool],
    **values: Any,
) -> bool:
    """Move ``job_id`` from ``expected`` to ``target`` in one transaction; False if it was not
    in ``expected`` (or ``conditions`` did not hold)."""
    statement = (
        update(Job)
        .where(Job.id == job_id, Job.status == expected, *conditions)
        .values(status=target, **values)
        .execution_options(synchronize_session=False)
    )
    moved: bool = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return moved


def _held_by(worker: str) -> ColumnElement[bool]:
    return Job.lease_owner == worker


# --- the API side -------------------------------------------------------------------------


def find_nul(value: Any, path: str = "") -> str | None:
    """The path of the first string (or key) holding a NUL character, which Postgres text
    and JSONB cannot store; None if there is none."""
    if isinstance(value, str):
        return (path or "(spec)") if "\x00" in value else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        inner = f"{path}.{key}" if path else str(key)
        if "\x00" in str(key):
            return inner
        found = find_nul(item, inner)
        if found:
            return found
    return None


def create_job(session: Session, owner: str, spec: JobSpec, max_queued: int) -> Job:
    """Write a queued job for ``owner``; the count and the insert are atomic per owner
    (``lock_owner_quota``).

    Raises:
        SpecError: a string of the spec holds a NUL character.
        QuotaError: ``owner`` already has ``max_queued`` queued jobs.
    """
    document = spec.model_dump(mode="json")
    nul_at = find_nul(document)
    if nul_at is not None:
        raise SpecError("NUL characters are not allowed", nul_at)
    lock_owner_quota(session, owner)
    queued = session.scalar(
        select(func.count()).select_from(Job)
        .where(Job.owner == owner, Job.status == JobStatus.QUEUED)
    )
    if (queued or 0) >= max_queued:
        session.rollback()  # end the transaction: it holds the owner's lock
        raise QuotaError(f"{queued} jobs already queued (limit {max_queued})", "owner")
    job = Job(owner=owner, status=JobStatus.QUEUED, spec=document, priority=spec.priority,
              name=spec.name, tags=join_tags(spec.tags))
    session.add(job)
    session.commit()
    return job


def get_job(session: Session, caller: Caller, job_id: str) -> Job:
    """The job if the caller may see it.

    Raises:
        NotFoundError: no such job, or another owner's (unless the caller is an admin).
    """
    return get_owned(session, caller, Job, job_id, "job")


def list_jobs(
    session: Session, caller: Caller, status: JobStatus | None, limit: int, offset: int,
    tag: str | None = None, name: str | None = None,
) -> tuple[Sequence[Job], int]:
    """The caller's jobs (an admin's: everyone's), newest first, and their total count;
    with ``tag``, only jobs carrying it; with ``name``, only jobs whose name contains it
    (case-insensitive)."""
    where: list[ColumnElement[bool]] = []
    if not caller.is_admin:
        where.append(Job.owner == caller.owner)
    if status is not None:
        where.append(Job.status == status)
    if tag is not None:
        where.append(Job.tags.contains(f",{tag},", autoescape=True))
    if name is not None:
        where.append(func.lower(Job.name).contains(name.lower(), autoescape=True))
    total = session.scalar(select(func.count()).select_from(Job).where(*where)) or 0
    rows = session.scalars(
        select(Job).where(*where).order_by(Job.created_at.desc(), Job.id).limit(limit)
        .offset(offset)
    ).all()
    return rows, total


def queue_positions(session: Session, page: Sequence[Job]) -> dict[str, int]:
    """Per queued job of ``page``, how many queued jobs the scheduler claims before it (0:
    next), in the fair-share order as the queue stands (``fair_share_order``). Later
    submissions and owners reaching their running cap can move it.

    The same few queries for any page size (none when no job of the page is queued).
    """
    queued = [job.id for job in page if job.status == JobStatus.QUEUED]
    if not queued:
        return {}
    place = {job_id: index for index, job_id in enumerate(fair_share_order(session))}
    return {job_id: place.get(job_id, 0) for job_id in queued}  # 0: queued since the read


def queue_position(session: Session, job: Job) -> int | None:
    """One job's ``queue_positions``; None unless queued."""
    return queue_positions(session, [job]).get(job.id)


def count_levels(session: Session, job_id: str) -> int:
    return count_levels_by_job(session, [job_id]).get(job_id, 0)


def count_levels_by_job(session: Session, job_ids: Sequence[str]) -> dict[str, int]:
    """Checkpointed levels per job of ``job_ids`` (jobs with none are left out), one query."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(JobLevel.job_id, func.count()).where(JobLevel.job_id.in_(job_ids))
        .group_by(JobLevel.job_id)
    ).all()
    return {job_id: int(count) for job_id, count in rows}


def list_levels(session: Session, job_id: str) -> Sequence[JobLevel]:
    return session.scalars(
        select(JobLevel).where(JobLevel.job_id == job_id).order_by(JobLevel.level)
    ).all()


def request_cancel(session: Session, job: Job) -> tuple[Job, bool]:
    """Cancel a queued job now; flag a running one (its runner stops between batches).

    Returns:
        The refreshed job, and whether this call ended it (queued → cancelled).

    Raises:
        ConflictError: the job already succeeded or failed.
    """
    ended_now = _transition(
        session, job.id, JobStatus.QUEUED, JobStatus.CANCELLED, finished_at=utcnow(),
        error={"type": "JobCancelled", "message": "cancelled before it started", "where": None},
    )
    if not ended_now:
        session.execute(
            update(Job).where(Job.id == job.id, Job.status == JobStatus.RUNNING)
            .values(cancel_requested=True).execution_options(synchronize_session=False)
        )
        session.commit()
    session.refresh(job)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise ConflictError(f"the job already {job.status}", job.id)
    return job, ended_now


# --- the runner side ----------------------------------------------------------------------


def renew_lease(session: Session, job_id: str, worker: str, lease_s: float) -> bool:
    """Extend the lease; False when the job is no longer running under ``worker``."""
    statement = (
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING, _held_by(worker))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        .execution_options(synchronize_session=False)
    )
    renewed: bool = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    session.commit()
    return renewed


def record_progress(session: Session, job_id: str, worker: str, **values: Any) -> None:
    """Update the polling view (current_level, progress_stage/done/total) of a running job."""
    session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING, _held_by(worker))
        .values(**values).execution_options(synchronize_session=False)
    )
    session.commit()


def is_cancel_requested(session: Session, job_id: str) -> bool:
    return bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def save_level(session: Session, job_id: str, level: int, checkpoint: dict[str, Any]) -> None:
    """Write one level's checkpoint (replacing an earlier attempt's) in one transaction."""
    session.execute(delete(JobLevel).where(JobLevel.job_id == job_id, JobLevel.level == level))
    session.add(JobLevel(job_id=job_id, level=level, checkpoint=checkpoint,
                         granularity=checkpoint.get("granularity")))
    session.commit()


def succeed_job(session: Session, job_id: str, worker: str, result: dict[str, Any]) -> bool:
    """End a running job with its ``JobResult.to_json()`` document; its levels are not
    stored again (they are the job's checkpoints, see ``api.db.results``)."""
    return _transition(session, job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED, _held_by(worker),
                       result=without_levels(result), finished_at=utcnow(), lease_owner=None,
                       lease_expires_at=None)


def fail_job(session: Session, job_id: str, worker: str, error: dict[str, Any]) -> bool:
    return _transition(session, job_id, JobStatus.RUNNING, JobStatus.FAILED, _held_by(worker),
                       error=error, finished_at=utcnow(), lease_owner=None, lease_expires_at=None)


def cancel_running_job(session: Session, job_id: str, worker: str) -> bool:
    return _transition(session, job_id, JobStatus.RUNNING, JobStatus.CANCELLED, _held_by(worker),
                       error={"type": "JobCancelled", "message": "cancelled while running",
                              "where": None},
                       finished_at=utcnow(), lease_owner=None, lease_expires_at=None)


def release_job(session: Session, job_id: str, worker: str) -> bool:
    """Hand a running job back to the queue (its runner is shutting down); a user's cancel
    request wins and ends it ``cancelled`` instead."""
    if _transition(session, job_id, JobStatus.RUNNING, JobStatus.QUEUED, _held_by(worker),
                   Job.cancel_requested.is_(False), lease_owner=None, lease_expires_at=None):
        return True
    cancel_running_job(session, job_id, worker)
    return False


def requeue_expired(session: Session, max_attempts: int, now: datetime | None = None) -> int:
    """Return running jobs whose lease expired to ``queued`` (or ``failed`` once they used
    ``max_attempts``); each job's move is its own conditional update. Returns how many moved."""
    now = now or utcnow()
    expired = session.scalars(
        select(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
    ).all()
    moved = 0
    for job in expired:
        stale = Job.lease_expires_at < now
        if job.attempt < max_attempts:
            moved += _transition(session, job.id, JobStatus.RUNNING, JobStatus.QUEUED, stale,
                                 lease_owner=None, lease_expires_at=None)
        else:
            moved += _transition(
                session, job.id, JobStatus.RUNNING, JobStatus.FAILED, stale, lease_owner=None,
                lease_expires_at=None, finished_at=now,
                error={"type": "LeaseExpired", "where": None,
                       "message": f"runner lost {job.attempt} times"},
            )
    return moved


def retry_job(session: Session, job_id: str, worker: str, max_attempts: int,
              error: dict[str, Any]) -> JobStatus | None:
    """After an infrastructure error (not the spec's or the data's): back to ``queued`` for
    another attempt, or ``failed`` with ``error`` once it used ``max_attempts``; a user's
    cancel asked for meanwhile wins (``cancelled``), as in ``release_job``.

    Returns:
        The status it moved to, or None when the lease was already lost.
    """
    if is_cancel_requested(session, job_id):
        return JobStatus.CANCELLED if cancel_running_job(session, job_id, worker) else None
    if _transition(session, job_id, JobStatus.RUNNING, JobStatus.QUEUED, _held_by(worker),
                   Job.attempt < max_attempts, Job.cancel_requested.is_(False),
                   lease_owner=None, lease_expires_at=None, error=error):
        return JobStatus.QUEUED
    failed = {**error, "message": f"{error.get('message')} (attempt limit {max_attempts})"}
    if fail_job(session, job_id, worker, failed):
        return JobStatus.FAILED
    return None


CLAIM_DEPTH = 4  # queued jobs per owner a fair claim may fall back to


def running_by_owner(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Job.owner, func.count()).where(Job.status == JobStatus.RUNNING).group_by(Job.owner)
    ).all()
    return {owner: int(count) for owner, count in rows}


def fair_share_order(session: Session, depth: int | None = None,
                     per_owner_cap: int | None = None) -> list[str]:
    """Queued job ids in fair-share claim order.

    Round by round, each owner offers its next queued job (priority, then age); inside a
    round, owners with fewer running jobs go first, then an owner who never ran, then the
    owner whose last job started longest ago (round robin), then the job's priority and age.

    Args:
        depth: only each owner's first ``depth`` queued jobs (None: all of them).
        per_owner_cap: leave out the owners running this many jobs (None: keep every owner).
    """
    running = running_by_owner(session)
    last_started = dict(session.execute(
        select(Job.owner, func.max(Job.started_at)).where(Job.started_at.is_not(None))
        .group_by(Job.owner)
    ).all())
    rank = func.row_number().over(partition_by=Job.owner,
                                  order_by=(Job.priority.desc(), Job.created_at, Job.id))
    ranked = (select(Job.id, Job.owner, Job.priority, Job.created_at, rank.label("rank"))
              .where(Job.status == JobStatus.QUEUED).subquery())
    query = select(ranked.c.id, ranked.c.owner, ranked.c.priority, ranked.c.created_at,
                   ranked.c.rank)
    if depth is not None:
        query = query.where(ranked.c.rank <= depth)
    heads = [h for h in session.execute(query).all()
             if per_owner_cap is None or running.get(h.owner, 0) < per_owner_cap]

    def order(head: Any) -> tuple[Any, ...]:
        started = last_started.get(head.owner)
        # an owner who never ran goes before every owner with as many running jobs
        when = "" if started is None else started.isoformat()
        return (head.rank, running.get(head.owner, 0), started is not None, when,
                -head.priority, head.created_at.isoformat(), head.id)

    return [head.id for head in sorted(heads, key=order)]


def fair_share_heads(session: Session, per_owner_cap: int) -> list[str]:
    """Queued job ids to try, in fair-share order, from owners under their cap: each
    owner's best queued job, then its next ``CLAIM_DEPTH - 1`` as fallbacks for a claim
    that loses a race for the heads."""
    return fair_share_order(session, CLAIM_DEPTH, per_owner_cap)


def claim_fair(session: Session, worker: str, lease_s: float, per_owner_cap: int
               ) -> Job | None:
    """Claim the next queued job in fair-share order (see ``fair_share_heads``)."""
    return _claim_first(session, fair_share_heads(session, per_owner_cap), worker, lease_s)


def _claim_first(session: Session, job_ids: Sequence[str], worker: str, lease_s: float
                 ) -> Job | None:
    """Move the first of ``job_ids`` still queued to running under a new lease."""
    for job_id in job_ids:
        now = utcnow()
        if _transition(session, job_id, JobStatus.QUEUED, JobStatus.RUNNING,
                       attempt=Job.attempt + 1, lease_owner=worker,
                       lease_expires_at=now + timedelta(seconds=lease_s), started_at=now,
                       progress_done=0, progress_total=0):
            return session.get(Job, job_id, populate_existing=True)
    return None
