"""POST/GET /v1/jobs, GET /v1/jobs/{id}, /result, POST /cancel."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from api.auth import Caller
from api.db import datasets, jobs, nets, results
from api.db.tables import Job, utcnow
from api.deps import BusDep, CallerDep, MetricsDep, SessionDep, SettingsDep
from api.errors import ConflictError, NotFoundError
from api.routes.responses import errors
from api.schemas import JobPage, JobPublic, ProgressPublic, ResultPublic
from core.admission import NetInfo, admit, describe_job
from core.errors import SpecError
from core.spec import JobSpec
from workers.job_status import JobStatus
from workers.ports import BusUnavailable, EventBus

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def to_public(job: Job, levels_done: int, queue_position: int | None) -> JobPublic:
    return JobPublic(
        id=job.id, owner=job.owner, status=job.status,
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


def check_references(session: Session, caller: Caller, spec: JobSpec) -> None:
    """A service job names its dataset and net by id, and only the caller's own.

    Raises:
        SpecError: a file path instead of an id, or an id the caller does not have.
    """
    if spec.model.path is not None:
        raise SpecError("register the net with POST /v1/models and give model.id",
                        "model.path")
    try:
        if spec.model.id is not None:
            nets.get_net(session, caller, spec.model.id)
    except NotFoundError:
        raise SpecError("no such registered model", "model.id") from None
    try:
        if spec.task.dataset is not None:
            datasets.get_dataset(session, caller, spec.task.dataset)
    except NotFoundError:
        raise SpecError("no such uploaded dataset", "task.dataset") from None


def admission_info(session: Session, caller: Caller, spec: JobSpec) -> NetInfo:
    """What admission knows of a job: the registered net's stored config (else the built-in
    task's default net) and the uploaded dataset's variables."""
    config = nets.get_net(session, caller, spec.model.id).config if spec.model.id else None
    variables = None
    if spec.task.dataset is not None:
        names = datasets.get_dataset(session, caller, spec.task.dataset).variables.get("names")
        variables = len(names) if isinstance(names, list) else None
    return describe_job(spec, config, variables)


def publish_best_effort(bus: EventBus, job_id: str, kind: str, data: dict[str, Any]) -> None:
    """Progress is transient and the job row is the truth: with the bus down (Redis
    restarting) the request still succeeds, and one line says what was not published."""
    try:
        bus.publish(job_id, kind, data)
    except BusUnavailable as error:
        log.warning("event %s not published: %s", kind, error, extra={"job_id": job_id})


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400, 413, 429))
def submit_job(
    spec: JobSpec, session: SessionDep, caller: CallerDep, settings: SettingsDep,
    bus: BusDep, metrics: MetricsDep,
) -> JobPublic:
    """Queue a job. The spec is admitted under the deployment's limits (a 422 names the
    field, its value and the limit, and nothing is stored), then the row is written and the
    id returned; a runner picks it up."""
    check_references(session, caller, spec)
    if spec.task.dataset is not None:  # a text dataset is tokenized for the job's net
        datasets.check_text_for_net(
            session, caller, datasets.get_dataset(session, caller, spec.task.dataset),
            spec.model.id, settings.dataset_dir, settings.resolved_model_root)
    admit(spec, settings.admission_limits_for(caller.owner),
          admission_info(session, caller, spec))
    job = jobs.create_job(session, caller.owner, spec, settings.max_queued_jobs_per_owner)
    metrics.jobs_submitted.inc()
    log.info("job queued for %s", caller.owner, extra={"job_id": job.id})
    publish_best_effort(bus, job.id, "queued", {"priority": job.priority})
    return to_public_job(session, job)


@router.get("", responses=errors())
def list_jobs(
    session: SessionDep, caller: CallerDep,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> JobPage:
    """The caller's jobs (an admin's: all), newest first."""
    rows, total = jobs.list_jobs(session, caller, status, limit, offset)
    return JobPage(items=to_public_page(session, rows), total=total, limit=limit, offset=offset)


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
