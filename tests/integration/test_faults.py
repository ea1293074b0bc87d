"""Faults in the middle of a job, with real processes: Redis dies and comes back while a job
runs; the scheduler process running a job is SIGKILLed and a standby `plot scheduler`
resumes the job from its last level checkpoint."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from api.db import jobs
from api.db.tables import Job, JobLevel
from core.control import JobControl
from core.events import EngineEvent
from core.spec import JobSpec
from tests.integration.claims import make_claim_loop
from tests.integration.conftest import free_port, wait_for
from workers.claim_loop import ClaimLimits
from workers.engine import Engine
from workers.events import RedisStreamBus, parse_event_id
from workers.job_status import TERMINAL

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once

THREE_LEVELS: dict[str, Any] = {
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 200, "calibration": 200, "test": 200},
    "levels": [{"granularity": "layer"}, {"granularity": "block", "block_size": 4},
               {"granularity": "neuron"}],
    "coupling": {"epsilons": [0.03, 0.1]},
    "calibration": {"top_k": [1, 2, 4, 8], "strengths": [0.5, 1.0, 2.0, 4.0]},
}
Sessions = Any


def job_row(sessions: Sessions, job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id, populate_existing=True)
        session.expunge(job)
        return job


def level_rows(sessions: Sessions, job_id: str) -> list[tuple[int, int, float]]:
    """(level, row id, checkpointed runtime_s) of the job's level rows, by level."""
    with sessions() as session:
        rows = session.query(JobLevel).filter(JobLevel.job_id == job_id).order_by(JobLevel.level)
        return [(r.level, r.id, float(r.checkpoint["runtime_s"])) for r in rows]


