"""Python client of the PLOT service (httpx; pass ``transport=`` to talk to an app in memory)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, overload

import httpx

from core.errors import PlotError
from core.result import JobResult
from core.spec import JobSpec

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_EVENTS = frozenset({"finished", "failed", "cancelled"})


class ApiError(PlotError):
    """A non-2xx answer; ``status`` is the HTTP code, ``kind`` the server's error type."""

    def __init__(self, status: int, kind: str, message: str, where: str | None) -> None:
        super().__init__(f"{kind} ({status}): {message}", where)
        self.status = status
        self.kind = kind


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event of a job's stream."""

    id: str
    kind: str
    data: dict[str, Any]


class PlotClient:
    """Submit, follow and fetch jobs. Example::

        client = PlotClient("http://127.0.0.1:8000", key)
        job = client.submit(spec)
        for event in client.stream_events(job["id"]):
            ...
        result = client.result(job["id"])
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url, transport=transport, timeout=timeout_s,
            headers={"Authorization": f"Bearer {key}"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PlotClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.is_error:
            raise_for_record(response)
        return response.json()

    def submit(self, spec: JobSpec | dict[str, Any]) -> dict[str, Any]:
        """Queue a job; returns its public view (``id``, ``status`` …)."""
        body = spec.model_dump(mode="json") if isinstance(spec, JobSpec) else spec
        return dict(self._call("POST", "/v1/jobs", json=body))

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/jobs/{job_id}"))

    def list(self, status: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = status
        return dict(self._call("GET", "/v1/jobs", params=params))

    @overload
    def result(self, job_id: str, typed: Literal[False] = False) -> dict[str, Any]: ...

    @overload
    def result(self, job_id: str, typed: Literal[True]) -> JobResult: ...

    def result(self, job_id: str, typed: bool = False) -> dict[str, Any] | JobResult:
        """The job's result record (a dict: ``{"job_id", "status", "result", ...}``), or with
        ``typed=True`` its ``result`` as a ``JobResult`` (repr, ``_repr_html_`` in Jupyter,
        and what ``core.export`` takes)."""
        record = dict(self._call("GET", f"/v1/jobs/{job_id}/result"))
        return JobResult.model_validate(record["result"]) if typed else record

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"/v1/jobs/{job_id}/cancel"))

    def upload_dataset(self, name: str, data: bytes, model: str | None = None
                       ) -> dict[str, Any]:
        """Upload JSONL rows; with ``model`` (a registered model id) text rows are
        tokenized with its tokenizer now."""
        params = {"name": name, **({"model": model} if model is not None else {})}
        return dict(self._call("POST", "/v1/datasets", params=params, content=data,
                               headers={"Content-Type": "application/x-ndjson"}))

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/datasets/{dataset_id}"))

    def register_model(self, path: str) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/models", json={"path": path}))

    def wait(self, job_id: str, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until the job ends.

        Raises:
            TimeoutError: still not ended after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.get(job_id)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout_s}s")
            time.sleep(poll_s)

    def stream_events(
        self, job_id: str, last_event_id: str | None = None
    ) -> Iterator[ServerEvent]:
        """The job's events from the start (or after ``last_event_id``) until a terminal one."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                               timeout=httpx.Timeout(30.0, read=None)) as response:
            if response.is_error:
                response.read()
                raise_for_record(response)
            for event in parse_sse(response.iter_lines()):
                yield event
                if event.kind in TERMINAL_EVENTS:
                    return


def raise_for_record(response: httpx.Response) -> None:
    """Raises: ApiError: built from the server's {type, message, where} record."""
    try:
        record = response.json()
    except ValueError:
        record = {}
    if not isinstance(record, dict):
        record = {}
    raise ApiError(response.status_code, str(record.get("type", "HTTPError")),
                   str(record.get("message", response.text[:200])), record.get("where"))


def parse_sse(lines: Iterator[str]) -> Iterator[ServerEvent]:
    """Server-Sent Events from text lines (comments and keep-alives skipped)."""
    fields: dict[str, str] = {}
    for line in lines:
        if not line:
            if "data" in fields:
                yield ServerEvent(fields.get("id", ""), fields.get("event", "message"),
                                  json.loads(fields["data"]))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
