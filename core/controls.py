"""Controls beside a job's handles: a random net, permuted labels, and a depth check.

*Random-net control*: the same architecture with random weights (freshly initialised, or each
weight tensor's entries shuffled), calibrated on the same banks: the site set of every
handle the job chose (or, on request, also the schedule's first level, or the whole
schedule). Expressive
handles reach some IIA on any net; the real handles mean something only as far as they beat
this one.

*Label-permutation control* (computed inside each level, ``core.label_permutation``): here
only summarised at each variable's handle level.

*Depth check*: the plain full-vector interchange at each handle's locations and at every
location after them. An interchange late enough copies the source's output; a handle that
does no better than that localizes nothing but the output.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from core.backend import LocalBackend, ProgressFn
from core.calibrate import Candidate
from core.control import NO_CONTROL, JobControl
from core.coupling import Coupling
from core.engine import Interventions, trace_bank
from core.errors import JobCancelled
from core.events import EngineEvent
from core.handle_choice import calibrate_variable
from core.label_permutation import PermutationControl
from core.level_inputs import LevelInputs
from core.level_sites import pca_frames
from core.memory import fits, trace_bytes_per_example
from core.nets.base import InterventableNet
from core.progressive import best_handles, run_levels
from core.result import (
    ControlsResult,
    DepthPoint,
    HandleResult,
    LevelResult,
    RandomNetControl,
)
from core.sites import is_token_net, parse_site, parse_token_location
from core.spec import ControlsSpec, LevelSpec, RandomNetScope, RandomWeights
from core.verdict import OUTPUT_COPY_MARGIN, RANDOM_NET_MARGIN

# a real handle closer than these to the random net's, or to copying the output, is flagged
# here and is not localized (core.verdict): one pair of margins for both


# ---------------------------------------------------------------- random net


def randomized_net(net: InterventableNet, weights: RandomWeights, seed: int
                   ) -> InterventableNet:
    """A copy of ``net`` with random weights; ``net`` itself is left untouched.

    ``reinit`` calls every submodule's ``reset_parameters`` under a seeded RNG (the global
    RNG state is restored after); a parameter no module resets is drawn from a normal with
    the trained tensor's mean and standard deviation. ``shuffle`` permutes the entries of
    every parameter tensor (each layer keeps its weight distribution). The copy owns its
    tensors: nothing is shared with ``net``.
    """
    clone = copy.deepcopy(net)
    generator = torch.Generator().manual_seed(seed)
    trained = dict(net.named_parameters())
    with torch.no_grad():
        if weights == "shuffle":
            for param in clone.parameters():
                order = torch.randperm(param.numel(), generator=generator).to(param.device)
                param.copy_(param.flatten()[order].view_as(param))
            return clone.eval()
        cuda = sorted({p.device.index or 0 for p in clone.parameters()
                       if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=cuda):
            torch.manual_seed(seed)
            for module in clone.modules():
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
        for name, param in clone.named_parameters():
            if torch.equal(param, trained[name]):  # no module resets it: draw it afresh
                original = trained[name].float()
                spread = float(original.std()) if original.numel() > 1 else 1.0
                noise = torch.randn(param.shape, generator=generator)
                param.copy_((noise * spread + float(original.mean())).to(param))
    return clone.eval()


def base_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of rows where every head's argmax of (P, O, C) ``logits`` equals (P, O) labels."""
    return float((logits.argmax(-1) == labels.to(logits.device)).all(-1).float().mean())


def random_net_inputs(inputs: LevelInputs, weights: RandomWeights, seed: int,
                      control: JobControl, locations: Sequence[str] | None = (),
                      budget: int | None = None) -> tuple[LevelInputs, int]:
    """The job's inputs on a random copy of its net (the random net's own clean traces),
    in this process; with the forward passes the traces cost.

    The banks are traced for ``locations`` only (``()``: the clean logits, each level then
    traces what it needs; None: every location) and their traces kept to ``budget`` bytes
    as a job's are (``LocalBackend.scope``: on the host or one bank at a time beyond it).
    A net whose trace keeps every location anyway is traced once, whole.
    """
    net = randomized_net(inputs.net, weights, seed)
    banks = inputs.banks
    examples = 2 * (banks.fit.size + banks.calibration.size + banks.test.size)
    wanted = None if locations is None else sorted(set(locations))
    over = bool(wanted) and not fits(examples * trace_bytes_per_example(net, wanted), budget)
    # the logits first when over the budget: ``scope`` then keeps the traces beyond it
    held = None if not net.scoped_traces else [] if over else wanted
    traces = {}
    for split in ("fit", "calibration", "test"):
        control.check("cancelled while tracing the random-net control", "controls.random_net")
        traces[split] = trace_bank(net, getattr(banks, split), inputs.max_rows, held)
    backend = LocalBackend(net, traces, inputs.max_rows, banks, budget, held)
    random = LevelInputs(net, banks, traces, inputs.coupling, inputs.calibration,
                         inputs.max_rows, backend)
    if net.scoped_traces and over:
        backend.scope(wanted)
        examples *= 2
    return random, examples


