"""Steps 2–5 of a level (plot-method.md §2–4): signatures → cost → plans → handles.

Each step is one function returning a frozen dataclass. The output probabilities and the
cost matrices (one per kind of ``coupling.cost``) are computed once per level (a
per-variable group's block is costed on its own: see ``group_cost``); each variable's cost
kind is chosen on the calibration bank with its other knobs (``choose_handle``). Step 1,
the sites, is ``core.level_sites``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from core.backend import ProgressFn
from core.calibrate import rank_sites
from core.control import JobControl
from core.cost import cost_matrix
from core.coupling import Coupling
from core.diagnostics import VariableDiagnostics, diagnose_row
from core.handle_choice import calibrate_variable
from core.level_inputs import LevelInputs
from core.level_sites import CouplingGroup, LevelSites
from core.plan_grid import PlanOutcome, grid_problem
from core.result import HandleResult, PlanSummary
from core.signatures import abstract_signatures, output_probabilities
from core.spec import CostKind, LevelSpec

# ---------------------------------------------------------------- step 2: signatures


@dataclass(frozen=True)
class LevelSignatures:
    """The level's effect signatures on the fit bank.

    Attributes:
        variables: (V, P, Y) abstract signatures, in job order.
        sites: (S, P, Y) neural signatures of the level's sites.
        base_probs: (P, Y) the clean base run's output probabilities (the agreement cost's
            and the label-permutation control's).
    """

    variables: Tensor
    sites: Tensor
    base_probs: Tensor


def compute_signatures(found: LevelSites, inputs: LevelInputs, progress: ProgressFn
                       ) -> LevelSignatures:
    """Step 2: the sites' signatures on the job's backend, the variables' from the labels."""
    site_signatures = inputs.backend.signatures(found.sites, found.frames, progress)
    fit = inputs.traces["fit"]
    fit_bank = inputs.banks.fit.to(fit.base.logits.device)
    variables = abstract_signatures(fit_bank, inputs.variables, inputs.num_classes)
    return LevelSignatures(variables, site_signatures, output_probabilities(fit.base.logits))


# ---------------------------------------------------------------- step 3: cost


def with_null_row(signatures: Tensor, null_row: bool) -> Tensor:
    """(V, P, Y) variable signatures, then the null variable's zero signature if asked."""
    if not null_row:
        return signatures
    return torch.cat([signatures, torch.zeros_like(signatures[:1])])


@dataclass(frozen=True)
class LevelCost:
    """The cost of one kind: every variable (then the null variable) against every site.

    Attributes:
        matrix: (R, S) cost normalised to [0, 1]; R = V, or V + 1 with the null row last.
        variables: V, the variable rows of ``matrix``.
        kind: the cost kind (``coupling.cost``).
    """

    matrix: Tensor
    variables: int
    kind: CostKind = "mse"

    def of_variables(self) -> Tensor:
        """(V, S) the variables' rows, normalised on their own (the level's reported cost)."""
        rows = self.matrix[: self.variables]
        peak = rows.max()
        return rows / peak if float(peak) > 0 else rows

    def covers(self, rows: Sequence[int], columns: Sequence[int]) -> bool:
        """Whether a group of these variable rows and site columns is the whole level."""
        return (tuple(rows) == tuple(range(self.variables))
                and tuple(columns) == tuple(range(self.matrix.shape[1])))


def compute_cost(signatures: LevelSignatures, inputs: LevelInputs,
                 kind: CostKind | None = None) -> LevelCost:
    """Step 3: the cost matrix of one kind (plot-method.md §3; default the spec's first),
    with the null row (a zero signature) when the coupling has one."""
    kind = kind or inputs.coupling.cost[0]
    rows = with_null_row(signatures.variables, inputs.coupling.null_row)
    matrix = cost_matrix(kind, rows, signatures.sites, signatures.base_probs,
                         inputs.num_classes)
    return LevelCost(matrix, int(signatures.variables.shape[0]), kind)


def compute_costs(signatures: LevelSignatures, inputs: LevelInputs) -> tuple[LevelCost, ...]:
    """Step 3 for every kind of ``coupling.cost``, in the spec's order."""
    return tuple(compute_cost(signatures, inputs, kind) for kind in inputs.coupling.cost)


def reported_cost(costs: Sequence[LevelCost], chosen: Sequence[int]) -> Tensor:
    """(V, S) each variable's cost row under the kind its handle chose (the level result's
    ``cost``).

    Args:
        chosen: per variable in job order, the index of its kind in ``costs``.
    """
    rows = [cost.of_variables() for cost in costs]
    return torch.stack([rows[kind][j] for j, kind in enumerate(chosen)])


