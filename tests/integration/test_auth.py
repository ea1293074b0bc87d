"""API keys: only hashes stored; unknown, malformed and revoked keys are 401."""

from __future__ import annotations

from sqlalchemy import select

from api import auth
from api.db.tables import ApiKey
from tests.integration.conftest import Service


def test_only_the_token_hash_is_stored(api_only: Service) -> None:
    token = api_only.new_key("dave")
    key_id = token.split("_")[1]
    with api_only.app.state.sessions() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.key_id == key_id)).one()
        assert row.token_sha256 == auth.hash_token(token)
        assert token not in (row.token_sha256, row.key_id)


def test_missing_malformed_unknown_and_revoked_keys_are_refused(api_only: Service) -> None:
    token = api_only.new_key("erin")
    with api_only.client("") as anonymous:
        assert anonymous.get("/v1/jobs").status_code == 401
        for bad in ["nope", "plot_x", token[:-2] + "xx", "plot_000000000000_secret"]:
            response = anonymous.get("/v1/jobs", headers={"Authorization": f"Bearer {bad}"})
            assert response.status_code == 401, bad
            assert response.json()["type"] == "AuthError"
        good = {"Authorization": f"Bearer {token}"}
        assert anonymous.get("/v1/jobs", headers=good).status_code == 200
        with api_only.app.state.sessions() as session:
            auth.revoke_key(session, token.split("_")[1])
        revoked = anonymous.get("/v1/jobs", headers=good)
        assert revoked.status_code == 401 and "revoked" in revoked.json()["message"]
