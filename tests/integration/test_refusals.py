"""Refused requests: the right status and error record, and nothing stored changes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from api.db.tables import Dataset, Job, RegisteredNet
from tests.integration.conftest import TINY_SPEC, Service


def stored(service: Service) -> dict[str, Any]:
    """Counts of every owned table and the files under the dataset directory."""
    with service.app.state.sessions() as session:
        counts = {table.__name__: session.scalar(select(func.count()).select_from(table))
                  for table in (Job, Dataset, RegisteredNet)}
    files = sorted(p.name for p in service.settings.dataset_dir.iterdir())
    return {**counts, "files": files}


def test_oversize_upload_is_413_and_stores_nothing(api_only: Service) -> None:
    before = stored(api_only)
    body = b'{"variable": "WX"}\n' * 4000  # over the 64 KiB limit
    with api_only.client() as client:
        response = client.post("/v1/datasets", params={"name": "big.jsonl"}, content=body)
        assert response.status_code == 413
        assert response.json()["type"] == "TooLargeError"

        def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
            yield from (body[i:i + 8192] for i in range(0, len(body), 8192))

        streamed = client.post("/v1/datasets", params={"name": "big.jsonl"}, content=chunks())
        assert streamed.status_code == 413
    assert stored(api_only) == before


def test_invalid_specs_are_422_naming_the_field_and_store_nothing(api_only: Service) -> None:
    before = stored(api_only)
    cases = [
        ({**TINY_SPEC, "coupling": {"epsilons": [0.03, -1]}}, "coupling"),
        ({**TINY_SPEC, "pairs": {"fit": 1}}, "pairs.fit"),
        ({**TINY_SPEC, "typo": 1}, "typo"),
        ({**TINY_SPEC, "model": {"path": "nets/mlp"}}, "model.path"),
        ({**TINY_SPEC, "model": {"id": "nope"}}, "model.id"),
        ({"task": {"dataset": "no-such-id"}}, "task.dataset"),
        ({**TINY_SPEC, "task": {"builtin": "hierarchical_equality", "params": {"a": "\x00"}}},
         "task.params.a"),
    ]
    with api_only.client() as client:
        for body, where in cases:
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 422, body
            record = response.json()
            assert record["type"] == "SpecError" and record["where"] == where, record
        assert client.post("/v1/jobs", content=b"{not json").status_code == 422
    assert stored(api_only) == before


def test_queued_job_limit_per_owner_is_429(api_only: Service) -> None:
    with api_only.client("alice") as alice, api_only.client("bob") as bob:
        for _ in range(3):
            assert alice.post("/v1/jobs", json=TINY_SPEC).status_code == 201
        before = stored(api_only)
        refused = alice.post("/v1/jobs", json=TINY_SPEC)
        assert refused.status_code == 429 and refused.json()["type"] == "QuotaError"
        assert stored(api_only) == before
        bobs = bob.post("/v1/jobs", json=TINY_SPEC)
        assert bobs.status_code == 201  # per owner
        queued = alice.get("/v1/jobs", params={"status": "queued"}).json()
        # fair share: bob's one job is claimed right after alice's first
        assert sorted(j["queue_position"] for j in queued["items"]) == [0, 2, 3]
        assert bob.get(f"/v1/jobs/{bobs.json()['id']}").json()["queue_position"] == 1
        first = queued["items"][-1]["id"]
        assert alice.post(f"/v1/jobs/{first}/cancel").json()["status"] == "cancelled"
        assert alice.post("/v1/jobs", json=TINY_SPEC).status_code == 201


def test_model_paths_outside_the_root_are_refused(api_only: Service, tmp_path: Any) -> None:
    root = api_only.settings.resolved_model_root
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "escape").symlink_to(outside)
    before = stored(api_only)
    with api_only.client() as client:
        for path in ["/etc", "../outside", "escape", "missing", "."]:
            response = client.post("/v1/models", json={"path": path})
            assert response.status_code == 422, path
            assert response.json()["type"] == "ModelLoadError"
            assert response.json()["where"] == "path"
    assert stored(api_only) == before


def test_bad_last_event_id_is_422(api_only: Service) -> None:
    with api_only.client() as client:
        job = client.post("/v1/jobs", json=TINY_SPEC).json()
        response = client.get(f"/v1/jobs/{job['id']}/events",
                              headers={"Last-Event-ID": "yesterday"})
        assert response.status_code == 422
        assert response.json()["where"] == "Last-Event-ID"

