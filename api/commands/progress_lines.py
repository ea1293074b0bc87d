"""Plain progress lines: a job's engine events as one flushed, ANSI-free line per step, for
a stdout that is not a terminal (a log file, a pipe, CI), and the training ETA both modes show.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.events import EngineEvent

Clock = Callable[[], float]
LineWriter = Callable[[str], None]


def format_duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s`` or ``1 h 02 min`` (seconds rounded up, never negative)."""
    total = max(0, math.ceil(seconds))
    if total < 60:
        return f"{total} s"
    if total < 3600:
        return f"{total // 60} min {total % 60:02d} s"
    return f"{total // 3600} h {total % 3600 // 60:02d} min"


@dataclass
class StepRate:
    """The step rate of one stage, observed since its first report, and the time left at it.

    Example:
        >>> times = iter([10.0, 20.0])
        >>> rate = StepRate(lambda: next(times))
        >>> rate.seconds_left(0, 1000) is None  # the first report only starts the clock
        True
        >>> rate.seconds_left(100, 1000)  # 100 steps in 10 s: 900 more take 90 s
        90.0
    """

    clock: Clock
    started_at: float | None = None
    first_done: int = 0

    def seconds_left(self, done: int, total: int) -> float | None:
        """Seconds to reach ``total`` at the rate seen so far; None until a step was seen."""
        now = self.clock()
        if self.started_at is None:
            self.started_at, self.first_done = now, done
            return None
        steps, elapsed = done - self.first_done, now - self.started_at
        if steps <= 0 or elapsed <= 0:
            return None
        return (total - done) * elapsed / steps


def describe_training(data: dict[str, Any], seconds_left: float | None,
                      compact: bool = False) -> str:
    """The figures of one training report: held-out accuracy and loss, and the ETA (an upper
    bound: training stops at its target, or at ``total`` steps); ``compact`` for a bar's note.
    """
    words = ("acc", "loss", "ETA ≤") if compact else ("held-out accuracy", "loss", "ETA at most")
    parts = []
    if "accuracy" in data:
        parts.append(f"{words[0]} {data['accuracy']:.4f}")
    if "held_out_loss" in data:
        parts.append(f"{words[1]} {data['held_out_loss']:.4f}")
    if data.get("reached_target") is False:
        parts.append("target NOT reached")
    elif data.get("reached_target"):
        parts.append("target reached")
    elif seconds_left is not None:
        parts.append(f"{words[2]} {format_duration(seconds_left)}")
    return ", ".join(parts)


@dataclass
class _Stage:
    """What was last printed for one stage: when, and how far along it was."""

    printed_at: float
    fraction: float
    line: str


@dataclass
class ProgressLines:
    """An ``EventSink`` that writes a plain line for each meaningful event.

    A level's start (with its site count), calibration, and end (with the handles' IIA)
    always get a line; a stage's progress gets one at its start, at its end, and in between
    when it moved ``step`` further and ``min_interval`` seconds passed, or when nothing was
    printed for ``heartbeat`` seconds. Default-net training lines carry the step, held-out
    accuracy and loss and an ETA.

    Attributes:
        write: receives each line without its newline (and flushes it).
        clock: seconds, monotonic (injected so tests control time).
    """

    write: LineWriter
    clock: Clock
    min_interval: float = 2.0
    step: float = 0.1
    heartbeat: float = 30.0
    _stages: dict[str, _Stage] = field(default_factory=dict)
    _rates: dict[str, StepRate] = field(default_factory=dict)

    def __call__(self, event: EngineEvent) -> None:
        data = event.data
        if event.kind == "started":
            pairs = ", ".join(f"{split} {n}" for split, n in data["pairs"].items())
            self.write(f"pairs traced ({pairs}); variables {', '.join(data['variables'])}")
        elif event.kind == "level_started":
            self.write(f"level {data['level']} ({data['granularity']}) started: "
                       f"{data['sites']} sites")
        elif event.kind == "calibration":
            self.write(f"level {data['level']} calibrated {data['variable']}: top {data['k']} "
                       f"sites, strength {data['strength']:g}, IIA cal "
                       f"{data['iia_calibration']:.3f}")
        elif event.kind == "level_finished":
            handles = ", ".join(f"{v} IIA test {h['iia_test']:.3f} (cal {h['iia_calibration']:.3f}"
                                f", {len(h['sites'])} sites)" for v, h in data["handles"].items())
            self.write(f"level {data['level']} finished in {data['runtime_s']:.1f} s: {handles}")
        elif event.kind == "finished":
            self.write(f"job finished in {data['total_s']:.1f} s")
        elif event.kind == "control" and "level" not in data:
            self.write(f"{stage_name('control', data)} control started")
        elif event.kind in ("progress", "control", "das") and "total" in data:
            self._progress(event.kind, data)

    def _progress(self, kind: str, data: dict[str, Any]) -> None:
        name = stage_name(kind, data)
        done, total = int(data["done"]), int(data["total"])
        seconds_left = self._rates.setdefault(name, StepRate(self.clock)).seconds_left(done,
                                                                                       total)
        training = data.get("stage") == "training"
        if training and done >= total and "reached_target" not in data:
            return  # training's last held-out report: its verdict follows at once
        final = done >= total
        figures = describe_training(data, seconds_left) if training else ""
        count = f"{'step ' if training else ''}{done}/{total}"
        percent = f" ({100 * done // total} %)" if total > 0 else ""
        line = f"{name}: {count}{percent}" + (f", {figures}" if figures else "")
        if self._is_due(name, done / total if total > 0 else 1.0, final, line):
            self.write(line)

    def _is_due(self, name: str, fraction: float, final: bool, line: str) -> bool:
        """Whether a stage's report deserves a line (never the same line twice in a row);
        records it when it does."""
        now, last = self.clock(), self._stages.get(name)
        due = last is None or (line != last.line and (
            final or (fraction - last.fraction >= self.step
                      and now - last.printed_at >= self.min_interval)
            or now - last.printed_at >= self.heartbeat))
        if due:
            self._stages[name] = _Stage(now, fraction, line)
        return due


def stage_name(kind: str, data: dict[str, Any]) -> str:
    """A stage in words: ``level 0 signatures``, ``random net level 1 calibration``,
    ``DAS (guided) trainings``, ``training the default net``."""
    if kind == "das":
        return f"DAS ({data.get('mode')}) trainings"
    if data.get("stage") == "training":
        return "training the default net"
    level = f"level {data['level']} {data.get('stage', '')}".strip() if "level" in data else ""
    if kind == "control":
        return f"{str(data.get('control', 'control')).replace('_', ' ')} {level}".strip()
    return level or str(data.get("stage", kind))
