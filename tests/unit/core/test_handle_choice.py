"""One variable's handle: successive halving keeps the true best candidate, and the chosen
handle is tested soft and hard on the planted net."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.calibrate import Candidate, build_candidates, candidate_interventions, unique_candidates
from core.coupling import Coupling
from core.errors import TaskError
from core.handle_choice import calibrate_variable, hopeless, score_candidates
from core.level_inputs import LevelInputs
from core.sites import Site
from core.spec import CalibrationSpec
from tests.unit.core.planted import P_NEURON, planted_level_inputs

CPU = torch.device("cpu")
NEURONS = [Site("layer:1", "dims", i, i + 1) for i in range(6)]  # planted: P in 1, its copy in 0
STRENGTHS = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]
PLAN = Coupling(plan=torch.zeros(3, 6), solver="sinkhorn", epsilon=0.03, beta=None, n_iter=1,
                converged=True)


@pytest.fixture(scope="module")
def inputs() -> LevelInputs:
    return planted_level_inputs(120, top_k=[1, 2, 3], strengths=STRENGTHS)


def _candidates() -> list[Candidate]:
    """P's row: the planted neuron first, then its copy and a filler neuron."""
    row = torch.tensor([0.3, 0.5, 0.0, 0.0, 0.0, 0.2])
    return build_candidates([row], torch.zeros(6), [1, 2, 3], STRENGTHS)


def _with(inputs: LevelInputs, screen_pairs: int, finalists: int) -> LevelInputs:
    spec = CalibrationSpec(top_k=[1, 2, 3], strengths=STRENGTHS, screen_pairs=screen_pairs,
                           finalists=finalists)
    return dataclasses.replace(inputs, calibration=spec)


def _scores(inputs: LevelInputs) -> tuple[torch.Tensor, int, list[tuple[int, int]]]:
    unique, _ = unique_candidates(candidate_interventions(
        _candidates(), NEURONS, inputs.net.widths, {}, CPU))
    seen: list[tuple[int, int]] = []
    target = inputs.banks.calibration.counterfactual_labels["P"]
    scores, total = score_candidates(inputs, unique, target,
                                     lambda done, of: seen.append((done, of)))
    return scores, total, seen


def test_successive_halving_keeps_the_true_best_candidate(inputs: LevelInputs) -> None:
    exhaustive, all_total, _ = _scores(_with(inputs, screen_pairs=0, finalists=3))
    halving, total, seen = _scores(_with(inputs, screen_pairs=30, finalists=3))
    candidates, pairs = exhaustive.numel(), inputs.banks.calibration.size
    assert all_total == candidates * pairs
    assert total == candidates * 30 + 3 * pairs < all_total
    assert seen[-1] == (total, total)
    finalists = halving >= 0
    assert int(finalists.sum()) == 3  # the others carry their screening score minus 1
    assert float(halving.max()) == float(exhaustive.max()) == 1.0
    assert int(halving.argmax()) == int(exhaustive.argmax())
    torch.testing.assert_close(halving[finalists], exhaustive[finalists])
    assert bool((halving[~finalists] < 0).all())


def test_few_candidates_are_all_scored_on_the_whole_bank(inputs: LevelInputs) -> None:
    exhaustive, _, _ = _scores(_with(inputs, screen_pairs=0, finalists=3))
    scored, total, _ = _scores(_with(inputs, screen_pairs=30, finalists=exhaustive.numel()))
    assert total == exhaustive.numel() * inputs.banks.calibration.size
    torch.testing.assert_close(scored, exhaustive)


def test_the_chosen_handle_is_the_plain_interchange_of_the_planted_neuron(
        inputs: LevelInputs) -> None:
    inputs = _with(inputs, screen_pairs=30, finalists=4)
    candidates = _candidates()
    handle, passes = calibrate_variable(2, "P", candidates, [PLAN], NEURONS, inputs.net.widths,
                                        {}, inputs, lambda done, of: None)
    assert (handle.sites, handle.k, handle.strength, handle.weights) == ([P_NEURON], 1, 1.0,
                                                                         [1.0])
    assert (handle.variable, handle.level, handle.epsilon, handle.beta) == ("P", 2, 0.03, None)
    assert handle.iia_calibration == 1.0 and handle.hard_iia_calibration == 1.0
    assert handle.iia_test.overall == 1.0 and handle.hard_iia_test.overall == 1.0
    calibration, test = inputs.banks.calibration.size, inputs.banks.test.size
    unique = unique_candidates(candidate_interventions(candidates, NEURONS, inputs.net.widths,
                                                       {}, CPU))[0].count
    assert passes == unique * 30 + 4 * calibration + 2 * test + calibration


def test_a_weak_soft_handle_fails_where_its_hard_interchange_succeeds(
        inputs: LevelInputs) -> None:
    # λ 0.5 on P's neuron halves P: the output moves only where P keeps its base value
    half = [Candidate(0, 1, 0.5, (1,), (1.0,))]
    handle, _ = calibrate_variable(0, "P", half, [PLAN], NEURONS, inputs.net.widths, {},
                                   inputs, lambda done, of: None)
    test = inputs.banks.test
    assert handle.iia_test.sensitivity == 0.0 and handle.iia_test.invariance == 1.0
    assert handle.iia_test.overall == pytest.approx(
        1.0 - float(test.changes_output("P").float().mean()))
    assert handle.iia_test.sensitive_pairs == int(test.changes_output("P").sum())
    assert handle.hard_iia_calibration == 1.0 and handle.hard_iia_test.overall == 1.0


