"""HTTP input/output schemas (the job request body itself is core.spec.JobSpec)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.result import JobResult
from workers.job_status import JobStatus


class ErrorPublic(BaseModel):
    """The error record every non-2xx response carries."""

    type: str = Field(examples=["SpecError"])
    message: str
    where: str | None = Field(None, examples=["coupling.epsilons.0"])


class ProgressPublic(BaseModel):
    stage: str | None = Field(None, description="signatures | calibration | …")
    done: int
    total: int


class JobPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner: str
    name: str | None = Field(None, description="the spec's display name")
    tags: list[str] = Field(default_factory=list, description="the spec's tags")
    status: JobStatus
    priority: int
    attempt: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    current_level: int | None = Field(description="index of the level being run")
    levels_done: int
    progress: ProgressPublic
    queue_position: int | None = Field(description="queued jobs claimed before this one in the "
                                       "fair-share order as the queue stands (0: next)")
    eta_s: float | None = Field(description="rough seconds left in the current stage")
    error: ErrorPublic | None
    spec: dict[str, Any]


class JobPage(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class LogLinePublic(BaseModel):
    ts: datetime | None
    source: Literal["job", "event"] = Field(description="job: the job's row (submitted, "
                                            "started, ended); event: its progress stream")
    kind: str
    level: Literal["info", "warning", "error"]
    text: str


class JobLogPublic(BaseModel):
    job_id: str
    lines: list[LogLinePublic]
    events: Literal["ok", "unavailable"] = Field(description="unavailable: the event bus "
                                                 "could not be read; only the row's lines")


class QueueEntryPublic(BaseModel):
    position: int = Field(description="0: claimed next, in the fair-share order as it stands")
    owner: str
    mine: bool
    job_id: str | None = Field(description="null for another owner's job")
    name: str | None


class OwnerLoadPublic(BaseModel):
    owner: str
    queued: int
    running: int


class QueuePublic(BaseModel):
    queued: int
    entries: list[QueueEntryPublic]
    owners: list[OwnerLoadPublic]


class ResultPublic(BaseModel):
    job_id: str
    result: JobResult = Field(description="every level (sites, cost, coupling, handles, "
                              "diagnostics), the best handle per variable, timing, provenance, "
                              "and the DAS baseline and controls when they ran")


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner: str
    name: str
    sha256: str
    size_bytes: int
    rows: int
    variables: list[str]
    text: bool = Field(False, description="inputs are text, tokenized with a registered "
                       "model's tokenizer")
    tokenized_for: list[str] = Field(default_factory=list, description="registered model "
                                     "ids whose tokenizer read (and fits) every row")
    created_at: datetime


class NetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="net directory relative to the server's model root "
                      "(no control characters; each part at most 255 characters)",
                      min_length=1, max_length=1024)

    @field_validator("path")
    @classmethod
    def _plain_path(cls, value: str) -> str:
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise ValueError("control characters (NUL included) are not allowed in a path")
        if any(len(part.encode()) > 255 for part in value.split("/")):
            raise ValueError("a part of the path is over 255 bytes")
        return value


class NetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    owner: str
    path: str
    config: dict[str, Any]
    sha256: str
    created_at: datetime


class HealthPublic(BaseModel):
    status: Literal["ok"]


class ReadyPublic(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    events: Literal["ok"]
