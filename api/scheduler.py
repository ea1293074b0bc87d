"""The scheduler: one active instance (a Postgres advisory lock), fair-share claims up to
the free runner slots (fixed, or read from the cluster's GPUs each round), leases renewed by
the runners, expired leases requeued.

A second instance waits on the lock and takes over when the first one's connection goes
(its process died). On SQLite (the embedded default) there is one process, so no lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs
from api.runner import JobRunner

log = logging.getLogger(__name__)

LOCK_KEY = 0x504C4F54  # "PLOT": the advisory lock id of the scheduler's election
MAX_SLOTS = 64  # runner threads a scheduler whose slots follow the cluster may start


@dataclass(frozen=True)
class SchedulerLimits:
    """How much the scheduler runs at once.

    Attributes:
        slots: jobs running at once on this cluster (runner threads driving the actors);
            the fallback when a slot source is given and fails.
        per_owner_cap: running jobs one owner may hold.
        poll_s: how often it looks for queued jobs and expired leases.
    """

    slots: int = 2
    per_owner_cap: int = 1
    poll_s: float = 0.5


class LeaderLock:
    """``pg_try_advisory_lock`` held on a dedicated connection for as long as it lives."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None
        self._is_postgres = engine.dialect.name == "postgresql"

    def try_acquire(self) -> bool:
        if not self._is_postgres:
            return True
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        won = self._connection.execute(text("SELECT pg_try_advisory_lock(:k)"),
                                       {"k": self._key}).scalar()
        return bool(won)

    def still_held(self) -> bool:
        """False when the lock's connection broke (another instance may now lead)."""
        if not self._is_postgres:
            return True
        if self._connection is None:
            return False
        try:
            held = self._connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND pid = pg_backend_pid() AND objid = :k"), {"k": self._key & 0xFFFFFFFF},
            ).scalar()
        except Exception:
            log.exception("leader lock connection lost")
            self.release()
            return False
        return bool(held)

    def release(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # closing the session drops its advisory locks
            except Exception:
                log.exception("closing the leader lock connection")
            self._connection = None


class Scheduler:
    """Elects itself leader, then claims queued jobs fair-share and runs each on a slot.

    Args:
        engine: the database engine (the lock holds one of its connections).
        sessions: session factory of ``engine``.
        runner: runs one claimed job (its thread loop is not started; its ``run_one`` is
            called from this scheduler's slots).
        limits: slots, per-owner cap, poll interval.
        lease_s, max_attempts: the lease of a claimed job; attempts before ``failed``.
        slots: read each round for the number of jobs to run at once (the cluster's free
            GPUs, ``workers.cluster.gpu_slots``); None: ``limits.slots``.
        on_round: called at the end of each round as leader with whether a job runs
            (``workers.idle_release.IdleRelease`` sizes the actor pool by it).
    """

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], runner: JobRunner,
                 limits: SchedulerLimits, lease_s: float, max_attempts: int,
                 slots: Callable[[], int] | None = None,
                 on_round: Callable[[bool], None] | None = None) -> None:
        self.limits = limits
        self._slot_source = slots
        self._on_round = on_round
        self.is_leader = False
        self._lock = LeaderLock(engine)
        self._sessions = sessions
        self._runner = runner
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        threads = MAX_SLOTS if slots is not None else limits.slots
        self._slots = ThreadPoolExecutor(threads, thread_name_prefix="plot-slot")
        self._active: set[Future[None]] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plot-scheduler", daemon=True)
        self.became_leader = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop claiming; running jobs go back to the queue at their next batch boundary."""
        self._stopping.set()
        self._runner.stop(timeout_s)
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._slots.shutdown(wait=True)
        self._lock.release()

    def slot_count(self) -> int:
        """Jobs to run at once now: from the slot source (capped at MAX_SLOTS), else the
        fixed ``limits.slots``; a source that fails (Ray unreachable) falls back to it."""
        if self._slot_source is None:
            return self.limits.slots
        try:
            return min(self._slot_source(), MAX_SLOTS)
        except Exception:
            log.exception("reading the cluster's slots failed; using %d", self.limits.slots)
            return self.limits.slots

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:  # outlive a DB hiccup; leadership is re-checked next tick
                log.exception("scheduler tick failed")
            self._stopping.wait(self.limits.poll_s)

    def tick(self) -> int:
        """One round: keep or win the lock, requeue expired leases, fill free slots.

        Returns:
            How many jobs this round started.
        """
        if self.is_leader and not self._lock.still_held():
            self.is_leader = False
            log.warning("lost the scheduler lock")
        if not self.is_leader:
            self.is_leader = self._lock.try_acquire()
            if not self.is_leader:
                return 0
            log.info("this scheduler is the leader")
            self.became_leader.set()
        self._active = {f for f in self._active if not f.done()}
        with self._sessions() as session:
            jobs.requeue_expired(session, self._max_attempts)
        started = 0
        capacity = self.slot_count()
        while len(self._active) < capacity and not self._stopping.is_set():
            with self._sessions() as session:
                job = jobs.claim_fair(session, self._runner.worker_id, self._lease_s,
                                      self.limits.per_owner_cap)
            if job is None:
                break
            self._active.add(self._slots.submit(self._runner.run_one, job))
            started += 1
        if self._on_round is not None:
            try:
                self._on_round(bool(self._active))
            except Exception:  # the pool's size is an economy, never a reason to stop
                log.exception("the end-of-round hook failed")
        return started
