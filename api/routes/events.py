"""GET /v1/jobs/{id}/events: Server-Sent Events from the job's stream, resumable."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Header, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs
from api.db.tables import Job
from api.deps import BusDep, CallerDep, SessionDep
from api.errors import InputError
from api.routes.responses import errors
from workers.events import parse_event_id
from workers.job_status import TERMINAL, JobStatus
from workers.ports import BusUnavailable, EventBus, ProgressEvent

router = APIRouter(prefix="/v1/jobs", tags=["events"])
log = logging.getLogger(__name__)

KEEPALIVE_S = 15.0
BLOCK_S = 1.0
TAIL_S = 0.5  # an ended job's terminal event is published right after its commit
MAX_SEQ = 2**64 - 1  # the largest sequence number of a Redis stream id
TERMINAL_KIND = {JobStatus.SUCCEEDED: "finished", JobStatus.FAILED: "failed",
                 JobStatus.CANCELLED: "cancelled"}


def format_sse(event: ProgressEvent) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"


def is_job_over(sessions: sessionmaker[Session], job_id: str) -> bool:
    with sessions() as session:
        job = session.get(Job, job_id)
        return job is None or job.status in TERMINAL


def finished_data(result: dict[str, Any] | None) -> dict[str, Any]:
    """The ``finished`` event's payload (``core.job``: total_s, per variable its sites and
    test IIA) from a succeeded job's stored result."""
    result = result or {}
    handles = result.get("handles") or {}
    return {"total_s": (result.get("timing") or {}).get("total_s"),
            "handles": {name: {"sites": handle.get("sites", []),
                               "iia_test": (handle.get("iia_test") or {}).get("overall")}
                        for name, handle in handles.items()}}


def terminal_event(job: Job, after: str | None, now_ms: int) -> ProgressEvent | None:
    """An ended job's terminal event rebuilt from its row, for a stream whose bus lost it
    (Redis restarted empty, or is down): ``finished`` with the result summary, ``failed``
    with the error record, ``cancelled`` with the reason; each with ``rebuilt: true``, the
    status and the last progress. None while the job has not ended.

    Its id sorts after ``after`` and after any event published before ``now_ms``.
    """
    kind = TERMINAL_KIND.get(job.status)
    if kind is None:
        return None
    error = job.error or {}
    if kind == "finished":
        data = finished_data(job.result)
    elif kind == "failed":
        data = {"type": error.get("type", "Error"), "message": error.get("message", ""),
                "where": error.get("where")}
    else:
        data = {"reason": "cancel requested"}
    data |= {"rebuilt": True, "status": str(job.status),
             "progress": {"level": job.current_level, "stage": job.progress_stage,
                          "done": job.progress_done, "total": job.progress_total}}
    ms = max(now_ms, parse_event_id(after)[0] if after is not None else 0)
    return ProgressEvent(f"{ms}-{MAX_SEQ}", kind, data)


def rebuild_terminal_event(sessions: sessionmaker[Session], job_id: str,
                           after: str | None) -> ProgressEvent | None:
    with sessions() as session:
        job = session.get(Job, job_id)
        return None if job is None else terminal_event(job, after, int(time.time() * 1000))


async def stream_events(
    request: Request, bus: EventBus, job_id: str, after: str | None
) -> AsyncIterator[str]:
    """Forward events after ``after`` until a terminal one (or the client leaves).

    A job that ended with no terminal event left in the stream (Redis restarted empty, or
    the stream expired) gets one rebuilt from its row. With the bus down the stream ends
    (one log line), with the rebuilt terminal event if the job has ended; a client resumes
    with ``Last-Event-ID``.
    """
    last_sent = time.monotonic()
    readers: anyio.CapacityLimiter = request.app.state.event_readers
    sessions: sessionmaker[Session] = request.app.state.sessions
    while not await request.is_disconnected():
        try:
            batch = await anyio.to_thread.run_sync(bus.read, job_id, after, 100, BLOCK_S,
                                                   limiter=readers)
        except BusUnavailable as error:
            log.warning("job %s: event stream ended: %s", job_id, error)
            batch, over = [], True
        else:
            over = not batch and await anyio.to_thread.run_sync(is_job_over, sessions, job_id)
        for event in batch:
            yield format_sse(event)
            after = event.id
            if event.is_terminal:
                return
        if over:
            async for chunk in end_stream(bus, sessions, job_id, after, readers):
                yield chunk
            return
        if batch:
            last_sent = time.monotonic()
        elif time.monotonic() - last_sent > KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"


async def end_stream(bus: EventBus, sessions: sessionmaker[Session], job_id: str,
                     after: str | None, readers: anyio.CapacityLimiter) -> AsyncIterator[str]:
    """The last events of an ended job (or of a stream whose bus is down): what the bus
    still has, then, without a terminal one among them, the row's rebuilt terminal event."""
    try:
        tail = await anyio.to_thread.run_sync(bus.read, job_id, after, 100, TAIL_S,
                                              limiter=readers)
    except BusUnavailable:
        tail = []
    for event in tail:
        yield format_sse(event)
        after = event.id
        if event.is_terminal:
            return
    rebuilt = await anyio.to_thread.run_sync(rebuild_terminal_event, sessions, job_id, after)
    if rebuilt is not None:
        yield format_sse(rebuilt)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "SSE: `id` (ms-seq), `event` (kind), `data` (JSON)"},
        **errors(404),
    },
)
async def job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    caller: CallerDep,
    bus: BusDep,
    last_event_id: Annotated[str | None, Header(max_length=64)] = None,
) -> StreamingResponse:
    """The job's progress events; send ``Last-Event-ID`` to resume after an event."""
    jobs.get_job(session, caller, job_id)
    if last_event_id is not None:
        try:
            parse_event_id(last_event_id)
        except ValueError as error:
            raise InputError(str(error), "Last-Event-ID") from None
    return StreamingResponse(
        stream_events(request, bus, job_id, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
