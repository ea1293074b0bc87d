"""The error responses each route documents in OpenAPI (bodies are ErrorPublic records)."""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorPublic

_DESCRIPTIONS = {
    400: "the body is not a JSON document (not UTF-8, nested too deep to parse)",
    401: "missing, unknown or revoked API key",
    404: "no such resource for this owner",
    409: "the resource's state does not allow this",
    413: "request body over the size limit",
    422: "invalid input; `where` names the field, header or line",
    429: "per-owner limit reached",
    503: "a backing service is unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for these error codes (401 and 422 always included)."""
    return {
        code: {"model": ErrorPublic, "description": _DESCRIPTIONS[code]}
        for code in sorted({401, 422, *codes})
    }
