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


@dataclass(frozen=True)
class Candidate:
    """One handle candidate: a plan's row, a size and a strength."""

    plan: int
    k: int
    strength: float
    sites: tuple[int, ...]  # site indices, strongest first
    weights: tuple[float, ...]  # renormalised row weights of those sites


def rank_sites(row: Tensor, cost_row: Tensor) -> list[int]:
    """Site indices by decreasing coupling mass, ties broken by increasing cost."""
    keys = sorted(range(row.numel()), key=lambda s: (-float(row[s]), float(cost_row[s]), s))
    return keys


def build_candidates(rows: Sequence[Tensor], cost_row: Tensor, top_k: Sequence[int],
                     strengths: Sequence[float]) -> list[Candidate]:
    """All (plan, k, λ) candidates for one variable; rows are its normalised plan rows."""
    out = []
    for plan_index, row in enumerate(rows):
        order = rank_sites(row, cost_row)
        for k in sorted({min(k, len(order)) for k in top_k}):
            top = order[:k]
            mass = torch.stack([row[s] for s in top]).double()
            weights = (mass / mass.sum()) if float(mass.sum()) > 0 else torch.full_like(
                mass, 1.0 / k)
            for strength in strengths:
                out.append(Candidate(plan_index, k, float(strength), tuple(top),
                                     tuple(float(w) for w in weights)))
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

    Args:
        directions: location -> number of frame directions (width, or PCA components).
        hard: the plain interchange of the kept sites (coefficient 1) instead of the soft one.
    """
    locations = sorted({sites[s].location for c in candidates for s in c.sites},
                       key=lambda loc: list(directions).index(loc))
    coefficients = {loc: torch.zeros(len(candidates), directions[loc], device=device)
                    for loc in locations}
    for row, candidate in enumerate(candidates):
        for s, weight in zip(candidate.sites, candidate.weights, strict=True):
            site = sites[s]
            stop = directions[site.location] if site.kind == "all" else site.stop
            value = 1.0 if hard else candidate.strength * weight / (stop - site.start)
            target = coefficients[site.location][row, site.start:stop]
            target.copy_(torch.maximum(target, torch.full_like(target, value)) if hard
                         else target + value)
    return Interventions(coefficients, {loc: frames[loc] for loc in locations if loc in frames})


def exact_matches(net: InterventableNet, traces: BankTraces, interventions: Interventions,
                  targets: Tensor, max_rows: int,
                  progress: Callable[[int], None] | None = None) -> Tensor:
    """(N, P) bool: every output head's argmax equals the target label, per candidate, pair.

    Args:
        targets: (P, O) counterfactual labels.
    """
    out = torch.zeros(interventions.count, traces.pairs, dtype=torch.bool,
                      device=targets.device)
    for n_slice, p_slice, logits in iter_interventions(net, traces, interventions, max_rows):
        out[n_slice, p_slice] = (logits.argmax(-1) == targets[p_slice]).all(-1)
        if progress is not None:
            progress((n_slice.stop - n_slice.start) * (p_slice.stop - p_slice.start))
    return out


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
    def key(i: int) -> tuple[float, int, float, int]:
        c = candidates[i]
        return (-float(accuracy[i]), c.k, abs(math.log(c.strength)), c.plan)

    return min(range(len(candidates)), key=key)


def unique_candidates(interventions: Interventions) -> tuple[Interventions, Tensor]:
    """Drop candidates whose coefficients coincide; returns (unique, inverse index (N,))."""
    stacked = torch.cat(list(interventions.coefficients.values()), dim=1)
    unique, inverse = torch.unique(stacked, dim=0, return_inverse=True)
    widths = [c.shape[1] for c in interventions.coefficients.values()]
    parts = torch.split(unique, widths, dim=1)
    return Interventions(dict(zip(interventions.coefficients, parts, strict=True)),
                         interventions.frames), inverse
