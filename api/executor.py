"""The execution seam: runs one resolved JobSpec with the in-process PLOT engine."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.events import EngineEvent
from core.job import JobContext, run_job
from core.result import LevelResult
from core.spec import JobSpec


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
        result = run_job(spec, context, on_event=on_event, should_cancel=should_cancel,
                         on_level=lambda level: on_level(level.to_json()),
                         completed=[LevelResult.from_json(level) for level in completed])
        return dict(result.to_json())
