"""create_app(settings): the lifespan builds the service's parts (``api.services``) on
app.state; every error maps to an HTTP status here and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.body_limit import BodyLimitMiddleware, BodyLimits
from api.errors import (
    AuthError,
    ConfigError,
    ConflictError,
    ForbiddenError,
    InputError,
    NotFoundError,
    QuotaError,
    TooLargeError,
    UnavailableError,
)
from api.metrics import RequestMetricsMiddleware
from api.routes import datasets, events, health, jobs, nets
from api.routes.dashboard import mount_dashboard
from api.services import build_services
from api.settings import Settings
from core.errors import PlotError

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[PlotError], int] = {
    InputError: 422,
    AuthError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    TooLargeError: 413,
    QuotaError: 429,
    UnavailableError: 503,
    ConfigError: 503,
}
BODY_PARSER_THREADS = 4  # parses are CPU-bound under the GIL: more threads add nothing
DEFAULT_PLOT_ERROR_STATUS = 422  # SpecError, DatasetError, ModelLoadError, TaskError, …


def status_for(error: PlotError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return DEFAULT_PLOT_ERROR_STATUS


def error_response(status: int, kind: str, message: str, where: str | None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"type": kind, "message": message, "where": where}, status, headers)


def describe_validation(error: RequestValidationError) -> tuple[str, str | None]:
    """One line per problem, each naming its path (``body`` and ``query`` prefixes kept off
    body fields so paths read like the spec's: ``coupling.epsilons.0``)."""
    lines, first = [], None
    for item in error.errors():
        loc = [str(part) for part in item.get("loc", ())]
        path = ".".join(loc[1:] if loc[:1] == ["body"] else loc) or "(body)"
        first = first or path
        lines.append(f"{path}: {item.get('msg', 'invalid')}")
    return "; ".join(lines), first


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PlotError)
    async def plot_error(_: Request, error: PlotError) -> JSONResponse:
        return error_response(status_for(error), type(error).__name__, error.message,
                              error.where)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        message, where = describe_validation(error)
        return error_response(422, "SpecError", message, where)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, "HTTPError", str(error.detail), None)

    @app.exception_handler(Exception)
    async def crash(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", "internal error", None)


def create_app(settings: Settings) -> FastAPI:
    """The API. Its lifespan migrates the database, opens the bus, and (``run_jobs``)
    starts the in-process claim loop with the real engine."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # an API replica that runs no jobs (PLOT_RUN_JOBS=false) holds no actors
        services = build_services(settings, role="serve" if settings.run_jobs else "api")
        app.state.settings = settings
        app.state.services = services
        app.state.sessions = services.sessions
        app.state.bus = services.bus
        app.state.metrics = services.metrics
        app.state.event_readers = anyio.CapacityLimiter(settings.max_event_streams)
        # YAML and JSONL parses get threads of their own: however many arrive at once,
        # the default pool stays free for every other route
        app.state.body_parsers = anyio.CapacityLimiter(BODY_PARSER_THREADS)
        services.metrics.watch_jobs(services.sessions)
        services.start()
        try:
            yield
        finally:
            services.close()

    app = FastAPI(
        title="PLOT service",
        version="0.1.0",
        description="Progressive Localization via Optimal Transport, as a job service.",
        lifespan=lifespan,
        # no 307 to a slash-stripped path: an id like "/" must be a plain 404, not a redirect
        # the OpenAPI document does not declare
        redirect_slashes=False,
    )
    install_error_handlers(app)

    # inside the metrics middleware, so its 413s are counted too
    app.add_middleware(BodyLimitMiddleware, limits=BodyLimits(
        json_bytes=settings.max_json_bytes, upload_bytes=settings.max_upload_bytes))
    app.add_middleware(RequestMetricsMiddleware)
    for router in (jobs.router, events.router, datasets.router, nets.router, health.router):
        app.include_router(router)
    mount_dashboard(app)
    return app
