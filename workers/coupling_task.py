"""Coupling solves as Ray CPU tasks: a level's knob grid (``core.plan_grid``) cut into slices,
one task per slice, each solving its plans with POT and building their calibration
candidates. The problem goes to the object store once; results come back in grid order."""

from __future__ import annotations

from typing import Any

import ray
import torch

from core.control import CancelCheck, never_cancelled
from core.errors import JobCancelled
from core.plan_grid import GridProblem, PlanOutcome, solve_knobs
from workers.pool import chunk_bounds

COUPLING_TASK_CPUS = 0.5  # a short CPU loop (POT's Sinkhorn); two share a core
# wrapped once: a Ray remote function is exported to the cluster on its first call
SOLVE_KNOBS: Any = ray.remote(solve_knobs)


def solve_grid_on_ray(problem: GridProblem, tasks: int = 4, num_cpus: float = COUPLING_TASK_CPUS,
                      should_stop: CancelCheck = never_cancelled, poll_s: float = 0.05
                      ) -> list[PlanOutcome]:
    """Every point of ``problem``'s knob grid, solved by up to ``tasks`` CPU tasks.

    Args:
        tasks: slices of the grid (one task each); fewer when the grid is smaller.
        should_stop: polled while waiting; when true the tasks are cancelled.

    Returns:
        The outcomes in grid order, their plans on the problem's device.

    Raises:
        JobCancelled: ``should_stop()`` turned true.
    """
    device = problem.cost.device
    problem_ref = ray.put(problem.to("cpu"))
    remote = SOLVE_KNOBS.options(num_cpus=num_cpus, max_retries=3)
    slices = chunk_bounds(len(problem.knobs), tasks)
    pending = {remote.remote(problem_ref, list(range(a, b))): i for i, (a, b) in enumerate(slices)}
    parts: dict[int, list[PlanOutcome]] = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=poll_s)
            if not ready:
                if should_stop():
                    raise JobCancelled("cancelled while solving couplings", "coupling")
                continue
            parts[pending.pop(ready[0])] = ray.get(ready[0])
    finally:
        for ref in pending:
            ray.cancel(ref)
    moved = torch.device(device)
    return [outcome.to(moved) for i in range(len(slices)) for outcome in parts[i]]


def is_ready() -> bool:
    """A no-op whose import of this module (torch, POT, the engine) warms a task worker."""
    return True


IS_READY: Any = ray.remote(is_ready)


def warm_workers(count: int, num_cpus: float = COUPLING_TASK_CPUS) -> None:
    """Start ``count`` task workers ahead of the first coupling grid (not awaited): a cold
    worker imports torch and POT, seconds that would otherwise stall a job's level."""
    remote = IS_READY.options(num_cpus=num_cpus)
    for _ in range(count):
        remote.remote()
