"""Engine: the runner's ``JobEngine`` — ``core.job.run_job`` in this process, its batched
interventions, coupling grids and DAS trainings here or on the Ray actor pool."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.control import JobControl
from core.job import JobContext, run_job
from core.memory import budget_from
from core.result import LevelResult
from core.spec import JobSpec

if TYPE_CHECKING:
    from workers.actor_backends import ActorBackends


@dataclass(frozen=True)
class Engine:
    """``core.job.run_job`` in this process. Roots are absolute: ``spec.task.dataset`` is
    relative to ``data_root`` and ``spec.model.path`` to ``model_root``."""

    model_root: Path
    data_root: Path
    cache_dir: Path
    device: str = "cpu"
    pool: ActorBackends | None = None  # None: the interventions run in this process
    memory_budget: int | None = field(default_factory=lambda: budget_from(os.environ))

    def __call__(
        self,
        spec: JobSpec,
        control: JobControl,
        on_level: Callable[[dict[str, Any]], None],
        completed: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """Run the job, resuming after the ``completed`` level checkpoints.

        Raises:
            JobCancelled: the control's cancel check turned true between batches.
            PlotError: a subclass naming the bad field, file or line.
        """
        context = JobContext(model_root=self.model_root, data_root=self.data_root,
                             cache_dir=self.cache_dir, device=self.device,
                             memory_budget=self.memory_budget)
        scope = (self.pool.for_job(control.should_cancel) if self.pool is not None
                 else nullcontext(None))
        with scope as factory:
            result = run_job(spec, context, control,
                             on_level=lambda level: on_level(level.to_json()),
                             completed=[LevelResult.model_validate(level) for level in completed],
                             backend_factory=factory)
        return dict(result.to_json())

    def actor_restarts(self) -> int:
        """Intervention actors replaced after they died (0 without a Ray pool)."""
        return self.pool.pool.replaced if self.pool is not None else 0

    def close(self) -> None:
        """Stop the intervention actors this executor spawned, if any."""
        if self.pool is not None:
            self.pool.pool.shutdown()

