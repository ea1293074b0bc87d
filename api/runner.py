"""The in-process job runner: claims queued jobs one at a time through the state machine, in
the scheduler's fair-share order, runs them with the injected executor, checkpoints levels,
publishes events, honours cancel."""

from __future__ import annotations

import contextvars
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from api.db import jobs
from api.db.tables import Dataset, Job, RegisteredNet
from api.executor import Executor
from api.metrics import ServiceMetrics
from core.errors import DatasetError, JobCancelled, ModelLoadError, PlotError
from core.events import EngineEvent
from core.spec import JobSpec
from workers.logcontext import bound_job
from workers.ports import EventBus

log = logging.getLogger(__name__)


def resolve_spec(session: Session, spec: JobSpec) -> JobSpec:
    """Replace a dataset id and a registered model id by the engine's relative file paths.

    Raises:
        DatasetError, ModelLoadError: the id no longer exists.
    """
    update: dict[str, Any] = {}
    if spec.task.dataset is not None:
        dataset = session.get(Dataset, spec.task.dataset)
        if dataset is None:
            raise DatasetError("no such dataset", "task.dataset")
        update["task"] = spec.task.model_copy(update={"dataset": f"{dataset.sha256}.jsonl"})
    if spec.model.id is not None:
        net = session.get(RegisteredNet, spec.model.id)
        if net is None:
            raise ModelLoadError("no such registered model", "model.id")
        update["model"] = spec.model.model_copy(update={"id": None, "path": net.path})
    return spec.model_copy(update=update)