def test_the_first_rung_drops_hopeless_candidates_and_keeps_the_best() -> None:
    inputs = planted_level_inputs(300, top_k=[1, 2, 3], strengths=STRENGTHS)
    exhaustive, _, _ = _scores(_with(inputs, screen_pairs=0, finalists=3))
    halving, total, seen = _scores(_with(inputs, screen_pairs=256, finalists=3))
    hits = exhaustive_on(inputs, pairs=64)
    first_rung = hits.float().mean(1)
    dropped = hopeless(hits)
    kept = int((~dropped).sum())
    assert 3 <= kept < exhaustive.numel()  # the rung drops some and keeps the finalists
    assert total == exhaustive.numel() * 64 + kept * 256 + 3 * 300
    assert seen[-1] == (total, total)
    assert int(halving.argmax()) == int(exhaustive.argmax())
    assert float(halving.max()) == float(exhaustive.max()) == 1.0
    # a dropped candidate is ranked below every kept one by its first-rung score
    torch.testing.assert_close(halving[dropped], first_rung[dropped] - 2.0)
    assert bool((halving[~dropped] > -1.0).all())


def exhaustive_on(inputs: LevelInputs, pairs: int) -> torch.Tensor:
    """(U, pairs) every unique candidate's hits on the first ``pairs`` calibration pairs."""
    unique, _ = unique_candidates(candidate_interventions(
        _candidates(), NEURONS, inputs.net.widths, {}, CPU))
    target = inputs.banks.calibration.counterfactual_labels["P"][:pairs]
    return inputs.backend.matches("calibration", unique, target, pairs=pairs)


def test_the_sign_test_drops_by_the_pairs_where_two_candidates_disagree() -> None:
    best = torch.ones(64, dtype=torch.bool)
    near = best.clone()
    near[:6] = False  # wrong on 6 pairs the best gets right: within chance (margin 9.1)
    far = best.clone()
    far[:24] = False  # wrong on 24 of them: beyond chance (margin 18.2)
    coin = torch.arange(64) % 2 == 0  # a coin, 32 pairs behind: dropped
    rung = torch.stack([best, near, far, coin])
    assert hopeless(rung).tolist() == [False, False, True, True]
    # the same 24-pair gap, but with the rival right on 20 pairs the best gets wrong: a
    # 4-pair difference on 44 disagreements is chance
    close = far.clone()
    rival = best.clone()
    rival[40:60] = False
    close[40:60] = True
    assert hopeless(torch.stack([rival, close])).tolist() == [False, False]


def test_a_scoped_calibration_bank_scores_a_variable_on_its_own_pairs_alone() -> None:
    inputs = planted_level_inputs(300, top_k=[1, 2, 3], strengths=STRENGTHS)
    unique, _ = unique_candidates(candidate_interventions(
        _candidates(), NEURONS, inputs.net.widths, {}, CPU))
    target = inputs.banks.calibration.counterfactual_labels["P"]
    scored = torch.arange(300) % 3 == 0  # P's pairs: every third
    wrong = target.clone()
    wrong[~scored] = 1 - wrong[~scored]  # labels no candidate can match, where P is not scored
    hits = inputs.backend.matches("calibration", unique, target)
    own = hits[:, scored].float().mean(1)

    def scores(screen_pairs: int) -> tuple[torch.Tensor, int]:
        return score_candidates(_with(inputs, screen_pairs=screen_pairs, finalists=3), unique,
                                wrong, lambda done, of: None, scored)

    exhaustive, total = scores(0)
    torch.testing.assert_close(exhaustive, own)  # the unscored pairs' labels do not count
    assert total == unique.count * 100  # and are not run
    # screening counts P's own pairs: its first 64, then the finalists on its 100
    halving, total = scores(64)
    assert total == unique.count * 64 + 3 * 100
    assert int(halving.argmax()) == int(own.argmax())
    finalists = halving >= 0
    assert int(finalists.sum()) == 3
    torch.testing.assert_close(halving[finalists], own[finalists])
    # on the first 64 of P's pairs, a screened-out candidate's score is its accuracy there
    first = hits[:, torch.nonzero(scored).squeeze(1)[:64]].float().mean(1)
    torch.testing.assert_close(halving[~finalists], first[~finalists] - 1.0)


def test_a_variable_no_calibration_pair_scores_is_refused_by_name() -> None:
    inputs = planted_level_inputs(60, top_k=[1], strengths=[1.0])
    calibration = inputs.banks.calibration
    nobody = {v: torch.zeros(calibration.size, dtype=torch.bool)
              for v in calibration.counterfactual_labels}
    banks = dataclasses.replace(inputs.banks, calibration=dataclasses.replace(
        calibration, scope=nobody))
    with pytest.raises(TaskError, match="no calibration pair scores P") as error:
        calibrate_variable(0, "P", [Candidate(0, 1, 1.0, (1,), (1.0,))], [PLAN], NEURONS,
                           inputs.net.widths, {}, dataclasses.replace(inputs, banks=banks),
                           lambda done, of: None)
    assert error.value.where == "pairs.calibration"