class RedisServer:
    """A redis-server of the test's own on a spare port, persisting to an append-only file so
    a restart finds the streams written before the kill."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.directory), "--appendonly", "yes", "--appendfsync", "always",
             "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        try:
            wait_for(lambda: self._answers(client), 30, "redis-server to start")
        finally:
            client.close()

    @staticmethod
    def _answers(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


class OutageBetweenLevels:
    """The real engine; Redis is killed as level 1 starts and restarted as level 2 starts,
    so level 1's events are published while nothing listens."""

    def __init__(self, engine: Engine, server: RedisServer) -> None:
        self.engine = engine
        self.server = server

    def __call__(self, spec: JobSpec, control: JobControl,
                 on_level: Callable[[dict[str, Any]], None],
                 completed: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        def faulty(event: EngineEvent) -> None:
            if event.kind == "level_started" and event.data["level"] == 1:
                self.server.kill()
            if event.kind == "level_started" and event.data["level"] == 2:
                self.server.start()
            control.on_event(event)

        return self.engine(spec, JobControl(faulty, control.should_cancel), on_level,
                           completed)


def test_redis_down_in_the_middle_of_a_job_costs_only_its_events_meanwhile(
        database: tuple[Any, Sessions], engine_cache: Path, tmp_path: Path) -> None:
    _, sessions = database
    server = RedisServer(tmp_path)
    server.start()
    bus = RedisStreamBus(server.url, "plot-outage")
    with sessions() as session:
        job_id = jobs.create_job(session, "ada", JobSpec.model_validate(THREE_LEVELS), 5).id
    executor = OutageBetweenLevels(Engine(tmp_path, tmp_path, engine_cache), server)
    scheduler = make_claim_loop(database, executor, ClaimLimits(1, 1, 0.05), max_attempts=1,
                                bus=bus)
    scheduler.start()
    try:
        wait_for(lambda: job_row(sessions, job_id).status in TERMINAL, 300, "the job")
        job = job_row(sessions, job_id)
        assert job.status == "succeeded" and job.attempt == 1
        assert job.result is not None and job.result["handles"]
        assert "levels" not in job.result  # stored once: in job_levels
        assert [level for level, _, _ in level_rows(sessions, job_id)] == [0, 1, 2]

        events = bus.read(job_id, count=10_000)  # from the restarted server
    finally:
        scheduler.stop()
        bus.close()
        server.kill()
    levels_seen = [e.data.get("level") for e in events if e.kind == "level_started"]
    assert levels_seen == [0, 2]  # level 1 ran while Redis was down: its events are gone
    # the random-net control reruns the levels after the job's own (Redis back by then);
    # its events are kind "control" and say so
    assert not [e for e in events if e.data.get("level") == 1 and e.kind != "control"]
    assert {e.data["control"] for e in events if e.kind == "control"} >= {"random_net"}
    finished_at = [i for i, e in enumerate(events) if e.kind == "level_finished"]
    assert [events[i].data["level"] for i in finished_at] == [0, 2]
    assert events[-1].kind == "finished"  # the stream resumed and ends with the result
    kinds = [e.kind for e in events]  # written before the outage, kept by the AOF:
    assert kinds.index("started") < kinds.index("level_started")
    ids = [parse_event_id(e.id) for e in events]
    assert ids == sorted(ids)  # one stream, its ids increasing across the restart


def test_a_killed_scheduler_leaves_its_job_to_the_standby_which_resumes_it(
        database: tuple[Any, Sessions], postgres_url: str, engine_cache: Path,
        tmp_path: Path) -> None:
    _, sessions = database
    env = {**os.environ, "PLOT_DATABASE_URL": postgres_url, "PLOT_DATA_DIR": str(tmp_path),
           "PLOT_CACHE_DIR": str(engine_cache), "PLOT_POLL_S": "0.1", "PLOT_LEASE_S": "2",
           "PLOT_SCHEDULER_SLOTS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("PLOT_RAY_ADDRESS", None)
    env.pop("PLOT_REDIS_URL", None)

    logs = []

    def scheduler(name: str) -> subprocess.Popen[str]:
        logs.append((tmp_path / f"{name}.log").open("w"))
        return subprocess.Popen([sys.executable, "-m", "api.cli", "scheduler"], cwd=ROOT,
                                env=env, stdout=logs[-1], stderr=subprocess.STDOUT, text=True)

    def log(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()

    leader = scheduler("leader")
    standby: subprocess.Popen[str] | None = None
    try:
        wait_for(lambda: "is the leader" in log("leader"), 120, "the first scheduler to lead")
        standby = scheduler("standby")
        wait_for(lambda: "waiting for the leader lock" in log("standby"), 120, "the standby")
        # slow levels (4-row micro-batches, 400 pairs): seconds each on 2 cores; no
        # controls, which would rerun the slow levels on a random net after the kill test
        slow = JobSpec.model_validate({**THREE_LEVELS, "max_rows": 4, "pairs": {
            "fit": 400, "calibration": 400, "test": 400}, "controls": {
            "random_net": False, "label_permutation": False, "depth_check": False}})
        with sessions() as session:
            job_id = jobs.create_job(session, "ada", slow, 5).id

        def in_level_1() -> bool:
            job = job_row(sessions, job_id)
            assert job.status != "succeeded", "the job ended before it could be interrupted"
            return job.current_level == 1 and len(level_rows(sessions, job_id)) == 1

        wait_for(in_level_1, 300, "the leader to checkpoint level 0 and start level 1")
        leader.send_signal(signal.SIGKILL)
        leader.wait(10)
        before = level_rows(sessions, job_id)
        assert job_row(sessions, job_id).status == "running"  # held by a dead runner

        wait_for(lambda: "is the leader" in log("standby"), 60, "the standby to lead")
        wait_for(lambda: job_row(sessions, job_id).status in TERMINAL, 300, "the job")
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for file in logs:
            file.close()
    job = job_row(sessions, job_id)
    assert job.status == "succeeded" and job.attempt == 2  # one requeue, one completion
    after = level_rows(sessions, job_id)
    assert [level for level, _, _ in after] == [0, 1, 2]
    assert after[0] == before[0]  # level 0's row is the leader's: resumed, not recomputed
    assert after[1][1] > before[0][1] and after[2][1] > after[1][1]
    assert job.result is not None and job.result["handles"]
    assert "levels" not in job.result  # the result's levels are these checkpoint rows
