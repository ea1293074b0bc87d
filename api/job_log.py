"""A job's log as the dashboard shows it: lines from its row (submitted, started, ended)
and from its event stream, in time order, each in words. Progress events are many (one per
batch): only the first of each (level, stage) becomes a line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from api.db.tables import Job
from workers.job_status import JobStatus
from workers.ports import ProgressEvent

MAX_DETAIL = 400  # characters of an event's payload shown after its words


Source = Literal["job", "event"]  # the row, or the event stream
Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class LogLine:
    ts: datetime | None
    source: Source
    kind: str
    level: Level
    text: str


def _ms_of(event_id: str) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(event_id.split("-", 1)[0]) / 1000, UTC)
    except ValueError:
        return None


def _sites(handles: dict[str, Any]) -> str:
    return "; ".join(f"{variable}: {', '.join(handle.get('sites') or [])} (test IIA "
                     f"{_num(handle.get('iia_test'))})" for variable, handle in handles.items())


def _num(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "–"


def event_text(kind: str, data: dict[str, Any]) -> str:
    """One event in words."""
    if kind == "queued":
        return f"queued ({data['reason']})" if data.get("reason") else "queued"
    if kind == "started":
        pairs = data.get("pairs") or {}
        return (f"started: variables {', '.join(data.get('variables') or [])}; pairs "
                + ", ".join(f"{bank} {count}" for bank, count in pairs.items()))
    if kind == "level_started":
        return f"level {data.get('level')} started ({data.get('granularity')})"
    if kind == "level_finished":
        return (f"level {data.get('level')} finished in {_num(data.get('runtime_s'))} s: "
                + _sites(data.get("handles") or {}))
    if kind == "progress":
        return (f"stage {data.get('stage')} (level {data.get('level', '–')}): "
                f"{data.get('total')} steps")
    if kind == "finished":
        return f"finished in {_num(data.get('total_s'))} s: " + _sites(data.get("handles") or {})
    if kind == "failed":
        where = f" at {data['where']}" if data.get("where") else ""
        return f"failed{where}: {data.get('type', 'Error')}: {data.get('message', '')}"
    if kind == "cancelled":
        return f"cancelled ({data.get('reason', 'cancel requested')})"
    detail = json.dumps(data, default=str)
    return f"{kind}: {detail[:MAX_DETAIL]}{'…' if len(detail) > MAX_DETAIL else ''}"


def event_lines(events: list[ProgressEvent]) -> list[LogLine]:
    lines: list[LogLine] = []
    stages: set[tuple[Any, Any]] = set()
    for event in events:
        if event.kind == "progress":
            stage = (event.data.get("level"), event.data.get("stage"))
            if stage in stages:
                continue
            stages.add(stage)
        level: Level = ("error" if event.kind == "failed"
                        else "warning" if event.kind == "cancelled" else "info")
        lines.append(LogLine(_ms_of(event.id), "event", event.kind, level,
                             event_text(event.kind, event.data)))
    return lines


def row_lines(job: Job) -> list[LogLine]:
    """The lifecycle the row records: submitted, started (attempt), ended (status)."""
    lines = [LogLine(job.created_at, "job", "submitted", "info",
                     f"submitted by {job.owner} (priority {job.priority})")]
    if job.started_at is not None:
        lines.append(LogLine(job.started_at, "job", "started", "info",
                             f"running (attempt {job.attempt})"))
    if job.finished_at is not None:
        error = job.error or {}
        level: Level
        if job.status == JobStatus.CANCELLED:
            level, text = "warning", f"cancelled: {error.get('message') or 'cancel requested'}"
        elif job.status == JobStatus.FAILED:
            level, text = "error", f"failed: {error.get('type')}: {error.get('message')}"
        else:
            level, text = "info", str(job.status)
        lines.append(LogLine(job.finished_at, "job", str(job.status), level, text))
    return lines


def job_log(job: Job, events: list[ProgressEvent]) -> list[LogLine]:
    """Row lines and event lines, oldest first (a line without a time goes last). An event's
    time is its stream id's millisecond, so times are compared to the millisecond and a row
    line goes before the events of its millisecond (``submitted`` before ``queued``)."""
    far = datetime.max.replace(tzinfo=UTC)

    def millisecond(line: LogLine) -> datetime:
        ts = line.ts or far
        return ts.replace(microsecond=ts.microsecond // 1000 * 1000)

    # sorted is stable: the row lines come first in the list
    return sorted(row_lines(job) + event_lines(events), key=millisecond)