def to_storable(document: Any) -> Any:
    """``document`` with non-finite floats as None: JSON (and Postgres JSONB) has no NaN."""
    if isinstance(document, float):
        return document if math.isfinite(document) else None
    if isinstance(document, dict):
        return {key: to_storable(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [to_storable(value) for value in document]
    return document


class JobRunner:
    """A background thread that runs queued jobs, one at a time."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        bus: EventBus,
        executor: Executor,
        metrics: ServiceMetrics,
        lease_s: float,
        max_attempts: int,
        poll_s: float,
        per_owner_cap: int = 1,
    ) -> None:
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"[:64]
        self._sessions = sessions
        self._bus = bus
        self._executor = executor
        self._metrics = metrics
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._poll_s = poll_s
        self._per_owner_cap = per_owner_cap
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="plot-runner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop claiming; a running job stops at its next batch boundary and goes back to
        the queue (keeping its level checkpoints), unless a user cancelled it."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                with self._sessions() as session:
                    jobs.requeue_expired(session, self._max_attempts)
                    # the scheduler's fair-share order (one claim function for both)
                    job = jobs.claim_fair(session, self.worker_id, self._lease_s,
                                          self._per_owner_cap)
                if job is None:
                    self._stopping.wait(self._poll_s)
                else:
                    self.run_one(job)
            except Exception:  # the loop must outlive a DB or Redis hiccup
                log.exception("runner loop error")
                self._stopping.wait(self._poll_s)

    def _publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Best effort: events are transient (the job row holds progress and the result), so
        a bus outage (Redis down) costs the live stream, never the job."""
        try:
            self._bus.publish(job_id, kind, data)
        except Exception:
            log.warning("job %s: event %s not published (bus unavailable)", job_id, kind,
                        exc_info=True)
            return
        self._metrics.events_published.labels(kind).inc()

    def run_one(self, job: Job) -> None:
        """Run one claimed job to a terminal state (or leave it to be requeued if the lease
        was lost or the runner is stopping); every log line meanwhile carries its id."""
        with bound_job(job.id):
            log.info("job started (attempt %d, owner %s)", job.attempt, job.owner)
            self._run_bound(job)

    def _run_bound(self, job: Job) -> None:
        cancelled = threading.Event()
        # the heartbeat thread logs under the job's id too (threads start with no context)
        heartbeat = threading.Thread(target=contextvars.copy_context().run,
                                     args=(self._heartbeat, job.id, cancelled), daemon=True)
        heartbeat.start()
        progress = _ProgressWriter(self._sessions, job.id, self.worker_id)
        finished: dict[str, Any] = {}

        def on_event(event: EngineEvent) -> None:
            if event.kind == "finished":  # published after the result is committed
                finished.update(event.data)
                return
            progress.observe(event)
            self._publish(job.id, event.kind, event.data)

        def on_level(checkpoint: dict[str, Any]) -> None:
            index = int(checkpoint.get("index", progress.levels_saved))
            with self._sessions() as session:
                jobs.save_level(session, job.id, index, to_storable(checkpoint))
            progress.levels_saved += 1
            self._metrics.observe_level(checkpoint)
            log.info("level %d (%s) checkpointed in %.2f s", index,
                     checkpoint.get("granularity"), float(checkpoint.get("runtime_s", 0.0)))

        try:
            with self._sessions() as session:
                spec = resolve_spec(session, JobSpec.model_validate(job.spec))
                # a requeued job resumes after the levels an earlier attempt checkpointed
                completed = [level.checkpoint for level in jobs.list_levels(session, job.id)]
            result = to_storable(
                self._executor(spec, on_event, cancelled.is_set, on_level, completed)
            )
        except JobCancelled:
            if self._stopping.is_set():  # shutdown, not a user's cancel: hand the job back
                with self._sessions() as session:
                    if jobs.release_job(session, job.id, self.worker_id):
                        self._publish(job.id, "queued", {"reason": "runner stopped"})
            else:
                self._end(job.id, "cancelled", {"reason": "cancel requested"},
                          lambda s: jobs.cancel_running_job(s, job.id, self.worker_id))
        except PlotError as error:
            record = error.to_record()
            self._end(job.id, "failed", record,
                      lambda s: jobs.fail_job(s, job.id, self.worker_id, record))
        except Exception as error:  # infrastructure (a lost actor, a DB hiccup): retry
            log.exception("job %s crashed", job.id)
            crash = {"type": type(error).__name__, "message": str(error), "where": None}
            self._retry(job.id, crash)
        else:
            with self._sessions() as session:
                # a cancel asked for before the result is committed wins, even when the
                # engine finished before it next looked at the flag
                late_cancel = jobs.is_cancel_requested(session, job.id)
            if late_cancel:
                self._end(job.id, "cancelled", {"reason": "cancel requested"},
                          lambda s: jobs.cancel_running_job(s, job.id, self.worker_id))
            else:
                self._end(job.id, "finished", finished,
                          lambda s: jobs.succeed_job(s, job.id, self.worker_id, result))
        finally:
            cancelled.set()
            heartbeat.join()

    def _end(
        self, job_id: str, kind: str, data: dict[str, Any], move: Callable[[Session], bool]
    ) -> None:
        """Commit the terminal transition, then (only if it happened) publish its event."""
        with self._sessions() as session:
            moved = move(session)
        if moved:
            status = {"finished": "succeeded"}.get(kind, kind)
            log.info("job %s", status)
            self._metrics.jobs_finished.labels(status).inc()
            self._publish(job_id, kind, data)
        else:
            log.warning("job %s: lease lost before it could end %s", job_id, kind)

    def _retry(self, job_id: str, crash: dict[str, Any]) -> None:
        """Requeue a crashed job for another attempt, or fail it at the attempt limit."""
        with self._sessions() as session:
            moved = jobs.retry_job(session, job_id, self.worker_id, self._max_attempts, crash)
        if moved == jobs.QUEUED:
            log.warning("job requeued after a crash: %s", crash["message"])
            self._publish(job_id, "queued", {"reason": "retrying after a crash", **crash})
        elif moved == jobs.FAILED:
            log.error("job failed at the attempt limit: %s", crash["message"])
            self._metrics.jobs_finished.labels("failed").inc()
            self._publish(job_id, "failed", crash)

    def _heartbeat(self, job_id: str, cancelled: threading.Event) -> None:
        """Renew the lease and watch the cancel flag until the job ends."""
        interval = min(0.5, self._lease_s / 4)
        last_renewal = time.monotonic()
        while not cancelled.wait(interval):
            with self._sessions() as session:
                if jobs.is_cancel_requested(session, job_id) or self._stopping.is_set():
                    cancelled.set()
                elif time.monotonic() - last_renewal > self._lease_s / 4:
                    last_renewal = time.monotonic()
                    if not jobs.renew_lease(session, job_id, self.worker_id, self._lease_s):
                        cancelled.set()


class _ProgressWriter:
    """Mirrors progress events into the job row (the polling view), at most ~4 writes/s."""

    def __init__(self, sessions: sessionmaker[Session], job_id: str, worker: str) -> None:
        self._sessions = sessions
        self._job_id = job_id
        self._worker = worker
        self._last_write = 0.0
        self.levels_saved = 0

    def observe(self, event: EngineEvent) -> None:
        data = event.data
        values: dict[str, Any] = {}
        if event.kind == "level_started" and "level" in data:
            values = {"current_level": int(data["level"]), "progress_done": 0,
                      "progress_total": 0, "progress_stage": None}
        elif event.kind == "progress":
            values = {"progress_stage": data.get("stage"), "progress_done": int(data["done"]),
                      "progress_total": int(data["total"])}
            if "level" in data:
                values["current_level"] = int(data["level"])
            is_last = values["progress_done"] >= values["progress_total"]
            if time.monotonic() - self._last_write < 0.25 and not is_last:
                return
        if values:
            self._last_write = time.monotonic()
            with self._sessions() as session:
                jobs.record_progress(session, self._job_id, self._worker, **values)
