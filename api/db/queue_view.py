"""The queue as everyone may see it: each queued job's place in the fair-share order and
its owner, the caller's own jobs with their id and name, and per owner how many jobs are
queued and running. Other owners' ids, names and specs stay hidden."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db.jobs import fair_share_order, running_by_owner
from api.db.tables import Job
from workers.job_status import JobStatus


@dataclass(frozen=True)
class QueueEntry:
    position: int
    owner: str
    mine: bool
    job_id: str | None  # None for another owner's job (an admin sees every id)
    name: str | None


@dataclass(frozen=True)
class OwnerLoad:
    owner: str
    queued: int
    running: int


def queue_view(session: Session, caller: Caller, limit: int
               ) -> tuple[list[QueueEntry], list[OwnerLoad], int]:
    """The first ``limit`` queued jobs in claim order, every owner's counts (most queued
    first), and the number of queued jobs.

    Only each owner's first ``limit`` queued jobs are ordered (``fair_share_order``'s
    ``depth``, a window in SQL): the claim order goes round by round, one job per owner a
    round, so an owner's job past its ``limit``-th comes after ``limit`` others and is never
    shown; the queue's length is a count.
    """
    shown = fair_share_order(session, depth=limit)[:limit]
    rows = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(shown)))}
    entries = []
    for position, job_id in enumerate(shown):
        job = rows.get(job_id)
        if job is None:  # claimed or cancelled since the order was read
            continue
        visible = job.owner == caller.owner or caller.is_admin
        entries.append(QueueEntry(position, job.owner, job.owner == caller.owner,
                                  job.id if visible else None, job.name if visible else None))
    queued = dict(session.execute(
        select(Job.owner, func.count()).where(Job.status == JobStatus.QUEUED)
        .group_by(Job.owner)).all())
    running = running_by_owner(session)
    loads = [OwnerLoad(owner, int(queued.get(owner, 0)), running.get(owner, 0))
             for owner in set(queued) | set(running)]
    loads.sort(key=lambda load: (-load.queued, -load.running, load.owner))
    return entries, loads, sum(int(count) for count in queued.values())
