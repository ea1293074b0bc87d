"""Cost matrices against hand-computed values, and their normalisation to [0, 1]."""

from __future__ import annotations

import math
from typing import get_args

import pytest
import torch
from torch.testing import assert_close

from core.cost import COSTS, agreement_cost, cosine_cost, cost_matrix, mse_cost
from core.spec import CostKind

# one variable, two pairs, one head of two classes: pair 0 flips class 0 -> 1, pair 1 stays
VARIABLE = torch.tensor([[[-1.0, 1.0], [0.0, 0.0]]])  # (V=1, P=2, Y=2)
BASE_PROBS = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # (P, Y): base argmax 0, 1


def _sites(device: torch.device) -> torch.Tensor:
    """(S=3, P=2, Y=2): the variable's own effect, no effect, and a flip of both pairs."""
    return torch.tensor([
        [[-0.8, 0.8], [0.0, 0.0]],  # patched: [0.1, 0.9], [0.2, 0.8] -> argmax 1, 1
        [[0.0, 0.0], [0.0, 0.0]],  # patched = base -> argmax 0, 1
        [[0.0, 0.0], [0.7, -0.7]],  # patched: [0.9, 0.1], [0.9, 0.1] -> argmax 0, 0
    ], device=device)


def test_mse_cost_is_the_mean_over_pairs_of_squared_distances(device: torch.device) -> None:
    variable = VARIABLE.to(device)
    sites = torch.stack([variable[0], torch.zeros(2, 2, device=device), -variable[0]])
    # ‖e_H − e_N‖² per pair: (0, 0), (2, 0), (8, 0); divided by P = 2
    expected = torch.tensor([[0.0, 1.0, 4.0]], device=device)
    assert_close(mse_cost(variable, sites), expected)
    assert_close(cost_matrix("mse", variable, sites, BASE_PROBS.to(device), 2),
                 expected / 4.0)


def test_cosine_cost_is_one_minus_cosine_and_a_zero_signature_costs_one(
        device: torch.device) -> None:
    variable = VARIABLE.to(device)
    half = torch.tensor([[1.0, 0.0], [0.0, 0.0]], device=device)  # cos = −1/√2 with e_H
    sites = torch.stack([variable[0], half, torch.zeros(2, 2, device=device), -variable[0]])
    expected = torch.tensor([[0.0, 1.0 + 1.0 / math.sqrt(2.0), 1.0, 2.0]], device=device)
    assert_close(cosine_cost(variable, sites), expected)
    assert_close(cost_matrix("cosine", variable, sites, BASE_PROBS.to(device), 2),
                 expected / 2.0)


def test_agreement_cost_counts_pairs_whose_patched_argmax_is_the_counterfactual(
        device: torch.device) -> None:
    # counterfactual argmax per pair: 1, 1. Site 0 gives 1, 1; site 1 gives 0, 1; site 2 0, 0
    cost = agreement_cost(VARIABLE.to(device), _sites(device),
                          base_probs=BASE_PROBS.to(device), num_classes=2)
    assert_close(cost, torch.tensor([[0.0, 0.5, 1.0]], device=device))


def test_agreement_needs_every_head_to_match() -> None:
    # two heads of two classes; the base predicts (0, 0) on the one pair
    base_probs = torch.tensor([[0.9, 0.1, 0.8, 0.2]])  # (P=1, O*C=4)
    variable = torch.tensor([[[-1.0, 1.0, -1.0, 1.0]]])  # counterfactual (1, 1)
    sites = torch.tensor([
        [[-0.8, 0.8, -0.6, 0.6]],  # patched (1, 1): both heads
        [[-0.8, 0.8, 0.0, 0.0]],  # patched (1, 0): only the first head
    ])
    cost = agreement_cost(variable, sites, base_probs=base_probs, num_classes=2)
    assert_close(cost, torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("kind", list(COSTS))
def test_cost_matrix_divides_by_its_maximum(kind: CostKind, device: torch.device) -> None:
    torch.manual_seed(0)
    variables = torch.randn(2, 5, 4, device=device)
    sites = torch.randn(3, 5, 4, device=device)
    base_probs = torch.softmax(torch.randn(5, 4, device=device), dim=-1)
    raw = COSTS[kind](variables, sites, base_probs=base_probs, num_classes=2)
    cost = cost_matrix(kind, variables, sites, base_probs, 2)
    assert cost.shape == (2, 3) and cost.device == variables.device
    assert_close(cost, raw.clamp_min(0.0) / raw.max())
    assert float(cost.max()) == pytest.approx(1.0)


def test_an_all_zero_cost_stays_zero_instead_of_dividing_by_zero() -> None:
    signatures = torch.ones(2, 3, 2)
    cost = cost_matrix("mse", signatures, signatures, torch.full((3, 2), 0.5), 2)
    assert_close(cost, torch.zeros(2, 2))


def test_every_cost_kind_of_the_spec_has_a_cost() -> None:
    assert set(COSTS) == set(get_args(CostKind))
