"""Idle release: a scheduler's actor pool shrinks to one actor after a while without jobs, so
the Ray autoscaler can hand the GPU nodes back, and grows to its size when work returns."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from workers.pool import ActorPool

log = logging.getLogger(__name__)
IDLE_SIZE = 1  # actors kept through an idle spell (the first job starts at once)


class IdleRelease:
    """Called once per scheduler round with whether any job runs.

    Args:
        pool: the scheduler's actor pool.
        size: its working size (what it grows back to).
        idle_s: seconds without a running job before it shrinks; 0 never shrinks.
        clock: seconds, monotonic (tests pass their own).
    """

    def __init__(self, pool: ActorPool, size: int, idle_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.size = size
        self.idle_s = idle_s
        self._clock = clock
        self._idle_since: float | None = None

    def __call__(self, busy: bool) -> None:
        now = self._clock()
        if busy:
            self._idle_since = None
            if len(self.pool.actors) < self.size:
                started = self.pool.resize(self.size)
                log.info("work is back: started %d intervention actors", started)
            return
        if self._idle_since is None:
            self._idle_since = now
        shrink = min(IDLE_SIZE, self.size)
        if self.idle_s > 0 and now - self._idle_since >= self.idle_s \
                and len(self.pool.actors) > shrink:
            killed = -self.pool.resize(shrink)
            log.info("idle for %.0f s: released %d intervention actors", self.idle_s, killed)
