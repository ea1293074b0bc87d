"""The claim loop as the service wires it (SQL store, leader lock, runner), for the tests that
drive it directly on a real database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.db.job_store import SqlJobStore
from api.db.leader_lock import LeaderLock
from api.metrics import ServiceMetrics
from workers.claim_loop import ClaimLimits, ClaimLoop
from workers.events import InProcessBus
from workers.ports import EventBus, JobEngine
from workers.runner import JobRunner, RunnerConfig


def make_claim_loop(database: tuple[Any, Any], engine: JobEngine, limits: ClaimLimits,
                    max_attempts: int = 3, bus: EventBus | None = None,
                    slots: Callable[[], int] | None = None,
                    on_round: Callable[[bool], None] | None = None) -> ClaimLoop:
    """A ``plot scheduler``'s loop on ``database`` (engine, sessions) running ``engine``."""
    db, sessions = database
    store = SqlJobStore(sessions)
    runner = JobRunner(store, bus or InProcessBus(), engine, RunnerConfig(30, max_attempts),
                       ServiceMetrics())
    return ClaimLoop(store, runner, limits, LeaderLock(db), slots, on_round)
