"""A succeeded job's result, stored once: its levels are the ``job_levels`` checkpoints, and
``jobs.result`` holds the rest (handles, timing, provenance, DAS, controls)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db.tables import JobLevel
from core.result import JobResult


def without_levels(result: dict[str, Any]) -> dict[str, Any]:
    """What ``jobs.result`` stores of a ``JobResult.to_json()`` document: all but its levels,
    which are stored already, one row each, as the job's checkpoints."""
    return {key: value for key, value in result.items() if key != "levels"}


def load_result(session: Session, job_id: str, stored: dict[str, Any]) -> JobResult:
    """The whole result of a succeeded job from ``stored`` (its ``jobs.result``) and its level
    checkpoints in index order; two queries' worth of rows, validated once.

    Raises:
        pydantic.ValidationError: the stored document is not a result.
    """
    levels = session.scalars(
        select(JobLevel.checkpoint).where(JobLevel.job_id == job_id).order_by(JobLevel.level)
    ).all()
    # a row written before results were stored once holds a copy of the levels: replaced
    return JobResult.model_validate({**stored, "levels": list(levels)})
