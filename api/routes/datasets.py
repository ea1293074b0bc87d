"""POST /v1/datasets (JSONL upload), GET /v1/datasets/{id}."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request, status

from api.db import datasets
from api.db.tables import Dataset
from api.deps import CallerDep, SessionDep, SettingsDep
from api.errors import InputError, TooLargeError
from api.routes.responses import errors
from api.schemas import DatasetPublic
from api.settings import Settings
from core.errors import DatasetError

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        # the bytes are read as they are, whatever the type: octet-stream lets generic
        # clients (and schemathesis) send a file
        "content": {media: {"schema": {"type": "string", "format": "binary"}}
                    for media in ("application/x-ndjson", "application/octet-stream")},
        "description": "JSONL rows {base, source, base_label, counterfactual_labels}",
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


@dataclass
class RowCounter:
    """Lines and the length of the current line of a JSONL body, fed chunk by chunk, so a
    huge row or too many rows is refused while the body is still arriving."""

    name: str
    max_row_bytes: int
    max_rows: int
    lines: int = 1  # the line being read, 1-based
    current: int = 0  # its bytes so far

    def feed(self, chunk: bytes) -> None:
        """Raises: DatasetError: a row over ``max_row_bytes`` or past ``max_rows`` lines
        (``where`` is ``name:line``)."""
        newlines = chunk.count(b"\n")
        if self.lines + newlines > self.max_rows + 1:
            self.too_many()
        if not newlines and self.current + len(chunk) <= self.max_row_bytes:
            self.current += len(chunk)  # the common case of a long row: no split
        else:
            for index, part in enumerate(chunk.split(b"\n")):
                if index:
                    self.lines, self.current = self.lines + 1, 0
                self.current += len(part)
                if self.current > self.max_row_bytes:
                    raise DatasetError(f"row over the {self.max_row_bytes}-byte limit "
                                       "(PLOT_MAX_DATASET_ROW_BYTES)",
                                       f"{self.name}:{self.lines}")
        if self.lines > self.max_rows and self.current:
            self.too_many()  # a last row without its newline

    def too_many(self) -> None:
        raise DatasetError(f"more than {self.max_rows} rows (PLOT_MAX_DATASET_ROWS)",
                           f"{self.name}:{self.max_rows + 1}")


async def read_dataset_body(request: Request, settings: Settings, name: str) -> bytes:
    """The JSONL body, counted by rows and row length as it streams in (its bytes are
    counted against PLOT_MAX_UPLOAD_BYTES by ``api.body_limit``, which answers the 413).

    Raises:
        DatasetError: a row too long or too many rows, naming its line.
    """
    counter = RowCounter(name, settings.max_dataset_row_bytes, settings.max_dataset_rows)
    chunks = []
    async for chunk in request.stream():
        counter.feed(chunk)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("", status_code=status.HTTP_201_CREATED, openapi_extra=UPLOAD_BODY,
             responses=errors(413, 429))
async def upload_dataset(
    request: Request, session: SessionDep, caller: CallerDep, settings: SettingsDep,
    name: Annotated[str, Query(min_length=1, max_length=255, pattern=r"^[\w.\-]+$")],
    model: Annotated[str | None, Query(max_length=64, description=(
        "a registered model id: text rows are tokenized with its tokenizer now (else when "
        "a job names a model)"))] = None,
) -> DatasetPublic:
    """Upload a counterfactual dataset; every row is validated (errors name ``name:line``).
    Inputs are numbers, or text for a registered model with a tokenizer: tokenized at
    upload when ``model`` names it, else when a job names both."""
    data = await read_dataset_body(request, settings, name)
    if not data.strip():
        raise InputError("the dataset is empty", "body")

    def store() -> Dataset:
        net = None
        if model is not None:  # loading a tokenizer reads files: off the event loop too
            net = (model, datasets.registered_net_text(
                session, caller, model, settings.resolved_model_root, "model"))
        return datasets.store_dataset(session, caller, name, data, settings.dataset_dir,
                                      settings.max_stored_bytes_per_owner, net)

    # validating rows is CPU work: in a worker thread, so the event loop keeps answering
    dataset = await anyio.to_thread.run_sync(store, limiter=request.app.state.body_parsers)
    return to_public(dataset)


@router.get("/{dataset_id}", responses=errors(404))
def get_dataset(dataset_id: str, session: SessionDep, caller: CallerDep) -> DatasetPublic:
    return to_public(datasets.get_dataset(session, caller, dataset_id))


def to_public(dataset: Dataset) -> DatasetPublic:
    return DatasetPublic(
        id=dataset.id, owner=dataset.owner, name=dataset.name, sha256=dataset.sha256,
        size_bytes=dataset.size_bytes, rows=dataset.rows,
        variables=list(dataset.variables.get("names", [])), text=datasets.is_text(dataset),
        tokenized_for=datasets.tokenized_for(dataset), created_at=dataset.created_at,
    )
