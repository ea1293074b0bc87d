"""ActorPool: bounded in-flight dispatch of method calls over a set of actors with
``ray.wait``, results handed over in completion order, chunks of a dead actor re-run on its
replacement, a stop request honoured while waiting. Calls go only to actors that answered
their first ``ping``: one still waiting for a node (the autoscaler adding a GPU node) gets
work once it is placed, and never holds up a job meanwhile."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from core.errors import JobCancelled

ActorHandle = Any  # ray.actor.ActorHandle of a remote-wrapped plain class
POLL_S = 0.05  # how often a waiting run looks at its stop request


def chunk_bounds(count: int, chunks: int) -> list[tuple[int, int]]:
    """``count`` items cut into at most ``chunks`` contiguous, near-equal [start, stop)."""
    chunks = max(1, min(count, chunks))
    step, extra = divmod(count, chunks)
    bounds, start = [], 0
    for i in range(chunks):
        stop = start + step + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


@dataclass(frozen=True)
class Call:
    """One chunk of work: ``actor.<method>.remote(*args)``."""

    method: str
    args: tuple[Any, ...]


class ActorPool:
    """A fixed number of actors shared by every job of this process.

    Args:
        spawn: starts one actor (also used to replace a dead one).
        size: how many actors to keep.
        in_flight_per_actor: calls submitted to one actor before waiting for a result;
            2 keeps each actor busy while its next chunk's arguments travel.
        max_retries: how often one call is re-run after its actor died.
        gpus_per_actor, cpus_per_actor: what each actor holds of the cluster (the scheduler
            counts the GPUs as this pool's share; CPU tasks need the CPUs left over).
    """

    def __init__(self, spawn: Callable[[], ActorHandle], size: int,
                 in_flight_per_actor: int = 2, max_retries: int = 3,
                 gpus_per_actor: float = 0.0, cpus_per_actor: float = 0.0) -> None:
        if size < 1:
            raise ValueError("an actor pool needs at least one actor")
        self._spawn = spawn
        self._lock = threading.Lock()  # several runner threads share the pool
        self._starting: dict[ray.ObjectRef[Any], ActorHandle] = {}  # first pings in flight
        self._ready: set[int] = set()  # id() of the actors that answered their first ping
        self.actors: list[ActorHandle] = [self._start() for _ in range(size)]
        self.in_flight_per_actor = in_flight_per_actor
        self.max_retries = max_retries
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor
        self.replaced = 0

    def _start(self) -> ActorHandle:
        """Spawn one actor and send its first ping (call with the lock held, or in init)."""
        actor = self._spawn()
        self._starting[actor.ping.remote()] = actor
        return actor

    @property
    def gpus(self) -> float:
        """GPUs this pool's actors hold."""
        return self.gpus_per_actor * len(self.actors)

    @property
    def cpus(self) -> float:
        """CPUs this pool's actors hold."""
        return self.cpus_per_actor * len(self.actors)

    def ready(self) -> list[ActorHandle]:
        """The actors placed and constructed (their first ping answered), without waiting.

        An actor whose first ping failed (it died starting) is replaced.
        """
        with self._lock:
            starting = list(self._starting)
        if starting:
            answered, _ = ray.wait(starting, num_returns=len(starting), timeout=0)
            for ref in answered:
                with self._lock:
                    actor = self._starting.pop(ref, None)
                if actor is None:
                    continue
                try:
                    ray.get(ref)
                except (RayActorError, ActorUnavailableError):
                    self.replace(actor)
                    continue
                with self._lock:
                    self._ready.add(id(actor))
        with self._lock:
            return [a for a in self.actors if id(a) in self._ready]

    def starting(self) -> list[ray.ObjectRef[Any]]:
        """The first pings of the actors not yet ready."""
        with self._lock:
            return list(self._starting)

    def replace(self, dead: ActorHandle) -> None:
        """Swap a dead actor for a fresh one (once, however many calls saw it die)."""
        with self._lock:
            for index, actor in enumerate(self.actors):
                if actor is dead:
                    self._ready.discard(id(actor))
                    self.actors[index] = self._start()
                    self.replaced += 1

    def resize(self, size: int) -> int:
        """Grow to ``size`` actors (the new ones take work once they are up) or shrink to it
        (the last actors are killed: call it only while no job runs on the pool).

        Returns:
            How many actors were started (> 0) or killed (< 0).
        """
        if size < 1:
            raise ValueError("an actor pool needs at least one actor")
        with self._lock:
            change = size - len(self.actors)
            while len(self.actors) < size:
                self.actors.append(self._start())
            while len(self.actors) > size:
                actor = self.actors.pop()
                self._ready.discard(id(actor))
                for ref in [r for r, a in self._starting.items() if a is actor]:
                    del self._starting[ref]
                ray.kill(actor)
        return change

    def shutdown(self) -> None:
        """Kill every actor (their nets and banks go with them)."""
        with self._lock:
            for actor in self.actors:
                ray.kill(actor)
            self.actors = []
            self._starting.clear()
            self._ready.clear()

    def run(self, calls: Sequence[Call], on_result: Callable[[int, Any], None],
            prepare: Callable[[ActorHandle], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> None:
        """Run every call on some actor; ``on_result(index, value)`` in completion order.

        ``prepare(actor)`` runs before the first call this run sends to an actor (it may
        submit a setup call: an actor runs one caller's calls in order). ``should_stop``
        is polled every ``POLL_S`` while waiting. When it turns true, or ``on_result``
        raises (a cancel), no further call is sent and the error propagates. Calls already
        sent are the caller's to stop (``RayExecutor`` flags its job on the actors: a
        queued call then returns at once, a running one after its micro-batch); they are
        not ``ray.cancel``-ed, because an actor task cancelled before it reached its actor
        leaves a gap in the actor's ordered queue, which then stalls for 30 s and drops
        every call queued behind it.

        Raises:
            JobCancelled: ``should_stop()`` turned true.
            RayActorError: a call's actor died more than ``max_retries`` times.
            Exception: a call's own error, re-raised (a PlotError keeps its type).
        """
        pending = deque(range(len(calls)))
        tries = [0] * len(calls)
        in_flight: dict[ray.ObjectRef[Any], tuple[int, ActorHandle]] = {}
        load: dict[int, int] = {}  # id(actor) -> calls in flight on it
        while pending or in_flight:
            actors = self.ready()
            limit = self.in_flight_per_actor * len(actors)
            while pending and len(in_flight) < limit:
                actor = min(actors, key=lambda a: load.get(id(a), 0))
                if prepare is not None:
                    prepare(actor)
                index = pending.popleft()
                call = calls[index]
                ref = getattr(actor, call.method).remote(*call.args)
                in_flight[ref] = (index, actor)
                load[id(actor)] = load.get(id(actor), 0) + 1
            # with work left to send, an actor that becomes ready also ends the wait
            starting = self.starting() if pending else []
            done, _ = ray.wait([*in_flight, *starting], num_returns=1,
                               timeout=None if should_stop is None else POLL_S)
            if not done or done[0] not in in_flight:
                if should_stop is not None and should_stop():
                    raise JobCancelled("cancelled while the actors ran its chunks", "actors")
                continue
            ready = done[0]
            index, actor = in_flight.pop(ready)
            load[id(actor)] -= 1
            try:
                value = ray.get(ready)
            except (RayActorError, ActorUnavailableError):
                tries[index] += 1
                if tries[index] > self.max_retries:
                    raise
                self.replace(actor)
                pending.appendleft(index)
                continue
            on_result(index, value)
