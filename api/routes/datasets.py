"""POST /v1/datasets (JSONL upload), GET /v1/datasets/{id}."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from api.db import datasets
from api.db.tables import Dataset
from api.deps import CallerDep, SessionDep, SettingsDep
from api.errors import InputError, TooLargeError
from api.routes.responses import errors
from api.schemas import DatasetPublic

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/x-ndjson": {"schema": {"type": "string", "format": "binary"}}},
        "description": "JSONL rows {variable, base, source, base_label, counterfactual_label}",
    }
}


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes ``limit`` bytes.

    Raises:
        TooLargeError: over the limit (by Content-Length or by what arrived).
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"{declared} bytes is over the {limit}-byte limit", "body")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLargeError(f"over the {limit}-byte limit", "body")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=UPLOAD_BODY,
             responses=errors(413, 429))
async def upload_dataset(
    request: Request, session: SessionDep, caller: CallerDep, settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=255, pattern=r"^[\w.\-]+$")],
) -> DatasetPublic:
    """Upload a counterfactual dataset; every row is validated (errors name ``name:line``)."""
    data = await read_limited(request, settings.max_upload_bytes)
    if not data.strip():
        raise InputError("the dataset is empty", "body")
    dataset = datasets.store_dataset(session, caller, name, data, settings.dataset_dir,
                                     settings.max_stored_bytes_per_owner)
    return to_public(dataset)


@router.get("/{dataset_id}", responses=errors(404))
def get_dataset(dataset_id: str, session: SessionDep, caller: CallerDep) -> DatasetPublic:
    return to_public(datasets.get_dataset(session, caller, dataset_id))


def to_public(dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id, owner=dataset.owner, name=dataset.name, sha256=dataset.sha256,
        size_bytes=dataset.size_bytes, rows=dataset.rows,
        variables=list(dataset.variables.get("names", [])), created_at=dataset.created_at,
    )
