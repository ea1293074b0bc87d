"""Runs a job's batched interventions on the Ray actor pool: the ExecutorFactory that
``core.job.run_job`` takes, scoped to one job so its actors forget it when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.engine import BankTraces
from core.job import ExecutorFactory
from workers.pool import ActorPool
from workers.ray_executor import RayExecutor


class PoolExecutors:
    """Hands each job a RayExecutor over the shared pool.

    Args:
        pool: the intervention actors of this process's runners.
        chunks_per_actor: chunks of one level call per actor (finer: prompter cancel).
    """

    def __init__(self, pool: ActorPool, chunks_per_actor: int = 2) -> None:
        self.pool = pool
        self.chunks_per_actor = chunks_per_actor

    @contextmanager
    def for_job(self) -> Iterator[ExecutorFactory]:
        """An ExecutorFactory for one run of ``run_job``; on exit (success, error or
        cancel) the actors release the job's traced banks."""
        made: list[RayExecutor] = []

        def factory(net_dir: Path, traces: dict[str, BankTraces], max_rows: int
                    ) -> RayExecutor:
            executor = RayExecutor(self.pool, net_dir, traces, max_rows, self.chunks_per_actor)
            made.append(executor)
            return executor

        try:
            yield factory
        finally:
            for executor in made:
                executor.close()
