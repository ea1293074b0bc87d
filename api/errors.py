"""Errors of the service layer (PlotError subclasses); app.py maps every one to a status."""

from __future__ import annotations

from core.errors import PlotError


class NotFoundError(PlotError):
    """No such job, dataset or model for this owner (another owner's is not found either)."""


class ConflictError(PlotError):
    """The resource is not in a state that allows the request (e.g. result of a running job)."""


class AuthError(PlotError):
    """A missing, malformed, unknown or revoked API key."""


class ForbiddenError(PlotError):
    """The key is valid but its role does not allow the request."""


class QuotaError(PlotError):
    """A per-owner limit (queued jobs) is reached."""


class TooLargeError(PlotError):
    """A request body over the configured size limit."""


class UnavailableError(PlotError):
    """A backing service (database, Redis) cannot be reached."""


class InputError(PlotError):
    """A malformed header or parameter outside the JSON body (e.g. Last-Event-ID)."""


class ConfigError(PlotError):
    """A deployment setting that stops the process at start: a missing secret, a database,
    Redis or Ray address that does not answer (``where`` names the PLOT_* variable)."""