# ---------------------------------------------------------------- step 4: plans


@dataclass(frozen=True)
class KindPlans:
    """One coupling group's plans under one cost kind.

    Attributes:
        kind: the cost kind; cost: (R_g, S_g) the group's block of that kind's cost.
        solved: one plan and its calibration candidates per (ε, β), in grid order.
    """

    kind: CostKind
    cost: Tensor
    solved: tuple[PlanOutcome, ...]

    @property
    def plans(self) -> list[Coupling]:
        return [outcome.coupling for outcome in self.solved]


@dataclass(frozen=True)
class GroupPlans:
    """One coupling group's transport plans over the knob grid, per cost kind.

    Attributes:
        group: the coupling group; rows: its variables' indices in job order.
        columns: its sites, as indices into the level's sites.
        kinds: its plans per cost kind, in ``coupling.cost`` order.
    """

    group: CouplingGroup
    rows: tuple[int, ...]
    columns: tuple[int, ...]
    kinds: tuple[KindPlans, ...]

    def summaries(self, per_variable: bool) -> list[PlanSummary]:
        """What the level result records of each plan (every kind's, in order)."""
        variables = self.group.variables
        scope = variables[0] if per_variable and len(variables) == 1 else None
        return [PlanSummary(p.epsilon, p.beta, p.n_iter, p.converged,
                            [variables[r] for r in p.near_uniform_rows(len(variables))], scope,
                            kind.kind)
                for kind in self.kinds for p in kind.plans]


@dataclass(frozen=True)
class LevelPlans:
    """The plans of every coupling group of a level, in group order."""

    groups: tuple[GroupPlans, ...]


def group_cost(cost: LevelCost, signatures: LevelSignatures, rows: Sequence[int],
               columns: Sequence[int], inputs: LevelInputs) -> Tensor:
    """(R_g, S_g) the cost a coupling group is solved on: its variables (then the null row)
    against its sites, normalised on its own.

    A shared group is the whole level: its cost is the level matrix. A per-variable group's
    block is costed on its own signatures rather than sliced from the level matrix:
    ``torch.cdist`` (the mse cost) switches to a matmul above 25 rows or columns, so a
    slice differs from the block's own cost in the last bits, which a small-ε plan
    amplifies by about 1/ε.
    """
    if cost.covers(rows, columns):
        return cost.matrix
    variables = with_null_row(signatures.variables[list(rows)], inputs.coupling.null_row)
    return cost_matrix(cost.kind, variables, signatures.sites[list(columns)],
                       signatures.base_probs, inputs.num_classes)


def solve_plans(found: LevelSites, signatures: LevelSignatures,
                costs: LevelCost | Sequence[LevelCost], inputs: LevelInputs) -> LevelPlans:
    """Step 4: each coupling group's knob grid solved on the job's backend (in this process
    or as CPU tasks), for each cost kind."""
    kinds = (costs,) if isinstance(costs, LevelCost) else tuple(costs)
    out = []
    for group, columns in zip(found.groups, found.columns, strict=True):
        rows = tuple(inputs.variables.index(v) for v in group.variables)
        per_kind = []
        for cost in kinds:
            block = group_cost(cost, signatures, rows, columns, inputs)
            problem = grid_problem(block, signatures.sites[list(columns)], inputs.coupling,
                                   inputs.calibration, len(rows))
            solved = inputs.backend.solve_grid(problem)
            per_kind.append(KindPlans(cost.kind, block, tuple(solved)))
        out.append(GroupPlans(group, rows, columns, tuple(per_kind)))
    return LevelPlans(tuple(out))


# ---------------------------------------------------------------- step 5: handles


@dataclass(frozen=True)
class VariableHandle:
    """One variable's outcome at a level.

    Attributes:
        handle: its calibrated and tested handle (``cost_kind`` names the kind it chose).
        kind: the index (into its group's kinds) of the cost kind the handle came from.
        plan: the index (into that kind's grid) of the plan the handle came from.
        row: (S_g,) its normalised row of that plan, over its group's sites.
        kept: the indices (into its group's sites) of the top ``keep`` sites of that row.
        diagnostics: the row's coupling diagnostics.
    """

    handle: HandleResult
    plan: int
    row: Tensor
    kept: tuple[int, ...]
    diagnostics: VariableDiagnostics
    kind: int = 0


