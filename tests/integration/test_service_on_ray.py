"""The service with PLOT_RAY_ADDRESS set: jobs run their interventions on the local Ray's
actors, give the in-process result, and a cancel stops the Ray work."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from api.client import PlotClient
from core.job import JobContext, run_job
from core.spec import JobSpec
from tests.integration.conftest import (
    REDIS_URL,
    TINY_SPEC,
    Backend,
    Service,
    create_database,
    drop_database,
    serve,
    settings_for,
)
from tests.integration.test_jobs_api import LONG_SPEC
from workers.events import RedisStreamBus

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once


@pytest.fixture(scope="module")
def ray_service(ray_local: None, engine_cache: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    backend = Backend("postgres", create_database(), REDIS_URL, f"plot-ray-{uuid.uuid4().hex[:8]}")
    data_dir = tmp_path_factory.mktemp("data-ray")
    try:
        yield from serve(settings_for(backend, data_dir, engine_cache, ray_address="local",
                                      ray_actors=2))
    finally:
        drop_database(backend.database_url)
        bus = RedisStreamBus(REDIS_URL, backend.redis_prefix)
        bus.delete_prefix()
        bus.close()


def test_a_job_on_the_ray_actors_gives_the_in_process_handles(
        ray_service: Service, engine_cache: Path, tmp_path: Path) -> None:
    with PlotClient(ray_service.url, ray_service.keys["alice"], timeout_s=60) as client:
        job = client.submit(TINY_SPEC)
        kinds = [event.kind for event in client.stream_events(job["id"])]
        assert kinds[-1] == "finished", kinds
        remote = client.result(job["id"])["result"]
    local = run_job(JobSpec.model_validate(TINY_SPEC),
                    JobContext(tmp_path, tmp_path, engine_cache, "cpu"))
    for variable, handle in local.handles.items():
        assert remote["handles"][variable]["sites"] == handle.sites
        assert remote["handles"][variable]["iia_test"]["overall"] == handle.iia_test.overall


def test_cancel_ends_the_job_and_its_actors_drop_it(ray_service: Service) -> None:
    with PlotClient(ray_service.url, ray_service.keys["alice"], timeout_s=60) as client:
        job = client.submit(LONG_SPEC)
        stream = client.stream_events(job["id"])
        next(e for e in stream if e.kind == "progress")  # the actors are at work
        client.cancel(job["id"])
        assert [e.kind for e in stream][-1] == "cancelled"
        assert client.get(job["id"])["status"] == "cancelled"
    actors = ray_service.app.state.services.engine.pool.pool.actors
    assert ray.get([actor.jobs.remote() for actor in actors]) == [[], []]
