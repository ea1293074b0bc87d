"""One variable's handle at a level: its candidates scored on the calibration bank (by
successive halving), the best chosen, then tested soft and hard (plot-method.md §4)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

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
from core.errors import TaskError
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
    scored = calibration.scored(variable)
    if not bool(scored.any()):
        raise TaskError(f"no calibration pair scores {variable} (the bank's scope gives it "
                        "none): its handle cannot be chosen", "pairs.calibration")
    scores, total = score_candidates(inputs, unique, target, progress, scored)
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


def hopeless(hits: Tensor, delta: float = HOPELESS_DELTA) -> Tensor:
    """(U,) bool: the candidates of a rung's (U, P) ``hits`` that trail its best one beyond
    chance, by a sign test on the pairs where the two disagree.

    Where candidate c and the best b disagree (``n`` pairs: b right and c wrong, or the
    reverse), each pair's sign is an independent coin given that set, with P(b right) at
    most ½ were c at least as accurate as b. By Hoeffding's inequality on those ``n`` ±1
    terms, c trailing b by ``b_only - c_only > sqrt(2 n ln(1/δ))`` then has probability at
    most δ. Pairs both get right or both get wrong say nothing about the difference, so the
    margin shrinks with ``n``, not with the rung's size: a candidate close to the best's
    answers is judged on few pairs, a far one (most pairs discordant) is dropped by a wide
    gap only.
    """
    best = hits[int(hits.float().mean(1).argmax())]
    best_only = (best & ~hits).sum(1).double()
    own_only = (hits & ~best).sum(1).double()
    margin = torch.sqrt(2.0 * (best_only + own_only) * math.log(1.0 / delta))
    return best_only - own_only > margin


@dataclass(frozen=True)
class Rows:
    """The calibration pairs a variable is scored on: ``index`` (a (P',) long index into
    the bank) or, when None, every pair; what ``ComputeBackend.matches`` takes as ``pairs``."""

    index: Tensor | None

    def of(self, per_pair: Tensor) -> Tensor:
        """``per_pair``'s (P, ...) rows at these pairs."""
        return per_pair if self.index is None else per_pair[self.index.to(per_pair.device)]

    def leading(self, count: int) -> int | Tensor:
        """The first ``count`` of these pairs."""
        return count if self.index is None else self.index[:count]


ALL_PAIRS = Rows(None)


def score_candidates(inputs: LevelInputs, unique: Interventions, target: Tensor,
                     progress: Callable[[int, int], None], scored: Tensor | None = None
                     ) -> tuple[Tensor, int]:
    """Calibration accuracy of each candidate, by successive halving.

    Every candidate is scored on the first ``screen_pairs // 4`` calibration pairs (when
    that is at least 32); one that trails that rung's best beyond chance (``hopeless``)
    is dropped. The others are scored on the first ``screen_pairs`` pairs, and the best
    ``finalists`` on the whole bank. A candidate that did not make the final gets its
    screening accuracy minus 1 (a dropped one its first rung's accuracy minus 2), so only
    finalists can be selected, on full-bank scores.

    Args:
        scored: (P,) bool, the calibration pairs that score this variable (a bank with a
            ``scope``): only those are run, and every count above is of them. None: all.

    Returns:
        (U,) scores and the number of (candidate × pair) forwards spent.
    """
    spec = inputs.calibration
    rows = Rows(None if scored is None or bool(scored.all())
                else torch.nonzero(scored).squeeze(1))
    target = rows.of(target)
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
        return inputs.backend.matches("calibration", unique, target, advance,
                                      pairs=rows.index).float().mean(1), total
    first = screening_scores(inputs, unique, target[:screen], advance, rows)
    total = done[0] + spec.finalists * pairs
    order = torch.argsort(first, descending=True, stable=True)[: spec.finalists]
    final = inputs.backend.matches("calibration", unique.take(order), target, advance,
                                   pairs=rows.index)
    scores = first - 1.0
    scores[order] = final.float().mean(1)
    return scores, total


def screening_scores(inputs: LevelInputs, unique: Interventions, target: Tensor,
                     advance: Callable[[int], None], rows: Rows = ALL_PAIRS) -> Tensor:
    """(U,) accuracy on the ``target``'s screening pairs (the leading ones of ``rows``); a
    candidate dropped at the first rung gets that rung's accuracy minus 1 (below every
    candidate that was kept)."""
    screen = int(target.shape[0])
    rung = screen // RUNG_SHARE
    if rung < MIN_RUNG_PAIRS:
        return inputs.backend.matches("calibration", unique, target, advance,
                                      pairs=rows.leading(screen)).float().mean(1)
    hits = inputs.backend.matches("calibration", unique, target[:rung], advance,
                                  pairs=rows.leading(rung))
    first = hits.float().mean(1)
    kept = torch.nonzero(~hopeless(hits)).squeeze(1)
    scores = first - 1.0
    scores[kept] = inputs.backend.matches("calibration", unique.take(kept), target, advance,
                                          pairs=rows.leading(screen)).float().mean(1)
    return scores
