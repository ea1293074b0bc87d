"""RayBackend: ``core.backend.ComputeBackend`` over an ActorPool, splitting a level's sites
and interventions into chunks that run on the intervention actors, its coupling grid into
CPU tasks, and its DAS trainings across the actors."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import torch
from ray import ObjectRef
from torch import Tensor

from core.backend import ProgressFn, Split
from core.causal.bank import Banks, PairBank
from core.control import CancelCheck, never_cancelled
from core.das_training import DasTraining
from core.engine import BankTraces, Interventions
from core.level_inputs import LevelInputs
from core.nets.outline import NetOutline
from core.plan_grid import GridProblem, PlanOutcome, solve_grid
from core.result import DasRun
from core.sites import Site
from core.spec import DasSpec
from workers.coupling_task import solve_grid_on_ray
from workers.intervention_actor import CONTROL_GROUP
from workers.pool import ActorHandle, ActorPool, Call, chunk_bounds

MIN_KNOBS_FOR_TASKS = 2  # smaller grids are solved in the runner


class RayBackend:
    """One job's compute backend on the pool: interventions and DAS on the actors, coupling
    grids as CPU tasks.

    The traced banks go to the object store once (``ray.put``); each actor receives them,
    with the net directory, before its first chunk of this job.

    Args:
        pool: the actors.
        net_dir: the job's net; every actor's node must be able to read it.
        traces: "fit" | "calibration" | "test" -> clean traces (from ``trace_bank``).
        max_rows: rows per stacked forward on an actor.
        chunks_per_actor: chunks of one call per actor (more: finer progress).
        should_cancel: polled while it waits on Ray; when true, the actors running this
            job's chunks are told to stop them at their next micro-batch.
        coupling_tasks: CPU tasks one knob grid is cut into; 0 solves it in this process.
    """

    def __init__(self, pool: ActorPool, net_dir: Path, traces: dict[str, BankTraces] | None,
                 max_rows: int, chunks_per_actor: int = 2,
                 should_cancel: CancelCheck = never_cancelled,
                 coupling_tasks: int = 4, banks: Banks | None = None,
                 budget: int | None = None) -> None:
        self.pool = pool
        self.job_key = uuid.uuid4().hex
        self.net_dir = str(net_dir)
        self.max_rows = max_rows
        self.chunks_per_actor = chunks_per_actor
        self.should_cancel = should_cancel
        self.coupling_tasks = coupling_tasks
        cpu = torch.device("cpu")
        self.budget = budget
        self._scope: list[str] | tuple[()] | None = ()  # the actors' trace scope (): logits
        self._loaded: dict[int, ActorHandle] = {}
        self._traced = 0  # examples the actors traced for scopes (resolved counts)
        self._tracing: list[ObjectRef[int]] = []  # the actors' counts still to resolve
        if traces is not None:  # traced by the caller: the actors receive them
            self.device = traces["fit"].base.logits.device
            self._traces_ref = ray.put({split: BankTraces(t.base.to_device(cpu),
                                                          t.source.to_device(cpu))
                                        for split, t in traces.items()})
            self._banks_ref = None
        elif banks is not None:  # each actor traces the banks itself
            self.device = cpu
            self._banks_ref = ray.put(Banks(*(cpu_bank(getattr(banks, split))
                                              for split in ("fit", "calibration", "test"))))
        else:
            raise ValueError("a RayBackend needs the traced banks or the banks to trace")

    def _prepare(self, actor: ActorHandle) -> None:
        if id(actor) in self._loaded:
            return
        if self._banks_ref is None:
            actor.load_job.remote(self.job_key, self.net_dir, self._traces_ref, self.max_rows)
        else:
            actor.load_banks.remote(self.job_key, self.net_dir, self._banks_ref,
                                    self.max_rows, self.budget, self._scope)
        self._loaded[id(actor)] = actor

    def clean_traces(self) -> dict[str, BankTraces]:
        """The banks' clean traces without activations (inputs and logits), from an actor
        that traced them: all the driver keeps."""
        out: dict[str, dict[str, BankTraces]] = {}
        self._run([Call("clean_traces", (self.job_key,))],
                  lambda index, value: out.update(traces=value))
        return out["traces"]

    def scope(self, locations: Sequence[str] | None,
              splits: Sequence[Split] | None = None) -> None:
        """Every actor holding the job re-traces its banks (``splits``: those) for
        ``locations`` unless it holds them (before its next chunk: an actor runs one
        caller's calls in order); later ones load with the scope, every bank traced."""
        if self._banks_ref is None:
            return  # the caller's traces are final
        self._scope = None if locations is None else list(locations)
        for actor in self._loaded.values():
            self._tracing.append(actor.scope_job.remote(
                self.job_key, self._scope, None if splits is None else list(splits)))

    @property
    def traced_rows(self) -> int:
        """Examples every actor traced for a scope (an actor skips a scope it holds; an
        actor tracing one bank at a time re-traces inside its calls, not counted here)."""
        if self._tracing:
            self._traced += sum(ray.get(self._tracing))
            self._tracing = []
        return self._traced

    def pca_frames(self, locations: Sequence[str]) -> dict[str, Tensor]:
        """The PCA frames, computed on an actor from its traces."""
        out: dict[str, dict[str, Tensor]] = {}
        self._run([Call("pca_frames", (self.job_key, list(locations)))],
                  lambda index, value: out.update(frames=value))
        return {loc: frame.to(self.device) for loc, frame in out["frames"].items()}

    def _chunks(self, count: int) -> list[tuple[int, int]]:
        return chunk_bounds(count, self.chunks_per_actor * len(self.pool.actors))

    def _run(self, calls: list[Call], gather: Callable[[int, Any], None]) -> None:
        """Run ``calls`` on the pool; on a cancel or an error, stop this job's running chunks
        on every actor that holds it (their queued ones are cancelled by the pool)."""
        try:
            self.pool.run(calls, gather, self._prepare, self.should_cancel)
        except BaseException:
            self.interrupt()
            raise

    def interrupt(self) -> None:
        """Flag this job on its actors (control group: runs beside a chunk)."""
        for actor in self._loaded.values():
            actor.cancel_job.options(concurrency_group=CONTROL_GROUP).remote(self.job_key)

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

        self._run(calls, gather)
        return torch.cat([parts[i] for i in range(len(bounds))]).to(self.device)

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None,
                pairs: int | Tensor | None = None) -> Tensor:
        """(N, P) bool exact matches, chunked over the N interventions (on the split's first
        ``pairs`` pairs, or the pairs a (P',) index names, when given)."""
        targets_ref = ray.put(targets.cpu())
        if isinstance(pairs, Tensor):
            pairs = pairs.cpu()
        return self._chunked("matches", split, interventions, (targets_ref, pairs),
                             progress).to(targets.device)

    def predictions(self, split: Split, interventions: Interventions,
                    progress: Callable[[int], None] | None = None) -> Tensor:
        """(N, P, O) argmax labels, chunked over the N interventions."""
        return self._chunked("predictions", split, interventions, (), progress).to(self.device)

    def _chunked(self, method: str, split: Split, interventions: Interventions,
                 extra: tuple[Any, ...], progress: Callable[[int], None] | None) -> Tensor:
        """The actors' ``method(job, split, chunk, *extra)`` over chunks of the N
        interventions, concatenated in order; ``progress`` gets each chunk's (N × P) rows."""
        bounds = self._chunks(interventions.count)
        moved = interventions.to(torch.device("cpu"))
        calls = [Call(method, (self.job_key, split, moved.slice(a, b), *extra))
                 for a, b in bounds]
        parts: dict[int, Tensor] = {}

        def gather(index: int, value: Tensor) -> None:
            parts[index] = value
            if progress is not None:
                progress(int(value.shape[0] * value.shape[1]))

        self._run(calls, gather)
        return torch.cat([parts[i] for i in range(len(bounds))])

    def solve_grid(self, problem: GridProblem) -> list[PlanOutcome]:
        """The knob grid's plans and candidates, as CPU tasks (``workers.coupling_task``).

        A grid of one plan is solved here: a task could not solve it sooner (the job waits
        for it either way) and would add a round trip, or a worker's cold start.
        """
        if self.coupling_tasks == 0 or len(problem.knobs) < MIN_KNOBS_FOR_TASKS:
            return solve_grid(problem)
        return solve_grid_on_ray(problem, self.coupling_tasks, should_stop=self.should_cancel)

    def train_das(self, trainings: Sequence[DasTraining], inputs: LevelInputs, spec: DasSpec,
                  seed: int, done: Callable[[int], None],
                  checkpoint: Callable[[], None] | None = None) -> list[tuple[DasRun, int]]:
        """Every DAS training on some actor (one call each, completion order, in-flight
        bounded by the pool); results in ``trainings`` order. ``checkpoint`` stays here: the
        actors stop a cancelled job's training at their own next batch."""
        banks_ref = ray.put(Banks(*(cpu_bank(getattr(inputs.banks, split))
                                    for split in ("fit", "calibration", "test"))))
        calls = [Call("train_das", (self.job_key, cpu_training(training), banks_ref,
                                    inputs.coupling, inputs.calibration, spec, seed))
                 for training in trainings]
        runs: dict[int, tuple[DasRun, int]] = {}

        def gather(index: int, value: tuple[DasRun, int]) -> None:
            runs[index] = value
            done(len(runs))

        self._run(calls, gather)
        return [runs[i] for i in range(len(trainings))]

    def close(self) -> None:
        """Let every actor that loaded this job drop its traced banks."""
        for actor in self._loaded.values():
            actor.release_job.remote(self.job_key)
        self._loaded.clear()


def describe_net(pool: ActorPool, net_dir: Path) -> NetOutline:
    """The net's outline from an actor (which loads the net into its cache)."""
    out: dict[str, NetOutline] = {}
    pool.run([Call("describe", (str(net_dir),))], lambda index, value: out.update(net=value))
    return out["net"]


def cpu_bank(bank: PairBank) -> PairBank:
    """``bank`` on the CPU (what goes to the object store)."""
    return bank.to(torch.device("cpu"))


def cpu_training(training: DasTraining) -> DasTraining:
    init = training.target.init
    if init is None:
        return training
    return DasTraining(replace(training.target, init=init.cpu()), training.k)
