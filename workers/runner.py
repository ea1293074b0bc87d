"""The job runner: runs one claimed job to its end through the ports of ``workers/ports.py``.

It resolves the job's spec, resumes after its saved checkpoints, runs the engine with a
heartbeat that renews the lease and watches for a cancel, writes each level's checkpoint and
the polling view, publishes progress events, and makes the one terminal transition:
succeeded, failed (the spec's or the data's fault, never retried), cancelled, requeued after
an infrastructure crash (up to ``max_attempts``), or released to the queue when the runner
itself stops. It knows no database, no Redis and no Ray: tests run it on
``workers.memory_store.InMemoryJobStore``.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.control import JobControl
from core.errors import JobCancelled, PlotError
from core.events import EngineEvent
from workers.failures import failure_record, is_deterministic
from workers.job_status import JobStatus
from workers.logcontext import bound_job
from workers.ports import (
    BusUnavailable,
    ClaimedJob,
    EventBus,
    JobEngine,
    JobStore,
    NoMetrics,
    RunnerMetrics,
)

log = logging.getLogger(__name__)

HEARTBEAT_S = 0.5  # how often a running job's cancel flag is read (the lease: lease_s / 4)
PROGRESS_WRITE_S = 0.25  # the polling view is written at most this often (besides the last)


@dataclass(frozen=True)
class RunnerConfig:
    """Attributes:
    lease_s: a claimed job's lease; renewed every quarter of it while the job runs.
    max_attempts: runs of one job before a crash or an expired lease fails it.
    """

    lease_s: float = 120.0
    max_attempts: int = 3


def make_worker_id(owner: object) -> str:
    """host:pid:object — the lease owner written on the jobs this runner claims."""
    return f"{socket.gethostname()}:{os.getpid()}:{id(owner):x}"[:64]


class JobRunner:
    """Runs claimed jobs (``run_one``), each to one terminal transition; thread-safe, so a
    claim loop may run several at once on its slots.

    Args:
        store: the job state machine.
        bus: the jobs' progress streams (best effort: an outage costs the live stream only).
        engine: runs a resolved spec.
        config: lease and attempts.
        metrics: counters for events, levels and ended jobs.
    """

    def __init__(self, store: JobStore, bus: EventBus, engine: JobEngine,
                 config: RunnerConfig = RunnerConfig(),
                 metrics: RunnerMetrics | None = None) -> None:
        self.worker_id = make_worker_id(self)
        self.store = store
        self.config = config
        self._bus = bus
        self._engine = engine
        self._metrics = metrics or NoMetrics()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Running jobs stop at their next batch boundary and go back to the queue (keeping
        their checkpoints), unless a user cancelled them."""
        self._stopping.set()

    def run_one(self, job: ClaimedJob) -> None:
        """Run one claimed job to a terminal state (or hand it back when the lease was lost
        or the runner stops); every log line meanwhile carries its id."""
        with bound_job(job.id):
            log.info("job started (attempt %d, owner %s)", job.attempt, job.owner)
            cancelled = threading.Event()
            # the heartbeat thread logs under the job's id too (threads start with no context)
            heartbeat = threading.Thread(target=contextvars.copy_context().run,
                                         args=(self._heartbeat, job.id, cancelled), daemon=True)
            heartbeat.start()
            try:
                self._run(job, cancelled)
            finally:
                cancelled.set()
                heartbeat.join()

    def _run(self, job: ClaimedJob, cancelled: threading.Event) -> None:
        progress = ProgressWriter(self.store, job.id, self.worker_id)
        finished: dict[str, Any] = {}

        def on_event(event: EngineEvent) -> None:
            if event.kind == "finished":  # published after the result is committed
                finished.update(event.data)
                return
            progress.observe(event)
            self.publish(job.id, event.kind, event.data)

        def on_level(checkpoint: dict[str, Any]) -> None:
            index = int(checkpoint.get("index", progress.levels_saved))
            self.store.save_checkpoint(job.id, index, checkpoint)
            progress.levels_saved += 1
            self._metrics.level_checkpointed(checkpoint)
            log.info("level %d (%s) checkpointed in %.2f s", index,
                     checkpoint.get("granularity"), float(checkpoint.get("runtime_s", 0.0)))

        try:
            spec, completed = self.store.prepare(job)
            result = self._engine(spec, JobControl(on_event, cancelled.is_set), on_level,
                                  completed)
        except JobCancelled:
            self._cancelled(job.id)
        except Exception as error:
            record = failure_record(error)
            if is_deterministic(error):  # the spec's, data's or net's fault, or its sizes
                if not isinstance(error, PlotError):
                    log.error("job failed for good: %s: %s", record["type"], record["message"])
                self._end(job.id, "failed", record,
                          lambda: self.store.fail(job.id, self.worker_id, record))
            else:  # infrastructure (a lost actor, a DB or Redis hiccup): retry
                log.exception("job %s crashed", job.id)
                self._retry(job.id, record)
        else:
            # a cancel asked for before the result is committed wins, even when the engine
            # finished before it next looked at the flag
            if self.store.heartbeat(job.id, self.worker_id, None).cancel_requested:
                self._cancelled(job.id)
            else:
                self._end(job.id, "finished", finished,
                          lambda: self.store.succeed(job.id, self.worker_id, result))

    def _cancelled(self, job_id: str) -> None:
        """A user's cancel ends the job; the runner's own stop hands it back to the queue."""
        if self._stopping.is_set():
            if self.store.release(job_id, self.worker_id):
                self.publish(job_id, "queued", {"reason": "runner stopped"})
            return
        self._end(job_id, "cancelled", {"reason": "cancel requested"},
                  lambda: self.store.cancel(job_id, self.worker_id))

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> None:
        """Best effort: events are transient (the job row holds progress and the result), so
        a bus outage (Redis down) costs the live stream, never the job."""
        try:
            self._bus.publish(job_id, kind, data)
        except BusUnavailable as error:  # an outage: one line, no traceback
            log.warning("job %s: event %s not published: %s", job_id, kind, error)
            return
        except Exception:
            log.warning("job %s: event %s not published (bus unavailable)", job_id, kind,
                        exc_info=True)
            return
        self._metrics.event_published(kind)

    def _end(self, job_id: str, kind: str, data: dict[str, Any],
             move: Callable[[], bool]) -> None:
        """Commit the terminal transition, then (only if it happened) publish its event."""
        if move():
            status = JobStatus.SUCCEEDED if kind == "finished" else JobStatus(kind)
            log.info("job %s", status)
            self._metrics.job_finished(status)
            self.publish(job_id, kind, data)
        else:
            log.warning("job %s: lease lost before it could end %s", job_id, kind)

    def _retry(self, job_id: str, crash: dict[str, Any]) -> None:
        """Requeue a crashed job for another attempt, or fail it at the attempt limit."""
        moved = self.store.retry(job_id, self.worker_id, self.config.max_attempts, crash)
        if moved == JobStatus.QUEUED:
            log.warning("job requeued after a crash: %s", crash["message"])
            self.publish(job_id, "queued", {"reason": "retrying after a crash", **crash})
        elif moved == JobStatus.FAILED:
            log.error("job failed at the attempt limit: %s", crash["message"])
            self._metrics.job_finished(JobStatus.FAILED)
            self.publish(job_id, "failed", crash)
        elif moved == JobStatus.CANCELLED:
            log.info("job cancelled (it had crashed: %s)", crash["message"])
            self._metrics.job_finished(JobStatus.CANCELLED)
            self.publish(job_id, "cancelled", {"reason": "cancel requested"})

    def _heartbeat(self, job_id: str, cancelled: threading.Event) -> None:
        """Renew the lease and watch the cancel flag until the job ends."""
        lease_s = self.config.lease_s
        interval = min(HEARTBEAT_S, lease_s / 4)
        last_renewal = time.monotonic()
        while not cancelled.wait(interval):
            due = time.monotonic() - last_renewal > lease_s / 4
            try:
                beat = self.store.heartbeat(job_id, self.worker_id, lease_s if due else None)
            except Exception:  # a DB hiccup: the lease has slack, try again next beat
                log.warning("heartbeat failed", exc_info=True)
                continue
            if due:
                last_renewal = time.monotonic()
            if beat.cancel_requested or not beat.held or self._stopping.is_set():
                cancelled.set()


class ProgressWriter:
    """Mirrors progress events into the job's polling view, at most ~4 writes/s."""

    def __init__(self, store: JobStore, job_id: str, worker: str) -> None:
        self._store = store
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
            if time.monotonic() - self._last_write < PROGRESS_WRITE_S and not is_last:
                return
        if values:
            self._last_write = time.monotonic()
            self._store.record_progress(self._job_id, self._worker, **values)
