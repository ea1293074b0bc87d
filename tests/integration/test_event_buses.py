"""Both event buses: ms-seq ids in order, resume after an id, bounded length, blocking read."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.integration.conftest import REDIS_URL
from workers.events import InProcessBus, RedisStreamBus, job_events_key, parse_event_id
from workers.ports import EventBus


@pytest.fixture(params=["redis", "in-process"])
def bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    if request.param == "in-process":
        yield InProcessBus(maxlen=100, max_streams=3)
        return
    redis_bus = RedisStreamBus(REDIS_URL, f"plot-test-{uuid.uuid4().hex[:8]}", maxlen=100)
    yield redis_bus
    redis_bus.delete_prefix()
    redis_bus.close()


def test_ids_increase_and_reads_resume_after_an_id(bus: EventBus) -> None:
    ids = [bus.publish("job", "progress", {"done": i}) for i in range(10)]
    assert [parse_event_id(i) for i in ids] == sorted(parse_event_id(i) for i in ids)
    assert len(set(ids)) == 10
    everything = bus.read("job")
    assert [e.id for e in everything] == ids
    assert [e.data["done"] for e in bus.read("job", after=ids[6])] == [7, 8, 9]
    assert bus.read("job", after=ids[-1]) == []
    assert [e.id for e in bus.read("job", count=4)] == ids[:4]
    assert bus.read("other-job") == []


def test_a_stream_stays_bounded(bus: EventBus) -> None:
    for i in range(1000):
        bus.publish("long", "progress", {"done": i})
    kept = bus.read("long", count=10_000)
    assert 100 <= len(kept) < 300  # Redis trims approximately (MAXLEN ~)
    assert kept[-1].data["done"] == 999


def test_a_blocking_read_wakes_on_publish(bus: EventBus) -> None:
    last = bus.publish("wake", "queued", {})
    threading.Timer(0.2, bus.publish, ("wake", "started", {"n": 1})).start()
    started = time.monotonic()
    events = bus.read("wake", after=last, block_s=5.0)
    assert [e.kind for e in events] == ["started"]
    assert time.monotonic() - started < 4.0


def test_the_redis_key_is_the_documented_one() -> None:
    assert job_events_key("abc") == "plot:job:abc:events"


def test_the_in_process_bus_forgets_the_oldest_job_past_its_stream_limit() -> None:
    bus = InProcessBus(maxlen=10, max_streams=2)
    for job in ("a", "b", "c"):
        bus.publish(job, "queued", {})
    assert bus.read("a") == [] and len(bus.read("b")) == 1 and len(bus.read("c")) == 1
