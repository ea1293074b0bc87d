"""Steps 2–5 of a level (plot-method.md §2–4): signatures → cost → plans → handles.

Each step is one function returning a frozen dataclass. The output probabilities and the
cost matrix are computed once per level (a per-variable group's block is costed on its own:
see ``group_cost``). Step 1, the sites, is ``core.level_sites``.
"""

from __future__ import annotations

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
from core.spec import LevelSpec

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
    """The cost of every variable (then the null variable) against every site of the level.

    Attributes:
        matrix: (R, S) cost normalised to [0, 1]; R = V, or V + 1 with the null row last.
        variables: V, the variable rows of ``matrix``.
    """

    matrix: Tensor
    variables: int

    def of_variables(self) -> Tensor:
        """(V, S) the variables' rows, normalised on their own (the level's reported cost)."""
        rows = self.matrix[: self.variables]
        peak = rows.max()
        return rows / peak if float(peak) > 0 else rows

    def covers(self, rows: Sequence[int], columns: Sequence[int]) -> bool:
        """Whether a group of these variable rows and site columns is the whole level."""
        return (tuple(rows) == tuple(range(self.variables))
                and tuple(columns) == tuple(range(self.matrix.shape[1])))


def compute_cost(signatures: LevelSignatures, inputs: LevelInputs) -> LevelCost:
    """Step 3: the cost matrix of the level (plot-method.md §3), with the null row (a zero
    signature) when the coupling has one."""
    rows = with_null_row(signatures.variables, inputs.coupling.null_row)
    matrix = cost_matrix(inputs.coupling.cost, rows, signatures.sites, signatures.base_probs,
                         inputs.num_classes)
    return LevelCost(matrix, int(signatures.variables.shape[0]))


# ---------------------------------------------------------------- step 4: plans


@dataclass(frozen=True)
class GroupPlans:
    """One coupling group's transport plans over the knob grid.

    Attributes:
        group: the coupling group; rows: its variables' indices in job order.
        columns: its sites, as indices into the level's sites.
        cost: (R_g, S_g) its block of the level cost.
        solved: one plan and its calibration candidates per (ε, β), in grid order.
    """

    group: CouplingGroup
    rows: tuple[int, ...]
    columns: tuple[int, ...]
    cost: Tensor
    solved: tuple[PlanOutcome, ...]

    @property
    def plans(self) -> list[Coupling]:
        return [outcome.coupling for outcome in self.solved]

    def summaries(self, per_variable: bool) -> list[PlanSummary]:
        """What the level result records of each plan."""
        variables = self.group.variables
        scope = variables[0] if per_variable and len(variables) == 1 else None
        return [PlanSummary(p.epsilon, p.beta, p.n_iter, p.converged,
                            [variables[r] for r in p.near_uniform_rows(len(variables))], scope)
                for p in self.plans]


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
    return cost_matrix(inputs.coupling.cost, variables, signatures.sites[list(columns)],
                       signatures.base_probs, inputs.num_classes)


def solve_plans(found: LevelSites, signatures: LevelSignatures, cost: LevelCost,
                inputs: LevelInputs) -> LevelPlans:
    """Step 4: each coupling group's knob grid solved on the job's backend (in this process
    or as CPU tasks)."""
    out = []
    for group, columns in zip(found.groups, found.columns, strict=True):
        rows = tuple(inputs.variables.index(v) for v in group.variables)
        block = group_cost(cost, signatures, rows, columns, inputs)
        problem = grid_problem(block, signatures.sites[list(columns)], inputs.coupling,
                               inputs.calibration, len(rows))
        solved = inputs.backend.solve_grid(problem)
        out.append(GroupPlans(group, rows, columns, block, tuple(solved)))
    return LevelPlans(tuple(out))


# ---------------------------------------------------------------- step 5: handles


@dataclass(frozen=True)
class VariableHandle:
    """One variable's outcome at a level.

    Attributes:
        handle: its calibrated and tested handle.
        plan: the index (into its group's grid) of the plan the handle came from.
        row: (S_g,) its normalised row of that plan, over its group's sites.
        kept: the indices (into its group's sites) of the top ``keep`` sites of that row.
        diagnostics: the row's coupling diagnostics.
    """

    handle: HandleResult
    plan: int
    row: Tensor
    kept: tuple[int, ...]
    diagnostics: VariableDiagnostics


@dataclass(frozen=True)
class GroupHandles:
    """A coupling group's handles: per variable (group order), and the forwards spent."""

    plans: GroupPlans
    variables: dict[str, VariableHandle]
    passes: int


def choose_handle(index: int, level: LevelSpec, found: LevelSites, group: int,
                  plans: GroupPlans, variable: str, inputs: LevelInputs,
                  progress: ProgressFn) -> tuple[VariableHandle, int]:
    """One variable's handle from its group's candidates (``core.handle_choice``), the row
    of the plan it came from, the sites it keeps and the row's diagnostics.

    Returns:
        The outcome and the (pair × candidate) forwards spent.
    """
    j = plans.group.variables.index(variable)
    sites = found.group_sites(group)
    candidates = [c for outcome in plans.solved for c in outcome.candidates[j]]
    handle, spent = calibrate_variable(index, variable, candidates, plans.plans, sites,
                                       found.directions, found.frames, inputs, progress)
    best = next(p for p, plan in enumerate(plans.plans)
                if plan.epsilon == handle.epsilon and plan.beta == handle.beta)
    chosen = plans.plans[best]
    row = chosen.variable_rows(len(plans.rows))[j].float()
    kept = tuple(rank_sites(row, plans.cost[j])[:level.keep])
    diagnostics = diagnose_row(chosen.plan, j, inputs.coupling.null_row, kept, plans.cost[j],
                               [s.id for s in sites])
    return VariableHandle(handle, best, row, kept, diagnostics), spent


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
                "k": handle.k, "strength": handle.strength, "epsilon": handle.epsilon})
        out.append(GroupHandles(group_plans, outcomes, passes))
    return LevelHandles(tuple(out))

