"""GET /v1/jobs/{id}/events: Server-Sent Events from the job's stream, resumable."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated

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
from workers.job_status import TERMINAL
from workers.ports import EventBus, ProgressEvent

router = APIRouter(prefix="/v1/jobs", tags=["events"])

KEEPALIVE_S = 15.0
BLOCK_S = 1.0


def format_sse(event: ProgressEvent) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(event.data)}\n\n"


def is_job_over(sessions: sessionmaker[Session], job_id: str) -> bool:
    with sessions() as session:
        job = session.get(Job, job_id)
        return job is None or job.status in TERMINAL


async def stream_events(
    request: Request, bus: EventBus, job_id: str, after: str | None
) -> AsyncIterator[str]:
    """Forward events after ``after`` until a terminal one (or the client leaves). A job
    that ended with no terminal event left in the stream (it expired) ends the stream too."""
    last_sent = time.monotonic()
    readers: anyio.CapacityLimiter = request.app.state.event_readers
    while not await request.is_disconnected():
        batch = await anyio.to_thread.run_sync(bus.read, job_id, after, 100, BLOCK_S,
                                               limiter=readers)
        for event in batch:
            yield format_sse(event)
            after = event.id
            if event.is_terminal:
                return
        if batch:
            last_sent = time.monotonic()
            continue
        if await anyio.to_thread.run_sync(is_job_over, request.app.state.sessions, job_id):
            # the terminal event is published right after the commit: read once more
            for event in await anyio.to_thread.run_sync(bus.read, job_id, after, 100, 0.0):
                yield format_sse(event)
            return
        if time.monotonic() - last_sent > KEEPALIVE_S:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"


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
