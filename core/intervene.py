"""Interchange interventions as pure tensor functions.

One formula covers every kind (plot-method.md §1, §4): with a frame ``F`` (D, K) whose
columns are orthonormal directions (the identity for coordinates, a PCA basis, a DAS
rotation) and per-direction coefficients ``a`` (K,),

    h <- h + F diag(a) Fᵀ (h_source - h)

A hard coordinate interchange is ``a`` = 1 on the support and 0 elsewhere with ``F = I``;
a subspace interchange ``h_b + B Bᵀ (h_s - h_b)`` is ``F = B``, ``a = 1``; the soft handle
``h + λ w (h_source - h)`` puts ``λ w`` in ``a``. ``h`` is the activation of the run being
intervened on (the base run, possibly already edited upstream).
"""

from __future__ import annotations

import torch
from torch import Tensor


def interchange(h: Tensor, h_source: Tensor, coefficients: Tensor,
                frame: Tensor | None = None) -> Tensor:
    """Apply N interventions to N stacked copies of a batch.

    Args:
        h: (N * P, D) current activations, copy-major (row ``n * P + p``), or (P, D) when
            every copy still holds the same activation (the first edited location): it is
            broadcast, never copied N times.
        h_source: (P, D) clean source activations at the same location.
        coefficients: (N, K) per-direction coefficients of each intervention.
        frame: (D, K) orthonormal columns, or None for the coordinate frame (K = D).

    Returns:
        (N * P, D) intervened activations.

    Example:
        >>> h_base, h_src = torch.zeros(2, 3), torch.ones(2, 3)
        >>> interchange(h_base, h_src, torch.tensor([[1.0, 0.0, 0.0]]))
        tensor([[1., 0., 0.],
                [1., 0., 0.]])
    """
    copies = coefficients.shape[0]
    pairs, width = h_source.shape
    current = h.view(-1, pairs, width)  # (N or 1, P, D)
    source = h_source.unsqueeze(0)  # (1, P, D), broadcast over the copies
    if frame is None:
        # one fused pass, no tiled copy of the source: h + a (h_source - h)
        out = torch.lerp(current, source, coefficients.unsqueeze(1))
    else:
        delta = (source - current) @ frame  # (N, P, K)
        out = current + (delta * coefficients.unsqueeze(1)) @ frame.T  # (N, P, D)
    return out.reshape(copies * pairs, width)
