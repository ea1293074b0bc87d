"""Progressive localization (plot-method.md §5): levels of sites → signatures → cost →
coupling → handles, each level refining the top sites the previous one kept."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core.calibrate import (
    Candidate,
    build_candidates,
    candidate_interventions,
    exact_matches,
    rank_sites,
    select_candidate,
    summarize_iia,
    unique_candidates,
)
from core.causal.bank import Banks
from core.cost import cost_matrix
from core.coupling import Coupling, marginals, solve_coupling
from core.engine import BankTraces
from core.errors import JobCancelled, SiteError
from core.events import EngineEvent, EventSink, ignore_event
from core.nets.base import InterventableNet
from core.pca import pca_frame
from core.result import HandleResult, LevelResult, PlanSummary
from core.signatures import abstract_signatures, neural_signatures, output_probabilities
from core.sites import (
    Site,
    block_sites,
    location_sites,
    neuron_sites,
    parse_site,
    pca_band_sites,
    unique_sites,
)
from core.spec import CalibrationSpec, CouplingSpec, LevelSpec

CancelCheck = Callable[[], bool]


@dataclass(frozen=True)
class LevelInputs:
    """What every level of one job shares: the net, the banks and their clean traces."""

    net: InterventableNet
    banks: Banks
    traces: dict[str, BankTraces]  # "fit" | "calibration" | "test"
    coupling: CouplingSpec
    calibration: CalibrationSpec
    max_rows: int

    @property
    def variables(self) -> tuple[str, ...]:
        return self.banks.variables

    @property
    def num_classes(self) -> int:
        return self.net.output_shape[1]


def enumerate_sites(level: LevelSpec, net: InterventableNet, parents: Sequence[Site] | None,
                    frames: dict[str, Tensor]) -> list[Site]:
    """The candidate sites of a level, refining ``parents`` (or every location)."""
    widths = net.widths
    prefix = next(iter(widths)).split(":")[0]
    if level.granularity in ("layer", "step"):
        if level.granularity != prefix:
            raise SiteError(f"this net's locations are {prefix}:N, not {level.granularity}:N",
                            "levels.granularity")
        return location_sites(widths)
    roots = list(parents) if parents else location_sites(widths)
    if level.granularity == "block":
        sites = block_sites(roots, level.block_size)
    elif level.granularity == "neuron":
        sites = neuron_sites(roots)
    else:
        pca_roots = [Site(p.location, "pca", 0, int(frames[p.location].shape[1]))
                     if p.kind == "all" else p for p in roots]
        sites = pca_band_sites(pca_roots, level.band_size)
    order = list(widths)
    return sorted(unique_sites(sites), key=lambda s: (order.index(s.location), s.kind, s.start))


def level_frames(level: LevelSpec, inputs: LevelInputs, parents: Sequence[Site] | None
                 ) -> dict[str, Tensor]:
    """PCA frames of the locations a PCA level looks at, from the fit bank's activations."""
    if level.granularity != "pca":
        return {}
    locations = {p.location for p in parents} if parents else set(inputs.net.widths)
    fit = inputs.traces["fit"]
    return {loc: pca_frame(torch.cat([fit.base.activations[loc], fit.source.activations[loc]]))
            for loc in locations}


def solve_plans(cost: Tensor, site_signatures: Tensor, spec: CouplingSpec, variables: int
                ) -> list[Coupling]:
    """Every plan of the knob grid (ε, or ε × β, or one EMD plan)."""
    a, b = marginals(variables, site_signatures, spec.site_marginal, spec.null_row)
    grid: list[tuple[float | None, float | None]]
    if spec.solver == "emd":
        grid = [(None, None)]
    elif spec.solver == "sinkhorn":
        grid = [(e, None) for e in spec.epsilons]
    else:
        grid = [(e, b_) for e in spec.epsilons for b_ in spec.betas]
    return [solve_coupling(cost, a, b, spec.solver, e, beta, spec.max_iter, spec.tol)
            for e, beta in grid]


