"""ORM tables: api_keys, jobs, job_levels, datasets, nets (SQLAlchemy 2 Mapped[...])."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from api.db.base import Base, JsonDoc, StatusText, UtcDateTime
from workers.job_status import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


ID_PATTERN = r"^[0-9a-f]{32}$"


def new_id() -> str:
    return uuid.uuid4().hex


def is_resource_id(value: str) -> bool:
    """Job, dataset and model ids are 32 lowercase hex digits (a uuid4)."""
    return re.fullmatch(ID_PATTERN, value) is not None


Timestamp = UtcDateTime()


class ApiKey(Base):
    """An API key: only the sha256 of the token is stored; ``key_id`` is its public prefix."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64), index=True)
    role: Mapped[str] = mapped_column(String(16), default="user")  # user | admin
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class Job(Base):
    """A localization job and its lifecycle (transitions live in ``api.db.jobs``)."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_priority_created", "status", "priority", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[JobStatus] = mapped_column(StatusText(), default=JobStatus.QUEUED)
    spec: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    name: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # ",a,b,"; no Python-side default, so an insert that leaves it out works on any schema
    tags: Mapped[str] = mapped_column(String(600), server_default="")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    current_level: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress_stage: Mapped[str | None] = mapped_column(String(32), nullable=True)
    progress_done: Mapped[int] = mapped_column(Integer, default=0)
    progress_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc, nullable=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class JobLevel(Base):
    """One finished level of a job: its checkpoint (sites, coupling, handles, metrics, timings)."""

    __tablename__ = "job_levels"
    __table_args__ = (UniqueConstraint("job_id", "level", name="uq_job_levels_job_id_level"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    level: Mapped[int] = mapped_column(Integer)
    granularity: Mapped[str | None] = mapped_column(String(16), nullable=True)
    checkpoint: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Dataset(Base):
    """An uploaded counterfactual dataset, stored as ``{sha256}.jsonl`` under the data dir."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(255))
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(Integer)
    rows: Mapped[int] = mapped_column(Integer)
    variables: Mapped[dict[str, Any]] = mapped_column(JsonDoc)  # {"names": [...]}
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class RegisteredNet(Base):
    """A net directory registered under the model root, with its config and content digest."""

    __tablename__ = "nets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(64), index=True)
    path: Mapped[str] = mapped_column(String(1024))  # relative to the model root
    config: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


def join_tags(tags: list[str]) -> str:
    """Tags as the ``jobs.tags`` column holds them: ``,a,b,`` (``''`` when none)."""
    return f",{','.join(tags)}," if tags else ""


def split_tags(column: str | None) -> list[str]:
    return [tag for tag in (column or "").split(",") if tag]
