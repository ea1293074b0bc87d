"""Progress event buses: a Redis Stream per job (bounded, resumable) and an in-process twin.

All Redis key names are built here and nowhere else.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from workers.ports import BusUnavailable, ProgressEvent


def job_events_key(job_id: str, prefix: str = "plot") -> str:
    """The Redis Stream holding one job's events: ``plot:job:{id}:events``."""
    return f"{prefix}:job:{job_id}:events"


def parse_event_id(event_id: str) -> tuple[int, int]:
    """"1700000000000-3" -> (1700000000000, 3).

    Raises:
        ValueError: not of the "ms-seq" form.
    """
    ms, sep, seq = event_id.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit():
        raise ValueError(f"not an event id (ms-seq): {event_id!r}")
    return int(ms), int(seq)


class InProcessBus:
    """EventBus for the embedded default: per-job bounded deques guarded by one condition.

    Ids use the Redis form "ms-seq", strictly increasing per job, so SSE resume works the same.
    """

    def __init__(self, maxlen: int = 10_000, max_streams: int = 1_000) -> None:
        self._maxlen = maxlen
        self._max_streams = max_streams
        self._streams: dict[str, deque[ProgressEvent]] = {}  # oldest job first
        self._last: dict[str, tuple[int, int]] = {}
        self._changed = threading.Condition()

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        with self._changed:
            ms = int(time.time() * 1000)
            last_ms, last_seq = self._last.get(job_id, (0, -1))
            ident = (last_ms, last_seq + 1) if ms <= last_ms else (ms, 0)
            self._last[job_id] = ident
            event = ProgressEvent(f"{ident[0]}-{ident[1]}", kind, json.loads(json.dumps(data)))
            if job_id not in self._streams and len(self._streams) >= self._max_streams:
                # progress is transient (the job row keeps the result): forget the oldest job
                oldest = next(iter(self._streams))
                del self._streams[oldest]
            stream = self._streams.setdefault(job_id, deque(maxlen=self._maxlen))
            stream.append(event)
            self._changed.notify_all()
            return event.id

    def read(
        self, job_id: str, after: str | None = None, count: int = 100, block_s: float = 0.0
    ) -> list[ProgressEvent]:
        floor = parse_event_id(after) if after is not None else (-1, -1)
        deadline = time.monotonic() + block_s
        with self._changed:
            while True:
                stream = self._streams.get(job_id, ())
                found = [e for e in stream if parse_event_id(e.id) > floor][:count]
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found
                self._changed.wait(remaining)

    def discard(self, job_id: str) -> bool:
        """Forget a job's events (a purged job); False when there were none."""
        with self._changed:
            self._last.pop(job_id, None)
            return self._streams.pop(job_id, None) is not None

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None


@contextmanager
def translated_outage(url: str) -> Iterator[None]:
    """Redis's connection errors (down, restarting, loading, timed out) as ``BusUnavailable``:
    the one place they are translated."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as error:
        host = url.rsplit("@", 1)[-1]  # never the password of redis://:secret@host
        raise BusUnavailable(f"event bus {host} unavailable: {error}") from error


class RedisStreamBus:
    """EventBus over one Redis Stream per job (XADD MAXLEN ~ bounds it; ids are stream ids).

    Retention: a stream keeps about ``maxlen`` events and expires ``ttl_s`` after its last
    one (each XADD renews the expiry); Postgres keeps the job's progress and result.
    """

    def __init__(
        self, url: str, prefix: str = "plot", maxlen: int = 10_000, ttl_s: int = 7 * 24 * 3600
    ) -> None:
        self._client = redis.Redis.from_url(url, decode_responses=True)
        self._url = url
        self._prefix = prefix
        self._maxlen = maxlen
        self._ttl_s = ttl_s

    def publish(self, job_id: str, kind: str, data: dict[str, Any]) -> str:
        key = job_events_key(job_id, self._prefix)
        fields = {"kind": kind, "data": json.dumps(data)}
        with translated_outage(self._url), self._client.pipeline() as pipe:
            pipe.xadd(key, fields, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.expire(key, self._ttl_s)  # progress is transient; Postgres keeps the result
            event_id, _ = pipe.execute()
        return str(event_id)

    def read(
        self, job_id: str, after: str | None = None, count: int = 100, block_s: float = 0.0
    ) -> list[ProgressEvent]:
        key = job_events_key(job_id, self._prefix)
        start = after if after is not None else "0-0"
        parse_event_id(start)
        block = int(block_s * 1000) if block_s > 0 else None
        # reply: [[key, [(id, {"kind": …, "data": …}), …]]] (decoded), or None on timeout
        with translated_outage(self._url):
            reply: list[tuple[str, list[tuple[str, dict[str, str]]]]] | None = (
                self._client.xread({key: start}, count=count, block=block)  # type: ignore[assignment]
            )
        return [
            ProgressEvent(str(event_id), fields["kind"], json.loads(fields["data"]))
            for _, entries in reply or []
            for event_id, fields in entries
        ]

    def discard(self, job_id: str) -> bool:
        """Delete a job's stream (a purged job); False when there was none."""
        with translated_outage(self._url):
            return bool(self._client.delete(job_events_key(job_id, self._prefix)))

    def delete_prefix(self) -> int:
        """Remove every job stream under this bus's prefix (test and admin clean-up)."""
        keys = list(self._client.scan_iter(match=job_events_key("*", self._prefix)))
        return int(self._client.delete(*keys)) if keys else 0

    def ping(self) -> None:
        with translated_outage(self._url):
            self._client.ping()

    def close(self) -> None:
        self._client.close()
