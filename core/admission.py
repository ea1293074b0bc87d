"""Admission control: a job's cost estimated from its spec before anything runs, against a
deployment's budgets (``AdmissionLimits``).

Every estimate is arithmetic on the spec, the net's config (``core.nets.size``) and the
number of variables: no net is loaded, no pair drawn. A spec over a budget is refused with a
``SpecError`` naming the field that drives the estimate, its value and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.causal.registry import build_task, check_task_params
from core.errors import ModelLoadError, SpecError, TaskError
from core.handle_choice import MIN_RUNG_PAIRS, RUNG_SHARE
from core.nets.size import NetSize, estimate_net_size
from core.spec import JobSpec, LevelSpec
from core.token_levels import TOKEN_NET_LEVELS

BYTES_PER_VALUE = 4  # traces are float32


@dataclass(frozen=True)
class AdmissionLimits:
    """A deployment's budgets for one job; the defaults are sized for one GPU (80–140 GB)
    and a job that ends within hours. Each is the ``PLOT_<NAME>`` setting of the service.

    Attributes:
        max_pairs_per_bank: pairs of each of the fit, calibration and test banks (100,000;
            the paper uses 1,000).
        max_levels: progressive levels (8; the default schedules have 1–3).
        max_sites_per_level: candidate sites of one level (100,000: its signatures are
            sites × fit pairs × labels floats, 0.8 GB at 1,000 pairs and 2 labels).
        max_calibration_candidates: (k, λ) candidates per variable and level, cost kinds ×
            plans × |top_k| × |strengths| (20,000; the default grid is 2 × 5 × 20 × 17 =
            3,400).
        max_forward_passes: rows run through the net by the whole job: clean traces,
            signatures, calibration, test, controls and DAS epochs (1e9: hours on one GPU
            for the small nets, days for a 2B language model).
        max_trace_bytes: the clean traces of the three banks that one level holds, pairs ×
            2 sides × the largest level's traced width (``traced_width``) × tokens × 4
            bytes (16 GiB).
        max_das_trainings: DAS rotations trained (2,000; full DAS on HEQ is 3 × 5 × 2 = 30).
        max_permutations: label permutations per level (1,000; default 16).
        max_coupling_iterations: ``coupling.max_iter`` (100,000; default 2,000).
        max_net_parameters: parameters of the job's net (8e9: an 8B model in float32 fills
            32 GB; see ``core.nets.size.NetLimits`` for registration).
    """

    max_pairs_per_bank: int = 100_000
    max_levels: int = 8
    max_sites_per_level: int = 100_000
    max_calibration_candidates: int = 20_000
    max_forward_passes: int = 1_000_000_000
    max_trace_bytes: int = 16 * 2**30
    max_das_trainings: int = 2_000
    max_permutations: int = 1_000
    max_coupling_iterations: int = 100_000
    max_net_parameters: int = 8_000_000_000


DEFAULT_LIMITS = AdmissionLimits()


@dataclass(frozen=True)
class NetInfo:
    """What admission knows of a job before it runs.

    Attributes:
        size: the net's size from its config; None when unknown (every estimate that needs
            widths then counts the spec's own sizes only).
        variables: the task's or dataset's variables (2 when unknown).
        default_levels: the built-in task's schedule, used when the spec gives none.
    """

    size: NetSize | None = None
    variables: int = 2
    default_levels: tuple[LevelSpec, ...] = ()


@dataclass(frozen=True)
class Admission:
    """The estimates of an admitted job (each under its limit).

    Attributes:
        pairs: pairs over the three banks.
        sites: candidate sites per level.
        calibration_candidates: the largest per-variable candidate grid of a level.
        forward_passes: rows the whole job runs through the net.
        trace_bytes: memory of the clean traces.
        das_trainings: DAS rotations trained (0 when DAS is off).
        permutations: label-permutation couplings over all levels (0 when off).
        terms: the forward passes by part (``signatures``, ``calibration``, ...).
    """

    pairs: int
    sites: tuple[int, ...]
    calibration_candidates: int
    forward_passes: int
    trace_bytes: int
    das_trainings: int
    permutations: int
    terms: dict[str, int] = field(default_factory=dict)


def _refuse(where: str, value: object, what: str, estimate: int, limit: int, name: str
            ) -> SpecError:
    shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    if value == estimate:
        return SpecError(f"{shown} is over the limit of {limit:,} {what} ({name})", where)
    return SpecError(f"{shown} gives an estimated {estimate:,} {what}, over the limit of "
                     f"{limit:,} ({name})", where)


def _check(estimate: int, limit: int, name: str, where: str, value: object, what: str) -> None:
    if estimate > limit:
        raise _refuse(where, value, what, estimate, limit, name)


def schedule_of(spec: JobSpec, info: NetInfo) -> list[LevelSpec]:
    """The levels the job will run: the spec's, the task's, else by the net's kind (as
    ``core.job.default_levels`` chooses them)."""
    if spec.levels:
        return list(spec.levels)
    if info.default_levels:
        return list(info.default_levels)
    if info.size is not None and info.size.arch == "gru":
        return [LevelSpec(granularity="step", keep=1), LevelSpec(granularity="pca")]
    if info.size is not None and info.size.arch in ("transformer", "hf"):
        return [LevelSpec(**level) for level in TOKEN_NET_LEVELS]
    return [LevelSpec(granularity="block", block_size=8), LevelSpec(granularity="neuron")]


def _parent_width(level: LevelSpec, width: int) -> int:
    """Coordinates of one site a level keeps (what the next level refines; the widest of
    a level's sites)."""
    return {"block": max(level.group_sizes), "neuron": 1,
            "pca": width if level.prefixes else level.band_size}.get(level.granularity, width)


def _refinements(level: LevelSpec, parent_width: int) -> int:
    """Sites a block, neuron or PCA level makes of one parent of ``parent_width``
    coordinates: every group size's groups; bands and, with ``prefixes``, the nested
    prefixes (1, 2, 4, … and the whole parent)."""
    if level.granularity == "block":
        return sum(math.ceil(parent_width / size) for size in level.group_sizes)
    if level.granularity == "neuron":
        return parent_width
    prefixes = (math.ceil(math.log2(parent_width)) + 1) if level.prefixes else 0
    return math.ceil(parent_width / level.band_size) + prefixes


def estimate_sites(schedule: Sequence[LevelSpec], size: NetSize | None, variables: int
                   ) -> list[int]:
    """Candidate sites per level: the first level over every location of the net (its
    widths), each later one refining the ``keep`` × variables sites the level before kept.

    Without a known net a location counts as one site (a lower bound)."""
    locations = size.locations if size is not None else 1
    stream = size.stream_width if size is not None else 1
    width = size.max_width if size is not None else 1
    tokens = size.tokens if size is not None else 1
    sites: list[int] = []
    parent_width, previous = width, 0
    for i, level in enumerate(schedule):
        grain = level.granularity
        refining = grain in ("block", "neuron", "pca")
        if i == 0:
            count = tokens * (_refinements(level, stream) if refining
                              else 1 if grain == "position" else locations)
        else:
            parents = min(previous, schedule[i - 1].keep * variables)
            pw = min(parent_width, width)
            count = parents * (_refinements(level, pw) if refining else locations)
        sites.append(max(count, 1))
        previous, parent_width = count, _parent_width(level, width)
    return sites


def traced_width(schedule: Sequence[LevelSpec], size: NetSize, variables: int) -> int:
    """Coordinates per example and token the largest level's traces keep.

    An MLP or GRU trace keeps every location at every level (``stream_width``). A token
    net's level keeps only the stream layers its locations need (``core.nets.tokens``): a
    residual site one layer, an attention, head or MLP site up to three (the residuals around
    its block and the heads); a position level one block, a layer or head level every
    block, a finer level its parents' blocks (every block at a first level).
    """
    if size.blocks <= 0 or size.d_model <= 0:
        return size.stream_width
    width, every, blocks = size.d_model, size.stream_width, size.blocks
    widest = 0
    parents: int | None = None  # locations the previous level kept
    for level in schedule:
        per_block = 1 if level.component == "resid" else 3
        if level.granularity == "position":
            layers = per_block
        elif level.granularity in ("layer", "head", "step"):
            layers = blocks * per_block
        else:
            layers = 2 * blocks + 1 if parents is None else 3 * parents
        widest = max(widest, min(layers * width, every))
        parents = level.keep * variables
    return widest


def _calibration_grid(spec: JobSpec) -> tuple[int, int]:
    """(plans, candidates per variable and level), every cost kind's together."""
    plans = len(spec.coupling.cost) * len(spec.coupling.epsilons) * (
        len(spec.coupling.betas) if spec.coupling.solver == "unbalanced" else 1)
    return plans, plans * len(spec.calibration.top_k) * len(spec.calibration.strengths)


def estimate_forward_passes(spec: JobSpec, sites: Sequence[int], variables: int,
                            das_trainings: int, locations: int = 1) -> dict[str, int]:
    """Rows run through the net, by part, as upper bounds: clean traces (2 per pair),
    signatures (a site × fit pair each), calibration (every candidate on the first rung
    and the screening pairs, the finalists on the whole bank), test (soft and hard
    handles), the random-net control (by its scope), the depth check (a full-vector
    interchange at each of the net's ``locations``, scored for every variable at once) and
    DAS (a training's epochs over the fit bank)."""
    pairs = spec.pairs
    kinds = len(spec.coupling.cost)  # each kind's candidates are calibrated on their own
    candidates = _calibration_grid(spec)[1] // kinds
    per_level_calibration = variables * kinds * _calibration_passes(spec, candidates,
                                                                    variables)
    levels = len(sites)
    per_level_test = variables * 2 * kinds * pairs.test
    terms = {
        "traces": 2 * (pairs.fit + pairs.calibration + pairs.test),
        "signatures": sum(sites) * pairs.fit,
        "calibration": levels * per_level_calibration,
        "test": levels * per_level_test,
        "das": das_trainings * spec.das.max_epochs * pairs.fit,
    }
    if spec.controls.random_net:
        terms["random_net"] = _random_net_passes(spec, terms, sites, variables,
                                                 per_level_calibration + per_level_test)
    if spec.controls.depth_check:
        terms["depth_check"] = locations * pairs.test
    return terms


def _calibration_passes(spec: JobSpec, candidates: int, variables: int) -> int:
    """(candidate × pair) forwards of one variable's calibration of one cost kind: the
    first rung and the screening pairs for every candidate (none is assumed dropped), then
    the finalists on the whole bank (``core.handle_choice.score_candidates``). A
    per-variable calibration bank scores each variable on its own share of the pairs."""
    calibration = spec.pairs.calibration
    if spec.pairs.calibration_scope == "per_variable":
        calibration //= variables
    screen = spec.calibration.screen_pairs
    if not (0 < screen < calibration and candidates > spec.calibration.finalists):
        return candidates * calibration
    rung = screen // RUNG_SHARE if screen // RUNG_SHARE >= MIN_RUNG_PAIRS else 0
    return candidates * (rung + screen) + spec.calibration.finalists * calibration


def _random_net_passes(spec: JobSpec, terms: Mapping[str, int], sites: Sequence[int],
                       variables: int, first_level_handles: int) -> int:
    """The random-net control by ``controls.random_net_scope``: ``schedule`` reruns the
    levels; ``handles`` traces the random net's banks and recalibrates every real handle
    (each level's, λ only) on it, then tests it; ``first_level`` adds the first level."""
    pairs = spec.pairs
    scope = spec.controls.random_net_scope
    if scope == "schedule":
        return terms["traces"] + terms["signatures"] + terms["calibration"] + terms["test"]
    handles = len(sites) * variables * (len(spec.calibration.strengths) * pairs.calibration
                                        + 2 * pairs.test)
    first = sites[0] * pairs.fit + first_level_handles if scope == "first_level" and sites \
        else 0
    return terms["traces"] + handles + first


def estimate_das_trainings(spec: JobSpec, schedule: Sequence[LevelSpec], size: NetSize | None,
                           variables: int) -> int:
    """Full: every location × k × variable × restart. Guided: each variable's kept sites ×
    the two ends of its k range, its best run restarted (``restart_best``), and, when a
    widening trigger is set, at most every other location it may widen to (a token net:
    every block at its kept positions) × three ranks; all × restarts."""
    das = spec.das
    if das.mode == "off":
        return 0
    if das.mode == "full":
        locations = size.locations if size is not None else 1
        return locations * len(das.dims) * variables * das.restarts
    keep = schedule[-1].keep if schedule else 1
    per_variable = keep * 2 + (1 if das.restart_best else 0)
    widens = (das.widen_below, das.widen_margin, das.widen_weak_handle) != (None, None, None)
    if widens and size is not None:
        wider = size.blocks * keep if size.arch in ("transformer", "hf") else size.locations
        per_variable += 3 * max(wider - 1, 0)
    return per_variable * variables * das.restarts


# forward-pass term -> the spec field that drives it
_TERM_FIELDS = {
    "traces": "pairs", "signatures": "levels", "calibration": "calibration.top_k",
    "test": "pairs.test", "das": "das.max_epochs", "random_net": "controls.random_net",
    "depth_check": "controls.depth_check",
}


def _term_value(spec: JobSpec, term: str) -> object:
    return {
        "traces": spec.pairs.fit + spec.pairs.calibration + spec.pairs.test,
        "signatures": len(spec.levels) if spec.levels else "the default schedule",
        "calibration": f"{len(spec.calibration.top_k)} sizes × "
                       f"{len(spec.calibration.strengths)} strengths",
        "test": spec.pairs.test, "das": spec.das.max_epochs,
        "random_net": True, "depth_check": True,
    }[term]


def _check_grid_sizes(spec: JobSpec, limits: AdmissionLimits, schedule: Sequence[LevelSpec]
                      ) -> None:
    pairs = spec.pairs
    for split in ("fit", "calibration", "test"):
        value = getattr(pairs, split)
        _check(value, limits.max_pairs_per_bank, "max_pairs_per_bank", f"pairs.{split}",
               value, "pairs per bank")
    _check(len(schedule), limits.max_levels, "max_levels", "levels", len(schedule),
           "levels")
    _check(spec.coupling.max_iter, limits.max_coupling_iterations, "max_coupling_iterations",
           "coupling.max_iter", spec.coupling.max_iter, "iterations per solve")
    if spec.controls.label_permutation:
        _check(spec.controls.permutations, limits.max_permutations, "max_permutations",
               "controls.permutations", spec.controls.permutations, "permutations per level")
    plans, candidates = _calibration_grid(spec)
    calibration = spec.calibration
    if candidates > limits.max_calibration_candidates:
        # name the largest of the grid's three factors
        factors = {"calibration.top_k": len(calibration.top_k),
                   "calibration.strengths": len(calibration.strengths),
                   "coupling.epsilons": plans}
        where = max(factors, key=factors.__getitem__)
        raise _refuse(where, f"{factors[where]} entries", "calibration candidates per "
                      "variable and level", candidates, limits.max_calibration_candidates,
                      "max_calibration_candidates")


def admit(spec: JobSpec, limits: AdmissionLimits = DEFAULT_LIMITS,
          net_info: NetInfo | None = None) -> Admission:
    """Estimate a job's cost from its spec and refuse it when over a budget.

    Args:
        spec: the validated job spec.
        limits: the deployment's budgets.
        net_info: the net's size, the variables and the task's default schedule
            (``describe_job``); None: nothing known beyond the spec.

    Returns:
        The estimates, every one within ``limits``.

    Raises:
        SpecError: ``where`` is the field that drives the refused estimate
            (``pairs.fit``, ``calibration.top_k``, ``das.restarts``, ``task.params.NAME``,
            ``model``); the message gives its value, the estimate and the limit.
    """
    info = net_info or NetInfo()
    if spec.task.builtin is not None:
        try:
            check_task_params(spec.task.builtin, spec.task.params)
        except TaskError as error:
            raise SpecError(error.message, error.where) from None
    if info.size is not None:
        _check(info.size.parameters, limits.max_net_parameters, "max_net_parameters",
               "model", f"the net ({info.size.largest_field})", "parameters")
    schedule = schedule_of(spec, info)
    _check_grid_sizes(spec, limits, schedule)
    variables = max(info.variables, 1)
    sites = estimate_sites(schedule, info.size, variables)
    for i, count in enumerate(sites):
        _check(count, limits.max_sites_per_level, "max_sites_per_level",
               f"levels.{i}" if spec.levels else "levels", schedule[i].granularity,
               "candidate sites")
    pairs = spec.pairs.fit + spec.pairs.calibration + spec.pairs.test
    stream, tokens = ((traced_width(schedule, info.size, variables), info.size.tokens)
                      if info.size is not None else (1, 1))
    trace_bytes = pairs * 2 * stream * tokens * BYTES_PER_VALUE
    _check(trace_bytes, limits.max_trace_bytes, "max_trace_bytes", "pairs", pairs,
           "trace bytes")
    das_trainings = estimate_das_trainings(spec, schedule, info.size, variables)
    _check(das_trainings, limits.max_das_trainings, "max_das_trainings", "das.restarts",
           spec.das.restarts, f"DAS trainings ({spec.das.mode})")
    locations = info.size.locations if info.size is not None else 1
    terms = estimate_forward_passes(spec, sites, variables, das_trainings, locations)
    total = sum(terms.values())
    if total > limits.max_forward_passes:
        term = max(terms, key=terms.__getitem__)
        raise _refuse(_TERM_FIELDS[term], _term_value(spec, term),
                      f"forward passes ({term} {terms[term]:,})", total,
                      limits.max_forward_passes, "max_forward_passes")
    return Admission(
        pairs=pairs, sites=tuple(sites), calibration_candidates=_calibration_grid(spec)[1],
        forward_passes=total, trace_bytes=trace_bytes, das_trainings=das_trainings,
        permutations=len(sites) * spec.controls.permutations
        if spec.controls.label_permutation else 0,
        terms=terms)


def describe_job(spec: JobSpec, net_config: Mapping[str, Any] | None,
                 variables: int | None = None) -> NetInfo:
    """What admission needs of a job: its net's size from ``net_config`` (a registered
    net's stored config, a ``config.json``; None: the built-in task's default net), its
    variables and the task's default schedule.

    Args:
        spec: the validated spec.
        net_config: the net's config, or None.
        variables: the dataset's variables (a built-in task counts its own).

    Raises:
        SpecError: an unknown or out-of-range task parameter (``task.params.NAME``).
    """
    levels: tuple[LevelSpec, ...] = ()
    count = variables or 2
    config = dict(net_config) if net_config is not None else None
    if spec.task.builtin is not None:
        try:
            task = build_task(spec.task.builtin, spec.task.params)
        except TaskError as error:
            raise SpecError(error.message, error.where) from None
        count = len(task.variables)
        levels = tuple(LevelSpec(**level) for level in task.default_levels())
        if config is None:
            config = task.default_net_config()
    try:
        size = estimate_net_size(config) if config is not None else None
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError("the net's config lacks a size field", "model") from None
    return NetInfo(size=size, variables=count, default_levels=levels)
