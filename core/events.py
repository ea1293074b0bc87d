"""Progress events the engine emits while a job runs; the service forwards them to its bus."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

EventKind = Literal[
    "started",  # the job's banks are built; data: {variables, pairs: {fit, calibration, test}}
    "level_started",  # data: {level, granularity, sites}
    "progress",  # data: {level, stage, done, total}  (stage: signatures | calibration);
    # default-net training: {stage: training, done: step, total: max steps, accuracy,
    # held_out_loss}, and last {done = total = steps, ..., reached_target}
    "calibration",  # data: {level, variable, iia_calibration, k, strength, epsilon}
    "level_finished",  # data: the level's summary (LevelResult.summary())
    "das",  # data: {mode, done, total}: DAS trainings done (after the levels)
    "control",  # data: {control, level, stage, done, total}: random-net control progress
    "finished",  # data: {total_s, handles: {variable: {sites, iia_test}}}
]


@dataclass(frozen=True)
class EngineEvent:
    kind: EventKind
    data: dict[str, Any] = field(default_factory=dict)


EventSink = Callable[[EngineEvent], None]


def ignore_event(event: EngineEvent) -> None:
    """The default sink: drop the event."""
