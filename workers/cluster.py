"""Connecting to Ray (a local one, or a cluster's address) and spawning intervention actors:
one per GPU where the cluster has GPUs, else a few small CPU actors."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import ray

from workers.intervention_actor import CONTROL_GROUP, DEFAULT_NET_CACHE_BYTES, InterventionActor
from workers.pool import ActorHandle, ActorPool

LOCAL = "local"
CPU_ACTOR_CPUS = 0.5  # CPU actors share cores; their forwards are short
GPU_ACTOR_CPUS = 1.0  # a GPU actor's host thread
DEFAULT_CPU_ACTORS = 2


def connect(address: str | None = LOCAL, num_cpus: int | None = None,
            object_store_bytes: int | None = None) -> None:
    """Join the Ray cluster at ``address``, or start a local one (``local`` or None).

    Idempotent: a process already connected stays on its cluster.
    """
    if ray.is_initialized():
        return
    if address in (None, "", LOCAL):
        # address="local": always a new Ray, never a `ray start` cluster found on the host
        ray.init(address="local", num_cpus=num_cpus, object_store_memory=object_store_bytes,
                 include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)


def gpu_count() -> int:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return int(resources.get("GPU", 0))


def spawn_intervention_actor(num_gpus: float, num_cpus: float,
                             net_cache_bytes: int = DEFAULT_NET_CACHE_BYTES) -> ActorHandle:
    """An InterventionActor on its own GPU (num_gpus=1) or on a share of a CPU."""
    device = "cuda" if num_gpus > 0 else "cpu"
    # one compute thread (chunks run in submission order) and one control thread, so a
    # cancel reaches a chunk while it runs; SPREAD: actors go to different nodes where they
    # can (a job splits across them)
    wrapped = ray.remote(concurrency_groups={CONTROL_GROUP: 1})(  # type: ignore[call-overload]
        InterventionActor)
    remote = wrapped.options(num_gpus=num_gpus, num_cpus=num_cpus, max_restarts=0,
                             max_task_retries=0, scheduling_strategy="SPREAD")
    return remote.remote(device, net_cache_bytes)


def make_pool(actors: int = 0, in_flight_per_actor: int = 2) -> ActorPool:
    """One intervention actor per GPU of the cluster, else ``actors`` (default 2) CPU ones.

    Args:
        actors: how many actors; 0 picks one per GPU, or DEFAULT_CPU_ACTORS without GPUs.
    """
    gpus = gpu_count()
    num_gpus, num_cpus = (1.0, GPU_ACTOR_CPUS) if gpus else (0.0, CPU_ACTOR_CPUS)
    size = actors or gpus or DEFAULT_CPU_ACTORS
    return ActorPool(partial(spawn_intervention_actor, num_gpus, num_cpus), size,
                     in_flight_per_actor, gpus_per_actor=num_gpus, cpus_per_actor=num_cpus)


def spare_cpus(pool: ActorPool) -> float:
    """CPUs of the cluster that ``pool``'s actors do not hold (room for CPU tasks)."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return resources.get("CPU", 0.0) - pool.cpus


def slots_for(free_gpus: float, held_gpus: float, fallback: int) -> int:
    """Jobs to run at once: one per GPU that is free or held by this process's actors;
    ``fallback`` when those actors hold no GPU (CPU actors).

    Example:
        >>> slots_for(2.0, 2.0, 2), slots_for(0.0, 1.0, 2), slots_for(3.0, 0.0, 2)
        (4, 1, 2)
    """
    return int(free_gpus + held_gpus) if held_gpus > 0 else fallback


def gpu_slots(pool: ActorPool, fallback: int) -> Callable[[], int]:
    """The scheduler's slot count, read from the cluster each time it is called: GPUs no one
    holds (``ray.available_resources``) plus those ``pool``'s actors hold; ``fallback``
    for a pool of CPU actors."""
    def slots() -> int:
        if pool.gpus == 0:
            return fallback
        available: dict[str, float] = ray.available_resources()  # type: ignore[no-untyped-call]
        return slots_for(available.get("GPU", 0.0), pool.gpus, fallback)

    return slots
