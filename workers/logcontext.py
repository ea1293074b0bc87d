"""The job a thread is working on, for log lines: a context variable set around a job's run
(the log formatter of the entrypoint adds it to every line written meanwhile)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_job_id: ContextVar[str | None] = ContextVar("plot_job_id", default=None)


@contextmanager
def bound_job(job_id: str) -> Iterator[None]:
    """Log lines written inside this block (in this thread or task) carry ``job_id``.

    A new thread starts without it: bind again in the thread's own function.
    """
    token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(token)
