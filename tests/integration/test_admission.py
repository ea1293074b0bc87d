"""Admission control at ``POST /v1/jobs``: the issue's absurd specs are 422s naming the
field, its value and the limit, and none of them is stored."""

from __future__ import annotations

from tests.integration.conftest import TINY_SPEC, Service
from tests.unit.core.test_admission import ABSURD, HEQ


def test_the_absurd_specs_are_422_and_nothing_is_stored(api_only: Service) -> None:
    with api_only.client() as client:
        for extra, where, value, limit in ABSURD:
            response = client.post("/v1/jobs", json={**HEQ, **extra})
            assert response.status_code == 422, (where, response.text[:300])
            record = response.json()
            assert record["type"] == "SpecError", record
            text = f"{record['where']}: {record['message']}"
            assert where in text and value in text.replace(",", "") and limit in text, text
        listed = client.get("/v1/jobs").json()
    assert listed["total"] == 0 and listed["items"] == []


def test_a_deployment_budget_is_the_services_setting(api_only: Service) -> None:
    """PLOT_MAX_PAIRS_PER_BANK and friends reach the route (the fixture keeps defaults)."""
    limits = api_only.settings.admission_limits
    body = {**TINY_SPEC, "pairs": {"fit": limits.max_pairs_per_bank + 1}}
    with api_only.client() as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422
        assert response.json()["where"] == "pairs.fit"
        assert "max_pairs_per_bank" in response.json()["message"]
        assert client.post("/v1/jobs", json=TINY_SPEC).status_code == 201
        assert client.get("/v1/jobs").json()["total"] == 1


def test_an_owners_budget_lowers_the_deployments_for_that_owner_only(
        api_only: Service) -> None:
    # PLOT_OWNER_LIMITS='{"alice": {"max_pairs_per_bank": 150}}' (the fixture's settings
    # object is the app's own: the route reads it per request)
    api_only.settings.owner_limits = {"alice": {"max_pairs_per_bank": 150}}
    with api_only.client("alice") as alice:
        refused = alice.post("/v1/jobs", json=TINY_SPEC)  # 200 pairs per bank
        assert refused.status_code == 422, refused.text
        assert refused.json()["where"] == "pairs.fit"
        assert "150" in refused.json()["message"]
        assert alice.get("/v1/jobs").json()["total"] == 0
    with api_only.client("bob") as bob:
        assert bob.post("/v1/jobs", json=TINY_SPEC).status_code == 201
