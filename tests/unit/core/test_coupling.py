from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from core.cost import cost_matrix
from core.coupling import marginals, solve_coupling
from core.errors import SolverError


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two variables and a null row against 5 sites: v0 ~ site 1, v1 ~ site 3."""
    cost = torch.tensor([[0.9, 0.0, 0.8, 0.9, 1.0],
                         [0.8, 0.9, 0.9, 0.0, 1.0],
                         [0.1, 0.9, 0.0, 0.9, 0.0]], dtype=torch.float64)
    a, b = marginals(2, torch.ones(5, 2, 2), "uniform", null_row=True)
    return cost, a, b


@pytest.mark.parametrize("solver", ["sinkhorn", "emd", "unbalanced"])
def test_each_solver_puts_variables_on_their_cheapest_site(solver: str) -> None:
    cost, a, b = _problem()
    plan = solve_coupling(cost, a, b, solver, epsilon=0.01, beta=0.5)  # type: ignore[arg-type]
    rows = plan.variable_rows(2)
    assert rows[0].argmax() == 1 and rows[1].argmax() == 3
    assert_close(plan.plan.sum(dim=1), a)  # the variable marginal stays exact
    assert plan.converged


def test_coupling_keeps_null_mass_on_sites_without_effect() -> None:
    cost, a, b = _problem()
    plan = solve_coupling(cost, a, b, "sinkhorn", epsilon=0.01).plan
    # sites 0, 2, 4 realise no variable: the null row takes the largest share of their mass
    # and all of site 4's, the one no variable is near; the variables keep their sites whole
    assert float(plan[2, [0, 2, 4]].sum()) > 0.5 * float(plan[:, [0, 2, 4]].sum())
    assert float(plan[2, 4]) == pytest.approx(float(b[4]), rel=1e-3)
    assert float(plan[0, 1]) == pytest.approx(float(b[1]), rel=1e-3)
    assert float(plan[1, 3]) == pytest.approx(float(b[3]), rel=1e-3)


def test_unbalanced_relaxes_the_site_marginal() -> None:
    cost, a, b = _problem()
    plan = solve_coupling(cost, a, b, "unbalanced", epsilon=0.01, beta=0.05).plan
    assert not torch.allclose(plan.sum(dim=0), b, atol=1e-3)


def test_a_large_epsilon_gives_a_nearly_uniform_plan_and_says_so() -> None:
    cost, a, b = _problem()
    assert solve_coupling(cost, a, b, "sinkhorn", epsilon=100.0).near_uniform_rows(2) == [0, 1]
    assert solve_coupling(cost, a, b, "sinkhorn", epsilon=0.01).near_uniform_rows(2) == []


def test_sinkhorn_needs_epsilon() -> None:
    cost, a, b = _problem()
    with pytest.raises(SolverError) as error:
        solve_coupling(cost, a, b, "sinkhorn", epsilon=None)
    assert error.value.where == "coupling.epsilons"


def test_rows_share_mass_equally_with_or_without_null_row() -> None:
    a, b = marginals(2, torch.ones(48, 3, 2), "uniform", null_row=True)
    assert_close(a, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert_close(b, torch.full((48,), 1 / 48, dtype=torch.float64))
    a, _ = marginals(3, torch.ones(3, 3, 2), "uniform", null_row=False)
    assert_close(a, torch.full((3,), 1 / 3, dtype=torch.float64))


def test_effect_marginal_is_proportional_to_signature_norm() -> None:
    signatures = torch.zeros(3, 4, 2)
    signatures[0] = 1.0
    signatures[2] = 3.0
    _, b = marginals(2, signatures, "effect")
    assert float(b[2] / b[0]) == pytest.approx(3.0, rel=1e-6)
    assert float(b[1]) < 1e-9


@pytest.mark.parametrize("kind", ["mse", "cosine", "agreement"])
def test_costs_are_normalised_and_rank_the_matching_site_first(kind: str) -> None:
    torch.manual_seed(0)
    base_probs = torch.softmax(torch.randn(50, 2), dim=-1)
    labels = base_probs.argmax(-1)
    flipped = torch.nn.functional.one_hot(1 - labels, 2).float()
    variable = (flipped - torch.nn.functional.one_hot(labels, 2).float()).unsqueeze(0)
    sites = torch.stack([torch.zeros(50, 2), flipped - base_probs, 0.1 * torch.randn(50, 2)])
    cost = cost_matrix(kind, variable, sites, base_probs, num_classes=2)  # type: ignore[arg-type]
    assert float(cost.max()) == pytest.approx(1.0)
    assert float(cost.min()) >= 0.0
    assert int(cost[0].argmin()) == 1
