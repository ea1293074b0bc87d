"""PCA spans of a location's activations: an orthonormal frame, strongest direction first."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from core.engine import BankTraces


def pca_frame(activations: Tensor) -> Tensor:
    """Principal directions of (N, D) activations as (D, K) orthonormal columns.

    K = min(N - 1, D) directions, sorted by decreasing variance; directions of zero
    variance are kept at the end so the frame still spans what the data spans.

    Example:
        >>> x = torch.randn(100, 3) * torch.tensor([5.0, 1.0, 0.1])
        >>> pca_frame(x)[:, 0].abs().argmax().item()
        0
    """
    centered = activations.double() - activations.double().mean(dim=0, keepdim=True)
    _, _, vh = torch.linalg.svd(centered, full_matrices=False)  # vh (K, D)
    keep = min(max(activations.shape[0] - 1, 1), activations.shape[1])
    frame: Tensor = vh[:keep].T.to(activations.dtype).contiguous()
    return frame


def fit_frames(fit: BankTraces, locations: Sequence[str]) -> dict[str, Tensor]:
    """(D, K) PCA frames of a fit bank's base and source activations at ``locations``."""
    return {loc: pca_frame(torch.cat([fit.base.activations[loc], fit.source.activations[loc]]))
            for loc in dict.fromkeys(locations)}
