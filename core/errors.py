"""The PlotError tree: every error the engine raises names the field, path, tensor or line."""

from __future__ import annotations


class PlotError(Exception):
    """Base of every error the engine raises on purpose.

    Attributes:
        where: what the error is about: a spec field path (``coupling.epsilons.0``),
            a file and line (``pairs.jsonl:12``) or a tensor name (``linears.1.weight``).
    """

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.where = where

    def to_record(self) -> dict[str, str | None]:
        """The serialised form that crosses the Ray, DB and HTTP boundaries."""
        return {"type": type(self).__name__, "message": self.message, "where": self.where}


class SpecError(PlotError):
    """A job spec (YAML or JSON) that does not validate."""


class SiteError(PlotError):
    """A site id that does not parse or does not exist in the net."""


class ModelLoadError(PlotError):
    """A net directory with a missing, malformed or mismatched file or tensor."""


class DatasetError(PlotError):
    """A counterfactual dataset row that is malformed or inconsistent."""


class SolverError(PlotError):
    """An optimal-transport solve that failed or produced an unusable plan."""


class TaskError(PlotError):
    """A built-in task name or parameter that is unknown or out of range."""


class JobCancelled(PlotError):
    """The job was cancelled while it ran (raised between batches, never mid-write)."""