def run_level(index: int, level: LevelSpec, inputs: LevelInputs,
              parents: Sequence[Site] | None, on_event: EventSink = ignore_event,
              should_cancel: CancelCheck = lambda: False) -> LevelResult:
    """Run one level and return its checkpoint."""
    started = time.perf_counter()
    net, variables = inputs.net, inputs.variables
    frames = level_frames(level, inputs, parents)
    sites = enumerate_sites(level, net, parents, frames)
    on_event(EngineEvent("level_started", {"level": index, "granularity": level.granularity,
                                           "sites": len(sites)}))
    fit = inputs.traces["fit"]
    device = fit.base.logits.device

    def tick(stage: str) -> Callable[[int, int], None]:
        def report(done: int, total: int) -> None:
            if should_cancel():
                raise JobCancelled("cancelled while computing " + stage, f"levels.{index}")
            on_event(EngineEvent("progress", {"level": index, "stage": stage, "done": done,
                                              "total": total}))
        return report

    site_sigs = neural_signatures(net, fit, sites, frames, inputs.max_rows, tick("signatures"))
    var_sigs = abstract_signatures(inputs.banks.fit.to(device), variables, inputs.num_classes)
    t_signatures = time.perf_counter()

    if inputs.coupling.null_row:
        var_sigs = torch.cat([var_sigs, torch.zeros_like(var_sigs[:1])])
    base_probs = output_probabilities(fit.base.logits)
    cost = cost_matrix(inputs.coupling.cost, var_sigs, site_sigs, base_probs,
                       inputs.num_classes)
    plans = solve_plans(cost, site_sigs, inputs.coupling, len(variables))
    t_coupling = time.perf_counter()

    directions = {loc: (int(frames[loc].shape[1]) if loc in frames else width)
                  for loc, width in net.widths.items()}
    handles: dict[str, HandleResult] = {}
    chosen_rows: list[Tensor] = []
    kept: list[Site] = []
    calibration_passes = 0
    for j, variable in enumerate(variables):
        rows = [plan.variable_rows(len(variables))[j].float() for plan in plans]
        candidates = build_candidates(rows, cost[j], inputs.calibration.top_k,
                                      inputs.calibration.strengths)
        handle, passes = calibrate_variable(index, variable, candidates, plans, sites,
                                            directions, frames, inputs, tick("calibration"))
        calibration_passes += passes
        handles[variable] = handle
        best_plan = next(p for p, plan in enumerate(plans)
                         if plan.epsilon == handle.epsilon and plan.beta == handle.beta)
        chosen_rows.append(rows[best_plan])
        kept.extend(sites[s] for s in rank_sites(rows[best_plan], cost[j])[:level.keep])
        on_event(EngineEvent("calibration", {
            "level": index, "variable": variable, "iia_calibration": handle.iia_calibration,
            "k": handle.k, "strength": handle.strength, "epsilon": handle.epsilon}))
    t_calibration = time.perf_counter()

    warnings_ = [f"the coupling row of {variables[r]} is nearly uniform at epsilon="
                 f"{plans[0].epsilon}: its handle rests on calibration alone"
                 for r in plans[0].near_uniform_rows(len(variables))] if len(plans) == 1 else []
    if plans and all(plan.near_uniform_rows(len(variables)) for plan in plans):
        warnings_.append("every plan has a nearly uniform variable row: sites are hard to "
                         "tell apart at this granularity")
    pairs = fit.pairs
    return LevelResult(
        index=index,
        granularity=level.granularity,
        variables=list(variables),
        sites=[s.id for s in sites],
        cost=cost[: len(variables)].tolist(),
        coupling=torch.stack(chosen_rows).tolist(),
        kept=[s.id for s in dict.fromkeys(kept)],
        handles=handles,
        plans=[PlanSummary(p.epsilon, p.beta, p.n_iter, p.converged,
                           [variables[r] for r in p.near_uniform_rows(len(variables))])
               for p in plans],
        runtime_s=time.perf_counter() - started,
        forward_passes=len(sites) * pairs + calibration_passes,
        timing={"signatures_s": t_signatures - started, "coupling_s": t_coupling - t_signatures,
                "calibration_s": t_calibration - t_coupling},
        warnings=warnings_,
    )