def handle_locations(widths: Mapping[str, int], handles: Sequence[HandleResult]
                     ) -> tuple[list[str], list[str]]:
    """The locations ``handles``' sites read, in net order, and those of their PCA sites."""
    known = dict(widths)
    sites = [parse_site(s, known) for handle in handles for s in handle.sites]
    order = list(widths)
    every = sorted({s.location for s in sites}, key=order.index)
    return every, [loc for loc in every if any(s.kind == "pca" and s.location == loc
                                               for s in sites)]


def site_set_handle(inputs: LevelInputs, handle: HandleResult, progress: ProgressFn,
                    frames: Mapping[str, Tensor] | None = None) -> tuple[HandleResult, int]:
    """A real handle's own sites and weights calibrated on ``inputs`` (the random net): its
    strength chosen again on the calibration bank from the job's grid, then tested.

    A PCA site reads its location in the principal directions of the random net's own
    activations there: ``frames`` (location -> (D, K)) when given, else computed here.
    Returns the handle and the forward passes spent.
    """
    widths = inputs.net.widths
    sites = [parse_site(s, widths) for s in handle.sites]
    pca = [s.location for s in sites if s.kind == "pca"]
    if frames is None:
        frames = pca_frames(inputs, pca) if pca else {}
    mine = {loc: frames[loc] for loc in pca}
    directions = {loc: int(mine[loc].shape[1]) if loc in mine else width
                  for loc, width in widths.items()}
    order = tuple(range(len(sites)))
    candidates = [Candidate(0, handle.k, float(strength), order, tuple(handle.weights))
                  for strength in sorted({*inputs.calibration.strengths, handle.strength})]
    plan = Coupling(plan=torch.zeros(1, len(sites)), solver="sinkhorn",
                    epsilon=handle.epsilon, beta=handle.beta, n_iter=0, converged=True)
    return calibrate_variable(handle.level, handle.variable, candidates, [plan], sites,
                              directions, mine, inputs, progress)


