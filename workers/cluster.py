"""Connecting to Ray (a local one, or a cluster's address) and spawning intervention actors:
one per GPU where the cluster has GPUs, else a few small CPU actors."""

from __future__ import annotations

from functools import partial

import ray

from workers.intervention_actor import DEFAULT_NET_CACHE_BYTES, InterventionActor
from workers.pool import ActorHandle, ActorPool

LOCAL = "local"
CPU_ACTOR_CPUS = 0.5  # CPU actors share cores; their forwards are short
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
    # SPREAD: actors go to different nodes where they can (a job splits across them)
    remote = ray.remote(InterventionActor).options(num_gpus=num_gpus, num_cpus=num_cpus,
                                                   max_restarts=0, max_task_retries=0,
                                                   scheduling_strategy="SPREAD")
    return remote.remote(device, net_cache_bytes)


def make_pool(actors: int = 0, in_flight_per_actor: int = 2) -> ActorPool:
    """One intervention actor per GPU of the cluster, else ``actors`` (default 2) CPU ones.

    Args:
        actors: how many actors; 0 picks one per GPU, or DEFAULT_CPU_ACTORS without GPUs.
    """
    gpus = gpu_count()
    if gpus:
        spawn = partial(spawn_intervention_actor, 1.0, 1.0)
        size = actors or gpus
    else:
        spawn = partial(spawn_intervention_actor, 0.0, CPU_ACTOR_CPUS)
        size = actors or DEFAULT_CPU_ACTORS
    return ActorPool(spawn, size, in_flight_per_actor)
