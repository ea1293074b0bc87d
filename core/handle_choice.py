"""One variable's handle at a level: its candidates scored on the calibration bank (by
successive halving), the best chosen, then tested soft and hard (plot-method.md §4)."""

from __future__ import annotations

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


def score_candidates(inputs: LevelInputs, unique: Interventions, target: Tensor,
                     progress: Callable[[int, int], None]) -> tuple[Tensor, int]:
    """Calibration accuracy of each candidate, by successive halving.

    Every candidate is scored on the first ``screen_pairs`` calibration pairs; the best
    ``finalists`` are scored on the whole bank. A candidate that did not make the final gets
    its screening accuracy minus 1, so only finalists can be selected, on full-bank scores.

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
        progress(done[0], total)

    if not screening:
        return inputs.backend.matches("calibration", unique, target, advance).float().mean(1), total
    first = inputs.backend.matches("calibration", unique, target[:screen], advance,
                               pairs=screen).float().mean(1)
    order = torch.argsort(first, descending=True, stable=True)[: spec.finalists]
    final = inputs.backend.matches("calibration", unique.take(order), target, advance)
    scores = first - 1.0
    scores[order] = final.float().mean(1)
    return scores, total
