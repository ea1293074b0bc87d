"""One variable's handle at a level: its candidates scored on the calibration bank (by
successive halving), the best chosen, then tested soft and hard (plot-method.md §4)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from core.backend import Split
from core.calibrate import (
    IIA,
    Candidate,
    candidate_interventions,
    select_candidate,
    summarize_iia,
    unique_candidates,
)
from core.coupling import Coupling
from core.engine import Interventions
from core.level_inputs import LevelInputs
from core.result import HandleResult
from core.sites import Site


def calibrate_variable(
    level: int, variable: str, candidates: list[Candidate], plans: list[Coupling],
    sites: list[Site], directions: dict[str, int], frames: dict[str, Tensor],
    inputs: LevelInputs, progress: Callable[[int, int], None],
) -> tuple[HandleResult, int]:
    """Choose one variable's handle on the calibration bank; test it (soft and hard).

    Returns:
        The handle and the number of (pair × candidate) forwards spent.
    """
    banks, traces = inputs.banks, inputs.traces
    device = traces["fit"].base.logits.device
    calibration, test = banks.calibration.to(device), banks.test.to(device)
    soft = candidate_interventions(candidates, sites, directions, frames, device)
    unique, inverse = unique_candidates(soft)
    target = calibration.counterfactual_labels[variable]
    scores, total = score_candidates(inputs, unique, target, progress)
    accuracy = scores[inverse]  # (N,)
    best = candidates[select_candidate(candidates, accuracy)]
    chosen = [best]
    evaluate = {
        "soft_test": (candidate_interventions(chosen, sites, directions, frames, device), test),
        "hard_cal": (candidate_interventions(chosen, sites, directions, frames, device, True),
                     calibration),
        "hard_test": (candidate_interventions(chosen, sites, directions, frames, device, True),
                      test),
    }
    iia: dict[str, IIA] = {}
    for name, (chosen_plan, bank) in evaluate.items():
        split: Split = "test" if bank is test else "calibration"
        hits = inputs.backend.matches(split, chosen_plan, bank.counterfactual_labels[variable])[0]
        scored = bank.scored(variable)
        iia[name] = summarize_iia(hits[scored], bank.changes_output(variable)[scored])
    plan = plans[best.plan]
    handle = HandleResult(
        variable=variable, level=level, sites=[sites[s].id for s in best.sites],
        weights=list(best.weights), k=best.k, strength=best.strength, epsilon=plan.epsilon,
        beta=plan.beta, iia_calibration=float(accuracy[candidates.index(best)]),
        iia_test=iia["soft_test"], hard_iia_calibration=iia["hard_cal"].overall,
        hard_iia_test=iia["hard_test"])
    passes = total + 2 * test.size + calibration.size
    return handle, passes


# the first rung of successive halving scores every candidate on screen_pairs // RUNG_SHARE
# pairs (when that is at least MIN_RUNG_PAIRS) and drops the hopeless ones
RUNG_SHARE = 4
MIN_RUNG_PAIRS = 32
HOPELESS_DELTA = 1e-3


def hopeless_margin(pairs: int, delta: float = HOPELESS_DELTA) -> float:
    """The accuracy gap on ``pairs`` pairs beyond which a candidate is dropped as hopeless:
    ``sqrt(2 ln(1/δ) / pairs)``. By Hoeffding's inequality on the pairwise difference of
    two candidates' hits (each term in [-1, 1]), a candidate at least as accurate as the
    rung's best trails it by more than this with probability at most δ (0.47 on 64 pairs)."""
    return math.sqrt(2.0 * math.log(1.0 / delta) / pairs)


def score_candidates(inputs: LevelInputs, unique: Interventions, target: Tensor,
                     progress: Callable[[int, int], None]) -> tuple[Tensor, int]:
    """Calibration accuracy of each candidate, by successive halving.

    Every candidate is scored on the first ``screen_pairs // 4`` calibration pairs (when
    that is at least 32); one trailing that rung's best by more than ``hopeless_margin``
    is dropped. The others are scored on the first ``screen_pairs`` pairs, and the best
    ``finalists`` on the whole bank. A candidate that did not make the final gets its
    screening accuracy minus 1 (a dropped one its first rung's accuracy minus 2), so only
    finalists can be selected, on full-bank scores.

    Returns:
        (U,) scores and the number of (candidate × pair) forwards spent.
    """
    spec = inputs.calibration
    pairs = int(target.shape[0])
    screen = spec.screen_pairs
    screening = 0 < screen < pairs and unique.count > spec.finalists
    total = (unique.count * screen + spec.finalists * pairs) if screening \
        else unique.count * pairs
    done = [0]

    def advance(rows: int) -> None:
        done[0] += rows
        progress(done[0], max(total, done[0]))

    if not screening:
        return inputs.backend.matches("calibration", unique, target, advance).float().mean(1), total
    first = screening_scores(inputs, unique, target[:screen], advance)
    total = done[0] + spec.finalists * pairs
    order = torch.argsort(first, descending=True, stable=True)[: spec.finalists]
    final = inputs.backend.matches("calibration", unique.take(order), target, advance)
    scores = first - 1.0
    scores[order] = final.float().mean(1)
    return scores, total


def screening_scores(inputs: LevelInputs, unique: Interventions, target: Tensor,
                     advance: Callable[[int], None]) -> Tensor:
    """(U,) accuracy on the ``target``'s screening pairs; a candidate dropped at the first
    rung gets that rung's accuracy minus 1 (below every candidate that was kept)."""
    screen = int(target.shape[0])
    rung = screen // RUNG_SHARE
    if rung < MIN_RUNG_PAIRS:
        return inputs.backend.matches("calibration", unique, target, advance,
                                      pairs=screen).float().mean(1)
    first = inputs.backend.matches("calibration", unique, target[:rung], advance,
                                   pairs=rung).float().mean(1)
    kept = torch.nonzero(first >= first.max() - hopeless_margin(rung)).squeeze(1)
    scores = first - 1.0
    scores[kept] = inputs.backend.matches("calibration", unique.take(kept), target, advance,
                                          pairs=screen).float().mean(1)
    return scores
