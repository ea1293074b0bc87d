"""Prometheus metrics of one app instance (its own registry, so apps do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


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
