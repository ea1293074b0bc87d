"""Redis stopped in the middle of five jobs and restarted empty: every job succeeds, every
open stream ends cleanly (no traceback), and every stream that reconnects with
``Last-Event-ID`` ends with the job's terminal event — rebuilt from the row when the bus lost
it."""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.client import PlotClient, ServerEvent
from api.db.tables import Job
from tests.integration.conftest import (
    TINY_SPEC,
    Backend,
    Service,
    create_database,
    drop_database,
    serve,
    settings_for,
    wait_for,
)
from tests.integration.test_faults import RedisServer
from workers.job_status import TERMINAL

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once

JOBS = 5
# slow enough (4-row micro-batches) that Redis goes down while the jobs run; no controls
SPEC: dict[str, Any] = {**TINY_SPEC, "max_rows": 4, "controls": {
    "random_net": False, "label_permutation": False, "depth_check": False}}


@dataclass
class Follower:
    """Follows one job's events as a client would: reconnects with ``Last-Event-ID`` after a
    stream ends without a terminal event, until it has one."""

    client: PlotClient
    job_id: str
    events: list[ServerEvent] = field(default_factory=list)
    reconnects: int = 0  # connections made with a Last-Event-ID
    broken: list[str] = field(default_factory=list)  # streams that did not end cleanly

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            last = self.events[-1].id if self.events else None
            self.reconnects += last is not None
            try:
                for event in self.client.stream_events(self.job_id, last_event_id=last):
                    self.events.append(event)
            except httpx.HTTPError as error:
                self.broken.append(repr(error))
            if self.events and self.events[-1].kind in ("finished", "failed", "cancelled"):
                return
            time.sleep(0.3)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.directory.mkdir()
    server.start()
    yield server
    server.kill()


@pytest.fixture
def outage_service(redis_server: RedisServer, engine_cache: Path, tmp_path: Path
                   ) -> Iterator[Service]:
    url = create_database()
    backend = Backend("postgres", url, redis_server.url, "plot-outage")
    try:
        yield from serve(settings_for(backend, tmp_path / "data", engine_cache))
    finally:
        drop_database(url)


def statuses(service: Service, job_ids: list[str]) -> list[str]:
    with service.app.state.sessions() as session:
        return [str(session.get(Job, job_id, populate_existing=True).status)
                for job_id in job_ids]


def test_streams_end_with_the_terminal_event_across_a_redis_restart_that_loses_them(
        outage_service: Service, redis_server: RedisServer,
        caplog: pytest.LogCaptureFixture) -> None:
    service = outage_service
    caplog.set_level(logging.WARNING)
    client = PlotClient(service.url, service.keys["alice"], timeout_s=60)
    job_ids = [client.submit(SPEC)["id"] for _ in range(JOBS)]
    followers = [Follower(client, job_id) for job_id in job_ids]
    deadline = time.monotonic() + 600
    threads = [threading.Thread(target=f.run, args=(deadline,)) for f in followers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: "running" in statuses(service, job_ids)
                 and all(f.events for f in followers), 300, "a job running")
        redis_server.kill()  # mid-run: streams open, jobs publishing
        wait_for(lambda: any(s in TERMINAL for s in statuses(service, job_ids)), 300,
                 "a job to end while Redis is down")
        shutil.rmtree(redis_server.directory)  # restarted empty: every stream is gone
        redis_server.directory.mkdir()
        redis_server.start()
        wait_for(lambda: all(s in TERMINAL for s in statuses(service, job_ids)), 600,
                 "every job to end")
    finally:
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic()))
        client.close()

    assert statuses(service, job_ids) == ["succeeded"] * JOBS
    for follower in followers:
        assert follower.events[-1].kind == "finished", (follower.job_id, follower.events[-3:])
        assert follower.events[-1].data["handles"], follower.job_id
        assert not follower.broken, follower.broken
    assert sum(f.reconnects for f in followers) >= JOBS  # every open stream ended once
    rebuilt = [f.events[-1] for f in followers if f.events[-1].data.get("rebuilt")]
    assert rebuilt  # the job that ended during the outage lost its event: rebuilt
    for event in rebuilt:
        assert event.data["status"] == "succeeded" and event.data["total_s"] is not None
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    ended = [r for r in caplog.records if "event stream ended" in r.getMessage()]
    assert ended and all(r.levelno == logging.WARNING and not r.exc_info for r in ended)
