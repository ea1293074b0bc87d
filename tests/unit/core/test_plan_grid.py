"""The knob grid: one plan per (ε, β) and its candidates, solved point by point in any order
gives what one pass over the whole grid gives."""

from __future__ import annotations

import pytest
import torch

from core.calibrate import build_candidates
from core.coupling import marginals, solve_coupling
from core.plan_grid import grid_problem, knob_grid, solve_grid, solve_knobs
from core.spec import CalibrationSpec, CouplingSpec


def problem_parts(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    signatures = torch.rand(6, 20, 4, generator=generator)  # (S, P, Y)
    cost = torch.rand(3, 6, generator=generator, dtype=torch.float64)  # 2 variables + null
    return cost, signatures


def test_knob_grid_spans_the_solver_knobs() -> None:
    assert knob_grid(CouplingSpec(solver="emd")) == [(None, None)]
    assert knob_grid(CouplingSpec(epsilons=[0.1, 0.3])) == [(0.1, None), (0.3, None)]
    unbalanced = CouplingSpec(solver="unbalanced", epsilons=[0.1, 0.3], betas=[1.0, 5.0])
    assert knob_grid(unbalanced) == [(0.1, 1.0), (0.1, 5.0), (0.3, 1.0), (0.3, 5.0)]


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced", "emd"])
def test_the_grid_gives_the_plans_and_candidates_of_one_pass(solver: str) -> None:
    cost, signatures = problem_parts()
    coupling = CouplingSpec(solver=solver, epsilons=[0.03, 0.3], betas=[0.5, 5.0])
    calibration = CalibrationSpec(top_k=[1, 2, 4], strengths=[0.5, 1.0, 2.0])
    problem = grid_problem(cost, signatures, coupling, calibration, variables=2)
    solved = solve_grid(problem)

    a, b = marginals(2, signatures, coupling.site_marginal, coupling.null_row)
    plans = [solve_coupling(cost, a, b, solver, e, beta, coupling.max_iter, coupling.tol)
             for e, beta in knob_grid(coupling)]
    assert len(solved) == len(plans)
    for outcome, plan in zip(solved, plans, strict=True):
        torch.testing.assert_close(outcome.coupling.plan, plan.plan, rtol=0, atol=0)
    for j in range(2):  # the candidates build_candidates makes from every plan's row at once
        rows = [plan.variable_rows(2)[j].float() for plan in plans]
        whole = build_candidates(rows, cost[j], calibration.top_k, calibration.strengths)
        assert [c for outcome in solved for c in outcome.candidates[j]] == whole


def test_slices_of_the_grid_solved_apart_match_the_whole_grid() -> None:
    cost, signatures = problem_parts(1)
    coupling = CouplingSpec(solver="unbalanced", epsilons=[0.03, 0.1, 0.3], betas=[0.5, 5.0])
    problem = grid_problem(cost, signatures, coupling, CalibrationSpec(), variables=2)
    whole = solve_grid(problem)
    apart = solve_knobs(problem, [4, 5]) + solve_knobs(problem, [0, 1, 2, 3])
    apart = apart[2:] + apart[:2]
    for mine, theirs in zip(apart, whole, strict=True):
        torch.testing.assert_close(mine.coupling.plan, theirs.coupling.plan, rtol=0, atol=0)
        assert mine.candidates == theirs.candidates
