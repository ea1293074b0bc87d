"""Settings refuse unsafe deployments; readiness reports a dead Redis; metrics count jobs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from api.settings import Settings
from tests.integration.conftest import TINY_SPEC, Backend, Service, free_port, serve


@pytest.mark.parametrize("overrides", [
    {"host": "0.0.0.0"},
    {"host": "10.1.2.3", "allow_remote": True},  # remote, but still on the SQLite default
    {"model_root": "/"},
    {"model_root": str(Path.home())},
    {"max_upload_bytes": 0},
    {"redis_prefix": "plot:job"},
])
def test_unsafe_settings_are_refused(tmp_path: Path, overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]


def test_defaults_are_embedded_under_the_data_dir(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLOT_DATA_DIR", str(tmp_path))
    settings = Settings()
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'plot.db'}"
    assert settings.redis_url is None and settings.host == "127.0.0.1"
    assert settings.resolved_model_root == (tmp_path / "models").resolve()
    remote = Settings(host="0.0.0.0", allow_remote=True,
                      database_url="postgresql+psycopg://plot@db/plot",
                      database_password="s3cret/@")  # type: ignore[arg-type]
    assert remote.host == "0.0.0.0"


def test_the_database_secret_is_filled_into_the_url_and_hidden_from_messages(
        tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, allow_remote=True,
                        database_url="postgresql+psycopg://plot@db:5432/plot",
                        database_password="s3cret/@")  # type: ignore[arg-type]
    assert settings.resolved_database_url == "postgresql+psycopg://plot:s3cret%2F%40@db:5432/plot"
    assert settings.database_display == "postgresql+psycopg://plot:***@db:5432/plot"
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValidationError, match="is not set"):  # deployed, no password
        Settings(data_dir=tmp_path, allow_remote=True,
                 database_url="postgresql+psycopg://plot@db/plot")
    with pytest.raises(ValidationError, match="given twice"):
        Settings(data_dir=tmp_path, database_url="postgresql+psycopg://plot:a@db/plot",
                 database_password="b")  # type: ignore[arg-type]
    # on this machine (loopback, no PLOT_ALLOW_REMOTE) a trust-auth Postgres needs none
    assert Settings(data_dir=tmp_path, database_url="postgresql+psycopg://plot@db/plot")


@pytest.fixture
def redis_down(tmp_path: Path) -> Iterator[Service]:
    """An API whose Redis URL points at a closed port."""
    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'down.db'}",
                      f"redis://127.0.0.1:{free_port()}/0", "plot-down")
    settings = Settings(data_dir=tmp_path / "data", database_url=backend.database_url,
                        redis_url=backend.redis_url, redis_prefix=backend.redis_prefix,
                        port=free_port(), run_jobs=False)
    yield from serve(settings)


def test_readiness_names_a_dead_redis_and_jobs_are_still_accepted(redis_down: Service
                                                                  ) -> None:
    assert httpx.get(f"{redis_down.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{redis_down.url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["type"] == "UnavailableError" and ready.json()["where"] == "events"
    with redis_down.client() as client:
        job = client.post("/v1/jobs", json=TINY_SPEC)
        assert job.status_code == 201  # the row is the truth; the queued event is best-effort
        assert client.get(f"/v1/jobs/{job.json()['id']}").json()["status"] == "queued"


def test_metrics_count_submissions_and_requests(api_only: Service) -> None:
    with api_only.client() as client:
        for _ in range(2):
            assert client.post("/v1/jobs", json=TINY_SPEC).status_code == 201
        assert client.get("/v1/jobs/0123").status_code == 404
    text = httpx.get(f"{api_only.url}/metrics").text
    assert "plot_jobs_submitted_total 2.0" in text
    assert ('plot_http_requests_total{method="POST",route="/v1/jobs",status="201"} 2.0'
            in text)
    assert ('plot_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} 1.0'
            in text)
