"""With the event bus down (Redis unreachable), submitting and cancelling still succeed: the
job row is the truth, and one log line (no traceback) says what was not published."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from api.settings import Settings
from tests.integration.conftest import TINY_SPEC, free_port, serve


def test_submit_and_cancel_succeed_while_the_bus_is_down(
        tmp_path: Path, engine_cache: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path}/b.db",
                        redis_url="redis://127.0.0.1:1/0", cache_dir=engine_cache,
                        port=free_port(), run_jobs=False)
    caplog.set_level(logging.WARNING, logger="api.routes.jobs")
    for service in serve(settings):
        with service.client("alice") as alice:
            submitted = alice.post("/v1/jobs", json=TINY_SPEC)
            assert submitted.status_code == 201, submitted.text
            job_id = submitted.json()["id"]
            cancelled = alice.post(f"/v1/jobs/{job_id}/cancel")
            assert cancelled.status_code == 200, cancelled.text
            assert alice.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    lines = [r for r in caplog.records if "not published" in r.getMessage()]
    assert len(lines) == 2 and all(r.exc_info is None for r in lines)
