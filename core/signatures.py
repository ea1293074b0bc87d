"""Effect signatures (plot-method.md §2): how an interchange moves the output, per pair.

Abstract: ``e_H[j, i] = onehot(y*_j(b_i, s_i)) - onehot(y(b_i))``.
Neural:   ``e_N[s, i] = softmax(N(b_i <- s from s_i)) - softmax(N(b_i))``, per output head.
Both are (P, O * C) per variable or site, stacked to (V, P, Y) and (S, P, Y).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from core.causal.bank import PairBank
from core.engine import BankTraces, Interventions, iter_interventions
from core.nets.base import InterventableNet
from core.sites import Site

ProgressFn = Callable[[int, int], None]


def abstract_signatures(bank: PairBank, variables: Sequence[str], num_classes: int) -> Tensor:
    """(V, P, O * C) abstract effect signatures of ``variables`` on ``bank``."""
    base = F.one_hot(bank.base_labels, num_classes).float()  # (P, O, C)
    rows = [F.one_hot(bank.counterfactual_labels[v], num_classes).float() - base
            for v in variables]
    return torch.stack(rows).flatten(2)


def output_probabilities(logits: Tensor) -> Tensor:
    """(..., O, C) logits -> (..., O * C) per-head class probabilities."""
    # softmax over a tiny last dim is slow on CPU; over a leading dim it vectorises (~15x)
    probs = torch.softmax(logits.float().movedim(-1, 0), dim=0).movedim(0, -1)
    return probs.reshape(*logits.shape[:-2], -1)


def site_interventions(sites: Sequence[Site], location: str, width: int,
                       frame: Tensor | None, device: torch.device) -> Interventions:
    """The hard interchange of each site (all at one location) as 0/1 coefficients."""
    directions = width if frame is None else int(frame.shape[1])
    coefficients = torch.zeros(len(sites), directions, device=device)
    for row, site in enumerate(sites):
        stop = directions if site.kind == "all" else site.stop
        coefficients[row, site.start:stop] = 1.0
    frames = {} if frame is None else {location: frame}
    return Interventions({location: coefficients}, frames)


def neural_signatures(
    net: InterventableNet,
    traces: BankTraces,
    sites: Sequence[Site],
    frames: dict[str, Tensor],
    max_rows: int,
    progress: ProgressFn | None = None,
) -> Tensor:
    """(S, P, O * C) neural effect signatures: one hard interchange per site and pair.

    Sites are grouped by location so each location's sites share one stacked resume.
    """
    device = traces.base.logits.device
    base_probs = output_probabilities(traces.base.logits)  # (P, Y)
    out = torch.empty(len(sites), traces.pairs, base_probs.shape[-1], device=device)
    by_location: dict[str, list[int]] = {}
    for index, site in enumerate(sites):
        by_location.setdefault(site.location, []).append(index)
    done = 0
    for location, indices in by_location.items():
        group = [sites[i] for i in indices]
        plan = site_interventions(group, location, net.widths[location],
                                  frames.get(location), device)
        rows = torch.tensor(indices, device=device)
        for n_slice, p_slice, logits in iter_interventions(net, traces, plan, max_rows):
            effect = output_probabilities(logits) - base_probs[p_slice]  # (n, p, Y)
            out[rows[n_slice], p_slice] = effect
            done += (n_slice.stop - n_slice.start) * (p_slice.stop - p_slice.start)
            if progress is not None:
                progress(done, len(sites) * traces.pairs)
    return out
