"""Prometheus metrics of one process (its own registry, so apps do not collide): HTTP
requests, job outcomes, level durations, interventions, actor restarts, and (read from the
database at scrape time) jobs by state and queue length per owner."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.db.tables import Job
from workers.job_status import JobStatus

log = logging.getLogger(__name__)
LEVEL_BUCKETS_S = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)


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
        self.level_seconds = Histogram(
            "plot_level_seconds", "wall time of one finished level", ["granularity"],
            buckets=LEVEL_BUCKETS_S, registry=self.registry,
        )
        self.interventions = Counter(
            "plot_interventions_total", "(pair x intervention) partial forwards of finished "
            "levels; rate() is the intervention throughput", registry=self.registry,
        )

    def event_published(self, kind: str) -> None:
        self.events_published.labels(kind).inc()

    def job_finished(self, status: str) -> None:
        self.jobs_finished.labels(status).inc()

    def level_checkpointed(self, checkpoint: dict[str, Any]) -> None:
        """Count one finished level (its checkpoint's ``runtime_s`` and ``forward_passes``)."""
        granularity = str(checkpoint.get("granularity") or "unknown")
        self.level_seconds.labels(granularity).observe(float(checkpoint.get("runtime_s", 0.0)))
        self.interventions.inc(int(checkpoint.get("forward_passes", 0)))

    def watch_jobs(self, sessions: sessionmaker[Session]) -> None:
        """Report jobs by state and queued jobs per owner, counted at each scrape."""
        self.registry.register(JobStateCollector(sessions))

    def watch_actor_restarts(self, count: Callable[[], int]) -> None:
        """Report ``count()`` (intervention actors replaced after dying) at each scrape."""
        self.registry.register(ActorRestartCollector(count))


class JobStateCollector(Collector):
    """``plot_jobs{state}`` and ``plot_queued_jobs{owner}`` from the jobs table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def describe(self) -> list[Metric]:
        return list(self._families())

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (GaugeMetricFamily("plot_jobs", "jobs by state", labels=["state"]),
                GaugeMetricFamily("plot_queued_jobs", "queued jobs per owner",
                                  labels=["owner"]))

    def collect(self) -> Iterator[Metric]:
        by_state, queued = self._families()
        try:
            with self._sessions() as session:
                rows = session.execute(select(Job.status, Job.owner, func.count())
                                       .group_by(Job.status, Job.owner)).all()
        except Exception:  # a scrape must not fail because the database hiccups
            log.warning("job metrics: the database did not answer", exc_info=True)
            return
        counts = dict.fromkeys(JobStatus, 0)
        for status, owner, count in rows:
            counts[status] = counts.get(status, 0) + int(count)
            if status == JobStatus.QUEUED:
                queued.add_metric([owner], int(count))
        for status, count in counts.items():
            by_state.add_metric([status], count)
        yield by_state
        yield queued


class ActorRestartCollector(Collector):
    """``plot_actor_restarts_total``: intervention actors replaced after they died."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("plot_actor_restarts", "intervention actors replaced "
                                     "after they died")
        family.add_metric([], self._count())
        yield family


def serve_metrics(metrics: ServiceMetrics, host: str, port: int) -> WSGIServer | None:
    """Serve ``metrics`` at http://host:port/metrics in a daemon thread (None when port is 0).
    For processes without the API (``plot scheduler``)."""
    if port == 0:
        return None
    server: WSGIServer
    _thread: Thread
    server, _thread = start_http_server(port, host, registry=metrics.registry)
    return server


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
