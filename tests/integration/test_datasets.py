"""Dataset uploads: validated row by row, stored under their sha256, owned."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from api.db.tables import Dataset
from core.causal.dataset import write_dataset
from core.causal.registry import build_task, make_banks
from core.spec import PairsSpec
from tests.integration.conftest import Service
from tests.integration.test_refusals import stored


@pytest.fixture(scope="module")
def heq_jsonl(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """30 hierarchical-equality pairs as JSONL (well under the 64 KiB test limit)."""
    banks = make_banks(build_task("hierarchical_equality"),
                       PairsSpec.model_validate({"fit": 30, "calibration": 2, "test": 2}))
    path = tmp_path_factory.mktemp("datasets") / "heq.jsonl"
    write_dataset(path, banks.fit)
    return path.read_bytes()


def test_upload_is_stored_under_its_sha256_and_owned(api_only: Service, heq_jsonl: bytes
                                                     ) -> None:
    with api_only.client("alice") as alice:
        response = alice.post("/v1/datasets", params={"name": "heq.jsonl"}, content=heq_jsonl)
        assert response.status_code == 201, response.text
        dataset = response.json()
        assert dataset["sha256"] == hashlib.sha256(heq_jsonl).hexdigest()
        assert dataset["rows"] == 30 and dataset["size_bytes"] == len(heq_jsonl)
        assert set(dataset["variables"]) == {"WX", "YZ"}
        stored_file = api_only.settings.dataset_dir / f"{dataset['sha256']}.jsonl"
        assert stored_file.read_bytes() == heq_jsonl
        assert alice.get(f"/v1/datasets/{dataset['id']}").json() == dataset
        job = alice.post("/v1/jobs", json={"task": {"dataset": dataset["id"]}})
        assert job.status_code == 201, job.text
    with api_only.client("bob") as bob:
        assert bob.get(f"/v1/datasets/{dataset['id']}").status_code == 404
        refused = bob.post("/v1/jobs", json={"task": {"dataset": dataset["id"]}})
        assert refused.status_code == 422 and refused.json()["where"] == "task.dataset"
    with api_only.client("admin") as admin:
        assert admin.get(f"/v1/datasets/{dataset['id']}").status_code == 200


@pytest.mark.parametrize("line", [1, 7, 30])
def test_a_bad_row_is_named_by_its_line_and_nothing_is_stored(
    api_only: Service, heq_jsonl: bytes, line: int
) -> None:
    rows = heq_jsonl.decode().splitlines()
    broken = json.loads(rows[line - 1])
    del broken["source"]
    rows[line - 1] = json.dumps(broken)
    before = stored(api_only)
    with api_only.client() as client:
        response = client.post("/v1/datasets", params={"name": "bad.jsonl"},
                               content="\n".join(rows).encode())
    assert response.status_code == 422
    record = response.json()
    assert record["type"] == "DatasetError" and record["where"] == f"bad.jsonl:{line}"
    assert stored(api_only) == before


def test_non_utf8_empty_and_unnamed_uploads_are_refused(api_only: Service) -> None:
    before = stored(api_only)
    with api_only.client() as client:
        assert client.post("/v1/datasets", params={"name": "x.jsonl"},
                           content=b"\xff\xfe").json()["type"] == "DatasetError"
        assert client.post("/v1/datasets", params={"name": "x.jsonl"},
                           content=b"  \n").status_code == 422
        assert client.post("/v1/datasets", content=b"{}").status_code == 422  # no name
        assert client.post("/v1/datasets", params={"name": "../etc/passwd"},
                           content=b"{}").status_code == 422
    assert stored(api_only) == before


def test_the_same_bytes_are_stored_once(api_only: Service, heq_jsonl: bytes) -> None:
    with api_only.client() as client:
        first = client.post("/v1/datasets", params={"name": "a.jsonl"}, content=heq_jsonl)
        second = client.post("/v1/datasets", params={"name": "b.jsonl"}, content=heq_jsonl)
    assert first.json()["id"] != second.json()["id"]
    assert first.json()["sha256"] == second.json()["sha256"]
    files = list(Path(api_only.settings.dataset_dir).iterdir())
    assert [f.name for f in files] == [f"{first.json()['sha256']}.jsonl"]
    with api_only.app.state.sessions() as session:
        assert session.query(Dataset).count() == 2


def test_an_owners_stored_datasets_are_capped(api_only: Service, heq_jsonl: bytes) -> None:
    """The api_only fixture allows 100 KiB per owner; each upload here is about 22 KB."""
    fits = 100 * 1024 // len(heq_jsonl)
    with api_only.client("alice") as alice, api_only.client("bob") as bob:
        for i in range(fits):
            assert alice.post("/v1/datasets", params={"name": f"{i}.jsonl"},
                              content=heq_jsonl).status_code == 201
        before = stored(api_only)
        refused = alice.post("/v1/datasets", params={"name": "over.jsonl"}, content=heq_jsonl)
        assert refused.status_code == 429 and refused.json()["type"] == "QuotaError"
        assert stored(api_only) == before
        assert bob.post("/v1/datasets", params={"name": "b.jsonl"},
                        content=heq_jsonl).status_code == 201
