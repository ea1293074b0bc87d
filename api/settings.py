"""Deployment settings (PLOT_* environment); built only in entrypoints and passed down."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """``$XDG_DATA_HOME/plot``, else ``~/.local/share/plot``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "plot"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    """Where state lives and the service's limits. Unset URLs select the embedded parts:
    a SQLite file in ``data_dir`` and an in-process event bus."""

    model_config = SettingsConfigDict(env_prefix="PLOT_", extra="forbid")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = Field(default="plot", pattern=r"^[A-Za-z0-9_.-]+$")
    model_root: Path | None = None
    cache_dir: Path | None = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allow_remote: bool = Field(default=False, description="serve on a non-loopback address")
    run_jobs: bool = Field(default=True,
                           description="run queued jobs in this process (a runner thread)")
    max_upload_bytes: int = Field(default=50 * 2**20, ge=1)
    max_stored_bytes_per_owner: int = Field(
        default=2 * 2**30, ge=1, description="total size of one owner's uploaded datasets"
    )
    max_queued_jobs_per_owner: int = Field(default=20, ge=1)
    events_maxlen: int = Field(default=10_000, ge=100)
    max_event_streams: int = Field(
        default=256, ge=1, description="SSE streams reading at once (own thread limiter, so "
        "open streams never starve ordinary requests)",
    )
    ray_address: str | None = Field(
        default=None, description="run interventions on Ray: 'local' starts one in this "
        "process, else a cluster address (ray://… or host:port); unset: in this process")
    ray_actors: int = Field(default=0, ge=0, description="intervention actors; 0: one per "
                            "GPU, or 2 CPU actors without GPUs")
    ray_num_cpus: int | None = Field(default=None, ge=1, description="CPUs of a local Ray")
    scheduler_slots: int | None = Field(
        default=None, ge=1, description="jobs `plot scheduler` runs at once; unset: one per "
        "GPU of the Ray cluster that is free or held by its actors, or 2 without GPUs")
    max_running_jobs_per_owner: int = Field(default=1, ge=1)
    lease_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    poll_s: float = Field(default=0.5, gt=0, description="runner's idle poll interval")

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if not is_loopback(self.host) and not self.allow_remote:
            raise ValueError(
                f"host {self.host} is not loopback; set PLOT_ALLOW_REMOTE=true to expose the API"
            )
        if not is_loopback(self.host) and self.database_url is None:
            raise ValueError("a non-loopback API needs PLOT_DATABASE_URL (not the SQLite default)")
        root = self.resolved_model_root
        if root == Path(root.anchor) or root == Path.home().resolve():
            raise ValueError(f"model_root {root} would expose a whole file system tree")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'plot.db'}"

    @property
    def resolved_model_root(self) -> Path:
        return (self.model_root or self.data_dir / "models").expanduser().resolve()

    @property
    def resolved_cache_dir(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").expanduser().resolve()

    @property
    def dataset_dir(self) -> Path:
        """Uploaded datasets, stored as ``{sha256}.jsonl``; the engine's ``data_root``."""
        return (self.data_dir / "datasets").expanduser().resolve()

    def make_dirs(self) -> None:
        for path in (self.data_dir, self.resolved_model_root, self.resolved_cache_dir,
                     self.dataset_dir):
            path.mkdir(parents=True, exist_ok=True)
