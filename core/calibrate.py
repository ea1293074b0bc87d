"""Calibration: turn coupling rows into intervention handles (plot-method.md §4).

For a variable, a plan's normalised row ranks the sites; a handle keeps the top ``k``,
renormalises their weights ``w`` and intervenes softly at all of them jointly,
``h <- h + λ w_site / |site| (h_source - h)`` per coordinate (in the PCA frame for PCA
sites). Every (plan, k, λ) candidate is evaluated on the calibration bank in stacked
batches, and the one with the best exact-match accuracy is the handle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from core.engine import BankTraces, Interventions, iter_interventions
from core.nets.base import InterventableNet
from core.sites import Site


@dataclass(frozen=True)
class IIA:
    """Interchange-intervention accuracy of one handle on one bank.

    ``sensitivity`` is the accuracy on pairs where the variable's interchange changes the
    output, ``invariance`` on pairs where it does not (None when a bank has no such pair).
    """

    overall: float
    sensitivity: float | None
    invariance: float | None
    pairs: int
    sensitive_pairs: int


class Candidate(NamedTuple):
    """One handle candidate: a plan's row, a size and a strength (a named tuple: a grid
    makes tens of thousands of them, and a tuple is built several times faster than a
    frozen dataclass)."""

    plan: int
    k: int
    strength: float
    sites: tuple[int, ...]  # site indices, strongest first
    weights: tuple[float, ...]  # renormalised row weights of those sites


def rank_sites(row: Tensor, cost_row: Tensor) -> list[int]:
    """Site indices by decreasing coupling mass, ties broken by increasing cost."""
    mass = row.detach().double().cpu().numpy()
    cost = cost_row.detach().double().cpu().numpy()
    # lexsort sorts by the last key first: mass (descending), then cost, then index
    return [int(i) for i in np.lexsort((np.arange(mass.size), cost, -mass))]


def build_candidates(rows: Sequence[Tensor], cost_row: Tensor, top_k: Sequence[int],
                     strengths: Sequence[float], first_plan: int = 0) -> list[Candidate]:
    """All (plan, k, λ) candidates for one variable; rows are its normalised plan rows,
    numbered from ``first_plan``."""
    out: list[Candidate] = []
    strengths = [float(s) for s in strengths]
    for plan_index, row in enumerate(rows, start=first_plan):
        order = rank_sites(row, cost_row)
        mass_of = row.detach().double().cpu().tolist()
        for k in sorted({min(k, len(order)) for k in top_k}):
            top = tuple(order[:k])
            mass = [mass_of[s] for s in top]
            total = math.fsum(mass)
            weights = tuple(m / total for m in mass) if total > 0 else (1.0 / k,) * k
            out.extend(Candidate(plan_index, k, strength, top, weights)
                       for strength in strengths)
    return out


def candidate_interventions(
    candidates: Sequence[Candidate],
    sites: Sequence[Site],
    directions: dict[str, int],
    frames: dict[str, Tensor],
    device: torch.device,
    hard: bool = False,
) -> Interventions:
    """Coefficients of each candidate at every location its sites touch.

    Built as tensor ops: a (N, S) matrix of each candidate's λ·w per site times, per
    location, a (S, K) matrix spreading a site evenly over its directions (float64, so
    equal candidates get bit-equal rows).

    Args:
        directions: location -> number of frame directions (width, or PCA components).
        hard: the plain interchange of the kept sites (coefficient 1) instead of the soft one.
    """
    used = sorted({s for c in candidates for s in c.sites})
    column = {s: i for i, s in enumerate(used)}
    rows = [n for n, c in enumerate(candidates) for _ in c.sites]
    cols = [column[s] for c in candidates for s in c.sites]
    values = ([1.0] * len(rows) if hard else
              [c.strength * w for c in candidates for w in c.weights])
    per_site = torch.zeros(len(candidates), len(used), dtype=torch.float64)
    per_site.index_put_((torch.from_numpy(np.asarray(rows, dtype=np.int64)),
                         torch.from_numpy(np.asarray(cols, dtype=np.int64))),
                        torch.from_numpy(np.asarray(values, dtype=np.float64)),
                        accumulate=True)
    order = list(directions)
    locations = sorted({sites[s].location for s in used}, key=order.index)
    coefficients = {}
    for location in locations:
        mine = [i for i, s in enumerate(used) if sites[s].location == location]
        spread = torch.zeros(len(mine), directions[location], dtype=torch.float64)
        for row, i in enumerate(mine):
            site = sites[used[i]]
            stop = directions[location] if site.kind == "all" else site.stop
            spread[row, site.start:stop] = 1.0 if hard else 1.0 / (stop - site.start)
        coefficient = per_site[:, mine] @ spread  # (N, K)
        if hard:
            coefficient = coefficient.clamp(max=1.0)
        coefficients[location] = coefficient.to(device=device, dtype=torch.float32)
    return Interventions(coefficients,
                         {loc: frames[loc] for loc in locations if loc in frames})


def exact_matches(net: InterventableNet, traces: BankTraces, interventions: Interventions,
                  targets: Tensor, max_rows: int,
                  progress: Callable[[int], None] | None = None) -> Tensor:
    """(N, P) bool: every output head's argmax equals the target label, per candidate, pair.

    Args:
        targets: (P, O) counterfactual labels.
    """
    out = torch.zeros(interventions.count, traces.pairs, dtype=torch.bool,
                      device=targets.device)
    order = by_locations(interventions)
    interventions = interventions.take(order)
    for n_slice, p_slice, logits in iter_interventions(net, traces, interventions, max_rows):
        out[order[n_slice], p_slice] = (logits.argmax(-1) == targets[p_slice]).all(-1)
        if progress is not None:
            progress((n_slice.stop - n_slice.start) * (p_slice.stop - p_slice.start))
    return out


def by_locations(interventions: Interventions) -> Tensor:
    """(N,) an order of the interventions that puts those acting at the same set of
    locations next to each other (a stacked batch then skips the locations none of its
    interventions touch, and resumes from the latest location it can)."""
    touched = torch.stack([coef.ne(0).any(1) for coef in interventions.coefficients.values()],
                          dim=1)  # (N, L)
    if touched.shape[1] <= 62:  # one int64 key per intervention: a 1-D sort
        bits = 2 ** torch.arange(touched.shape[1], device=touched.device)
        group = (touched.long() * bits).sum(1)
    else:
        _, group = torch.unique(touched, dim=0, return_inverse=True)
    return torch.argsort(group, stable=True)


def summarize_iia(matches: Tensor, sensitive: Tensor) -> IIA:
    """IIA from (P,) exact matches and (P,) "the interchange changes the output" flags."""
    def share(mask: Tensor) -> float | None:
        return float(matches[mask].float().mean()) if bool(mask.any()) else None

    overall = float(matches.float().mean())
    return IIA(overall, share(sensitive), share(~sensitive), int(matches.numel()),
               int(sensitive.sum()))


def select_candidate(candidates: Sequence[Candidate], accuracy: Tensor) -> int:
    """Index of the best candidate: highest accuracy, then smaller k, then λ nearest 1,
    then the earlier plan (plans are ordered by their grid)."""
    scores = accuracy.tolist()

    def key(i: int) -> tuple[float, int, float, int]:
        c = candidates[i]
        return (-float(scores[i]), c.k, abs(math.log(c.strength)), c.plan)

    return min(range(len(candidates)), key=key)


def unique_candidates(interventions: Interventions) -> tuple[Interventions, Tensor]:
    """Drop candidates whose coefficients coincide; returns (unique, inverse index (N,)).

    The unique rows keep the order of their first occurrence; rows are compared bit for bit,
    hashed as bytes (no sort of the (N, K) table).
    """
    stacked = torch.cat(list(interventions.coefficients.values()), dim=1)
    table = stacked.detach().cpu().contiguous().numpy()
    ids: dict[bytes, int] = {}
    inverse = np.fromiter((ids.setdefault(row.tobytes(), len(ids)) for row in table),
                          dtype=np.int64, count=table.shape[0])
    _, firsts = np.unique(inverse, return_index=True)  # ids are 0..U-1 in order
    index = torch.from_numpy(firsts).to(stacked.device)
    return interventions.take(index), torch.from_numpy(inverse).to(stacked.device)
