"""JobControl: one object carries a job's event sink and its cancel check."""

from __future__ import annotations

import pytest

from core.control import NO_CONTROL, JobControl
from core.errors import JobCancelled
from core.events import EngineEvent


def test_the_default_drops_events_and_never_cancels() -> None:
    NO_CONTROL.emit("started", {"variables": ["P"]})
    NO_CONTROL.check("cancelled", "job")  # does not raise
    NO_CONTROL.progress("das", {}, "cancelled", "das")(1, 2)
    assert not NO_CONTROL.is_cancelled()
    assert JobControl() == NO_CONTROL


def test_emit_sends_one_event_of_the_kind_with_its_data() -> None:
    events: list[EngineEvent] = []
    control = JobControl(events.append)
    control.emit("level_started", {"level": 0})
    control.emit("finished")
    assert events == [EngineEvent("level_started", {"level": 0}), EngineEvent("finished", {})]


def test_check_raises_job_cancelled_naming_where_once_the_flag_is_up() -> None:
    flag = [False]
    control = JobControl(should_cancel=lambda: flag[0])
    control.check("cancelled between levels", "levels.1")
    assert not control.is_cancelled()
    flag[0] = True
    assert control.is_cancelled()
    with pytest.raises(JobCancelled) as error:
        control.check("cancelled between levels", "levels.1")
    assert (error.value.message, error.value.where) == ("cancelled between levels", "levels.1")


def test_progress_checks_before_it_reports() -> None:
    events: list[EngineEvent] = []
    polls: list[int] = []

    def cancel_on_second_poll() -> bool:
        polls.append(1)
        return len(polls) >= 2

    report = JobControl(events.append, cancel_on_second_poll).progress(
        "progress", {"level": 2, "stage": "signatures"}, "cancelled while computing signatures",
        "levels.2")
    report(3, 10)
    with pytest.raises(JobCancelled, match=r"levels\.2: cancelled while computing signatures"):
        report(6, 10)
    # the cancelled batch reports nothing
    assert events == [EngineEvent("progress", {"level": 2, "stage": "signatures", "done": 3,
                                               "total": 10})]
