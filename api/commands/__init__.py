"""Subcommands of the ``plot`` console script, one module per family, and the extras they need.

Only the engine's commands (``train``, ``run``, ``demo``) run on the base install. The others
import their extra's packages inside their handlers, so every command registers (and
``plot --help`` lists it) without them, and a missing package is named by its extra.
"""

from __future__ import annotations

# top-level import name -> the extra that installs it (pyproject.toml's optional-dependencies)
EXTRA_OF_MODULE: dict[str, str] = {
    "fastapi": "service",
    "uvicorn": "service",
    "sqlalchemy": "service",
    "alembic": "service",
    "psycopg": "service",
    "redis": "service",
    "pydantic_settings": "service",
    "httpx": "service",
    "prometheus_client": "service",
    "ray": "service",
    "transformers": "hf",
    "tokenizers": "hf",
}


def find_missing_extra(error: ModuleNotFoundError) -> str | None:
    """The extra that installs the module ``error`` found missing, or None if no extra does."""
    return EXTRA_OF_MODULE.get((error.name or "").partition(".")[0])
