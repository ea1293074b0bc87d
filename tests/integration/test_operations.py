"""What a maintainer watches: a real ``plot scheduler`` process writes JSON log lines that
carry the job id and serves Prometheus metrics (level durations, interventions, outcomes,
actor restarts); the API reports jobs by state and the queue per owner; a job's Redis
stream expires after the configured retention."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from api.db import jobs
from api.db.migrate import upgrade_database
from api.db.session import make_engine, make_sessions
from api.db.tables import Job, JobLevel
from api.logs import configure_logging
from core.spec import JobSpec
from tests.integration.conftest import REDIS_URL, TINY_SPEC, Service, free_port
from workers.events import RedisStreamBus, job_events_key
from workers.job_status import TERMINAL

ROOT = Path(__file__).resolve().parents[2]


def metric(text: str, name: str) -> float:
    """The value of one sample line ``name value`` of a Prometheus text page."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


@pytest.mark.slow
@pytest.mark.usefixtures("heq_net")
def test_the_scheduler_logs_json_with_the_job_id_and_serves_metrics(
        postgres_url: str, engine_cache: Path, tmp_path: Path) -> None:
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_sessions(engine)
    with sessions() as session:
        job_id = jobs.create_job(session, "ada", JobSpec.model_validate(TINY_SPEC), 5).id
    prefix, port = f"plot-ops-{uuid.uuid4().hex[:8]}", free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PLOT_")},
           "PLOT_DATABASE_URL": postgres_url, "PLOT_REDIS_URL": REDIS_URL,
           "PLOT_REDIS_PREFIX": prefix, "PLOT_DATA_DIR": str(tmp_path),
           "PLOT_CACHE_DIR": str(engine_cache), "PLOT_POLL_S": "0.1",
           "PLOT_LOG_FORMAT": "json", "PLOT_METRICS_PORT": str(port),
           "PLOT_EVENTS_TTL_S": "600"}
    scheduler = subprocess.Popen([sys.executable, "-m", "api.cli", "scheduler"], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
    bus = RedisStreamBus(REDIS_URL, prefix)
    try:
        deadline = time.monotonic() + 300
        while True:
            with sessions() as session:
                status = session.scalar(select(Job.status).where(Job.id == job_id))
            if status in TERMINAL or time.monotonic() > deadline:
                break
            assert scheduler.poll() is None, scheduler.communicate()
            time.sleep(0.2)
        assert status == "succeeded"
        page = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        with sessions() as session:
            passes = sum(level.checkpoint["forward_passes"] for level in session.scalars(
                select(JobLevel).where(JobLevel.job_id == job_id)))
        ttl = bus._client.ttl(job_events_key(job_id, prefix))
    finally:
        scheduler.terminate()
        out, err = scheduler.communicate(timeout=60)
        bus.delete_prefix()
        bus.close()
        engine.dispose()
    assert scheduler.returncode == 0, err
    assert f"metrics on http://127.0.0.1:{port}/metrics" in out
    assert metric(page, 'plot_jobs_finished_total{status="succeeded"}') == 1
    assert metric(page, 'plot_level_seconds_count{granularity="neuron"}') == 1
    assert metric(page, "plot_interventions_total") == passes > 0
    assert metric(page, "plot_actor_restarts_total") == 0
    assert 0 < ttl <= 600  # the stream expires after PLOT_EVENTS_TTL_S
    records = [json.loads(line) for line in err.splitlines()]  # every line is one object
    about_the_job = [r for r in records if r["logger"] == "workers.runner"]
    messages = [r["message"] for r in about_the_job]
    assert messages[0].startswith("job started (attempt 1, owner ada)")
    assert any(m.startswith("level 0 (neuron) checkpointed") for m in messages)
    assert messages[-1] == "job succeeded"
    assert {r.get("job_id") for r in about_the_job} == {job_id}


def test_the_api_reports_jobs_by_state_and_the_queue_per_owner(api_only: Service) -> None:
    # api_only runs no jobs, on a database of its own
    assert 'plot_queued_jobs{owner=' not in httpx.get(f"{api_only.url}/metrics").text
    with api_only.client("alice") as alice, api_only.client("bob") as bob:
        ids = [alice.post("/v1/jobs", json=TINY_SPEC).json()["id"] for _ in range(2)]
        for _ in range(3):
            bob.post("/v1/jobs", json=TINY_SPEC).raise_for_status()
        alice.post(f"/v1/jobs/{ids[0]}/cancel").raise_for_status()
    page = httpx.get(f"{api_only.url}/metrics").text
    assert metric(page, 'plot_jobs{state="queued"}') == 4
    assert metric(page, 'plot_jobs{state="cancelled"}') == 1
    assert metric(page, 'plot_jobs{state="running"}') == 0
    assert metric(page, 'plot_queued_jobs{owner="alice"}') == 1
    assert metric(page, 'plot_queued_jobs{owner="bob"}') == 3


def test_the_api_logs_submissions_and_cancels_with_the_job_id(api_only: Service) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", "INFO", stream)
    try:
        with api_only.client("alice") as alice:
            job_id = alice.post("/v1/jobs", json=TINY_SPEC).json()["id"]
            alice.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = [(r["message"], r.get("job_id")) for r in records if r["logger"] == "api.routes.jobs"]
    assert about == [("job queued for alice", job_id), ("cancel requested by alice", job_id)]
