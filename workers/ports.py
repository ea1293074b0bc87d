"""The ports of the job runner: what it needs from its surroundings.

The runner (``workers/runner.py``) codes to these protocols only; the service provides them
(``api/db/job_store.py`` over SQL, ``workers/events.py`` over Redis Streams or in-process),
tests may use ``workers/memory_store.py``.

- ``JobStore``: the job state machine as the runner sees it — claim, heartbeat (lease and
  cancellation), checkpoints, progress, and the terminal transitions.
- ``EventBus``: a job's transient progress stream.
- ``JobEngine``: runs one resolved job spec to a result (the PLOT engine, its batched work in
  this process or on the Ray actors).
- ``RunnerMetrics``: what the runner counts.
- ``Leadership``: whether this process may claim jobs now (an election among schedulers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pydantic

from core.control import JobControl
from core.errors import SpecError
from core.spec import JobSpec
from workers.job_status import JobStatus

TERMINAL_KINDS = frozenset({"finished", "failed", "cancelled"})


class BusUnavailable(Exception):
    """The event bus cannot be reached (Redis down or restarting): progress is transient, so
    callers log one line and carry on from the database."""


@dataclass(frozen=True)
class ProgressEvent:
    """One event of a job's progress stream.

    Attributes:
        id: "ms-seq" (a Redis stream id, or the same form from the in-process bus); usable
            as an SSE id and as ``after`` to resume.
        kind: queued | started | level_started | progress | calibration | level_finished |
            das | finished | failed | cancelled.
        data: the kind's payload (JSON-serialisable).
    """

    id: str
    kind: str
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.kind in TERMINAL_KINDS


class EventBus(Protocol):
    """A bounded, ordered, resumable stream of progress events per job. Its methods raise
    ``BusUnavailable`` when the bus cannot be reached."""

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        """Append one event; return its id."""
        ...

    def read(
        self, job_id: str, after: str | None = None, count: int = 100, block_s: float = 0.0
    ) -> list[ProgressEvent]:
        """Events with an id greater than ``after`` (all when None), oldest first.

        Waits up to ``block_s`` seconds for the first one when none is there yet.
        """
        ...

    def discard(self, job_id: str) -> bool:
        """Delete a job's events (the job was purged); False when there were none."""
        ...

    def ping(self) -> None:
        """Raise if the bus cannot be reached."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ClaimedJob:
    """A job the store handed to one runner under a lease.

    Attributes:
        id: the job's id.
        owner: who submitted it (log lines, fair share).
        attempt: 1 for the first run, +1 for each requeue.
        spec: the spec as submitted (JSON): a dataset or a registered net may still be an id.
    """

    id: str
    owner: str
    attempt: int
    spec: dict[str, Any] = field(repr=False)

    def job_spec(self) -> JobSpec:
        """The validated spec; one that no longer validates (a schema change since it was
        queued) is the spec's fault, so a ``SpecError`` (never retried)."""
        try:
            return JobSpec.model_validate(self.spec)
        except pydantic.ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first.get("loc", ())) or None
            raise SpecError(str(first.get("msg", "invalid")), where) from error


@dataclass(frozen=True)
class Heartbeat:
    """What one heartbeat learned: whether the runner still holds the job, and whether a
    user asked to cancel it."""

    held: bool
    cancel_requested: bool


class JobStore(Protocol):
    """The job state machine, runner side. Every transition is atomic and conditional on the
    runner's lease: a runner that lost its lease (the job was requeued) moves nothing."""

    def requeue_expired(self, max_attempts: int) -> int:
        """Running jobs whose lease expired back to queued (failed at ``max_attempts``)."""
        ...

    def claim(self, worker: str, lease_s: float, per_owner_cap: int) -> ClaimedJob | None:
        """The next queued job in fair-share order, now running under ``worker``'s lease."""
        ...

    def prepare(self, job: ClaimedJob) -> tuple[JobSpec, list[dict[str, Any]]]:
        """The job's spec with ids resolved to the engine's file paths, and the level
        checkpoints an earlier attempt saved (resume after them).

        Raises:
            PlotError: the spec no longer validates, or what it names no longer exists.
        """
        ...

    def heartbeat(self, job_id: str, worker: str, lease_s: float | None) -> Heartbeat:
        """Read the cancel flag and, with ``lease_s``, renew the lease."""
        ...

    def record_progress(self, job_id: str, worker: str, **values: Any) -> None:
        """Update the polling view: current_level, progress_stage / done / total."""
        ...

    def save_checkpoint(self, job_id: str, index: int, checkpoint: dict[str, Any]) -> None:
        """Write one level's checkpoint (replacing an earlier attempt's)."""
        ...

    def succeed(self, job_id: str, worker: str, result: dict[str, Any]) -> bool: ...

    def fail(self, job_id: str, worker: str, error: dict[str, Any]) -> bool: ...

    def cancel(self, job_id: str, worker: str) -> bool:
        """End a running job ``cancelled`` (a user asked)."""
        ...

    def release(self, job_id: str, worker: str) -> bool:
        """Hand a running job back to the queue (the runner stops); a pending cancel wins
        and ends it cancelled instead (then False)."""
        ...

    def retry(self, job_id: str, worker: str, max_attempts: int,
              error: dict[str, Any]) -> JobStatus | None:
        """After an infrastructure crash: queued for another attempt, failed at the attempt
        limit, cancelled when a user asked for that meanwhile; None when the lease was
        already lost."""
        ...


class JobEngine(Protocol):
    """Runs one resolved job spec (dataset and net references are file paths)."""

    def __call__(
        self,
        spec: JobSpec,
        control: JobControl,
        on_level: Callable[[dict[str, Any]], None],
        completed: Sequence[dict[str, Any]] = (),
    ) -> dict[str, Any]:
        """The job's result document, resuming after the ``completed`` checkpoints. It and
        every checkpoint given to ``on_level`` are JSON (``core.result`` models dumped in
        JSON mode: no NaN or infinity, which Postgres JSONB refuses).

        Raises:
            JobCancelled: ``control``'s cancel check turned true.
            PlotError: the spec, data or net is at fault (deterministic: never retried).
        """
        ...


class RunnerMetrics(Protocol):
    """What a runner counts (Prometheus in the service)."""

    def event_published(self, kind: str) -> None: ...

    def level_checkpointed(self, checkpoint: dict[str, Any]) -> None: ...

    def job_finished(self, status: str) -> None: ...


class NoMetrics:
    """Counts nothing (a library user's runner, tests)."""

    def event_published(self, kind: str) -> None:
        pass

    def level_checkpointed(self, checkpoint: dict[str, Any]) -> None:
        pass

    def job_finished(self, status: str) -> None:
        pass


class Leadership(Protocol):
    """Whether this process may claim jobs: one leader among the schedulers of a cluster."""

    def try_acquire(self) -> bool: ...

    def still_held(self) -> bool: ...

    def release(self) -> None: ...


class AlwaysLeader:
    """No election: the only process that claims (the embedded default, ``plot serve``)."""

    def try_acquire(self) -> bool:
        return True

    def still_held(self) -> bool:
        return True

    def release(self) -> None:
        pass
