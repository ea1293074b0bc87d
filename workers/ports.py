"""Protocols the job runner needs from its surroundings; the API and the runner code to these."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

TERMINAL_KINDS = frozenset({"finished", "failed", "cancelled"})


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a job's progress stream.

    Attributes:
        id: "ms-seq" (a Redis stream id, or the same form from the in-process bus); usable
            as an SSE id and as ``after`` to resume.
        kind: queued | started | level_started | progress | calibration | level_finished |
            das | finished | failed | cancelled.
        data: the kind's payload (JSON-serialisable).
    """

    id: str
    kind: str
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


class EventBus(Protocol):
    """A bounded, ordered, resumable stream of progress events per job."""

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        """Append one event; return its id."""
        ...

    def read(
        self, job_id: str, after: str | None = None, count: int = 100, block_s: float = 0.0
    ) -> list[ProgressEvent]:
        """Events with an id greater than ``after`` (all when None), oldest first.

        Waits up to ``block_s`` seconds for the first one when none is there yet.
        """
        ...

    def discard(self, job_id: str) -> bool:
        """Delete a job's events (the job was purged); False when there were none."""
        ...

    def ping(self) -> None:
        """Raise if the bus cannot be reached."""
        ...

    def close(self) -> None: ...
