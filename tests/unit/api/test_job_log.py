"""A job's log orders its row's lines and its events by time to the millisecond (an event's
time is its stream id's millisecond), the row's line first within one."""

from __future__ import annotations

from datetime import UTC, datetime

from api.db.tables import Job
from api.job_log import job_log
from workers.job_status import JobStatus
from workers.ports import ProgressEvent


def test_an_event_in_the_millisecond_of_the_submission_comes_after_it() -> None:
    created = datetime(2026, 12, 2, 8, 0, 0, 700, tzinfo=UTC)  # 0.7 ms into its millisecond
    ms = int(created.timestamp() * 1000)
    job = Job(owner="erin", priority=0, status=JobStatus.QUEUED, spec={}, attempt=0,
              created_at=created)
    events = [ProgressEvent(f"{ms}-0", "queued", {}),
              ProgressEvent(f"{ms + 5}-0", "started", {})]
    kinds = [line.kind for line in job_log(job, events)]
    assert kinds == ["submitted", "queued", "started"]


def test_a_later_millisecond_still_orders_by_time() -> None:
    created = datetime(2026, 12, 2, 8, 0, 0, 2000, tzinfo=UTC)
    ms = int(created.timestamp() * 1000)
    job = Job(owner="erin", priority=0, status=JobStatus.QUEUED, spec={}, attempt=0,
              created_at=created)
    kinds = [line.kind for line in job_log(job, [ProgressEvent(f"{ms - 1}-0", "queued", {})])]
    assert kinds == ["queued", "submitted"]
