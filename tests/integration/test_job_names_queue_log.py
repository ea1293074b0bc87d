"""Job names and tags (stored, listed, filtered), the queue everyone may see (positions and
owners' counts, other owners' jobs without ids or specs) and a job's log in words."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import auth
from api.app import create_app
from api.settings import Settings
from tests.integration.conftest import TINY_SPEC, create_database, drop_database


@pytest.fixture(scope="module", params=["postgres", "sqlite"])
def client(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[TestClient]:
    """An API replica that runs no jobs (they stay queued), on a database of its own, one
    per module: each test uses owners of its own."""
    tmp_path = tmp_path_factory.mktemp("names")
    url = f"sqlite:///{tmp_path / 'names.db'}"
    if request.param == "postgres":
        url = create_database()
    settings = Settings(data_dir=tmp_path / "data", database_url=url, run_jobs=False,
                        cache_dir=tmp_path / "cache")
    try:
        with TestClient(create_app(settings)) as client:
            yield client
    finally:
        if request.param == "postgres":
            drop_database(url)


def keys(client: TestClient, *owners: str) -> dict[str, dict[str, str]]:
    """Keys for ``owners`` and an admin ("root")."""
    with client.app.state.sessions() as session:  # type: ignore[attr-defined]
        return {who: {"Authorization": f"Bearer {auth.create_key(session, who, role)[1]}"}
                for who, role in [*((o, "user") for o in owners), ("root", "admin")]}


def test_names_and_tags_are_listed_and_filtered(client: TestClient) -> None:
    alice = keys(client, "alice")["alice"]
    submitted = {}
    for name, tags in (("Baseline run", ["heq", "a_b"]), ("second", ["heq", "axb"]),
                       (None, [])):
        body = {**TINY_SPEC, "name": name, "tags": tags} if name else TINY_SPEC
        job = client.post("/v1/jobs", json=body, headers=alice)
        assert job.status_code == 201, job.text
        submitted[name] = job.json()
    assert submitted["Baseline run"]["name"] == "Baseline run"
    assert submitted["Baseline run"]["tags"] == ["heq", "a_b"]
    assert submitted[None]["name"] is None and submitted[None]["tags"] == []

    def ids(query: str) -> set[str]:
        page = client.get(f"/v1/jobs?{query}", headers=alice)
        assert page.status_code == 200, page.text
        return {item["id"] for item in page.json()["items"]}

    assert ids("tag=heq") == {submitted["Baseline run"]["id"], submitted["second"]["id"]}
    assert ids("tag=a_b") == {submitted["Baseline run"]["id"]}  # "_" is no wildcard
    assert ids("tag=he") == set()  # whole tags only
    assert ids("name=BASELINE") == {submitted["Baseline run"]["id"]}
    nul = client.get("/v1/jobs", params={"tag": "a\x00b"}, headers=alice)
    assert nul.status_code == 422 and nul.json()["where"] == "tag"
    bad = client.post("/v1/jobs", json={**TINY_SPEC, "tags": ["has space"]}, headers=alice)
    assert bad.status_code == 422 and bad.json()["where"].startswith("tags")


def test_the_queue_shows_places_and_counts_but_not_other_owners_jobs(
        client: TestClient) -> None:
    headers = keys(client, "carol", "dave")
    mine = [client.post("/v1/jobs", json={**TINY_SPEC, "name": f"carol {i}"},
                        headers=headers["carol"]).json() for i in range(2)]
    theirs = client.post("/v1/jobs", json={**TINY_SPEC, "name": "secret"},
                         headers=headers["dave"]).json()
    queue = client.get("/v1/jobs/queue", headers=headers["carol"])
    assert queue.status_code == 200, queue.text
    body = queue.json()
    assert body["queued"] >= 3  # other tests' owners may have jobs queued too
    assert [entry["position"] for entry in body["entries"]] == list(range(body["queued"]))
    dave = [entry for entry in body["entries"] if entry["owner"] == "dave"]
    assert dave == [{"position": dave[0]["position"], "owner": "dave", "mine": False,
                     "job_id": None, "name": None}]
    assert theirs["id"] not in queue.text and "secret" not in queue.text
    own = {entry["job_id"] for entry in body["entries"] if entry["mine"]}
    assert own == {job["id"] for job in mine}
    loads = {(o["owner"], o["queued"], o["running"]) for o in body["owners"]}
    assert {("carol", 2, 0), ("dave", 1, 0)} <= loads
    admin = client.get("/v1/jobs/queue", headers=headers["root"]).json()
    assert theirs["id"] in {entry["job_id"] for entry in admin["entries"]}


def test_a_jobs_log_tells_its_life_in_words(client: TestClient) -> None:
    headers = keys(client, "erin", "frank")
    job = client.post("/v1/jobs", json=TINY_SPEC, headers=headers["erin"]).json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=headers["erin"])
    log = client.get(f"/v1/jobs/{job['id']}/log", headers=headers["erin"])
    assert log.status_code == 200, log.text
    lines = log.json()["lines"]
    assert lines[0]["kind"] == "submitted" and "erin" in lines[0]["text"]
    cancelled = [line for line in lines if line["kind"] == "cancelled"]
    assert cancelled and {line["level"] for line in cancelled} == {"warning"}
    assert any(line["source"] == "event" for line in lines), lines
    assert client.get(f"/v1/jobs/{job['id']}/log", headers=headers["frank"]).status_code == 404
