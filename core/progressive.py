"""Progressive localization (plot-method.md §5): levels of sites → signatures → cost →
coupling → handles, each level refining the top sites the previous one kept."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core.calibrate import (
    rank_sites,
)
from core.control import NO_CONTROL, JobControl
from core.cost import cost_matrix
from core.diagnostics import (
    CouplingDiagnostics,
    VariableDiagnostics,
    coupling_warnings,
    diagnose_pairs,
    diagnose_row,
)
from core.errors import SiteError
from core.handle_choice import calibrate_variable
from core.label_permutation import PermutationControl, permutation_controls, permuted_signatures
from core.level_inputs import LevelInputs
from core.nets.base import InterventableNet
from core.pca import pca_frame
from core.plan_grid import grid_problem
from core.result import HandleResult, LevelResult, PlanSummary
from core.signatures import abstract_signatures, output_probabilities
from core.sites import (
    Site,
    block_sites,
    is_token_net,
    location_sites,
    neuron_sites,
    parse_site,
    pca_band_sites,
    unique_sites,
)
from core.spec import LevelSpec
from core.token_levels import enumerate_token_sites


def enumerate_sites(level: LevelSpec, net: InterventableNet, parents: Sequence[Site] | None,
                    frames: dict[str, Tensor]) -> list[Site]:
    """The candidate sites of a level, refining ``parents`` (or every location)."""
    widths = net.widths
    if is_token_net(widths) and level.granularity in ("position", "layer", "step", "head"):
        return enumerate_token_sites(level, widths, parents)
    prefix = next(iter(widths)).split(":")[0]
    if level.granularity in ("position", "head"):
        raise SiteError(f"{level.granularity} levels need a token net (a transformer)",
                        "levels.granularity")
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


@dataclass(frozen=True)
class GroupOutcome:
    """What one coupling group (all variables, or one variable in per-variable scope) gave."""

    handles: dict[str, HandleResult]
    rows: dict[str, Tensor]  # variable -> (S_group,) chosen plan row
    kept: dict[str, list[Site]]
    plans: list[PlanSummary]
    passes: int
    coupling_s: float
    diagnostics: dict[str, VariableDiagnostics]
    permutation: dict[str, PermutationControl]
    permutation_s: float


def label_permutations(inputs: LevelInputs, signatures: Tensor) -> Tensor | None:
    """(N, V, P, Y) permuted abstract signatures for the label-permutation control, or None
    when it is off. The same seed gives the same permutations at every level."""
    spec = inputs.controls
    if spec is None or not spec.label_permutation:
        return None
    generator = torch.Generator().manual_seed(spec.seed or 0)
    return permuted_signatures(signatures, spec.permutations, generator)


def level_parents(level: LevelSpec, variables: Sequence[str],
                  kept: dict[str, list[Site]] | None) -> dict[str, list[Site] | None]:
    """The parents each coupling group refines: shared (key "") or one group per variable."""
    if kept is None:
        return {"": None}
    if level.scope == "per_variable":
        return {v: kept[v] for v in variables}
    return {"": list(dict.fromkeys(site for v in variables for site in kept[v]))}


def run_level(index: int, level: LevelSpec, inputs: LevelInputs,
              kept: dict[str, list[Site]] | None, control: JobControl = NO_CONTROL
              ) -> LevelResult:
    """Run one level and return its checkpoint.

    Args:
        kept: per variable, the sites the previous level kept (None for the first level).
    """
    started = time.perf_counter()
    net, variables = inputs.net, inputs.variables
    groups = level_parents(level, variables, kept)
    every_parent = [p for parents in groups.values() for p in (parents or [])]
    frames = level_frames(level, inputs, every_parent or None)
    group_sites = {g: enumerate_sites(level, net, parents, frames)
                   for g, parents in groups.items()}
    order = list(net.widths)
    sites = sorted(unique_sites([s for g in group_sites.values() for s in g]),
                   key=lambda s: (order.index(s.location), s.kind, s.start))
    control.emit("level_started", {"level": index, "granularity": level.granularity,
                                   "sites": len(sites)})
    fit = inputs.traces["fit"]
    device = fit.base.logits.device

    def tick(stage: str) -> Callable[[int, int], None]:
        return control.progress("progress", {"level": index, "stage": stage},
                                "cancelled while computing " + stage, f"levels.{index}")

    site_sigs = inputs.backend.signatures(sites, frames, tick("signatures"))
    fit_bank = inputs.banks.fit.to(device)
    var_sigs = abstract_signatures(fit_bank, variables, inputs.num_classes)
    t_signatures = time.perf_counter()
    permuted = label_permutations(inputs, var_sigs)
    permuting_s = time.perf_counter() - t_signatures if permuted is not None else 0.0

    position = {site: i for i, site in enumerate(sites)}
    outcomes = [
        couple_and_calibrate(index, level, list(variables) if g == "" else [g],
                             [position[s] for s in group_sites[g]], sites, var_sigs,
                             site_sigs, frames, inputs, control, tick("calibration"), permuted)
        for g in groups
    ]
    handles = {v: o.handles[v] for v in variables for o in outcomes if v in o.handles}
    rows = {v: o.rows[v] for o in outcomes for v in o.rows}
    kept_now = {v: [s.id for s in o.kept[v]] for o in outcomes for v in o.kept}
    coupling_s = sum(o.coupling_s for o in outcomes)
    permutation_s = permuting_s + sum(o.permutation_s for o in outcomes)
    calibration_s = time.perf_counter() - t_signatures - coupling_s - permutation_s
    plans = [p for o in outcomes for p in o.plans]
    diagnostics = CouplingDiagnostics(
        {v: o.diagnostics[v] for v in variables for o in outcomes if v in o.diagnostics},
        diagnose_pairs(variables, var_sigs, fit_bank.counterfactual_labels,
                       fit_bank.base_labels, rows))
    cost = cost_matrix(inputs.coupling.cost, var_sigs, site_sigs,
                       output_probabilities(fit.base.logits), inputs.num_classes)
    return LevelResult(
        index=index,
        granularity=level.granularity,
        variables=list(variables),
        sites=[s.id for s in sites],
        cost=cost.tolist(),
        coupling=[rows[v].tolist() for v in variables],
        kept=list(dict.fromkeys(s for v in variables for s in kept_now[v])),
        kept_by_variable=kept_now,
        handles=handles,
        plans=plans,
        runtime_s=time.perf_counter() - started,
        forward_passes=len(sites) * fit.pairs + sum(o.passes for o in outcomes),
        timing={"signatures_s": t_signatures - started, "coupling_s": coupling_s,
                "calibration_s": calibration_s, "label_permutation_s": permutation_s},
        warnings=level_warnings(variables, plans, diagnostics, var_sigs),
        diagnostics=diagnostics,
        label_permutation=({v: o.permutation[v] for o in outcomes for v in o.permutation}
                           if permuted is not None else None),
    )


def level_warnings(variables: Sequence[str], plans: Sequence[PlanSummary],
                   diagnostics: CouplingDiagnostics, signatures: Tensor) -> list[str]:
    """The level's coupling warnings (``core.diagnostics.coupling_warnings``).

    Args:
        signatures: (V, P, Y) the variables' abstract signatures on the fit bank.
    """
    every_plan_uniform = []
    for variable in variables:
        own = [p for p in plans if p.variable in (variable, None)]
        if own and all(variable in p.near_uniform_variables for p in own):
            every_plan_uniform.append(variable)
    silent = [v for v, sig in zip(variables, signatures, strict=True) if not bool(sig.any())]
    return coupling_warnings(variables, diagnostics, every_plan_uniform, silent)


def couple_and_calibrate(
    index: int, level: LevelSpec, variables: list[str], columns: list[int],
    sites: list[Site], var_sigs: Tensor, site_sigs: Tensor, frames: dict[str, Tensor],
    inputs: LevelInputs, control: JobControl, progress: Callable[[int, int], None],
    permuted: Tensor | None = None,
) -> GroupOutcome:
    """Couple ``variables`` with the level's sites at ``columns``, then calibrate each.

    Args:
        var_sigs: (V, P, Y) signatures of every variable of the job, in job order.
        site_sigs: (S, P, Y) signatures of every site of the level.
        permuted: (N, V, P, Y) label-permuted ``var_sigs`` (None: no permutation control).
    """
    started = time.perf_counter()
    all_variables = list(inputs.variables)
    group_index = [all_variables.index(v) for v in variables]
    group_sigs = var_sigs[group_index]
    if inputs.coupling.null_row:
        group_sigs = torch.cat([group_sigs, torch.zeros_like(group_sigs[:1])])
    fit = inputs.traces["fit"]
    cost = cost_matrix(inputs.coupling.cost, group_sigs, site_sigs[columns],
                       output_probabilities(fit.base.logits), inputs.num_classes)
    # the knob grid's plans and their candidates: in this process or as CPU tasks
    solved = inputs.backend.solve_grid(grid_problem(cost, site_sigs[columns], inputs.coupling,
                                                inputs.calibration, len(variables)))
    plans = [outcome.coupling for outcome in solved]
    coupling_s = time.perf_counter() - started
    directions = {loc: (int(frames[loc].shape[1]) if loc in frames else width)
                  for loc, width in inputs.net.widths.items()}
    group_sites = [sites[c] for c in columns]
    handles: dict[str, HandleResult] = {}
    rows_out: dict[str, Tensor] = {}
    kept: dict[str, list[Site]] = {}
    diagnostics: dict[str, VariableDiagnostics] = {}
    knobs: list[tuple[float | None, float | None]] = []
    kept_index: list[list[int]] = []
    chosen_rows: list[Tensor] = []
    passes = 0
    for j, variable in enumerate(variables):
        rows = [plan.variable_rows(len(variables))[j].float() for plan in plans]
        candidates = [c for outcome in solved for c in outcome.candidates[j]]
        handle, spent = calibrate_variable(index, variable, candidates, plans, group_sites,
                                           directions, frames, inputs, progress)
        passes += spent
        handles[variable] = handle
        best = next(p for p, plan in enumerate(plans)
                    if plan.epsilon == handle.epsilon and plan.beta == handle.beta)
        full_row = torch.zeros(len(sites))
        full_row[columns] = rows[best].cpu()
        rows_out[variable] = full_row
        kept_index.append(rank_sites(rows[best], cost[j])[:level.keep])
        kept[variable] = [group_sites[s] for s in kept_index[-1]]
        diagnostics[variable] = diagnose_row(plans[best].plan, j, inputs.coupling.null_row,
                                             kept_index[-1], cost[j],
                                             [s.id for s in group_sites])
        knobs.append((handle.epsilon, handle.beta))
        chosen_rows.append(rows[best])
        control.emit("calibration", {
            "level": index, "variable": variable, "iia_calibration": handle.iia_calibration,
            "k": handle.k, "strength": handle.strength, "epsilon": handle.epsilon})
    scope = variables[0] if level.scope == "per_variable" and len(variables) == 1 else None
    summaries = [PlanSummary(p.epsilon, p.beta, p.n_iter, p.converged,
                             [variables[r] for r in p.near_uniform_rows(len(variables))], scope)
                 for p in plans]
    permutation: dict[str, PermutationControl] = {}
    permutation_s = 0.0
    if permuted is not None:
        t_permutation = time.perf_counter()
        controls = permutation_controls(
            permuted[:, group_index], site_sigs[columns], inputs.coupling,
            output_probabilities(fit.base.logits), inputs.num_classes, knobs, kept_index,
            chosen_rows, [s.id for s in group_sites])
        permutation = dict(zip(variables, controls, strict=True))
        permutation_s = time.perf_counter() - t_permutation
    return GroupOutcome(handles, rows_out, kept, summaries, passes, coupling_s, diagnostics,
                        permutation, permutation_s)


def run_levels(
    levels: Sequence[LevelSpec], inputs: LevelInputs, control: JobControl = NO_CONTROL,
    completed: Sequence[LevelResult] = (),
    on_level: Callable[[LevelResult], None] | None = None,
) -> list[LevelResult]:
    """Run the levels in order, resuming after ``completed`` checkpoints."""
    results = list(completed)
    for index in range(len(results), len(levels)):
        control.check("cancelled between levels", f"levels.{index}")
        kept = ({v: [parse_site(s, inputs.net.widths) for s in ids]
                 for v, ids in results[-1].kept_by_variable.items()} if results else None)
        result = run_level(index, levels[index], inputs, kept, control)
        results.append(result)
        control.emit("level_finished", result.summary())
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
