"""Calibration: ranking, candidates, their coefficients, IIA, and the choice of (k, λ) on a
planted net whose answer is known."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from core.calibrate import (
    Candidate,
    build_candidates,
    by_locations,
    candidate_interventions,
    exact_matches,
    rank_sites,
    select_candidate,
    summarize_iia,
    unique_candidates,
)
from core.coupling import Coupling
from core.engine import BankTraces, Interventions, trace_bank
from core.handle_choice import calibrate_variable
from core.nets.mlp import MLP
from core.sites import Site
from core.spec import CalibrationSpec
from tests.unit.core.planted import planted_bank, planted_level_inputs, planted_mlp

CPU = torch.device("cpu")
NEURONS = [Site("layer:1", "dims", i, i + 1) for i in range(6)]  # planted: P in 1, its copy in 0


@pytest.fixture(scope="module")
def planted() -> tuple[MLP, BankTraces, torch.Tensor]:
    """The planted net, its traced bank, and variable P's counterfactual labels."""
    net = planted_mlp()
    bank = planted_bank(200, seed=1)
    return net, trace_bank(net, bank), bank.counterfactual_labels["P"]


def test_sites_rank_by_mass_then_by_cost() -> None:
    row = torch.tensor([0.2, 0.5, 0.2, 0.1])
    cost = torch.tensor([0.3, 0.9, 0.1, 0.0])
    assert rank_sites(row, cost) == [1, 2, 0, 3]


def test_candidates_clip_k_to_the_sites_and_renormalise_the_kept_mass() -> None:
    row = torch.tensor([0.2, 0.5, 0.2, 0.1])
    candidates = build_candidates([row, torch.zeros(4)], torch.zeros(4), top_k=[1, 3, 10],
                                  strengths=[1.0, 2.0])
    assert [(c.plan, c.k, c.strength) for c in candidates[:6]] == [
        (0, 1, 1.0), (0, 1, 2.0), (0, 3, 1.0), (0, 3, 2.0), (0, 4, 1.0), (0, 4, 2.0)]
    assert len(candidates) == 12
    three = candidates[2]
    assert three.sites == (1, 0, 2)  # equal mass: index order (equal cost)
    assert three.weights == pytest.approx((0.5 / 0.9, 0.2 / 0.9, 0.2 / 0.9))
    assert candidates[8].weights == pytest.approx((1 / 3,) * 3)  # a massless row: uniform


def test_soft_coefficients_spread_strength_times_weight_over_a_sites_coordinates() -> None:
    widths = {"layer:0": 4, "layer:1": 6}
    sites = [Site("layer:0", "dims", 0, 2), Site("layer:1", "dims", 3, 4),
             Site("layer:0", "all", 0, 4)]
    candidates = [Candidate(0, 2, 2.0, (0, 1), (0.75, 0.25)),
                  Candidate(0, 2, 1.0, (2, 0), (0.5, 0.5))]
    soft = candidate_interventions(candidates, sites, widths, {}, CPU)
    assert list(soft.coefficients) == ["layer:0", "layer:1"]  # in the net's order
    assert_close(soft.coefficients["layer:0"],
                 torch.tensor([[0.75, 0.75, 0.0, 0.0],  # 2 * 0.75 / 2 coordinates
                               [0.375, 0.375, 0.125, 0.125]]))  # 0.5/4 + 0.5/2 overlap
    assert_close(soft.coefficients["layer:1"], torch.tensor([[0, 0, 0, 0.5, 0, 0],
                                                             [0.0, 0, 0, 0, 0, 0]]))
    hard = candidate_interventions(candidates, sites, widths, {}, CPU, hard=True)
    assert_close(hard.coefficients["layer:0"], torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]]))
    assert_close(hard.coefficients["layer:1"], torch.tensor([[0, 0, 0, 1.0, 0, 0],
                                                             [0.0, 0, 0, 0, 0, 0]]))


def test_iia_splits_into_sensitivity_and_invariance() -> None:
    matches = torch.tensor([True, False, True, True])
    sensitive = torch.tensor([True, True, False, False])
    iia = summarize_iia(matches, sensitive)
    assert (iia.overall, iia.sensitivity, iia.invariance) == (0.75, 0.5, 1.0)
    assert (iia.pairs, iia.sensitive_pairs) == (4, 2)
    only_sensitive = summarize_iia(matches[:2], sensitive[:2])
    assert only_sensitive.invariance is None and only_sensitive.sensitivity == 0.5


def test_selection_breaks_ties_by_smaller_k_then_strength_nearest_one_then_plan() -> None:
    candidates = [Candidate(0, 2, 1.0, (0, 1), (0.5, 0.5)),
                  Candidate(1, 1, 4.0, (0,), (1.0,)),
                  Candidate(0, 1, 0.5, (0,), (1.0,)),
                  Candidate(1, 1, 0.5, (0,), (1.0,)),
                  Candidate(0, 3, 1.0, (0, 1, 2), (0.4, 0.3, 0.3))]
    assert select_candidate(candidates, torch.tensor([0.9, 0.9, 0.9, 0.9, 0.8])) == 2
    assert select_candidate(candidates, torch.tensor([0.9, 0.9, 0.8, 0.8, 0.95])) == 4


def test_unique_candidates_collapse_equal_coefficients_and_map_back() -> None:
    coefficients = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    plan = Interventions({"layer:0": coefficients[:, :1], "layer:1": coefficients[:, 1:]}, {})
    unique, inverse = unique_candidates(plan)
    assert unique.count == 2
    rebuilt = torch.cat([unique.coefficients["layer:0"], unique.coefficients["layer:1"]], 1)
    assert_close(rebuilt[inverse], coefficients)


