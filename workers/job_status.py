"""Job status: the one vocabulary of a job's lifecycle, queued → running → succeeded | failed
| cancelled (the service stores it, the runner moves it, HTTP shows it)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle; a ``str``, so it is stored and compared as its value."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# the ends of the lifecycle: a job here never moves again on its own (admin requeue aside)
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
