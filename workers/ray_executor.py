"""RayExecutor: core.executors.InterventionExecutor over an ActorPool, splitting a level's
sites and interventions into chunks that run on the intervention actors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import ray
import torch
from torch import Tensor

from core.engine import BankTraces, Interventions
from core.executors import ProgressFn, Split
from core.sites import Site
from workers.intervention_actor import trace_to
from workers.pool import ActorHandle, ActorPool, Call


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


class RayExecutor:
    """One job's batched interventions on the pool's actors.

    The traced banks go to the object store once (``ray.put``); each actor receives them,
    with the net directory, before its first chunk of this job.

    Args:
        pool: the actors.
        net_dir: the job's net; every actor's node must be able to read it.
        traces: "fit" | "calibration" | "test" -> clean traces (from ``trace_bank``).
        max_rows: rows per stacked forward on an actor.
        chunks_per_actor: chunks of one call per actor (more: finer progress and cancel).
    """

    def __init__(self, pool: ActorPool, net_dir: Path, traces: dict[str, BankTraces],
                 max_rows: int, chunks_per_actor: int = 2) -> None:
        self.pool = pool
        self.job_key = uuid.uuid4().hex
        self.net_dir = str(net_dir)
        self.max_rows = max_rows
        self.chunks_per_actor = chunks_per_actor
        self.device = traces["fit"].base.logits.device
        cpu = torch.device("cpu")
        self._traces_ref = ray.put({split: BankTraces(trace_to(t.base, cpu),
                                                      trace_to(t.source, cpu))
                                    for split, t in traces.items()})
        self._loaded: dict[int, ActorHandle] = {}

    def _prepare(self, actor: ActorHandle) -> None:
        if id(actor) not in self._loaded:
            actor.load_job.remote(self.job_key, self.net_dir, self._traces_ref, self.max_rows)
            self._loaded[id(actor)] = actor

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        return chunk_bounds(count, self.chunks_per_actor * len(self.pool.actors))

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        """(S, P, Y) neural signatures of ``sites`` on the fit bank, chunked over sites."""
        bounds = self._chunks(len(sites))
        frames_ref = ray.put({loc: f.cpu() for loc, f in frames.items()})
        calls = [Call("signatures", (self.job_key, list(sites[a:b]), frames_ref))
                 for a, b in bounds]
        parts: dict[int, Tensor] = {}
        pairs = [0]

        def gather(index: int, value: Tensor) -> None:
            parts[index] = value
            pairs[0] = int(value.shape[1])
            if progress is not None:
                done = sum(int(p.shape[0]) for p in parts.values())
                progress(done * pairs[0], len(sites) * pairs[0])

        self.pool.run(calls, gather, self._prepare)
        return torch.cat([parts[i] for i in range(len(bounds))]).to(self.device)

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None, pairs: int | None = None
                ) -> Tensor:
        """(N, P) bool exact matches, chunked over the N interventions (on the split's first
        ``pairs`` pairs when given)."""
        bounds = self._chunks(interventions.count)
        targets_ref = ray.put(targets.cpu())
        cpu_frames = {k: v.cpu() for k, v in interventions.frames.items()}
        calls = []
        for a, b in bounds:
            part = Interventions({k: v[a:b].cpu() for k, v in
                                  interventions.coefficients.items()}, cpu_frames)
            calls.append(Call("matches", (self.job_key, split, part, targets_ref, pairs)))
        parts: dict[int, Tensor] = {}

        def gather(index: int, value: Tensor) -> None:
            parts[index] = value
            if progress is not None:
                progress(int(value.numel()))

        self.pool.run(calls, gather, self._prepare)
        return torch.cat([parts[i] for i in range(len(bounds))]).to(targets.device)

    def close(self) -> None:
        """Let every actor that loaded this job drop its traced banks."""
        for actor in self._loaded.values():
            actor.release_job.remote(self.job_key)
        self._loaded.clear()

