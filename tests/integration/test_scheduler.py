"""The scheduler on a real Postgres: fair share across owners with a per-owner cap, the
attempt limit of a job that keeps crashing, and a standby taking over the leader lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import ray

from api.db import jobs
from api.db.job_store import SqlJobStore
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job
from core.control import JobControl
from core.spec import JobSpec
from tests.integration.claims import make_claim_loop
from tests.integration.conftest import wait_for
from workers.actor_backends import ActorBackends
from workers.claim_loop import ClaimLimits, ClaimLoop
from workers.cluster import make_pool
from workers.engine import Engine
from workers.events import InProcessBus
from workers.job_status import TERMINAL
from workers.runner import JobRunner, RunnerConfig

ROOT = Path(__file__).resolve().parents[2]
# The smallest whole job: these tests are about who runs when, not about the handles, so
# the controls (a second schedule on a random net, among others) are off.
FAST_SPEC = JobSpec.model_validate({
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 50, "calibration": 50, "test": 50},
    "levels": [{"granularity": "layer"}],
    "coupling": {"epsilons": [0.03]},
    "calibration": {"top_k": [1], "strengths": [1.0]},
    "controls": {"random_net": False, "label_permutation": False, "depth_check": False},
})
Sessions = Any


def statuses(sessions: Sessions, ids: Sequence[str]) -> list[str]:
    with sessions() as session:
        return [session.get(Job, i, populate_existing=True).status for i in ids]


def run_owners_jobs(database: tuple[Any, Sessions], engine_cache: Path, tmp_path: Path,
                    limits: ClaimLimits, per_owner: int) -> tuple[list[str], dict[str, int]]:
    """3 owners × ``per_owner`` jobs submitted owner by owner, run on 2 Ray actors; returns
    the owners in completion order and each owner's peak count of running jobs (sampled
    every 20 ms)."""
    _, sessions = database
    pool = make_pool(actors=2)
    executor = Engine(tmp_path, tmp_path, engine_cache, "cpu", ActorBackends(pool))
    ids: list[str] = []
    with sessions() as session:
        for owner in ("ada", "bo", "cy"):
            ids += [jobs.create_job(session, owner, FAST_SPEC, max_queued=per_owner).id
                    for _ in range(per_owner)]
    peak: dict[str, int] = {}
    watching = threading.Event()

    def watch_caps() -> None:
        while not watching.is_set():
            with sessions() as session:
                for owner, count in jobs.running_by_owner(session).items():
                    peak[owner] = max(peak.get(owner, 0), count)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_caps, daemon=True)
    watcher.start()
    scheduler = make_claim_loop(database, executor, limits)
    scheduler.start()
    try:
        wait_for(lambda: all(s in TERMINAL for s in statuses(sessions, ids)), 600,
                 f"{len(ids)} jobs to finish")
    finally:
        scheduler.stop()
        watching.set()
        watcher.join()
        for actor in pool.actors:
            ray.kill(actor)
    with sessions() as session:
        done = sorted((session.get(Job, i) for i in ids), key=lambda j: j.finished_at)
        assert {job.status for job in done} == {"succeeded"}
        order = [job.owner for job in done]
    sys.stdout.write(f"completion order ({limits}): " + " ".join(o[0] for o in order) + "\n")
    return order, peak


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_one_slot_serves_owners_in_strict_round_robin(
        database: tuple[Any, Sessions], engine_cache: Path, ray_local: None,
        tmp_path: Path) -> None:
    order, _ = run_owners_jobs(database, engine_cache, tmp_path,
                               ClaimLimits(slots=1, per_owner_cap=1, poll_s=0.05), 3)
    assert order == ["ada", "bo", "cy"] * 3  # FIFO would have been ada × 3 first


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_owners_interleave_and_none_exceeds_its_cap(
        database: tuple[Any, Sessions], engine_cache: Path, ray_local: None,
        tmp_path: Path) -> None:
    order, peak = run_owners_jobs(database, engine_cache, tmp_path,
                                  ClaimLimits(slots=4, per_owner_cap=1, poll_s=0.05), 6)
    assert peak == {"ada": 1, "bo": 1, "cy": 1}  # 4 free slots, yet one job per owner
    # with one job per owner running, an owner is missing from 10 consecutive completions
    # only if its single job outlasts ten others; FIFO would give ada's 6 first, and no
    # 10 consecutive completions of it hold all three owners (ada's 6 then bo's 4 do not)
    for start in range(len(order) - 9):
        assert set(order[start:start + 10]) == {"ada", "bo", "cy"}, (start, order)


class CrashingEngine:
    """An executor whose node keeps dying (not the job's fault): every attempt crashes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, spec: JobSpec, control: JobControl,
                 on_level: Callable[[dict[str, Any]], None],
                 completed: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        self.calls += 1
        raise RuntimeError("the actor's node went away")


def test_a_job_that_keeps_crashing_fails_with_its_error_after_the_attempt_limit(
        database: tuple[Any, Sessions]) -> None:
    _, sessions = database
    with sessions() as session:
        job_id = jobs.create_job(session, "ada", FAST_SPEC, max_queued=5).id
    executor = CrashingEngine()
    scheduler = make_claim_loop(database, executor, ClaimLimits(1, 1, 0.05), max_attempts=3)
    scheduler.start()
    try:
        wait_for(lambda: statuses(sessions, [job_id]) == ["failed"], 60, "the job to fail")
    finally:
        scheduler.stop()
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.attempt == 3 and executor.calls == 3
        assert job.error["type"] == "RuntimeError"
        assert job.error["message"] == "the actor's node went away (attempt limit 3)"


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_a_standby_scheduler_takes_over_when_the_leader_dies(
        database: tuple[Any, Sessions], postgres_url: str, engine_cache: Path,
        tmp_path: Path) -> None:
    _, sessions = database
    env = {**os.environ, "PLOT_DATABASE_URL": postgres_url, "PLOT_DATA_DIR": str(tmp_path),
           "PLOT_CACHE_DIR": str(engine_cache), "PLOT_POLL_S": "0.1"}
    env.pop("PLOT_RAY_ADDRESS", None)
    leader = subprocess.Popen([sys.executable, "-m", "api.cli", "scheduler"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    standby = make_claim_loop(database, Engine(tmp_path, tmp_path, engine_cache, "cpu"),
                             ClaimLimits(1, 1, 0.1))
    try:
        assert leader.stdout is not None
        for line in leader.stdout:
            if "is the leader" in line:
                break
        standby.start()
        time.sleep(1.0)
        assert not standby.is_leader  # the lock is held by the subprocess
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        assert standby.became_leader.wait(15), "the standby never took the lock"
        with sessions() as session:  # and it schedules: a job now runs to the end
            job_id = jobs.create_job(session, "ada", FAST_SPEC, max_queued=5).id
        wait_for(lambda: statuses(sessions, [job_id]) == ["succeeded"], 300, "the job")
    finally:
        standby.stop()
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        if leader.stdout is not None:
            leader.stdout.close()


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_a_job_succeeds_while_redis_is_down(database: tuple[Any, Sessions],
                                             engine_cache: Path, tmp_path: Path) -> None:
    from workers.events import RedisStreamBus

    _, sessions = database
    with sessions() as session:
        job_id = jobs.create_job(session, "ada", FAST_SPEC, max_queued=5).id
    dead_bus = RedisStreamBus("redis://127.0.0.1:1/0", "plot-down")  # nothing listens there
    scheduler = make_claim_loop(database, Engine(tmp_path, tmp_path, engine_cache),
                                ClaimLimits(1, 1, 0.05), max_attempts=1, bus=dead_bus)
    scheduler.start()
    try:
        wait_for(lambda: statuses(sessions, [job_id])[0] in TERMINAL, 300, "the job")
    finally:
        scheduler.stop()
        dead_bus.close()
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job.status == "succeeded" and job.attempt == 1
        assert job.result is not None and job.result["handles"]


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_the_embedded_runner_claims_in_the_schedulers_fair_share_order(
        database: tuple[Any, Sessions], engine_cache: Path, tmp_path: Path) -> None:
    _, sessions = database
    with sessions() as session:  # ada queues all of hers before bo queues his
        ids = [jobs.create_job(session, owner, FAST_SPEC, max_queued=5).id
               for owner in ("ada", "ada", "ada", "bo", "bo", "bo")]
    # what `plot serve` runs: one slot, no election
    serve = ClaimLoop(SqlJobStore(sessions), JobRunner(
        SqlJobStore(sessions), InProcessBus(), Engine(tmp_path, tmp_path, engine_cache),
        RunnerConfig(30, 1)), ClaimLimits(1, 1, 0.05))
    serve.start()
    try:
        wait_for(lambda: all(s == "succeeded" for s in statuses(sessions, ids)), 300, "6 jobs")
    finally:
        serve.stop()
    with sessions() as session:
        done = sorted((session.get(Job, i) for i in ids), key=lambda j: j.started_at)
    assert [job.owner for job in done] == ["ada", "bo"] * 3  # priority-then-age: ada × 3


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_a_slot_source_sets_how_many_jobs_run_at_once(
        database: tuple[Any, Sessions], engine_cache: Path, tmp_path: Path) -> None:
    _, sessions = database
    with sessions() as session:
        ids = [jobs.create_job(session, owner, FAST_SPEC, max_queued=5).id
               for owner in ("ada", "bo", "cy", "di")]
    reads: list[int] = []

    def one_free_gpu() -> int:
        reads.append(1)
        return 1

    rounds: list[bool] = []  # what an IdleRelease would be told, round by round

    def on_round(busy: bool) -> None:
        rounds.append(busy)
        if len(rounds) == 1:
            raise RuntimeError("a failing hook costs the round nothing")

    scheduler = make_claim_loop(database, Engine(tmp_path, tmp_path, engine_cache),
                                ClaimLimits(4, 1, 0.05), max_attempts=1, slots=one_free_gpu,
                                on_round=on_round)
    peak = 0
    scheduler.start()
    try:
        deadline = time.monotonic() + 300
        while not all(s == "succeeded" for s in statuses(sessions, ids)):
            assert time.monotonic() < deadline, "the jobs did not finish"
            with sessions() as session:
                peak = max(peak, sum(jobs.running_by_owner(session).values()))
            time.sleep(0.01)
        wait_for(lambda: rounds[-1] is False, 30, "an idle round after the jobs")
    finally:
        scheduler.stop()
    assert peak == 1  # 4 fixed slots and 4 owners, yet the source allowed one job at a time
    assert len(reads) >= 4  # read again every round, not once
    assert True in rounds  # rounds with a job running said so


def test_queue_positions_follow_the_fair_share_order_that_claims_then_take(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"  # a queue of its own: every claim is ours
    upgrade_database(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    owners = ["ada", "ada", "ada", "bo", "cy", "cy"]  # submitted in this order
    with sessions() as session:
        ids = [jobs.create_job(session, owner, FAST_SPEC, max_queued=5).id
               for owner in owners]
        positions = [jobs.queue_position(session, session.get(Job, i)) for i in ids]
    # round robin: ada's, bo's and cy's first jobs, then ada's and cy's second, ada's third
    assert positions == [0, 3, 5, 1, 2, 4]
    claimed = []
    with sessions() as session:
        while (job := jobs.claim_fair(session, "w", lease_s=60, per_owner_cap=5)) is not None:
            claimed.append(job.id)
            assert jobs.queue_position(session, job) is None
    engine.dispose()
    assert claimed == sorted(ids, key=lambda i: positions[ids.index(i)])
