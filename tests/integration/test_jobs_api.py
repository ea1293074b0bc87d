"""Jobs end to end over HTTP: submit, SSE events in order, resume, result, cancel, ownership."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from api.client import ApiError, PlotClient, ServerEvent
from api.db import jobs
from api.db.session import make_engine, make_sessions
from api.db.tables import Job, utcnow
from core.spec import JobSpec
from tests.integration.conftest import (
    TINY_SPEC,
    Backend,
    Service,
    create_database,
    drop_database,
    serve,
    settings_for,
)
from workers.events import parse_event_id

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once

# A job big enough to still be running when the cancel arrives.
LONG_SPEC: dict[str, Any] = {
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 4000, "calibration": 4000, "test": 4000},
    "levels": [{"granularity": "layer"}, {"granularity": "neuron"}],
    "max_rows": 2048,
}


def client_for(service: Service, who: str = "alice") -> PlotClient:
    return PlotClient(service.url, service.keys[who], timeout_s=60)


def assert_well_ordered(events: list[ServerEvent]) -> None:
    """Ids strictly increase; queued, started, levels, then one terminal event last."""
    ids = [parse_event_id(event.id) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    kinds = [event.kind for event in events]
    assert kinds[0] == "queued"
    assert kinds.index("started") < kinds.index("level_started")
    assert kinds[-1] == "finished" and kinds.count("finished") == 1
    assert kinds.count("level_started") == kinds.count("level_finished")
    for started, finished in zip(
        [i for i, k in enumerate(kinds) if k == "level_started"],
        [i for i, k in enumerate(kinds) if k == "level_finished"], strict=True,
    ):
        assert started < finished


def test_submitted_job_streams_ordered_events_and_stores_its_result(service: Service) -> None:
    with client_for(service) as client:
        job = client.submit(TINY_SPEC)
        assert job["status"] in ("queued", "running")
        events = list(client.stream_events(job["id"]))
        assert_well_ordered(events)
        assert any(e.kind == "progress" and e.data["done"] <= e.data["total"] for e in events)

        done = client.get(job["id"])
        assert done["status"] == "succeeded" and done["error"] is None
        assert done["levels_done"] == 1 and done["attempt"] == 1
        result = client.result(job["id"])
        assert set(result["result"]["handles"]) == {"WX", "YZ"}
        for handle in result["result"]["handles"].values():
            assert handle["sites"] and 0.0 <= handle["iia_test"]["overall"] <= 1.0
        assert set(result) == {"job_id", "result"}  # every level once, inside the result
        assert [level["index"] for level in result["result"]["levels"]] == [0]
        level = result["result"]["levels"][0]
        assert level["granularity"] == "neuron" and level["sites"]
        typed = client.result(job["id"], typed=True)  # the same result as a JobResult
        assert typed.handles["WX"].sites == result["result"]["handles"]["WX"]["sites"]
        assert typed.to_json() == result["result"] and repr(typed).startswith("JobResult(1 levels")
    with service.app.state.sessions() as session:  # stored once: as the level's checkpoint
        row = session.get(Job, job["id"])
        assert row is not None and row.result is not None and "levels" not in row.result
        assert [c.checkpoint for c in jobs.list_levels(session, job["id"])] == [level]


def test_event_stream_resumes_after_a_dropped_connection(service: Service) -> None:
    with client_for(service) as client:
        job = client.submit(TINY_SPEC)
        first = list(itertools.islice(client.stream_events(job["id"]), 3))  # then hang up
        rest = list(client.stream_events(job["id"], last_event_id=first[-1].id))
        replay = list(client.stream_events(job["id"]))
    assert len(first) == 3 and rest
    assert [e.id for e in first + rest] == [e.id for e in replay]
    assert [e.kind for e in first + rest] == [e.kind for e in replay]
    assert_well_ordered(replay)


def test_cancel_stops_a_running_job_and_a_queued_one(service: Service) -> None:
    with client_for(service) as client:
        running = client.submit(LONG_SPEC)
        waiting = client.submit(LONG_SPEC)  # the runner takes one job at a time
        stream = client.stream_events(running["id"])
        seen = [next(e for e in stream if e.kind in ("level_started", "progress"))]

        assert client.get(waiting["id"])["queue_position"] == 0
        queued_cancel = client.cancel(waiting["id"])
        assert queued_cancel["status"] == "cancelled"
        assert [e.kind for e in client.stream_events(waiting["id"])] == ["queued", "cancelled"]

        assert client.cancel(running["id"])["cancel_requested"] is True
        seen += list(stream)
        assert seen[-1].kind == "cancelled"
        ended = client.get(running["id"])
        assert ended["status"] == "cancelled"
        assert ended["error"]["type"] == "JobCancelled"
        with pytest.raises(ApiError) as refused:
            client.result(running["id"])
        assert refused.value.status == 409
        again = client.cancel(running["id"])  # cancelling twice is harmless
        assert again["status"] == "cancelled"


def test_another_owner_gets_404_and_an_admin_sees_all(service: Service) -> None:
    with client_for(service, "alice") as alice:
        job = alice.submit(TINY_SPEC)
        alice.wait(job["id"], timeout_s=600)
    with service.client("bob") as bob:
        for method, path in [("GET", ""), ("GET", "/result"), ("POST", "/cancel"),
                             ("GET", "/events")]:
            response = bob.request(method, f"/v1/jobs/{job['id']}{path}")
            assert response.status_code == 404, path
            assert response.json() == {"type": "NotFoundError", "message": "no such job",
                                       "where": job["id"]}
        assert job["id"] not in [j["id"] for j in bob.get("/v1/jobs").json()["items"]]
    with service.client("admin") as admin:
        assert admin.get(f"/v1/jobs/{job['id']}").json()["owner"] == "alice"
        listed = admin.get("/v1/jobs", params={"status": "succeeded", "limit": 200}).json()
        assert job["id"] in [j["id"] for j in listed["items"]]


def test_job_list_filters_by_status_and_pages(service: Service) -> None:
    carol = service.new_key("carol")
    with PlotClient(service.url, carol) as client:
        ids = [client.submit(TINY_SPEC)["id"] for _ in range(3)]
        for job_id in ids:
            client.wait(job_id, timeout_s=600)
        page = client.list(limit=2)
        assert page["total"] == 3 and len(page["items"]) == 2
        rest = client.list(limit=2, offset=2)
        assert {j["id"] for j in page["items"] + rest["items"]} == set(ids)
        assert client.list(status="succeeded")["total"] == 3
        assert client.list(status="queued")["total"] == 0


def test_a_job_the_engine_refuses_fails_with_its_error_record(service: Service) -> None:
    # admitted (a position level estimates as one site) but an MLP has no positions
    spec = {**TINY_SPEC, "levels": [{"granularity": "position"}]}
    with client_for(service) as client:
        job = client.submit(spec)
        events = list(client.stream_events(job["id"]))
        ended = client.get(job["id"])
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "failed" and "level_finished" not in kinds
    assert ended["status"] == "failed"
    assert ended["error"]["type"] == "SiteError"
    assert ended["error"]["where"] == "levels.granularity"
    assert events[-1].data == ended["error"]


def test_many_open_event_streams_do_not_starve_other_requests(api_only: Service) -> None:
    """More SSE streams than the default worker-thread pool (40) still leave room for reads."""
    with api_only.client() as client:
        job = client.post("/v1/jobs", json=TINY_SPEC).json()  # stays queued: no runner
        streams = [api_only.client() for _ in range(50)]
        opened = []
        try:
            for stream_client in streams:
                response = stream_client.send(
                    stream_client.build_request("GET", f"/v1/jobs/{job['id']}/events"),
                    stream=True)
                assert response.status_code == 200
                opened.append(response)
            first = next(opened[-1].iter_lines())
            assert first.startswith("id: ")
            assert client.get(f"/v1/jobs/{job['id']}", timeout=10).json()["status"] == "queued"
            assert client.get("/v1/jobs", timeout=10).json()["total"] == 1
        finally:
            for response in opened:
                response.close()
            for stream_client in streams:
                stream_client.close()


def test_a_job_whose_runner_died_is_requeued_and_resumes_after_its_checkpoint(
    service: Service,
) -> None:
    two_levels = {**TINY_SPEC, "levels": [{"granularity": "layer", "keep": 1},
                                          {"granularity": "neuron"}]}
    with client_for(service) as client:
        first = client.submit(two_levels)
        assert client.wait(first["id"], timeout_s=600)["status"] == "succeeded"
        level_0 = client.result(first["id"])["result"]["levels"][0]

    # A runner that claimed this job, checkpointed level 0, then died (its lease ran out).
    with service.app.state.sessions() as session:
        orphan = Job(owner="alice", status="running", spec=JobSpec.model_validate(
            two_levels).model_dump(mode="json"), attempt=1, lease_owner="dead-runner",
            lease_expires_at=utcnow() - timedelta(seconds=1), started_at=utcnow())
        session.add(orphan)
        session.commit()
        jobs.save_level(session, orphan.id, 0, level_0)

    with client_for(service) as client:
        events = list(client.stream_events(orphan.id))
        resumed = client.get(orphan.id)
        result = client.result(orphan.id)
    assert resumed["status"] == "succeeded" and resumed["attempt"] == 2
    assert [e.data["level"] for e in events if e.kind == "level_started"] == [1]
    assert [level["index"] for level in result["result"]["levels"]] == [0, 1]
    assert result["result"]["levels"][0] == level_0


def test_stopping_the_server_hands_a_running_job_back_to_the_queue(
    backend: Backend, engine_cache: Path, tmp_path: Path
) -> None:
    own_database = create_database() if backend.name == "postgres" else ""
    database_url = own_database or f"sqlite:///{tmp_path / 'stop.db'}"
    settings = settings_for(Backend(backend.name, database_url, None, "plot"),
                            tmp_path / "data", engine_cache)
    try:
        server = serve(settings)
        service = next(server)
        with client_for(service) as client:
            job = client.submit(LONG_SPEC)
            while client.get(job["id"])["current_level"] is None:
                time.sleep(0.05)
        server.close()  # the lifespan stops the runner
        engine = make_engine(database_url)
        with make_sessions(engine)() as session:
            stopped = session.get(Job, job["id"])
        engine.dispose()
        assert stopped is not None
        assert stopped.status == "queued" and stopped.attempt == 1
        assert stopped.lease_owner is None and stopped.error is None
    finally:
        if own_database:
            drop_database(own_database)
