"""The terminal event an ended job's stream gets from its row when the bus lost it."""

from __future__ import annotations

from typing import Any

import pytest

from api.client import parse_sse
from api.db.tables import Job
from api.routes.events import MAX_SEQ, format_sse, terminal_event
from workers.events import parse_event_id
from workers.job_status import JobStatus

RESULT: dict[str, Any] = {
    "handles": {"x": {"sites": ["layer:1"], "iia_test": {"overall": 0.75, "by_class": {}}}},
    "timing": {"total_s": 12.5},
}


def ended_job(status: JobStatus, **values: Any) -> Job:
    return Job(id="j1", owner="ada", status=status, spec={}, current_level=2,
               progress_stage="calibration", progress_done=8, progress_total=8, **values)


def test_a_succeeded_job_rebuilds_finished_with_its_result_summary() -> None:
    event = terminal_event(ended_job(JobStatus.SUCCEEDED, result=RESULT), None, 1000)
    assert event is not None and event.kind == "finished" and event.is_terminal
    assert event.data["total_s"] == 12.5
    assert event.data["handles"] == {"x": {"sites": ["layer:1"], "iia_test": 0.75}}
    assert event.data["rebuilt"] is True and event.data["status"] == "succeeded"
    assert event.data["progress"] == {"level": 2, "stage": "calibration", "done": 8,
                                      "total": 8}


def test_a_failed_job_rebuilds_failed_with_its_error_record() -> None:
    error = {"type": "DatasetError", "message": "row 3 has no label", "where": "d.jsonl:3"}
    event = terminal_event(ended_job(JobStatus.FAILED, error=error), None, 1000)
    assert event is not None and event.kind == "failed"
    assert {key: event.data[key] for key in error} == error


def test_a_cancelled_job_rebuilds_cancelled() -> None:
    error = {"type": "JobCancelled", "message": "cancelled while running", "where": None}
    event = terminal_event(ended_job(JobStatus.CANCELLED, error=error), None, 1000)
    assert event is not None and event.kind == "cancelled"
    assert event.data["reason"] == "cancel requested"


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_a_job_that_has_not_ended_has_no_terminal_event(status: JobStatus) -> None:
    assert terminal_event(ended_job(status), None, 1000) is None


@pytest.mark.parametrize("after", [None, "999-4", "1000-7", "5000-0"])
def test_the_rebuilt_id_sorts_after_the_last_one_seen_and_after_now(after: str | None
                                                                     ) -> None:
    event = terminal_event(ended_job(JobStatus.SUCCEEDED, result=RESULT), after, 1000)
    assert event is not None
    ident = parse_event_id(event.id)
    assert ident > (1000, 0) and ident[1] == MAX_SEQ
    if after is not None:
        assert ident > parse_event_id(after)


def test_the_client_reads_a_rebuilt_event_as_terminal() -> None:
    event = terminal_event(ended_job(JobStatus.SUCCEEDED, result=RESULT), None, 1000)
    assert event is not None
    [read] = list(parse_sse(iter(format_sse(event).split("\n"))))
    assert (read.id, read.kind, read.data) == (event.id, "finished", event.data)
