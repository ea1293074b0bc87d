"""Progressive localization (plot-method.md §5): levels of sites → signatures → cost →
plans → handles, each level refining the top sites the previous one kept.

The steps are ``core.level_sites`` (1) and ``core.level_steps`` (2–5); this module runs
them in order, adds the label-permutation control, and assembles the level's checkpoint.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from core.control import NO_CONTROL, JobControl
from core.diagnostics import CouplingDiagnostics, coupling_warnings, diagnose_pairs
from core.label_permutation import PermutationControl, level_permutation_controls
from core.level_inputs import LevelInputs
from core.level_sites import LevelSites, enumerate_level_sites, level_locations
from core.level_steps import (
    LevelCost,
    LevelHandles,
    LevelSignatures,
    calibrate_handles,
    compute_costs,
    compute_signatures,
    reported_cost,
    solve_plans,
)
from core.result import HandleResult, LevelResult, PlanSummary
from core.sites import Site, parse_site
from core.spec import LevelSpec


@dataclass(frozen=True)
class LevelOutcome:
    """Everything a level computed, before it is written down as a ``LevelResult``.

    Attributes:
        timing: seconds per stage (signatures, coupling, calibration, label permutation).
        permutation: per variable, its label-permutation control (None: the control is off).
        traced_rows: examples run through the net to trace what the level needed (0 when
            the traces it needed were held).
    """

    found: LevelSites
    signatures: LevelSignatures
    costs: tuple[LevelCost, ...]
    handles: LevelHandles
    permutation: dict[str, PermutationControl] | None
    timing: dict[str, float]
    traced_rows: int = 0


def run_level_steps(index: int, level: LevelSpec, inputs: LevelInputs,
                    kept: Mapping[str, Sequence[Site]] | None, control: JobControl
                    ) -> LevelOutcome:
    """The five steps of one level, then the label-permutation control on their results.

    Args:
        kept: per variable, the sites the previous level kept (None for the first level).
    """
    marks = [time.perf_counter()]
    traced_before = inputs.backend.traced_rows
    inputs.backend.scope(level_locations(level, inputs, kept))  # trace what this level needs
    marks.append(time.perf_counter())
    found = enumerate_level_sites(level, inputs, kept)
    control.emit("level_started", {"level": index, "granularity": level.granularity,
                                   "sites": len(found.sites)})
    signatures = compute_signatures(found, inputs, control.progress(
        "progress", {"level": index, "stage": "signatures"},
        "cancelled while computing signatures", f"levels.{index}"))
    marks.append(time.perf_counter())
    costs = compute_costs(signatures, inputs)
    plans = solve_plans(found, signatures, costs, inputs)
    marks.append(time.perf_counter())
    handles = calibrate_handles(index, level, found, plans, inputs, control)
    marks.append(time.perf_counter())
    permutation = level_permutation_controls(inputs.controls, inputs.coupling, signatures,
                                             inputs.num_classes, [s.id for s in found.sites],
                                             handles, control)
    marks.append(time.perf_counter() if permutation is not None else marks[-1])
    stages = ("trace_s", "signatures_s", "coupling_s", "calibration_s", "label_permutation_s")
    spans = [end - start for start, end in itertools.pairwise(marks)]
    timing = dict(zip(stages, spans, strict=True))
    return LevelOutcome(found, signatures, costs, handles, permutation, timing,
                        inputs.backend.traced_rows - traced_before)


def run_level(index: int, level: LevelSpec, inputs: LevelInputs,
              kept: Mapping[str, Sequence[Site]] | None, control: JobControl = NO_CONTROL
              ) -> LevelResult:
    """Run one level and return its checkpoint.

    Args:
        kept: per variable, the sites the previous level kept (None for the first level).
    """
    started = time.perf_counter()
    outcome = run_level_steps(index, level, inputs, kept, control)
    return level_result(index, level, inputs, outcome, time.perf_counter() - started)


def level_result(index: int, level: LevelSpec, inputs: LevelInputs, outcome: LevelOutcome,
                 runtime_s: float) -> LevelResult:
    """The checkpoint of a level from its outcome."""
    variables, sites = inputs.variables, outcome.found.sites
    chosen = outcome.handles.by_variable
    rows = outcome.handles.rows(len(sites))
    kept = outcome.handles.kept(outcome.found)
    plans = [summary for group in outcome.handles.groups
             for summary in group.plans.summaries(level.scope == "per_variable")]
    fit = inputs.traces["fit"]
    fit_bank = inputs.banks.fit.to(fit.base.logits.device)
    diagnostics = CouplingDiagnostics(
        {v: chosen[v].diagnostics for v in variables},
        diagnose_pairs(variables, outcome.signatures.variables,
                       fit_bank.counterfactual_labels, fit_bank.base_labels, rows))
    return LevelResult(
        index=index,
        granularity=level.granularity,
        variables=list(variables),
        sites=[s.id for s in sites],
        cost=reported_cost(outcome.costs, [chosen[v].kind for v in variables]).tolist(),
        coupling=[rows[v].tolist() for v in variables],
        kept=list(dict.fromkeys(s for v in variables for s in kept[v])),
        kept_by_variable=kept,
        handles={v: chosen[v].handle for v in variables},
        plans=plans,
        runtime_s=runtime_s,
        forward_passes=len(sites) * fit.pairs + outcome.handles.passes + outcome.traced_rows,
        timing=outcome.timing,
        warnings=level_warnings(variables, plans, diagnostics, outcome.signatures.variables),
        diagnostics=diagnostics,
        label_permutation=outcome.permutation,
        site_labels=outcome.found.labels,
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


def run_levels(
    levels: Sequence[LevelSpec], inputs: LevelInputs, control: JobControl = NO_CONTROL,
    completed: Sequence[LevelResult] = (),
    on_level: Callable[[LevelResult], None] | None = None,
) -> list[LevelResult]:
    """Run the levels in order, resuming after ``completed`` checkpoints.

    Args:
        control: receives each level's events; checked between levels and batches.
        on_level: called with each new level's checkpoint as soon as it is done.
    """
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