def run_random_net_control(schedule: Sequence[LevelSpec], inputs: LevelInputs,
                           weights: RandomWeights, seed: int,
                           control: JobControl = NO_CONTROL,
                           real: Sequence[LevelResult] = (),
                           scope: RandomNetScope = "handles",
                           budget: int | None = None) -> RandomNetControl:
    """Calibrate handles on a random copy of ``inputs.net``, in this process.

    ``handles`` (the default, a small fraction of the job): every handle the real job chose,
    at every level of ``real``, calibrated again on its own site set there
    (``site_set_handle``: the same sites and weights, the strength chosen on the random
    net's calibration bank). ``first_level`` adds the schedule's first level run there;
    ``schedule`` reruns the whole schedule there instead. Per variable the random net's
    handle is the one with the best calibration IIA, as the job chooses its own. What the
    control asks is whether the sites the job settled on, at a tuned strength, reach the
    real IIA on a net that computes nothing. The banks, coupling and calibration knobs are
    the job's; the clean traces are the random net's own, for the locations the levels and
    handles read only, kept to ``budget`` bytes as the job's are (``random_net_inputs``);
    each PCA location's frame is computed once for every handle there. Progress is relayed
    as ``control`` events (not level events, so the job's level counters are not
    disturbed).
    """
    started = time.perf_counter()
    control.check("cancelled before the random-net control ran", "controls.random_net")
    levels = list(schedule) if scope == "schedule" else list(schedule[:1]) \
        if scope == "first_level" else []
    recalibrate = [] if scope == "schedule" else [
        handle for level in real if not (scope == "first_level" and level.index == 0)
        for handle in level.handles.values()]  # (the first level ran on the random net)
    locations, pca = handle_locations(inputs.net.widths, recalibrate)
    random, passes = random_net_inputs(inputs, weights, seed, control,
                                       () if levels else locations, budget)

    def relay(event: EngineEvent) -> None:
        if event.kind == "progress":
            control.emit("control", {"control": "random_net", **event.data})

    relayed = replace(control, on_event=relay)
    try:
        results = run_levels(levels, random, relayed) if levels else []
        handles = best_handles(results)
        passes += sum(level.forward_passes for level in results)
        if recalibrate:
            progress = relayed.progress("progress", {"stage": "calibration"},
                                        "cancelled while calibrating the real handles' sites",
                                        "controls.random_net")
            random.backend.scope(locations)  # (held already unless levels ran)
            frames = pca_frames(random, pca) if pca else {}
            for handle in recalibrate:
                mine, spent = site_set_handle(random, handle, progress, frames)
                passes += spent
                variable = handle.variable
                if variable not in handles or \
                        mine.iia_calibration >= handles[variable].iia_calibration:
                    handles[variable] = mine
    except JobCancelled as cancelled:  # name the control, not the job's own level
        raise JobCancelled(f"{cancelled.message} of the random-net control",
                           "controls.random_net") from None
    return RandomNetControl(
        weights=weights, seed=seed, handles=handles,
        base_accuracy=base_accuracy(random.traces["test"].base.logits,
                                    inputs.banks.test.base_labels),
        runtime_s=time.perf_counter() - started, forward_passes=passes)


# ---------------------------------------------------------------- depth check


def later_locations(widths: Mapping[str, int], locations: Sequence[str]) -> list[str]:
    """``locations`` and every location after them, in forward order.

    For a chain of layers or steps: from the earliest of ``locations`` to the last. For a
    token net, per position: the given locations and the residual stream after their block
    and every later block at that position.
    """
    order = list(widths)
    if not is_token_net(dict(widths)):
        return order[min(order.index(loc) for loc in locations):]
    out = set(locations)
    for location in locations:
        parsed = parse_token_location(location)
        assert parsed is not None  # is_token_net: every location parses
        out.update(loc for loc in order
                   if (p := parse_token_location(loc)) is not None and p.component == "resid"
                   and p.position == parsed.position and p.block >= parsed.block)
    return sorted(out, key=order.index)


def depth_locations(widths: Mapping[str, int], handles: Mapping[str, HandleResult]
                    ) -> dict[str, tuple[list[str], list[str]]]:
    """Per variable, its handle's own locations and the depth check's (those and every
    later one, in forward order)."""
    out = {}
    known = dict(widths)
    for variable, handle in handles.items():
        own = list(dict.fromkeys(parse_site(s, known).location for s in handle.sites))
        out[variable] = (own, later_locations(widths, own))
    return out


def run_depth_check(inputs: LevelInputs, handles: Mapping[str, HandleResult],
                    control: JobControl = NO_CONTROL) -> tuple[dict[str, list[DepthPoint]], int]:
    """Per variable, the test IIA of the whole-location interchange at its handle's
    locations and every location after them (on the pairs that score the variable); the
    cancel check is polled per location.

    Each location's interchange runs once, on the test bank only, and every variable
    whose profile passes through it is scored from its predicted labels. The test bank is
    traced for those locations only where the job's traces do not already hold them
    (``ComputeBackend.scope``).

    Returns:
        The profiles and the number of (pair) partial forwards spent.
    """
    widths = inputs.net.widths
    device = inputs.traces["test"].base.logits.device
    test = inputs.banks.test.to(device)
    wanted = depth_locations(widths, handles)
    locations = sorted({loc for _, later in wanted.values() for loc in later},
                       key=list(widths).index)
    if not locations:
        return {variable: [] for variable in handles}, 0
    inputs.backend.scope(locations, ["test"])
    predicted: dict[str, Tensor] = {}
    for location in locations:
        control.check("cancelled during the depth check", "controls.depth_check")
        whole = Interventions({location: torch.ones(1, widths[location], device=device)}, {})
        predicted[location] = inputs.backend.predictions("test", whole)[0]  # (P, O)
    out = {}
    for variable, (own, later) in wanted.items():
        target = test.counterfactual_labels[variable].to(device)
        scored = test.scored(variable)  # a scoped test bank: the variable's own pairs
        out[variable] = [
            DepthPoint(loc, float((predicted[loc].to(device) == target).all(-1)[scored]
                                  .float().mean()), loc in own)
            for loc in later]
    return out, len(locations) * test.size


