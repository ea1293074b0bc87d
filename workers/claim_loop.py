"""The one claim loop: ``plot serve``'s in-process runner and ``plot scheduler`` both run it.

Each round it keeps (or wins) leadership, returns expired leases to the queue, and claims
queued jobs in the store's fair-share order until the slots are full, running each claimed
job on a slot thread with the ``JobRunner``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from workers.ports import AlwaysLeader, JobStore, Leadership
from workers.runner import JobRunner

log = logging.getLogger(__name__)

MAX_SLOTS = 64  # slot threads of a loop whose slots follow the cluster


@dataclass(frozen=True)
class ClaimLimits:
    """How much the loop runs at once.

    Attributes:
        slots: jobs running at once (slot threads driving the engine); the fallback when a
            slot source is given and fails.
        per_owner_cap: running jobs one owner may hold.
        poll_s: how often it looks for queued jobs and expired leases.
    """

    slots: int = 2
    per_owner_cap: int = 1
    poll_s: float = 0.5


class ClaimLoop:
    """Claims queued jobs fair-share while it leads, and runs each on a slot.

    Args:
        store: the job state machine (claims, lease expiry).
        runner: runs one claimed job.
        limits: slots, per-owner cap, poll interval.
        leadership: the election among loops of one cluster; ``AlwaysLeader`` for one
            process.
        slots: read each round for the number of jobs to run at once (the cluster's free
            GPUs, ``workers.cluster.gpu_slots``); None: ``limits.slots``.
        on_round: called at the end of each round as leader with whether a job runs
            (``workers.idle_release.IdleRelease`` sizes the actor pool by it).
    """

    def __init__(self, store: JobStore, runner: JobRunner, limits: ClaimLimits = ClaimLimits(),
                 leadership: Leadership | None = None,
                 slots: Callable[[], int] | None = None,
                 on_round: Callable[[bool], None] | None = None) -> None:
        self.store = store
        self.runner = runner
        self.limits = limits
        self.is_leader = False
        self.became_leader = threading.Event()
        self._leadership = leadership or AlwaysLeader()
        self._slot_source = slots
        self._on_round = on_round
        threads = MAX_SLOTS if slots is not None else limits.slots
        self._slots = ThreadPoolExecutor(threads, thread_name_prefix="plot-slot")
        self._active: set[Future[None]] = set()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plot-claims", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop claiming; running jobs go back to the queue at their next batch boundary."""
        self._stopping.set()
        self.runner.stop()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        self._slots.shutdown(wait=True)
        self._leadership.release()

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
                log.exception("claim round failed")
            self._stopping.wait(self.limits.poll_s)

    def _lead(self) -> bool:
        """Keep or win leadership; False when another process leads."""
        if self.is_leader and not self._leadership.still_held():
            self.is_leader = False
            log.warning("lost the scheduler lock")
        if not self.is_leader:
            self.is_leader = self._leadership.try_acquire()
            if self.is_leader:
                log.info("this scheduler is the leader")
                self.became_leader.set()
        return self.is_leader

    def tick(self) -> int:
        """One round: keep or win leadership, requeue expired leases, fill free slots.

        Returns:
            How many jobs this round started.
        """
        if not self._lead():
            return 0
        self._active = {f for f in self._active if not f.done()}
        self.store.requeue_expired(self.runner.config.max_attempts)
        started = 0
        capacity = self.slot_count()
        while len(self._active) < capacity and not self._stopping.is_set():
            job = self.store.claim(self.runner.worker_id, self.runner.config.lease_s,
                                   self.limits.per_owner_cap)
            if job is None:
                break
            self._active.add(self._slots.submit(self.runner.run_one, job))
            started += 1
        if self._on_round is not None:
            try:
                self._on_round(bool(self._active))
            except Exception:  # the pool's size is an economy, never a reason to stop
                log.exception("the end-of-round hook failed")
        return started
