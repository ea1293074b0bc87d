"""InMemoryJobStore: the runner's ``JobStore`` in one process's memory, with the same state
machine as the SQL store (leases, attempts, fair share). For a notebook's own queue and for
testing the runner and the claim loop without a database; it holds nothing across restarts.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from core.spec import JobSpec
from workers.job_status import JobStatus
from workers.ports import ClaimedJob, Heartbeat

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = JobStatus  # the lifecycle, in order
CANCELLED_RECORD = {"type": "JobCancelled", "message": "cancelled while running", "where": None}


@dataclass
class StoredJob:
    """One job's row: what the SQL ``jobs`` table holds, in memory."""

    id: str
    owner: str
    spec: dict[str, Any]
    priority: int = 0
    order: int = 0  # submission order (the SQL store's created_at)
    status: JobStatus = QUEUED
    attempt: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    started_at: float | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[int, dict[str, Any]] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None



class InMemoryJobStore:
    """Jobs in a dict under one lock; every transition checks status and lease like SQL's
    conditional updates. ``clock`` (seconds) is injectable so lease expiry is testable."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._jobs: dict[str, StoredJob] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._order = itertools.count()

    # --- the submitting side --------------------------------------------------------------

    def submit(self, owner: str, spec: dict[str, Any], priority: int = 0) -> str:
        job_id = uuid.uuid4().hex
        with self._lock:
            self._jobs[job_id] = StoredJob(job_id, owner, copy.deepcopy(spec), priority,
                                           next(self._order))
        return job_id

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if job.status == QUEUED:
                job.status = CANCELLED
            elif job.status == RUNNING:
                job.cancel_requested = True

    def get(self, job_id: str) -> StoredJob:
        """A copy of the job's row."""
        with self._lock:
            return copy.deepcopy(self._jobs[job_id])

    # --- the runner side (workers.ports.JobStore) ------------------------------------------

    def _running_under(self, job_id: str, worker: str) -> StoredJob | None:
        job = self._jobs.get(job_id)
        if job is None or job.status != RUNNING or job.lease_owner != worker:
            return None
        return job

    def _end(self, job: StoredJob, status: JobStatus, **values: Any) -> None:
        job.status, job.lease_owner, job.lease_expires_at = status, None, None
        for name, value in values.items():
            setattr(job, name, value)

    def requeue_expired(self, max_attempts: int) -> int:
        now, moved = self._clock(), 0
        with self._lock:
            for job in self._jobs.values():
                if job.status != RUNNING or job.lease_expires_at is None:
                    continue
                if job.lease_expires_at < now:
                    moved += 1
                    if job.attempt < max_attempts:
                        self._end(job, QUEUED)
                    else:
                        self._end(job, FAILED, error={
                            "type": "LeaseExpired", "where": None,
                            "message": f"runner lost {job.attempt} times"})
        return moved

    def fair_share_order(self, per_owner_cap: int | None = None) -> list[str]:
        """Queued job ids in the SQL store's fair-share order: round by round each owner
        offers its next job (priority, then age); inside a round, owners with fewer running
        jobs first, then an owner who never ran, then the one who started longest ago."""
        with self._lock:
            running: dict[str, int] = {}
            last_started: dict[str, float] = {}
            for job in self._jobs.values():
                running[job.owner] = running.get(job.owner, 0) + (job.status == RUNNING)
                if job.started_at is not None:
                    last_started[job.owner] = max(last_started.get(job.owner, job.started_at),
                                                  job.started_at)
            queued = sorted((j for j in self._jobs.values() if j.status == QUEUED),
                            key=lambda j: (-j.priority, j.order))
            rank: dict[str, int] = {}
            heads = []
            for job in queued:
                rank[job.owner] = rank.get(job.owner, 0) + 1
                if per_owner_cap is None or running.get(job.owner, 0) < per_owner_cap:
                    heads.append((rank[job.owner], job))

        def order(head: tuple[int, StoredJob]) -> tuple[Any, ...]:
            position, job = head
            started = last_started.get(job.owner)
            return (position, running.get(job.owner, 0), started is not None, started or 0.0,
                    -job.priority, job.order)

        return [job.id for _, job in sorted(heads, key=order)]

    def claim(self, worker: str, lease_s: float, per_owner_cap: int) -> ClaimedJob | None:
        for job_id in self.fair_share_order(per_owner_cap):
            with self._lock:
                job = self._jobs[job_id]
                if job.status != QUEUED:
                    continue  # lost a race for it
                now = self._clock()
                job.status, job.attempt, job.lease_owner = RUNNING, job.attempt + 1, worker
                job.lease_expires_at, job.started_at = now + lease_s, now
                return ClaimedJob(job.id, job.owner, job.attempt, copy.deepcopy(job.spec))
        return None

    def prepare(self, job: ClaimedJob) -> tuple[JobSpec, list[dict[str, Any]]]:
        with self._lock:
            saved = self._jobs[job.id].checkpoints
            completed = [copy.deepcopy(saved[index]) for index in sorted(saved)]
        return job.job_spec(), completed

    def heartbeat(self, job_id: str, worker: str, lease_s: float | None) -> Heartbeat:
        with self._lock:
            job = self._jobs.get(job_id)
            held = self._running_under(job_id, worker) is not None
            if held and lease_s is not None and job is not None:
                job.lease_expires_at = self._clock() + lease_s
            return Heartbeat(held, job is None or job.cancel_requested)

    def record_progress(self, job_id: str, worker: str, **values: Any) -> None:
        with self._lock:
            job = self._running_under(job_id, worker)
            if job is not None:
                job.progress.update(values)

    def save_checkpoint(self, job_id: str, index: int, checkpoint: dict[str, Any]) -> None:
        with self._lock:
            self._jobs[job_id].checkpoints[index] = copy.deepcopy(checkpoint)

    def _move(self, job_id: str, worker: str, status: JobStatus, **values: Any) -> bool:
        with self._lock:
            job = self._running_under(job_id, worker)
            if job is None:
                return False
            self._end(job, status, **values)
            return True

    def succeed(self, job_id: str, worker: str, result: dict[str, Any]) -> bool:
        return self._move(job_id, worker, SUCCEEDED, result=copy.deepcopy(result))

    def fail(self, job_id: str, worker: str, error: dict[str, Any]) -> bool:
        return self._move(job_id, worker, FAILED, error=dict(error))

    def cancel(self, job_id: str, worker: str) -> bool:
        return self._move(job_id, worker, CANCELLED, error=dict(CANCELLED_RECORD))

    def release(self, job_id: str, worker: str) -> bool:
        with self._lock:
            job = self._running_under(job_id, worker)
            if job is None:
                return False
            if job.cancel_requested:  # the user's cancel wins over the hand-back
                self._end(job, CANCELLED, error=dict(CANCELLED_RECORD))
                return False
            self._end(job, QUEUED)
            return True

    def retry(self, job_id: str, worker: str, max_attempts: int,
              error: dict[str, Any]) -> JobStatus | None:
        with self._lock:
            job = self._running_under(job_id, worker)
            if job is None:
                return None
            if job.cancel_requested:  # a user's cancel wins over another attempt
                self._end(job, CANCELLED, error=dict(CANCELLED_RECORD))
                return CANCELLED
            if job.attempt < max_attempts:
                self._end(job, QUEUED, error=dict(error))
                return QUEUED
            message = f"{error.get('message')} (attempt limit {max_attempts})"
            self._end(job, FAILED, error={**error, "message": message})
            return FAILED
