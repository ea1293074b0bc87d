"""The job runner on the in-memory store: every terminal transition, the heartbeat's cancel
and lease, resume after checkpoints, and the claim loop's fair share — no database."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis
import sqlalchemy.exc
import torch

from core.control import JobControl
from core.errors import DatasetError, JobCancelled
from core.spec import JobSpec
from workers.claim_loop import ClaimLimits, ClaimLoop
from workers.events import InProcessBus
from workers.failures import is_deterministic
from workers.memory_store import InMemoryJobStore
from workers.runner import JobRunner, RunnerConfig

SPEC: dict[str, Any] = {"task": {"builtin": "hierarchical_equality"},
                        "levels": [{"granularity": "layer"}, {"granularity": "neuron"}]}


class ScriptedEngine:
    """A JobEngine that walks the spec's levels without a net: each level emits its events and
    checkpoint, then the job returns a result; ``fail_with`` raises instead, ``block`` waits
    (polling the cancel flag) before the last level; ``at_end`` runs after the last level
    (or, with ``fail_with``, before raising)."""

    def __init__(self, fail_with: Exception | None = None, block: bool = False,
                 at_end: Callable[[], None] = lambda: None) -> None:
        self.fail_with = fail_with
        self.block = block
        self.at_end = at_end
        self.calls: list[list[int]] = []  # per call, the indices of the completed levels
        self.waiting = threading.Event()
        self.release = threading.Event()

    def __call__(self, spec: JobSpec, control: JobControl,
                 on_level: Callable[[dict[str, Any]], None],
                 completed: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        self.calls.append([int(c["index"]) for c in completed])
        if self.fail_with is not None:
            self.at_end()
            raise self.fail_with
        for index in range(len(completed), len(spec.levels)):
            if self.block and index == len(spec.levels) - 1:
                self.waiting.set()
                while not self.release.wait(0.01):
                    if control.is_cancelled():
                        raise JobCancelled("cancelled", f"levels.{index}")
            control.emit("level_started", {"level": index})
            control.emit("progress", {"level": index, "stage": "signatures", "done": 4,
                                      "total": 4})
            on_level({"index": index, "granularity": spec.levels[index].granularity,
                      "runtime_s": 0.0, "score": None})
        control.emit("finished", {"levels": len(spec.levels)})
        self.at_end()
        return {"levels": len(spec.levels), "iia": 0.5}


def start_job(store: InMemoryJobStore, runner: JobRunner, spec: dict[str, Any] = SPEC
              ) -> tuple[str, threading.Thread]:
    job_id = store.submit("ada", spec)
    claimed = store.claim(runner.worker_id, runner.config.lease_s, per_owner_cap=1)
    assert claimed is not None and claimed.id == job_id
    thread = threading.Thread(target=runner.run_one, args=(claimed,))
    thread.start()
    return job_id, thread


def kinds(bus: InProcessBus, job_id: str) -> list[str]:
    return [event.kind for event in bus.read(job_id, count=1000)]


def test_a_job_succeeds_with_its_checkpoints_progress_and_events() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    runner = JobRunner(store, bus, ScriptedEngine())
    job_id, thread = start_job(store, runner)
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "succeeded" and job.attempt == 1
    assert job.result == {"levels": 2, "iia": 0.5}
    assert sorted(job.checkpoints) == [0, 1]
    assert job.checkpoints[1]["score"] is None
    assert job.progress == {"current_level": 1, "progress_stage": "signatures",
                            "progress_done": 4, "progress_total": 4}
    assert kinds(bus, job_id) == ["level_started", "progress"] * 2 + ["finished"]
    assert job.lease_owner is None


def test_the_specs_fault_fails_at_once_and_is_never_retried() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine(fail_with=DatasetError("row 3 has no label", "pairs.jsonl:3"))
    runner = JobRunner(store, bus, engine, RunnerConfig(max_attempts=3))
    job_id, thread = start_job(store, runner)
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "failed" and job.attempt == 1 and len(engine.calls) == 1
    assert job.error == {"type": "DatasetError", "message": "row 3 has no label",
                         "where": "pairs.jsonl:3"}
    assert kinds(bus, job_id) == ["failed"]


def test_a_spec_that_no_longer_validates_fails_naming_its_field() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine()
    runner = JobRunner(store, bus, engine)
    job_id, thread = start_job(store, runner, {**SPEC, "pairs": {"fit": -1}})
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "failed" and engine.calls == []
    assert job.error is not None and job.error["type"] == "SpecError"
    assert job.error["where"] == "pairs.fit"


def test_a_crash_is_retried_until_the_attempt_limit() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine(fail_with=RuntimeError("the actor's node went away"))
    runner = JobRunner(store, bus, engine, RunnerConfig(max_attempts=2))
    loop = ClaimLoop(store, runner, ClaimLimits(slots=1, poll_s=0.01))
    job_id = store.submit("ada", SPEC)
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while store.get(job_id).status != "failed":
            assert time.monotonic() < deadline, store.get(job_id)
            time.sleep(0.01)
    finally:
        loop.stop()
    job = store.get(job_id)
    assert job.attempt == 2 and len(engine.calls) == 2
    assert job.error is not None
    assert job.error["message"] == "the actor's node went away (attempt limit 2)"
    assert kinds(bus, job_id) == ["queued", "failed"]


def test_a_users_cancel_stops_the_job_between_batches() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine(block=True)
    runner = JobRunner(store, bus, engine)
    job_id, thread = start_job(store, runner)
    assert engine.waiting.wait(10)
    store.request_cancel(job_id)
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "cancelled" and sorted(job.checkpoints) == [0]
    assert kinds(bus, job_id)[-1] == "cancelled"


def test_a_cancel_that_arrives_as_the_engine_finishes_still_wins() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()

    job_id = store.submit("ada", SPEC)
    # the cancel lands after the engine's last poll of the flag
    runner = JobRunner(store, bus, ScriptedEngine(at_end=lambda: store.request_cancel(job_id)))
    claimed = store.claim(runner.worker_id, 30, 1)
    assert claimed is not None
    runner.run_one(claimed)
    assert store.get(job_id).status == "cancelled"


def test_a_stopping_runner_hands_its_job_back_and_the_next_run_resumes() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine(block=True)
    runner = JobRunner(store, bus, engine)
    job_id, thread = start_job(store, runner)
    assert engine.waiting.wait(10)
    runner.stop()
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "queued" and sorted(job.checkpoints) == [0]
    assert kinds(bus, job_id)[-1] == "queued"
    # another runner claims it and resumes after level 0
    engine.block = False
    other = JobRunner(store, bus, engine)
    claimed = store.claim(other.worker_id, 30, 1)
    assert claimed is not None and claimed.attempt == 2
    other.run_one(claimed)
    assert engine.calls == [[], [0]]
    assert store.get(job_id).status == "succeeded"


def test_a_runner_that_lost_its_lease_moves_nothing() -> None:
    now = [0.0]
    store, bus = InMemoryJobStore(clock=lambda: now[0]), InProcessBus()
    engine = ScriptedEngine(block=True)
    runner = JobRunner(store, bus, engine, RunnerConfig(lease_s=1000.0, max_attempts=3))
    job_id, thread = start_job(store, runner)
    assert engine.waiting.wait(10)
    now[0] = 2000.0  # the lease ran out (the runner's host was partitioned, say)
    assert store.requeue_expired(max_attempts=3) == 1
    thread.join(10)  # its heartbeat saw the lease gone and stopped the engine
    job = store.get(job_id)
    assert job.status == "queued" and job.lease_owner is None
    assert "cancelled" not in kinds(bus, job_id)


def test_an_expired_lease_fails_the_job_at_the_attempt_limit() -> None:
    now = [0.0]
    store = InMemoryJobStore(clock=lambda: now[0])
    job_id = store.submit("ada", SPEC)
    for attempt in (1, 2):
        claimed = store.claim("w", lease_s=10, per_owner_cap=1)
        assert claimed is not None and claimed.attempt == attempt
        now[0] += 11
        assert store.requeue_expired(max_attempts=2) == 1
    job = store.get(job_id)
    assert job.status == "failed" and job.error is not None
    assert job.error["type"] == "LeaseExpired"


def test_claims_go_round_robin_across_owners_within_the_cap() -> None:
    store = InMemoryJobStore()
    ids = [store.submit(owner, SPEC) for owner in ("ada", "ada", "ada", "bo", "bo", "cy")]
    assert [store.get(i).owner for i in store.fair_share_order()] == [
        "ada", "bo", "cy", "ada", "bo", "ada"]
    first = store.claim("w", 30, per_owner_cap=1)
    second = store.claim("w", 30, per_owner_cap=1)
    third = store.claim("w", 30, per_owner_cap=1)
    assert first is not None and second is not None and third is not None
    assert [first.id, second.id, third.id] == [ids[0], ids[3], ids[5]]
    assert store.claim("w", 30, per_owner_cap=1) is None  # every owner at its cap


def test_the_claim_loop_fills_its_slots_and_serves_every_owner() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    runner = JobRunner(store, bus, ScriptedEngine())
    loop = ClaimLoop(store, runner, ClaimLimits(slots=2, per_owner_cap=1, poll_s=0.01))
    ids = [store.submit(owner, SPEC) for owner in ("ada", "ada", "bo", "bo")]
    loop.start()
    try:
        deadline = time.monotonic() + 10
        while any(store.get(i).status != "succeeded" for i in ids):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        loop.stop()
    assert loop.is_leader


@pytest.mark.parametrize("held", [True, False])
def test_a_loop_that_does_not_lead_claims_nothing(held: bool) -> None:
    class Election:
        def try_acquire(self) -> bool:
            return held

        def still_held(self) -> bool:
            return held

        def release(self) -> None:
            pass

    store = InMemoryJobStore()
    job_id = store.submit("ada", SPEC)
    loop = ClaimLoop(store, JobRunner(store, InProcessBus(), ScriptedEngine()),
                     ClaimLimits(slots=1), leadership=Election())
    started = loop.tick()
    loop.stop()
    assert started == (1 if held else 0)
    assert store.get(job_id).status == ("succeeded" if held else "queued")


def test_a_crash_after_a_cancel_request_ends_the_job_cancelled_not_retried() -> None:
    store, bus = InMemoryJobStore(), InProcessBus()

    job_id = store.submit("ada", SPEC)
    engine = ScriptedEngine(fail_with=RuntimeError("the actor died as the cancel arrived"),
                            at_end=lambda: store.request_cancel(job_id))
    runner = JobRunner(store, bus, engine, RunnerConfig(max_attempts=3))
    claimed = store.claim(runner.worker_id, 30, 1)
    assert claimed is not None
    runner.run_one(claimed)
    assert store.get(job_id).status == "cancelled"
    assert kinds(bus, job_id) == ["cancelled"]


class RayActorError(Exception):
    """Named like ``ray.exceptions.RayActorError`` (matched by name: the runner needs no ray)."""


class ActorDiedError(RayActorError):
    pass


class WorkerCrashedError(Exception):
    pass


class ObjectLostError(Exception):
    pass


class RayTaskError(Exception):
    """Named like Ray's wrapper of a remote task's error, which it keeps as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@pytest.mark.parametrize("error", [
    DatasetError("row 3 has no label", "pairs.jsonl:3"),
    MemoryError(),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB"),
    OverflowError("int too large to convert"),
    ValueError("Overflow when unpacking long long"),
    RuntimeError("Trying to create tensor with negative dimension -3: [-3]"),
    RuntimeError("numel: integer multiplication overflow"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] not enough memory: you tried to "
                 "allocate 40000000000 bytes"),
    RayTaskError(MemoryError()),
], ids=lambda error: type(error).__name__)
def test_an_error_the_same_input_hits_again_is_deterministic(error: Exception) -> None:
    assert is_deterministic(error)