def calibrate_variable(
    level: int, variable: str, candidates: list[Candidate], plans: list[Coupling],
    sites: list[Site], directions: dict[str, int], frames: dict[str, Tensor],
    inputs: LevelInputs, progress: Callable[[int, int], None],
) -> tuple[HandleResult, int]:
    """Choose one variable's handle on the calibration bank; test it (soft and hard).

    Returns:
        The handle and the number of (pair × candidate) forwards spent.
    """
    net, banks, traces = inputs.net, inputs.banks, inputs.traces
    device = traces["fit"].base.logits.device
    calibration, test = banks.calibration.to(device), banks.test.to(device)
    soft = candidate_interventions(candidates, sites, directions, frames, device)
    unique, inverse = unique_candidates(soft)
    total = unique.count * calibration.size
    done = [0]

    def advance(rows: int) -> None:
        done[0] += rows
        progress(done[0], total)

    target = calibration.counterfactual_labels[variable]
    matches = exact_matches(net, traces["calibration"], unique, target, inputs.max_rows, advance)
    accuracy = matches.float().mean(dim=1)[inverse]  # (N,)
    best = candidates[select_candidate(candidates, accuracy)]
    chosen = [best]
    evaluate = {
        "soft_test": (candidate_interventions(chosen, sites, directions, frames, device), test),
        "hard_cal": (candidate_interventions(chosen, sites, directions, frames, device, True),
                     calibration),
        "hard_test": (candidate_interventions(chosen, sites, directions, frames, device, True),
                      test),
    }
    scores = {}
    for name, (plan, bank) in evaluate.items():
        split = "test" if bank is test else "calibration"
        hits = exact_matches(net, traces[split], plan, bank.counterfactual_labels[variable],
                             inputs.max_rows)[0]
        scores[name] = summarize_iia(hits, bank.changes_output(variable))
    plan = plans[best.plan]
    handle = HandleResult(
        variable=variable, level=level, sites=[sites[s].id for s in best.sites],
        weights=list(best.weights), k=best.k, strength=best.strength, epsilon=plan.epsilon,
        beta=plan.beta, iia_calibration=float(accuracy[candidates.index(best)]),
        iia_test=scores["soft_test"], hard_iia_calibration=scores["hard_cal"].overall,
        hard_iia_test=scores["hard_test"])
    passes = total + 2 * test.size + calibration.size
    return handle, passes


def run_levels(
    levels: Sequence[LevelSpec], inputs: LevelInputs, on_event: EventSink = ignore_event,
    should_cancel: CancelCheck = lambda: False,
    completed: Sequence[LevelResult] = (),
    on_level: Callable[[LevelResult], None] | None = None,
) -> list[LevelResult]:
    """Run the levels in order, resuming after ``completed`` checkpoints."""
    results = list(completed)
    for index in range(len(results), len(levels)):
        if should_cancel():
            raise JobCancelled("cancelled between levels", f"levels.{index}")
        parents = ([parse_site(s, inputs.net.widths) for s in results[-1].kept]
                   if results else None)
        result = run_level(index, levels[index], inputs, parents, on_event, should_cancel)
        results.append(result)
        on_event(EngineEvent("level_finished", result.summary()))
        if on_level is not None:
            on_level(result)
    return results


def best_handles(levels: Sequence[LevelResult]) -> dict[str, HandleResult]:
    """Per variable, the handle with the best calibration IIA (ties: the finer level)."""
    best: dict[str, HandleResult] = {}
    for level in levels:
        for variable, handle in level.handles.items():
            if variable not in best or handle.iia_calibration >= best[variable].iia_calibration:
                best[variable] = handle
    return best
