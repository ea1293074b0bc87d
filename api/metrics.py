"""Prometheus metrics of one app instance (its own registry, so apps do not collide)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "plot_http_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "plot_http_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
        )
        self.jobs_submitted = Counter(
            "plot_jobs_submitted_total", "jobs accepted", registry=self.registry
        )
        self.jobs_finished = Counter(
            "plot_jobs_finished_total", "jobs that ended, by status", ["status"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "plot_events_published_total", "progress events published", ["kind"],
            registry=self.registry,
        )


class RequestMetricsMiddleware:
    """Counts requests by route template and status and times them to the first response
    byte (so an SSE stream counts its set-up, not its length). Plain ASGI: no extra task or
    body buffering per request, unlike ``@app.middleware("http")``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                record(scope, message["status"], time.perf_counter() - started)
            await send(message)

        await self.app(scope, receive, observe)


def record(scope: Scope, status: int, seconds: float) -> None:
    metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
    if metrics is None:
        return
    route: Any = scope.get("route")
    template = getattr(route, "path", "unmatched")
    metrics.http_requests.labels(scope["method"], template, str(status)).inc()
    metrics.http_seconds.labels(scope["method"], template).observe(seconds)
