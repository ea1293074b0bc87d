"""Cost matrices between abstract variables and neural sites (plot-method.md §3).

Every cost is normalised to [0, 1] by its maximum, so the entropic solvers see the same
scale whatever the task (raw squared distances of hundreds make every small ε uniform).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from core.spec import CostKind


def mse_cost(variable_signatures: Tensor, site_signatures: Tensor, **_: Tensor) -> Tensor:
    """C[j, s] = (1/P) Σ_i ‖e_H[j,i] − e_N[s,i]‖²; (V, P, Y), (S, P, Y) -> (V, S)."""
    v = variable_signatures.flatten(1)
    s = site_signatures.flatten(1)
    pairs = variable_signatures.shape[1]
    return torch.cdist(v, s).square() / pairs


def cosine_cost(variable_signatures: Tensor, site_signatures: Tensor, **_: Tensor) -> Tensor:
    """1 − cosine similarity of the flattened signatures; a zero signature has cosine 0."""
    v = torch.nn.functional.normalize(variable_signatures.flatten(1), dim=1)
    s = torch.nn.functional.normalize(site_signatures.flatten(1), dim=1)
    return 1.0 - v @ s.T


def agreement_cost(variable_signatures: Tensor, site_signatures: Tensor, *,
                   base_probs: Tensor, num_classes: int) -> Tensor:
    """1 − share of pairs where the patched argmax equals the counterfactual label, per head.

    Args:
        base_probs: (P, Y) the clean base run's per-head probabilities.
        num_classes: C, to split Y = O * C into heads.
    """
    pairs = base_probs.shape[0]
    base_onehot = torch.nn.functional.one_hot(
        base_probs.view(pairs, -1, num_classes).argmax(-1), num_classes).flatten(1).float()
    target = (variable_signatures + base_onehot).view(
        variable_signatures.shape[0], pairs, -1, num_classes).argmax(-1)  # (V, P, O)
    patched = (site_signatures + base_probs).view(
        site_signatures.shape[0], pairs, -1, num_classes).argmax(-1)  # (S, P, O)
    match = (target.unsqueeze(1) == patched.unsqueeze(0)).all(-1).float()  # (V, S, P)
    return 1.0 - match.mean(-1)


COSTS: dict[CostKind, Callable[..., Tensor]] = {
    "mse": mse_cost,
    "cosine": cosine_cost,
    "agreement": agreement_cost,
}


def cost_matrix(kind: CostKind, variable_signatures: Tensor, site_signatures: Tensor,
                base_probs: Tensor, num_classes: int) -> Tensor:
    """(V, S) cost of ``kind``, normalised to [0, 1] by its maximum."""
    cost = COSTS[kind](variable_signatures, site_signatures, base_probs=base_probs,
                       num_classes=num_classes)
    cost = cost.clamp_min(0.0)
    peak = cost.max()
    return cost / peak if float(peak) > 0 else cost
