"""Deployment settings (PLOT_* environment); built only in entrypoints and passed down."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import replace
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.admission import DEFAULT_LIMITS, AdmissionLimits

PLACEHOLDER_SECRET = "change-me"  # .env.example's value; a deployment refuses it
DATABASE_SCHEMES = ("postgresql", "sqlite")


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
    database_password: SecretStr | None = Field(
        default=None, description="the database password, kept out of PLOT_DATABASE_URL (a "
        "secret); required by a deployed service (PLOT_ALLOW_REMOTE) on Postgres")
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
    # --- admission control: one job's budgets (core.admission.AdmissionLimits, whose
    # docstring sizes each default for one GPU); a spec over one is refused with 422 before
    # it is stored. README "Limits" lists them.
    max_pairs_per_bank: int = Field(default=DEFAULT_LIMITS.max_pairs_per_bank, ge=2)
    max_levels: int = Field(default=DEFAULT_LIMITS.max_levels, ge=1)
    max_sites_per_level: int = Field(default=DEFAULT_LIMITS.max_sites_per_level, ge=1)
    max_calibration_candidates: int = Field(
        default=DEFAULT_LIMITS.max_calibration_candidates, ge=1)
    max_forward_passes: int = Field(default=DEFAULT_LIMITS.max_forward_passes, ge=1)
    max_trace_bytes: int = Field(default=DEFAULT_LIMITS.max_trace_bytes, ge=1)
    max_das_trainings: int = Field(default=DEFAULT_LIMITS.max_das_trainings, ge=0)
    max_permutations: int = Field(default=DEFAULT_LIMITS.max_permutations, ge=1)
    max_coupling_iterations: int = Field(default=DEFAULT_LIMITS.max_coupling_iterations,
                                         ge=1)
    max_net_parameters: int = Field(default=DEFAULT_LIMITS.max_net_parameters, ge=1)
    owner_limits: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="per-owner budgets, JSON: {\"alice\": "
        "{\"max_forward_passes\": 100000000}}; an owner's job must fit both the deployment's "
        "budgets and its own")
    events_maxlen: int = Field(default=10_000, ge=100, description="events kept per job "
                               "stream (older ones are trimmed)")
    events_ttl_s: int = Field(default=7 * 24 * 3600, ge=60, description="a job's Redis "
                              "stream expires this long after its last event")
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
    ray_idle_release_s: float = Field(
        default=0.0, ge=0, description="`plot scheduler`: after this long without a running "
        "job, keep one intervention actor (the autoscaler can take the GPU nodes back) and "
        "start the rest again when work returns; 0: never")
    scheduler_slots: int | None = Field(
        default=None, ge=1, description="jobs `plot scheduler` runs at once; unset: one per "
        "GPU of the Ray cluster that is free or held by its actors, or 2 without GPUs")
    max_running_jobs_per_owner: int = Field(default=1, ge=1)
    lease_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=3, ge=1)
    poll_s: float = Field(default=0.5, gt=0, description="runner's idle poll interval")
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per line (with job_id)")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(default=0, ge=0, le=65535, description="`plot scheduler` "
                              "serves Prometheus metrics on PLOT_HOST:this port (0: off)")
    # Request limits: every body is counted as it streams in (413 past the limit), and
    # YAML specs and JSONL datasets are parsed in a worker thread within these bounds.
    max_json_bytes: int = Field(default=2**20, ge=1024, description="a JSON or YAML request "
                                "body (uploads have PLOT_MAX_UPLOAD_BYTES)")
    max_yaml_depth: int = Field(default=32, ge=2, le=256, description="nesting of a YAML spec")
    max_dataset_row_bytes: int = Field(default=64 * 2**10, ge=256, description="one JSONL "
                                       "row of an uploaded dataset")
    max_dataset_rows: int = Field(default=200_000, ge=1, description="rows of one uploaded "
                                  "dataset")

    @field_validator("owner_limits")
    @classmethod
    def _known_budgets(cls, value: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
        known = set(AdmissionLimits.__dataclass_fields__)
        for owner, budgets in value.items():
            unknown = sorted(set(budgets) - known)
            if unknown:
                raise ValueError(f"{owner}: no budget named {', '.join(unknown)} (known: "
                                 f"{', '.join(sorted(known))})")
            if any(v < 0 for v in budgets.values()):
                raise ValueError(f"{owner}: budgets are counts (>= 0)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a database URL (postgresql+psycopg://user@host/db or "
                             "sqlite:///path)") from None
        if url.get_backend_name() not in DATABASE_SCHEMES:
            raise ValueError(f"unsupported database {url.get_backend_name()!r} (postgresql or "
                             "sqlite)")
        return value

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
        self._check_database_secret()
        return self

    def _check_database_secret(self) -> None:
        url = make_url(self.database_url) if self.database_url else None
        if url is not None and url.password is not None and self.database_password is not None:
            raise ValueError("the database password is given twice: in PLOT_DATABASE_URL and "
                             "PLOT_DATABASE_PASSWORD")
        if url is None or url.get_backend_name() != "postgresql" or not self.allow_remote:
            return
        password = (url.password if url.password is not None else
                    self.database_password.get_secret_value() if self.database_password
                    else "")
        if not password:
            raise ValueError("PLOT_DATABASE_PASSWORD is not set: a deployed service "
                             "(PLOT_ALLOW_REMOTE=true) needs the database password")
        if password == PLACEHOLDER_SECRET:
            raise ValueError("PLOT_DATABASE_PASSWORD is still the example's placeholder "
                             f"{PLACEHOLDER_SECRET!r}; set a real secret")

    @property
    def admission_limits(self) -> AdmissionLimits:
        """The budgets ``POST /v1/jobs`` admits a job under (the ``max_*`` of its block)."""
        return AdmissionLimits(**{name: getattr(self, name)
                                  for name in AdmissionLimits.__dataclass_fields__})

    def admission_limits_for(self, owner: str) -> AdmissionLimits:
        """The deployment's budgets, each lowered to the owner's own where it has one."""
        limits = self.admission_limits
        own = self.owner_limits.get(owner, {})
        return replace(limits, **{name: min(value, getattr(limits, name))
                                  for name, value in own.items()})

    @property
    def resolved_database_url(self) -> str:
        """The URL to connect with (PLOT_DATABASE_PASSWORD filled in)."""
        if self.database_url is None:
            return f"sqlite:///{self.data_dir / 'plot.db'}"
        if self.database_password is None:
            return self.database_url
        url: URL = make_url(self.database_url).set(
            password=self.database_password.get_secret_value())
        return url.render_as_string(hide_password=False)

    @property
    def database_display(self) -> str:
        """The database URL with its password hidden, for messages and logs."""
        return make_url(self.resolved_database_url).render_as_string(hide_password=True)

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


def describe_settings_error(error: ValidationError) -> str:
    """One line naming each bad PLOT_* variable (no traceback), e.g.
    ``PLOT_PORT: Input should be a valid integer (got 'abc')``."""
    parts = []
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        name = f"PLOT_{loc[0].upper()}: " if loc else ""
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        value = item.get("input")
        # URLs and passwords may hold a secret: never echo them
        shown = (f" (got {value!r})" if loc and isinstance(value, str | int | float)
                 and not loc[0].endswith(("url", "password")) else "")
        parts.append(f"{name}{message}{shown}")
    return "configuration: " + "; ".join(parts)
