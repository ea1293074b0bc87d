"""The dashboard: static files at ``/`` and ``/static``, and the YAML-to-JSON step its spec
form uses (the browser parses JSON itself; YAML goes through ``yaml.safe_load`` here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from api.deps import CallerDep
from api.errors import InputError
from api.routes.datasets import read_limited
from api.routes.responses import errors

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


def parse_yaml_spec(text: str) -> dict[str, Any]:
    """One YAML mapping, read with ``yaml.safe_load``.

    Raises:
        InputError: not YAML, not a mapping, or uses aliases (which could expand a small
            document into a huge one once it is turned into JSON).
    """
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                mark = event.start_mark
                raise InputError("anchors and aliases are not supported in a spec",
                                 f"line {mark.line + 1}" if mark else "body")
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else "body"
        raise InputError(f"not valid YAML: {error.problem or error}", where) from None
    except yaml.YAMLError as error:
        raise InputError(f"not valid YAML: {error}", "body") from None
    if not isinstance(data, dict):
        raise InputError(f"a job spec is a mapping, got {type(data).__name__}", "body")
    return {str(key): value for key, value in data.items()}


@router.post("/v1/specs/yaml", openapi_extra=YAML_BODY, responses=errors(413))
async def parse_spec_yaml(request: Request, _: CallerDep) -> ParsedSpec:
    """Turn a YAML spec into JSON for ``POST /v1/jobs`` (which validates it)."""
    data = await read_limited(request, MAX_SPEC_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the spec is not UTF-8 text", "body") from None
    return ParsedSpec(spec=parse_yaml_spec(text))


@router.get("/", include_in_schema=False)
def dashboard_index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers=SECURITY_HEADERS)


def mount_dashboard(app: FastAPI) -> None:
    """The YAML route and the index at ``/``; assets under ``/static``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
