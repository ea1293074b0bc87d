"""The dashboard: static files at ``/`` and ``/static``, and the YAML-to-JSON step its spec
form uses (the browser parses JSON itself; YAML goes through ``api.spec_yaml`` here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from pydantic_core import PydanticSerializationError

from api.deps import CallerDep, SettingsDep
from api.errors import InputError
from api.routes.datasets import read_limited
from api.routes.responses import errors
from api.spec_yaml import parse_yaml_spec

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
MAX_SPEC_BYTES = 256 * 1024
# Scripts, styles and data come only from this origin; nothing is fetched from elsewhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}

router = APIRouter(tags=["dashboard"])

YAML_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/yaml": {"schema": {"type": "string"}}},
        "description": "a job spec as YAML (anchors and aliases are refused)",
    }
}


class ParsedSpec(BaseModel):
    spec: dict[str, Any] = Field(description="the YAML document as JSON, not yet validated")


def render_yaml_spec(data: bytes, max_depth: int) -> bytes:
    """The ``ParsedSpec`` JSON of a YAML body (parse and serialisation: blocking CPU work).

    Raises:
        InputError: see ``parse_yaml_spec``; also a value JSON cannot hold (``!!binary``).
    """
    try:
        return ParsedSpec(spec=parse_yaml_spec(data, max_depth)).model_dump_json().encode()
    except PydanticSerializationError as error:
        raise InputError(f"a value JSON cannot hold: {error}", "body") from None


@router.post("/v1/specs/yaml", openapi_extra=YAML_BODY, responses=errors(413),
             response_model=ParsedSpec)
async def parse_spec_yaml(request: Request, _: CallerDep, settings: SettingsDep) -> Response:
    """Turn a YAML spec into JSON for ``POST /v1/jobs`` (which validates it)."""
    data = await read_limited(request, MAX_SPEC_BYTES)
    # parsing and serialising are CPU work: in a worker thread, so the loop keeps answering
    body = await anyio.to_thread.run_sync(render_yaml_spec, data, settings.max_yaml_depth,
                                          limiter=request.app.state.body_parsers)
    return Response(body, media_type="application/json")


@router.get("/", include_in_schema=False)
def dashboard_index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


def mount_dashboard(app: FastAPI) -> None:
    """The YAML route and the index at ``/``; assets under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
