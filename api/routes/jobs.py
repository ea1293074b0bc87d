"""POST/GET /v1/jobs, GET /v1/jobs/{id}, /result, POST /cancel."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request, status
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db import datasets, jobs, nets, results
from api.db.queue_view import queue_view
from api.db.tables import Dataset, Job, RegisteredNet, split_tags, utcnow
from api.deps import BusDep, CallerDep, MetricsDep, SessionDep, SettingsDep
from api.errors import ConflictError, InputError, NotFoundError
from api.job_log import job_log
from api.routes.responses import errors
from api.schemas import (
    JobLogPublic,
    JobPage,
    JobPublic,
    LogLinePublic,
    OwnerLoadPublic,
    ProgressPublic,
    QueueEntryPublic,
    QueuePublic,
    ResultPublic,
)
from core.admission import NetInfo, admit, describe_job
from core.errors import SpecError
from core.spec import MAX_NAME_CHARS, MAX_TAG_CHARS, JobSpec
from workers.job_status import JobStatus
from workers.ports import BusUnavailable, EventBus, ProgressEvent

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def to_public(job: Job, levels_done: int, queue_position: int | None) -> JobPublic:
    return JobPublic(
        id=job.id, owner=job.owner, name=job.name, tags=split_tags(job.tags),
        status=job.status,
        priority=job.priority, attempt=job.attempt, created_at=job.created_at,
        started_at=job.started_at, finished_at=job.finished_at,
        cancel_requested=job.cancel_requested, current_level=job.current_level,
        levels_done=levels_done,
        progress=ProgressPublic(stage=job.progress_stage, done=job.progress_done,
                                total=job.progress_total),
        queue_position=queue_position, eta_s=estimate_eta(job),
        error=job.error, spec=job.spec,
    )


def to_public_page(session: Session, rows: Sequence[Job]) -> list[JobPublic]:
    """The public view of each job of ``rows``: the same few queries for any page size."""
    levels_done = jobs.count_levels_by_job(session, [job.id for job in rows])
    positions = jobs.queue_positions(session, rows)
    return [to_public(job, levels_done.get(job.id, 0), positions.get(job.id)) for job in rows]


def to_public_job(session: Session, job: Job) -> JobPublic:
    return to_public_page(session, [job])[0]


def estimate_eta(job: Job) -> float | None:
    """Seconds left in the current stage at its rate so far; None when there is no rate."""
    if job.status != JobStatus.RUNNING or job.progress_done <= 0 or job.started_at is None:
        return None
    elapsed = (utcnow() - job.started_at).total_seconds()
    left = max(job.progress_total - job.progress_done, 0)
    return round(elapsed / job.progress_done * left, 3)


def check_references(session: Session, caller: Caller, spec: JobSpec
                     ) -> tuple[RegisteredNet | None, Dataset | None]:
    """A service job names its dataset and net by id, and only the caller's own.

    Returns:
        The registered net and the uploaded dataset the spec names (None: none named), read
        once for the whole submit.

    Raises:
        SpecError: a file path instead of an id, or an id the caller does not have.
    """
    if spec.model.path is not None:
        raise SpecError("register the net with POST /v1/models and give model.id",
                        "model.path")
    net = dataset = None
    try:
        if spec.model.id is not None:
            net = nets.get_net(session, caller, spec.model.id)
    except NotFoundError:
        raise SpecError("no such registered model", "model.id") from None
    try:
        if spec.task.dataset is not None:
            dataset = datasets.get_dataset(session, caller, spec.task.dataset)
    except NotFoundError:
        raise SpecError("no such uploaded dataset", "task.dataset") from None
    return net, dataset


def admission_info(spec: JobSpec, net: RegisteredNet | None, dataset: Dataset | None
                   ) -> NetInfo:
    """What admission knows of a job: the registered net's stored config (else the built-in
    task's default net) and the uploaded dataset's variables."""
    variables = None
    if dataset is not None:
        names = dataset.variables.get("names")
        variables = len(names) if isinstance(names, list) else None
    return describe_job(spec, net.config if net is not None else None, variables)


def publish_best_effort(bus: EventBus, job_id: str, kind: str, data: dict[str, Any]) -> None:
    """Progress is transient and the job row is the truth: with the bus down (Redis
    restarting) the request still succeeds, and one line says what was not published."""
    try:
        bus.publish(job_id, kind, data)
    except BusUnavailable as error:
        log.warning("event %s not published: %s", kind, error, extra={"job_id": job_id})


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 413, 429))
async def submit_job(
    spec: JobSpec, request: Request, session: SessionDep, caller: CallerDep,
    settings: SettingsDep, bus: BusDep, metrics: MetricsDep,
) -> JobPublic:
    """Queue a job. The spec is admitted under the deployment's limits (a 422 names the
    field, its value and the limit, and nothing is stored), then the row is written and the
    id returned; a runner picks it up."""
    # the database work in the default worker threads, as a plain route's
    net, dataset = await anyio.to_thread.run_sync(check_references, session, caller, spec)
    if dataset is not None and datasets.is_text(dataset):
        # tokenizing every row for the job's net is CPU work: under the limiter of the
        # upload parsers (as tokenizing at upload is), so the default pool stays free
        await anyio.to_thread.run_sync(
            datasets.check_text_for_net, session, caller, dataset, spec.model.id,
            settings.dataset_dir, settings.resolved_model_root,
            limiter=request.app.state.body_parsers)

    def queue() -> JobPublic:
        admit(spec, settings.admission_limits_for(caller.owner),
              admission_info(spec, net, dataset))
        job = jobs.create_job(session, caller.owner, spec, settings.max_queued_jobs_per_owner)
        metrics.jobs_submitted.inc()
        log.info("job queued for %s", caller.owner, extra={"job_id": job.id})
        publish_best_effort(bus, job.id, "queued", {"priority": job.priority})
        return to_public_job(session, job)

    return await anyio.to_thread.run_sync(queue)


@router.get("", responses=errors())
def list_jobs(
    session: SessionDep, caller: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    tag: Annotated[str | None, Query(min_length=1, max_length=MAX_TAG_CHARS,
                                     description="only jobs with this tag")] = None,
    name: Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_CHARS,
                                      description="only jobs whose name contains this "
                                      "(case-insensitive)")] = None,
) -> JobPage:
    """The caller's jobs (an admin's: all), newest first."""
    for where, value in (("tag", tag), ("name", name)):
        if value is not None and any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise InputError("control characters are not allowed", where)
    rows, total = jobs.list_jobs(session, caller, status, limit, offset, tag, name)
    return JobPage(items=to_public_page(session, rows), total=total, limit=limit, offset=offset)


@router.get("/queue", responses=errors())
def get_queue(session: SessionDep, caller: CallerDep,
              limit: Annotated[int, Query(ge=1, le=500)] = 100) -> QueuePublic:
    """The queue for everyone: each queued job's place in the fair-share order and its
    owner (the caller's own jobs with id and name; others' ids, names and specs hidden,
    unless the caller is an admin), and per owner the jobs queued and running."""
    entries, loads, queued = queue_view(session, caller, limit)
    return QueuePublic(
        queued=queued,
        entries=[QueueEntryPublic(position=e.position, owner=e.owner, mine=e.mine,
                                  job_id=e.job_id, name=e.name) for e in entries],
        owners=[OwnerLoadPublic(owner=o.owner, queued=o.queued, running=o.running)
                for o in loads])


@router.get("/{job_id}", responses=errors(404))
def get_job(job_id: str, session: SessionDep, caller: CallerDep) -> JobPublic:
    return to_public_job(session, jobs.get_job(session, caller, job_id))


@router.get("/{job_id}/result", responses=errors(404, 409))
def get_result(job_id: str, session: SessionDep, caller: CallerDep) -> ResultPublic:
    """The whole result of a succeeded job: every level, handles, timing, DAS, controls."""
    job = jobs.get_job(session, caller, job_id)
    if job.status != JobStatus.SUCCEEDED or job.result is None:
        raise ConflictError(f"the job is {job.status}, not succeeded", job_id)
    return ResultPublic(job_id=job.id, result=results.load_result(session, job.id, job.result))


@router.get("/{job_id}/log", responses=errors(404))
def get_job_log(job_id: str, session: SessionDep, caller: CallerDep, bus: BusDep
                ) -> JobLogPublic:
    """The job's log: its lifecycle from the row and its events in words, oldest first
    (one line per stage of the many progress events). The events are the bus's: an event
    stream that expired or a bus that is down leaves the row's lines."""
    job = jobs.get_job(session, caller, job_id)
    try:
        events = read_all_events(bus, job.id)
        state: Literal["ok", "unavailable"] = "ok"
    except BusUnavailable:
        events, state = [], "unavailable"
    lines = [LogLinePublic.model_validate(line, from_attributes=True)
             for line in job_log(job, events)]
    return JobLogPublic(job_id=job.id, lines=lines, events=state)


MAX_LOG_EVENTS = 5000


def read_all_events(bus: EventBus, job_id: str) -> list[ProgressEvent]:
    """Up to ``MAX_LOG_EVENTS`` events of the job's stream, oldest first, without waiting."""
    events: list[ProgressEvent] = []
    after = None
    while len(events) < MAX_LOG_EVENTS:
        batch = bus.read(job_id, after, 500, 0.0)
        if not batch:
            break
        events.extend(batch)
        after = batch[-1].id
    return events


@router.post("/{job_id}/cancel", responses=errors(404, 409, 413))  # 413: any body over 1 MiB
def cancel_job(
    job_id: str, session: SessionDep, caller: CallerDep, bus: BusDep, metrics: MetricsDep
) -> JobPublic:
    """Cancel: a queued job ends now; a running one stops at its next batch boundary."""
    job, ended_now = jobs.request_cancel(session, jobs.get_job(session, caller, job_id))
    log.info("cancel requested by %s", caller.owner, extra={"job_id": job.id})
    if ended_now:
        metrics.jobs_finished.labels(JobStatus.CANCELLED).inc()
        publish_best_effort(bus, job.id, "cancelled", {"reason": "cancelled before it started"})
    return to_public_job(session, job)
