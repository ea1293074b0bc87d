"""The dashboard: static files at ``/`` and ``/static``, and the YAML-to-JSON step its spec
form uses (the browser parses JSON itself; YAML goes through ``api.spec_yaml`` here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from api.deps import CallerDep, SettingsDep
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


@router.post("/v1/specs/yaml", openapi_extra=YAML_BODY, responses=errors(413))
async def parse_spec_yaml(request: Request, _: CallerDep, settings: SettingsDep) -> ParsedSpec:
    """Turn a YAML spec into JSON for ``POST /v1/jobs`` (which validates it)."""
    data = await read_limited(request, MAX_SPEC_BYTES)
    # the parse is CPU work: in a worker thread, so the event loop keeps answering
    spec = await anyio.to_thread.run_sync(parse_yaml_spec, data, settings.max_yaml_depth)
    return ParsedSpec(spec=spec)


@router.get("/", include_in_schema=False)
def dashboard_index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


def mount_dashboard(app: FastAPI) -> None:
    """The YAML route and the index at ``/``; assets under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