@dataclass(frozen=True)
class GroupHandles:
    """A coupling group's handles: per variable (group order), and the forwards spent."""

    plans: GroupPlans
    variables: dict[str, VariableHandle]
    passes: int


def kind_preference(handle: HandleResult, order: int) -> tuple[float, int, float, int]:
    """Sort key of one cost kind's handle for a variable: best calibration IIA, then
    smaller k, then λ nearest 1, then the kind named first (``select_candidate``'s order)."""
    return (-handle.iia_calibration, handle.k, abs(math.log(handle.strength)), order)


def choose_handle(index: int, level: LevelSpec, found: LevelSites, group: int,
                  plans: GroupPlans, variable: str, inputs: LevelInputs,
                  progress: ProgressFn) -> tuple[VariableHandle, int]:
    """One variable's handle: for each cost kind, the best of that kind's candidates on the
    calibration bank (``core.handle_choice``); then the kind whose handle calibrates best.
    With the row of the plan it came from, the sites it keeps and the row's diagnostics.

    Returns:
        The outcome and the (pair × candidate) forwards spent.
    """
    j = plans.group.variables.index(variable)
    sites = found.group_sites(group)
    per_kind: list[HandleResult] = []
    spent = 0
    for kind in plans.kinds:
        candidates = [c for outcome in kind.solved for c in outcome.candidates[j]]
        handle, passes = calibrate_variable(index, variable, candidates, kind.plans, sites,
                                            found.directions, found.frames, inputs, progress)
        per_kind.append(handle.model_copy(update={"cost_kind": kind.kind}))
        spent += passes
    k = min(range(len(per_kind)), key=lambda i: kind_preference(per_kind[i], i))
    handle, chosen_kind = per_kind[k], plans.kinds[k]
    best = next(p for p, plan in enumerate(chosen_kind.plans)
                if plan.epsilon == handle.epsilon and plan.beta == handle.beta)
    chosen = chosen_kind.plans[best]
    row = chosen.variable_rows(len(plans.rows))[j].float()
    kept = tuple(rank_sites(row, chosen_kind.cost[j])[:level.keep])
    diagnostics = diagnose_row(chosen.plan, j, inputs.coupling.null_row, kept,
                               chosen_kind.cost[j], [s.id for s in sites])
    return VariableHandle(handle, best, row, kept, diagnostics, k), spent


@dataclass(frozen=True)
class LevelHandles:
    """The handles of every coupling group of a level, in group order."""

    groups: tuple[GroupHandles, ...]

    @property
    def by_variable(self) -> dict[str, VariableHandle]:
        return {v: o for group in self.groups for v, o in group.variables.items()}

    @property
    def passes(self) -> int:
        return sum(group.passes for group in self.groups)

    def rows(self, sites: int) -> dict[str, Tensor]:
        """Per variable, its (S,) chosen row over every site of the level (0 outside its
        group)."""
        out = {}
        for group in self.groups:
            for variable, outcome in group.variables.items():
                row = torch.zeros(sites)
                row[list(group.plans.columns)] = outcome.row.cpu()
                out[variable] = row
        return out

    def kept(self, found: LevelSites) -> dict[str, list[str]]:
        """Per variable, the ids of the sites it keeps, strongest first."""
        return {v: [found.sites[group.plans.columns[c]].id for c in o.kept]
                for group in self.groups for v, o in group.variables.items()}


def calibrate_handles(index: int, level: LevelSpec, found: LevelSites, plans: LevelPlans,
                      inputs: LevelInputs, control: JobControl) -> LevelHandles:
    """Step 5: every variable's handle, chosen on the calibration bank and tested; a
    ``calibration`` event after each variable."""
    progress = control.progress("progress", {"level": index, "stage": "calibration"},
                                "cancelled while computing calibration", f"levels.{index}")
    out = []
    for group, group_plans in enumerate(plans.groups):
        outcomes: dict[str, VariableHandle] = {}
        passes = 0
        for variable in group_plans.group.variables:
            outcome, spent = choose_handle(index, level, found, group, group_plans, variable,
                                           inputs, progress)
            outcomes[variable], passes = outcome, passes + spent
            handle = outcome.handle
            control.emit("calibration", {
                "level": index, "variable": variable, "iia_calibration": handle.iia_calibration,
                "k": handle.k, "strength": handle.strength, "epsilon": handle.epsilon,
                "cost_kind": handle.cost_kind})
        out.append(GroupHandles(group_plans, outcomes, passes))
    return LevelHandles(tuple(out))