def test_a_copy_the_output_never_reads_matches_exactly_the_invariant_pairs(
        planted: tuple[MLP, BankTraces, torch.Tensor]) -> None:
    net, traces, target = planted
    plan = candidate_interventions([Candidate(0, 1, 1.0, (0,), (1.0,)),
                                    Candidate(0, 1, 1.0, (1,), (1.0,))],
                                   NEURONS, net.widths, {}, CPU)
    hits = exact_matches(net, traces, plan, target, max_rows=97)
    base_labels = net(traces.base.inputs).argmax(-1)  # the planted net is exact
    assert bool(hits[0].eq((target == base_labels).all(-1)).all())
    assert bool(hits[1].all())  # the planted neuron itself carries P


@pytest.mark.parametrize(("masses", "expected"), [
    ((0.4, 0.6), (1, 1.0)),  # P first: the plain interchange of P alone (k 2 at λ 1.5 ties)
    ((0.6, 0.4), (2, 2.5)),  # the copy first: only both at λ 2.5 put 0.4 · 2.5 = 1 on P
])
def test_calibration_picks_the_k_and_strength_that_put_exactly_p_on_its_neuron(
        planted: tuple[MLP, BankTraces, torch.Tensor], masses: tuple[float, float],
        expected: tuple[int, float]) -> None:
    net, traces, target = planted
    row = torch.zeros(6)
    row[0], row[1] = masses  # neuron 0 is P's copy, neuron 1 is P
    candidates = build_candidates([row], torch.zeros(6), top_k=[1, 2],
                                  strengths=[0.5, 1.0, 1.5, 2.5, 4.0])
    plan = candidate_interventions(candidates, NEURONS, net.widths, {}, CPU)
    accuracy = exact_matches(net, traces, plan, target, max_rows=4096).float().mean(1)
    best = candidates[select_candidate(candidates, accuracy)]
    assert (best.k, best.strength) == expected
    assert float(accuracy.max()) == 1.0
    assert 1 in best.sites


def test_unique_candidates_keep_the_order_of_first_occurrence() -> None:
    coefficients = torch.tensor([[0.0, 2.0], [1.0, 0.0], [0.0, 2.0], [0.5, 0.5]])
    unique, inverse = unique_candidates(Interventions({"layer:0": coefficients}, {}))
    assert_close(unique.coefficients["layer:0"], coefficients[[0, 1, 3]])
    assert inverse.tolist() == [0, 1, 0, 2]


def test_batches_grouped_by_location_skip_untouched_ones_with_the_same_matches(
        planted: tuple[MLP, BankTraces, torch.Tensor]) -> None:
    net, traces, target = planted
    sites = [Site("layer:0", "dims", 0, 2), *NEURONS]  # a layer-0 group, then layer-1 neurons
    candidates = [Candidate(0, 1, 1.0, (2,), (1.0,)), Candidate(0, 1, 1.0, (0,), (1.0,)),
                  Candidate(0, 2, 2.0, (0, 2), (0.5, 0.5)), Candidate(0, 1, 0.5, (2,), (1.0,))]
    plan = candidate_interventions(candidates, sites, net.widths, {}, CPU)
    assert list(plan.coefficients) == ["layer:0", "layer:1"]
    order = by_locations(plan).tolist()
    assert sorted(order) == [0, 1, 2, 3]
    assert abs(order.index(0) - order.index(3)) == 1  # both act at layer:1 alone
    # two interventions per stacked batch: every batch acts at one set of locations
    together = exact_matches(net, traces, plan, target, max_rows=2 * traces.pairs)
    for row, candidate in enumerate(candidates):
        alone = candidate_interventions([candidate], sites, net.widths, {}, CPU)
        assert torch.equal(together[row], exact_matches(net, traces, alone, target, 4096)[0])


def test_screening_picks_the_exhaustive_searchs_handle_on_the_planted_net() -> None:
    inputs = planted_level_inputs(120, top_k=[1, 2, 3], strengths=[0.5, 1.0, 2.0, 4.0])
    strengths = [float(s) for s in range(1, 9)]
    rows = [torch.tensor([0.3, 0.5, 0.0, 0.0, 0.0, 0.2]),  # three plans, two of them equal:
            torch.tensor([0.3, 0.5, 0.0, 0.0, 0.0, 0.2]),  # their candidates coincide
            torch.tensor([0.6, 0.1, 0.0, 0.1, 0.0, 0.2])]
    candidates = build_candidates(rows, torch.zeros(6), [1, 2, 3, 4], strengths)
    plans = [Coupling(plan=torch.zeros(3, 6), solver="sinkhorn", epsilon=e, beta=None,
                      n_iter=1, converged=True) for e in (0.01, 0.03, 0.1)]
    chosen = {}
    for screen in (0, 30):
        spec = CalibrationSpec(top_k=[1, 2, 3, 4], strengths=strengths, screen_pairs=screen,
                               finalists=4)
        handle, _ = calibrate_variable(0, "P", candidates, plans, NEURONS, inputs.net.widths,
                                       {}, replace(inputs, calibration=spec),
                                       lambda done, total: None)
        chosen[screen] = (handle.sites, handle.k, handle.strength, handle.epsilon,
                          handle.iia_calibration)
    assert chosen[30] == chosen[0]
    assert chosen[0][:3] == (["layer:1/dims:1"], 1, 1.0)  # the planted neuron, plainly