@pytest.mark.parametrize("error", [
    RayActorError("the actor died unexpectedly"),
    ActorDiedError("the actor died"),
    WorkerCrashedError("the worker died"),
    ObjectLostError("an object was lost"),
    RayTaskError(ConnectionError("peer reset")),
    ConnectionError("connection refused"),
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379"),
    sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
    OSError(5, "Input/output error"),
    RuntimeError("the actor's node went away"),
    ValueError("an unexpected reply"),
], ids=lambda error: type(error).__name__)
def test_an_infrastructure_fault_is_not_deterministic(error: Exception) -> None:
    assert not is_deterministic(error)


@pytest.mark.parametrize("error", [
    MemoryError(), torch.OutOfMemoryError("CUDA out of memory"),
    RuntimeError("Trying to create tensor with negative dimension -1: [-1]"),
], ids=lambda error: type(error).__name__)
def test_a_size_error_fails_at_once_saying_the_sizes_are_the_cause(error: Exception) -> None:
    store, bus = InMemoryJobStore(), InProcessBus()
    engine = ScriptedEngine(fail_with=error)
    runner = JobRunner(store, bus, engine, RunnerConfig(max_attempts=3))
    job_id, thread = start_job(store, runner)
    thread.join(10)
    job = store.get(job_id)
    assert job.status == "failed" and job.attempt == 1 and len(engine.calls) == 1
    assert job.error is not None and job.error["type"] == type(error).__name__
    assert "sizes" in job.error["message"]
    assert kinds(bus, job_id) == ["failed"]
