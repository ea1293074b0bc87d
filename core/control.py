"""One job's control: where its progress events go and whether it has been cancelled.

Every stage of a job (default-net training, the levels, calibration, the controls, DAS)
receives the same ``JobControl`` instead of separate ``on_event`` and ``should_cancel``
parameters; the default drops events and never cancels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.errors import JobCancelled
from core.events import EngineEvent, EventKind, EventSink, ignore_event

CancelCheck = Callable[[], bool]


def never_cancelled() -> bool:
    """The default cancel check: a job nobody can cancel."""
    return False


@dataclass(frozen=True)
class JobControl:
    """The event sink and the cancel check of one job.

    Attributes:
        on_event: receives the job's progress events (``core.events.EngineEvent``).
        should_cancel: polled between batches; once it returns true, the next ``check``
            raises ``JobCancelled``.

    Example:
        >>> events = []
        >>> control = JobControl(events.append)
        >>> control.progress("das", {"mode": "full"}, "cancelled while training DAS", "das")(1, 4)
        >>> events[0].data
        {'mode': 'full', 'done': 1, 'total': 4}
    """

    on_event: EventSink = ignore_event
    should_cancel: CancelCheck = never_cancelled

    def emit(self, kind: EventKind, data: dict[str, Any] | None = None) -> None:
        """Send one event of ``kind`` to the sink."""
        self.on_event(EngineEvent(kind, data if data is not None else {}))

    def is_cancelled(self) -> bool:
        return self.should_cancel()

    def check(self, message: str, where: str) -> None:
        """Raise ``JobCancelled(message, where)`` if the job has been cancelled.

        Raises:
            JobCancelled: ``should_cancel()`` returned true.
        """
        if self.should_cancel():
            raise JobCancelled(message, where)

    def progress(self, kind: EventKind, data: dict[str, Any], message: str, where: str
                 ) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback for a long stage: it checks for a cancel (raising
        ``JobCancelled(message, where)``), then emits ``kind`` with ``data``, done and total.
        """
        def report(done: int, total: int) -> None:
            self.check(message, where)
            self.emit(kind, {**data, "done": done, "total": total})
        return report


NO_CONTROL = JobControl()  # the default of every stage: events dropped, never cancelled
