"""The actor pool sends calls only to actors that are placed and started: one waiting for a
node (resources the cluster does not have yet) never holds up a job, and one that starts
late takes its share once it is up. Idle release shrinks it to one actor after a spell
without jobs and grows it back when work returns."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import ray
from ray.exceptions import RayActorError

from workers.idle_release import IdleRelease
from workers.pool import ActorPool, Call


class Worker:
    """A stand-in intervention actor: a name, a start-up delay, a slow call."""

    def __init__(self, name: str, startup_s: float = 0.0) -> None:
        time.sleep(startup_s)
        self.name = name

    def ping(self) -> str:
        return self.name

    def work(self, seconds: float) -> str:
        time.sleep(seconds)
        return self.name


def spawner(specs: list[dict[str, Any]]) -> Callable[[], Any]:
    """Spawns the actors described by ``specs`` in turn (name, startup_s, resources), then
    plain ones (``extra-N``)."""
    remaining = iter(specs + [{"name": f"extra-{i}"} for i in range(100)])

    def spawn() -> Any:
        spec = dict(next(remaining))
        resources = spec.pop("resources", {})
        return ray.remote(Worker).options(num_cpus=0, resources=resources).remote(**spec)

    return spawn


@pytest.fixture
def killed(ray_local: None) -> Iterator[list[ActorPool]]:
    pools: list[ActorPool] = []
    yield pools
    for pool in pools:
        pool.shutdown()


def run_all(pool: ActorPool, calls: int, seconds: float, deadline_s: float) -> list[str]:
    """Every call's actor name, in completion order; fails past ``deadline_s``."""
    names: list[str] = []
    deadline = time.monotonic() + deadline_s
    pool.run([Call("work", (seconds,))] * calls, lambda i, name: names.append(name),
             should_stop=lambda: time.monotonic() > deadline)
    return names


def test_an_actor_that_cannot_be_placed_gets_no_call(killed: list[ActorPool]) -> None:
    pool = ActorPool(spawner([{"name": "placed"},
                              {"name": "waiting", "resources": {"absent_gpu_node": 1}}]), 2)
    killed.append(pool)
    names = run_all(pool, calls=6, seconds=0.01, deadline_s=60)
    assert names == ["placed"] * 6
    assert [ray.get(a.ping.remote()) for a in pool.ready()] == ["placed"]
    assert len(pool.starting()) == 1  # still waiting for its node


def test_an_actor_that_starts_late_takes_calls_once_it_is_up(killed: list[ActorPool]
                                                            ) -> None:
    pool = ActorPool(spawner([{"name": "early"}, {"name": "late", "startup_s": 1.5}]), 2)
    killed.append(pool)
    names = run_all(pool, calls=30, seconds=0.15, deadline_s=60)
    assert len(names) == 30
    assert names[0] == "early"
    assert "late" in names  # up after ~1.5 s of a ~4.5 s run on one actor
    assert not pool.starting()


def test_idle_release_keeps_one_actor_after_the_idle_spell_and_regrows_for_work(
        killed: list[ActorPool]) -> None:
    pool = ActorPool(spawner([{"name": "a"}, {"name": "b"}, {"name": "c"}]), 3)
    killed.append(pool)
    now = [0.0]
    release = IdleRelease(pool, size=3, idle_s=10.0, clock=lambda: now[0])
    first = list(pool.actors)
    release(False)
    now[0] = 9.0
    release(False)
    assert pool.actors == first  # not idle long enough
    release(True)  # a job ran: the idle spell starts again
    now[0] = 18.0
    release(False)
    now[0] = 27.9
    release(False)
    assert len(pool.actors) == 3
    now[0] = 28.0
    release(False)
    assert pool.actors == first[:1]
    for gone in first[1:]:
        with pytest.raises(RayActorError):
            ray.get(gone.ping.remote(), timeout=30)
    release(True)
    assert len(pool.actors) == 3 and pool.actors[0] is first[0]
    names = run_all(pool, calls=30, seconds=0.1, deadline_s=60)
    assert len(names) == 30 and {"a", "extra-0", "extra-1"} <= set(names)


def test_idle_release_set_to_zero_never_shrinks(killed: list[ActorPool]) -> None:
    pool = ActorPool(spawner([{"name": "a"}, {"name": "b"}]), 2)
    killed.append(pool)
    now = [0.0]
    release = IdleRelease(pool, size=2, idle_s=0.0, clock=lambda: now[0])
    for now[0] in (0.0, 1e6):
        release(False)
    assert len(pool.actors) == 2
