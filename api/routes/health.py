"""Liveness, readiness (database and event bus) and Prometheus metrics."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.deps import BusDep, MetricsDep, SessionDep
from api.errors import UnavailableError
from api.routes.responses import errors
from api.schemas import HealthPublic, ReadyPublic

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> HealthPublic:  # on the loop: it needs no thread to answer
    return HealthPublic(status="ok")


@router.get("/readyz", responses={503: errors(503)[503]})
async def readyz(session: SessionDep, bus: BusDep) -> ReadyPublic:
    """Ready when the database answers a query and the event bus a ping."""
    try:
        await anyio.to_thread.run_sync(lambda: session.execute(text("SELECT 1")))
    except Exception as error:
        raise UnavailableError(f"database: {type(error).__name__}", "database") from None
    try:
        await anyio.to_thread.run_sync(bus.ping)
    except Exception as error:
        raise UnavailableError(f"event bus: {type(error).__name__}", "events") from None
    return ReadyPublic(status="ready", database="ok", events="ok")


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                             "description": "Prometheus text format"}})
def metrics(service_metrics: MetricsDep) -> Response:
    return Response(generate_latest(service_metrics.registry), media_type=CONTENT_TYPE_LATEST)
