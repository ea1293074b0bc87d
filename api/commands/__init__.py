"""Subcommands of the ``plot`` console script, one module per family, and the extra each needs.

Only the engine's commands run on the base install. The others import their extra's packages
inside their handlers, so every command registers (and ``plot --help`` lists it) without them.
"""

from __future__ import annotations

# command -> the extra (pyproject.toml's optional-dependencies) its handler needs
EXTRA_OF_COMMAND: dict[str, str | None] = {
    "train": None,
    "run": None,
    "demo": None,
    "export": None,
    "serve": "service",
    "submit": "service",
    "keys": "service",
    "db": "service",
    "scheduler": "service",
    "worker": "service",
    "admin": "service",
}
OWN_PACKAGES = frozenset({"api", "core", "workers", "migrations"})


def find_missing_extra(command: str, error: ModuleNotFoundError) -> str | None:
    """The extra to install after ``command`` failed to import a module, or None.

    Any third-party module counts, not only the extra's listed packages: ``api.app`` imports
    anyio, which only the extra's packages bring. A missing module of PLOT's own packages is
    a bug, so it gets None (and its traceback).
    """
    if (error.name or "").partition(".")[0] in OWN_PACKAGES:
        return None
    return EXTRA_OF_COMMAND.get(command)
