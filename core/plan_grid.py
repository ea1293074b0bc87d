"""The knob grid of one coupling: a transport plan per (ε, β) and the calibration candidates
each plan proposes. One grid point is the unit of CPU work an executor may farm out (a Ray
CPU task per slice of points); ``solve_knobs`` is the same function wherever it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from core.calibrate import Candidate, build_candidates
from core.coupling import Coupling, marginals, solve_coupling
from core.spec import CalibrationSpec, CouplingSpec

Knob = tuple[float | None, float | None]  # (ε, β); None where the solver has no such knob


def knob_grid(spec: CouplingSpec) -> list[Knob]:
    """Every (ε, β) of the spec's grid: one EMD plan, ε for Sinkhorn, ε × β for unbalanced."""
    if spec.solver == "emd":
        return [(None, None)]
    if spec.solver == "sinkhorn":
        return [(e, None) for e in spec.epsilons]
    return [(e, b) for e in spec.epsilons for b in spec.betas]


@dataclass(frozen=True)
class GridProblem:
    """One coupling group's transport problem and the grids it is solved and calibrated on.

    Attributes:
        cost: (R, S) cost of the variables (then the null row, if any) against the sites.
        a, b: (R,) row and (S,) site marginals, float64.
        variables: V, the variable rows of ``cost`` (R is V or V + 1).
        coupling: the solver and its knob grid.
        top_k, strengths: the calibration grids each plan's candidates span.
    """

    cost: Tensor
    a: Tensor
    b: Tensor
    variables: int
    coupling: CouplingSpec
    top_k: tuple[int, ...]
    strengths: tuple[float, ...]

    @property
    def knobs(self) -> list[Knob]:
        return knob_grid(self.coupling)

    def to(self, device: torch.device | str) -> GridProblem:
        return replace(self, cost=self.cost.to(device), a=self.a.to(device), b=self.b.to(device))


@dataclass(frozen=True)
class PlanOutcome:
    """One grid point solved: its plan and, per variable, the (plan, k, λ) candidates it
    proposes (``candidates[j]`` for the j-th variable; each candidate's ``plan`` is the
    point's index in the grid)."""

    coupling: Coupling
    candidates: list[list[Candidate]]

    def to(self, device: torch.device | str) -> PlanOutcome:
        return replace(self, coupling=replace(self.coupling,
                                              plan=self.coupling.plan.to(device)))


def grid_problem(cost: Tensor, site_signatures: Tensor, coupling: CouplingSpec,
                 calibration: CalibrationSpec, variables: int) -> GridProblem:
    """The grid problem of a group whose ``cost`` (R, S) and (S, P, Y) signatures are known."""
    a, b = marginals(variables, site_signatures, coupling.site_marginal, coupling.null_row)
    return GridProblem(cost, a, b, variables, coupling, tuple(calibration.top_k),
                       tuple(calibration.strengths))


def solve_knob(problem: GridProblem, index: int) -> PlanOutcome:
    """Solve grid point ``index`` and build the candidates of its plan's rows."""
    epsilon, beta = problem.knobs[index]
    spec = problem.coupling
    plan = solve_coupling(problem.cost, problem.a, problem.b, spec.solver, epsilon, beta,
                          spec.max_iter, spec.tol)
    rows = plan.variable_rows(problem.variables)  # (V, S)
    candidates = [build_candidates([rows[j].float()], problem.cost[j], problem.top_k,
                                   problem.strengths, first_plan=index)
                  for j in range(problem.variables)]
    return PlanOutcome(plan, candidates)


def solve_knobs(problem: GridProblem, indices: Sequence[int]) -> list[PlanOutcome]:
    """Grid points ``indices`` in order (what one CPU task runs)."""
    return [solve_knob(problem, i) for i in indices]


def solve_grid(problem: GridProblem) -> list[PlanOutcome]:
    """Every grid point, in grid order, in this process."""
    return solve_knobs(problem, range(len(problem.knobs)))
