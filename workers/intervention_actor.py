"""InterventionActor: one per GPU (or a few CPU ones); caches nets by content hash, holds
each job's traced banks and runs chunks of a level's batched interventions, and DAS
trainings, with the engine.

A plain class: ``ray.remote(...)(InterventionActor).options(...)`` wraps it at spawn
(``workers.cluster.spawn_intervention_actor``), so it is tested without Ray. It returns
signatures, exact-match tables and DAS runs, never activations. ``cancel_job`` and
``stats`` run in the ``control`` concurrency group, beside a running chunk: a cancelled
job's chunk stops at its next micro-batch boundary.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from core.backend import LocalBackend, Split
from core.causal.bank import Banks
from core.das_training import DasTraining, train_target
from core.engine import BankTraces, Interventions, trace_bank
from core.errors import JobCancelled, PlotError
from core.level_inputs import LevelInputs
from core.nets.base import InterventableNet
from core.nets.io import load_net, net_digest
from core.nets.outline import NetOutline
from core.result import DasRun
from core.sites import Site
from core.spec import CalibrationSpec, CouplingSpec, DasSpec

DEFAULT_NET_CACHE_BYTES = 2 * 2**30
CONTROL_GROUP = "control"  # the concurrency group of cancel_job and stats


class JobNotLoaded(PlotError):
    """A chunk arrived for a job whose net and banks this actor does not hold."""


def net_bytes(net: InterventableNet) -> int:
    """Bytes of a net's parameters and buffers (what its cache entry costs)."""
    tensors = [*net.parameters(), *net.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class NetCache:
    """Nets by content digest, least recently used evicted first, bounded by a byte budget.

    The most recently loaded net always stays, even alone over the budget.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self._nets: OrderedDict[str, tuple[InterventableNet, int]] = OrderedDict()

    def __contains__(self, digest: str) -> bool:
        return digest in self._nets

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._nets.values())

    def get(self, digest: str) -> InterventableNet | None:
        if digest not in self._nets:
            return None
        self._nets.move_to_end(digest)
        return self._nets[digest][0]

    def put(self, digest: str, net: InterventableNet) -> None:
        self._nets[digest] = (net, net_bytes(net))
        self._nets.move_to_end(digest)
        while len(self._nets) > 1 and self.used_bytes > self.budget_bytes:
            self._nets.popitem(last=False)


@dataclass(frozen=True)
class LoadedJob:
    """What a chunk of one job needs: its net and the clean traces of its banks (held by
    a ``LocalBackend``, which re-traces them per level when the actor traced them)."""

    digest: str
    backend: LocalBackend

    @property
    def net(self) -> InterventableNet:
        return self.backend.net

    @property
    def traces(self) -> dict[str, BankTraces]:
        return self.backend.traces

    @property
    def max_rows(self) -> int:
        return self.backend.max_rows


class InterventionActor:
    """Runs chunks of batched interchange interventions for the jobs loaded into it.

    Args:
        device: ``cpu``, ``cuda`` (this actor's GPU) or ``auto``.
        net_cache_bytes: the byte budget of the nets kept loaded.
    """

    def __init__(self, device: str = "auto",
                 net_cache_bytes: int = DEFAULT_NET_CACHE_BYTES) -> None:
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.nets = NetCache(net_cache_bytes)
        self._jobs: dict[str, LoadedJob] = {}
        self._flags = threading.Lock()  # cancel_job runs on the control group's thread
        self._cancelled: dict[str, int] = {}  # job -> micro-batches run when it was flagged
        self.micro_batches = 0
        self.das_trainings = 0
        self.interruptions: list[tuple[int, int]] = []  # (flagged at, stopped at) batches

    def ping(self) -> str:
        return str(self.device)

    def _net(self, net_dir: str) -> tuple[str, InterventableNet]:
        digest = net_digest(net_dir)
        net = self.nets.get(digest)
        if net is None:
            net = load_net(Path(net_dir), device=self.device)
            self.nets.put(digest, net)
        return digest, net

    def describe(self, net_dir: str) -> NetOutline:
        """The net's outline (locations, shapes, config, text encoder; no weights), loading
        the net into the cache: what a job driver needs of it.

        Raises:
            ModelLoadError: the net directory cannot be read on this node.
        """
        return NetOutline(self._net(net_dir)[1])

    def load_job(self, job_key: str, net_dir: str, traces: dict[str, BankTraces],
                 max_rows: int) -> str:
        """Hold ``job_key``'s net (loaded once per content digest) and traced banks.

        Returns:
            The net's digest.

        Raises:
            ModelLoadError: the net directory cannot be read on this node.
        """
        digest, net = self._net(net_dir)
        on_device = {split: BankTraces(t.base.to_device(self.device),
                                       t.source.to_device(self.device))
                     for split, t in traces.items()}
        self._jobs[job_key] = LoadedJob(digest, LocalBackend(net, on_device, max_rows))
        return digest

    def load_banks(self, job_key: str, net_dir: str, banks: Banks, max_rows: int,
                   budget: int | None = None, locations: Sequence[str] | None = ()
                   ) -> dict[str, BankTraces]:
        """Hold ``job_key``'s net and banks and trace them here, for ``locations`` (the
        job's current scope; ``()``: the clean logits only).

        Returns:
            The banks' clean traces without activations, on the CPU (what the driver keeps).
        """
        digest, net = self._net(net_dir)
        on_device = Banks(*(getattr(banks, split).to(self.device)
                            for split in ("fit", "calibration", "test")))
        first: tuple[str, ...] | None = () if net.scoped_traces else None
        traces = {split: trace_bank(net, getattr(on_device, split), max_rows, first)
                  for split in ("fit", "calibration", "test")}
        backend = LocalBackend(net, traces, max_rows, on_device, budget)
        if locations != ():
            backend.scope(locations)
        self._jobs[job_key] = LoadedJob(digest, backend)
        return self.clean_traces(job_key)

    def clean_traces(self, job_key: str) -> dict[str, BankTraces]:
        """The job's clean traces without activations, on the CPU."""
        cpu = torch.device("cpu")
        return {split: BankTraces(t.base.without_activations().to_device(cpu),
                                  t.source.without_activations().to_device(cpu))
                for split, t in self._job(job_key).traces.items()}

    def scope_job(self, job_key: str, locations: Sequence[str] | None,
                  splits: Sequence[Split] | None = None) -> int:
        """Trace the job's banks (``splits``: those) for ``locations`` unless they are
        held (``LocalBackend.scope``); the examples traced (0 when it held them)."""
        backend = self._job(job_key).backend
        before = backend.traced_rows
        backend.scope(locations, splits)
        return backend.traced_rows - before

    def pca_frames(self, job_key: str, locations: Sequence[str]) -> dict[str, Tensor]:
        """(D, K) PCA frames of the job's fit activations at ``locations``, on the CPU."""
        frames = self._job(job_key).backend.pca_frames(locations)
        return {loc: frame.cpu() for loc, frame in frames.items()}

    def release_job(self, job_key: str) -> None:
        """Forget a job's traced banks (its net stays cached) and its cancel flag."""
        with self._flags:
            self._jobs.pop(job_key, None)
            self._cancelled.pop(job_key, None)

    def cancel_job(self, job_key: str) -> bool:
        """Flag a loaded job: its running chunk stops after the current micro-batch, its
        later chunks do not start. Call it in the control group (it runs beside a chunk).

        Returns:
            Whether this actor held the job.
        """
        with self._flags:
            if job_key not in self._jobs:
                return False
            self._cancelled.setdefault(job_key, self.micro_batches)
            return True

    def stats(self) -> dict[str, Any]:
        """Micro-batches and DAS trainings run so far and, per interrupted chunk,
        (micro-batches run when its job was flagged, when it stopped)."""
        with self._flags:
            return {"micro_batches": self.micro_batches, "das_trainings": self.das_trainings,
                    "interruptions": list(self.interruptions)}

    def _checkpoint(self, job_key: str) -> None:
        """Between micro-batches: stop here when the job was cancelled."""
        with self._flags:
            flagged = self._cancelled.get(job_key)
            if flagged is not None:
                self.interruptions.append((flagged, self.micro_batches))
        if flagged is not None:
            raise JobCancelled("cancelled on the intervention actor", job_key)

    def _count_batch(self, job_key: str) -> None:
        self.micro_batches += 1
        self._checkpoint(job_key)

    def jobs(self) -> list[str]:
        return list(self._jobs)

    def _job(self, job_key: str) -> LoadedJob:
        if job_key not in self._jobs:
            raise JobNotLoaded("this actor holds no net and banks for the job", job_key)
        return self._jobs[job_key]

    def signatures(self, job_key: str, sites: Sequence[Site], frames: dict[str, Tensor]
                   ) -> Tensor:
        """(S, P, Y) neural signatures of ``sites`` on the job's fit bank, on the CPU."""
        job = self._job(job_key)
        self._checkpoint(job_key)
        frames = {loc: f.to(self.device) for loc, f in frames.items()}
        out = job.backend.signatures(sites, frames,
                                     lambda done, total: self._count_batch(job_key))
        return out.cpu()

    def matches(self, job_key: str, split: Split, interventions: Interventions,
                targets: Tensor, pairs: int | Tensor | None = None) -> Tensor:
        """(N, P) bool exact matches of ``interventions`` on the job's ``split`` bank (its
        first ``pairs`` pairs, or the pairs a (P',) index names, when given: calibration
        screening, a variable's own pairs)."""
        job = self._job(job_key)
        self._checkpoint(job_key)
        out = job.backend.matches(split, interventions.to(self.device),
                                  targets.to(self.device),
                                  lambda rows: self._count_batch(job_key), pairs)
        return out.cpu()

    def predictions(self, job_key: str, split: Split, interventions: Interventions
                    ) -> Tensor:
        """(N, P, O) argmax labels of ``interventions`` on the job's ``split`` bank, on the
        CPU."""
        job = self._job(job_key)
        self._checkpoint(job_key)
        out = job.backend.predictions(split, interventions.to(self.device),
                                      lambda rows: self._count_batch(job_key))
        return out.cpu()

    def train_das(self, job_key: str, training: DasTraining, banks: Banks,
                  coupling: CouplingSpec, calibration: CalibrationSpec, spec: DasSpec,
                  seed: int) -> tuple[DasRun, int]:
        """One DAS training of the job (``core.das_training.train_target``) on its net and
        traced banks. A cancel (``cancel_job``) stops it at its next batch.

        Returns:
            The run and the (pair) partial forwards it spent.
        """
        job = self._job(job_key)
        self._checkpoint(job_key)
        target = training.target
        if target.init is not None:
            target = replace(target, init=target.init.to(self.device))
        inputs = LevelInputs.local(job.net, banks, job.traces, coupling, calibration,
                                   job.max_rows)
        trained = train_target(target, training.k, inputs, spec, seed,
                               lambda: self._checkpoint(job_key))
        self.das_trainings += 1
        return trained
