"""ActorBackends: each job's compute backend on the shared Ray actor pool, scoped to the job
so its actors forget it when it ends (the factory that ``core.job.run_job`` takes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.backend import ComputeBackend
from core.causal.bank import Banks
from core.control import CancelCheck, never_cancelled
from core.engine import BankTraces
from core.job import BackendFactory
from core.nets.base import InterventableNet
from workers.cluster import spare_cpus
from workers.coupling_task import COUPLING_TASK_CPUS, warm_workers
from workers.pool import ActorPool
from workers.ray_backend import RayBackend, describe_net


class ActorBackends:
    """Hands each job a RayBackend over the shared pool.

    Args:
        pool: the intervention actors of this process's runners.
        chunks_per_actor: chunks of one level call per actor (finer: finer progress).
        coupling_tasks: CPU tasks a level's coupling grid is cut into; None: 4 when the
            cluster has CPUs beyond the actors' (``COUPLING_TASK_CPUS``), else 0 (solved in
            the runner's process: a task that can never be scheduled would hang the job).
    """

    def __init__(self, pool: ActorPool, chunks_per_actor: int = 2,
                 coupling_tasks: int | None = None) -> None:
        self.pool = pool
        self.chunks_per_actor = chunks_per_actor
        if coupling_tasks is None:
            coupling_tasks = 4 if spare_cpus(pool) >= COUPLING_TASK_CPUS else 0
        self.coupling_tasks = coupling_tasks
        warm_workers(min(coupling_tasks, int(spare_cpus(pool) / COUPLING_TASK_CPUS)))

    @contextmanager
    def for_job(self, should_cancel: CancelCheck = never_cancelled
                ) -> Iterator[BackendFactory]:
        """A BackendFactory for one run of ``run_job``; on exit (success, error or
        cancel) the actors release the job's traced banks.

        Args:
            should_cancel: the job's cancel flag; the backend polls it while it waits on
                Ray and stops the job's running chunks on the actors when it turns true.
        """
        factory = RayBackends(self, should_cancel)
        try:
            yield factory
        finally:
            for backend in factory.made:
                backend.close()


class RayBackends:
    """One job's ``core.job.BackendFactory`` on the pool: the actors describe the net,
    hold it and trace the banks; the driver gets only the outline and the clean logits."""

    def __init__(self, owner: ActorBackends, should_cancel: CancelCheck) -> None:
        self.owner = owner
        self.should_cancel = should_cancel
        self.made: list[RayBackend] = []

    def describe(self, net_dir: Path) -> InterventableNet:
        return describe_net(self.owner.pool, net_dir)

    def __call__(self, net_dir: Path, banks: Banks, max_rows: int, budget: int | None
                 ) -> tuple[ComputeBackend, dict[str, BankTraces]]:
        backend = RayBackend(self.owner.pool, net_dir, None, max_rows,
                             self.owner.chunks_per_actor, self.should_cancel,
                             self.owner.coupling_tasks, banks=banks, budget=budget)
        self.made.append(backend)
        return backend, backend.clean_traces()
