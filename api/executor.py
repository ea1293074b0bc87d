"""The execution seam: runs one resolved JobSpec with the in-process PLOT engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.events import EngineEvent
from core.spec import JobSpec


class Executor(Protocol):
    """Runs a job whose dataset and model references are already file paths."""

    def __call__(
        self,
        spec: JobSpec,
        on_event: Callable[[EngineEvent], None],
        should_cancel: Callable[[], bool],
        on_level: Callable[[dict[str, Any]], None],
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
    ) -> dict[str, Any]:
        from core.job import JobContext, run_job  # imported here until core.job lands on main

        context = JobContext(model_root=self.model_root, data_root=self.data_root,
                             cache_dir=self.cache_dir, device=self.device)
        result = run_job(spec, context, on_event=on_event, should_cancel=should_cancel,
                         on_level=lambda level: on_level(level.to_json()))
        return dict(result.to_json())