# ---------------------------------------------------------------- summary and warnings


def handle_permutations(levels: Sequence[LevelResult], handles: Mapping[str, HandleResult]
                        ) -> dict[str, PermutationControl]:
    """Per variable, the label-permutation control of the level its handle comes from."""
    out = {}
    for variable, handle in handles.items():
        level = levels[handle.level] if handle.level < len(levels) else None
        if level is not None and level.label_permutation and variable in level.label_permutation:
            out[variable] = level.label_permutation[variable]
    return out


def control_warnings(handles: Mapping[str, HandleResult], random_net: RandomNetControl | None,
                     permutation: Mapping[str, PermutationControl],
                     depth: Mapping[str, Sequence[DepthPoint]]) -> list[str]:
    """The controls a variable's handle does not clearly beat, in words."""
    out = []
    for variable, handle in handles.items():
        real = handle.iia_test.overall
        control = random_net.handles.get(variable) if random_net is not None else None
        if control is not None and real - control.iia_test.overall < RANDOM_NET_MARGIN:
            out.append(f"{variable}: the random-net control reaches {control.iia_test.overall:.3f}"
                       f" test IIA, within {RANDOM_NET_MARGIN} of the real handle's {real:.3f}: "
                       "this IIA alone does not show that the net computes the variable")
        mass = permutation.get(variable)
        if mass is not None and not mass.separated:
            out.append(f"{variable}: the coupling puts {mass.real_mass:.3f} of its row on its "
                       f"kept sites, not clearly above couplings on permuted labels "
                       f"({mass.control_mass:.3f}) or a uniform row ({mass.uniform_mass:.3f}); "
                       f"the most it could put there is {mass.max_mass:.3f}")
        points = depth.get(variable, ())
        if points and points[-1].iia_test >= real - OUTPUT_COPY_MARGIN:
            out.append(f"{variable}: the plain full-vector interchange at {points[-1].location} "
                       "(the last location: from there the source's state goes straight to the "
                       f"output) reaches "
                       f"{points[-1].iia_test:.3f} test IIA, as much as the handle ({real:.3f}):"
                       " the handle is not distinguishable from copying the output")
    return out


def run_controls(spec: ControlsSpec, seed: int, schedule: Sequence[LevelSpec],
                 inputs: LevelInputs, levels: Sequence[LevelResult],
                 control: JobControl = NO_CONTROL, budget: int | None = None
                 ) -> tuple[ControlsResult, int]:
    """The job-level controls after the levels (the label permutation ran inside them);
    ``budget``: the bytes the random net's traces may hold (the job's memory budget).

    Returns:
        The result and the (pair) partial forwards the controls ran.
    """
    handles = best_handles(levels)
    timing = {"random_net_s": 0.0, "depth_check_s": 0.0,
              "label_permutation_s": sum(level.timing.get("label_permutation_s", 0.0)
                                         for level in levels)}
    random_net, passes = None, 0
    if spec.random_net:
        control.emit("control", {"control": "random_net", "done": 0, "total": 1})
        random_net = run_random_net_control(schedule, inputs, spec.random_weights, seed,
                                            control, levels, spec.random_net_scope,
                                            budget)
        timing["random_net_s"], passes = random_net.runtime_s, random_net.forward_passes
    depth: dict[str, list[DepthPoint]] = {}
    if spec.depth_check:
        started = time.perf_counter()
        depth, spent = run_depth_check(inputs, handles, control)
        timing["depth_check_s"], passes = time.perf_counter() - started, passes + spent
    permutation = handle_permutations(levels, handles)
    test = inputs.traces["test"].base.logits
    result = ControlsResult(
        random_net=random_net, label_permutation=permutation, depth=depth,
        base_accuracy=base_accuracy(test, inputs.banks.test.base_labels),
        warnings=control_warnings(handles, random_net, permutation, depth), timing=timing)
    return result, passes
