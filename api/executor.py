"""The execution seam: runs one resolved JobSpec with the PLOT engine, its batched
interventions in this process or on the Ray actor pool."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from api.settings import Settings
from core.events import EngineEvent
from core.job import JobContext, run_job
from core.result import LevelResult
from core.spec import JobSpec

if TYPE_CHECKING:
    from workers.runner import PoolExecutors


class Executor(Protocol):
    """Runs a job whose dataset and model references are already file paths; the in-process
    engine here, a Ray job runner on a cluster."""

    def __call__(
        self,
        spec: JobSpec,
        on_event: Callable[[EngineEvent], None],
        should_cancel: Callable[[], bool],
        on_level: Callable[[dict[str, Any]], None],
        completed: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EngineExecutor:
    """``core.job.run_job`` in this process. Roots are absolute: ``spec.task.dataset`` is
    relative to ``data_root`` and ``spec.model.path`` to ``model_root``."""

    model_root: Path
    data_root: Path
    cache_dir: Path
    device: str = "cpu"
    pool: PoolExecutors | None = None  # None: the interventions run in this process

    def __call__(
        self,
        spec: JobSpec,
        on_event: Callable[[EngineEvent], None],
        should_cancel: Callable[[], bool],
        on_level: Callable[[dict[str, Any]], None],
        completed: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Run the job, resuming after the ``completed`` level checkpoints.

        Raises:
            JobCancelled: ``should_cancel()`` turned true between batches.
            PlotError: a subclass naming the bad field, file or line.
        """
        context = JobContext(model_root=self.model_root, data_root=self.data_root,
                             cache_dir=self.cache_dir, device=self.device)
        scope = (self.pool.for_job(should_cancel) if self.pool is not None
                 else nullcontext(None))
        with scope as factory:
            result = run_job(spec, context, on_event=on_event, should_cancel=should_cancel,
                             on_level=lambda level: on_level(level.to_json()),
                             completed=[LevelResult.model_validate(level) for level in completed],
                             executor_factory=factory)
        return dict(result.to_json())

    def actor_restarts(self) -> int:
        """Intervention actors replaced after they died (0 without a Ray pool)."""
        return self.pool.pool.replaced if self.pool is not None else 0

    def close(self) -> None:
        """Stop the intervention actors this executor spawned, if any."""
        if self.pool is not None:
            self.pool.pool.shutdown()


def make_executor(settings: Settings, spawn_actors: bool = True) -> EngineExecutor:
    """The engine the settings ask for; with ``ray_address`` set (and ``spawn_actors``) this
    connects to Ray (or starts a local one) and spawns the intervention actors."""
    pool = None
    if settings.ray_address and spawn_actors:
        from workers import cluster  # Ray loads only when configured
        from workers.runner import PoolExecutors

        cluster.connect(settings.ray_address, settings.ray_num_cpus)
        pool = PoolExecutors(cluster.make_pool(settings.ray_actors))
    return EngineExecutor(model_root=settings.resolved_model_root,
                          data_root=settings.dataset_dir, cache_dir=settings.resolved_cache_dir,
                          device=settings.device, pool=pool)
