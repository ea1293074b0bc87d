"""Which errors end a job for good: the same input would hit them again (the spec's, the
data's or the net's fault, or sizes the machine cannot hold), against infrastructure faults
that another attempt may not meet (a lost actor, a connection)."""

from __future__ import annotations

from typing import Any

import torch

from core.errors import PlotError

# a lost Ray actor or worker: infrastructure, matched by name so this module needs no ray
INFRASTRUCTURE_ERRORS = frozenset({"RayActorError", "ActorDiedError", "ActorUnavailableError",
                                   "WorkerCrashedError", "ObjectLostError", "NodeDiedError",
                                   "OwnerDiedError", "ObjectReconstructionFailedError"})
# what torch raises for a size it cannot allocate or index: the same spec hits it again
IMPOSSIBLE_SIZE = ("numel", "overflow", "negative dimension", "not enough memory",
                   "out of memory", "can't allocate memory", "cannot allocate memory",
                   "invalid shape", "too large", "must be non-negative")
SIZE_HINT = "the job's sizes (pairs, permutations, restarts, net dimensions) are the likely cause"


def is_deterministic(error: BaseException) -> bool:
    """Whether the same job would hit ``error`` again, so retrying it is pointless: a
    ``PlotError`` (the spec's, data's or net's fault), running out of memory (host or CUDA),
    an overflow, or a ``ValueError``/``RuntimeError`` torch raises for an impossible size.
    A lost Ray actor or worker, a DB or Redis connection error, an ``OSError`` and anything
    unrecognised are infrastructure: retried.

    A ``RayTaskError`` is judged by the error it wraps (its ``cause``).
    """
    names = {cls.__name__ for cls in type(error).__mro__}
    if names & INFRASTRUCTURE_ERRORS:
        return False
    cause = getattr(error, "cause", None)
    if "RayTaskError" in names and isinstance(cause, BaseException) and cause is not error:
        return is_deterministic(cause)
    if isinstance(error, (PlotError, MemoryError, OverflowError, torch.OutOfMemoryError)):
        return True
    if isinstance(error, OSError):  # I/O, connections (before RuntimeError: none is both)
        return False
    if isinstance(error, (ValueError, RuntimeError)):
        message = str(error).lower()
        return any(marker in message for marker in IMPOSSIBLE_SIZE)
    return False


def failure_record(error: BaseException) -> dict[str, Any]:
    """The ``{type, message, where}`` record of an error that ends a job: a ``PlotError``'s
    own; for the others, their type and message (a size error says the sizes are to blame)."""
    if isinstance(error, PlotError):
        return dict(error.to_record())
    message = str(error) or type(error).__name__
    if is_deterministic(error):
        message = f"{message} ({SIZE_HINT})"
    return {"type": type(error).__name__, "message": message, "where": None}
