"""DAS (plot-method.md §6): learn an orthonormal basis at one location whose first ``k``
rotated coordinates carry a variable, by fitting the counterfactual labels of interchanges.

The interchange is ``h <- h + B Bᵀ (h_source - h)`` with ``B`` (D, K) the first ``K`` columns
of an orthogonal rotation (``core.intervene.interchange`` with coefficients 1). The rotation
is a ``torch.nn.utils.parametrizations.orthogonal`` D×D map; for wide locations only the
D×K semi-orthogonal map is learned (the low-rank variant), which spans the same family of
subspaces with D·K instead of D² parameters. The net is never updated: gradients are taken
with respect to the basis parameters only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from core.calibrate import IIA, exact_matches, summarize_iia
from core.causal.bank import PairBank
from core.engine import BankTraces, Interventions
from core.errors import SiteError
from core.intervene import interchange
from core.nets.base import InterventableNet, Trace
from core.spec import DasRank


@dataclass(frozen=True)
class DasConfig:
    """Training knobs of one DAS fit.

    Attributes:
        max_epochs, min_epochs: bounds on the passes over the fit bank.
        lr: Adam learning rate.
        batch_size: pairs per minibatch.
        patience: epochs without a relative loss improvement of ``rel_delta`` before stopping.
        rel_delta: an epoch improves when its loss < best * (1 - rel_delta).
        min_loss: stop as soon as the epoch loss is below it (the labels are fitted).
        rank: ``full`` learns a D×D rotation, ``low`` only a D×K basis, ``auto`` picks
            ``low`` when the width exceeds ``low_rank_above``.
        seed: seeds the initial basis and the minibatch order.
    """

    max_epochs: int = 100
    min_epochs: int = 2
    lr: float = 0.01
    batch_size: int = 256
    patience: int = 3
    rel_delta: float = 1e-3
    min_loss: float = 0.01
    rank: DasRank = "auto"
    low_rank_above: int = 64
    seed: int = 0

    def is_low_rank(self, width: int) -> bool:
        return self.rank == "low" or (self.rank == "auto" and width > self.low_rank_above)


@dataclass(frozen=True)
class DasFit:
    """A trained DAS subspace.

    Attributes:
        location: where it lives (``layer:1``, ``step:2``).
        basis: (D, K) orthonormal columns, detached, on the net's device.
        epochs: epochs run; loss: mean cross-entropy of the last epoch (summed over heads).
        low_rank: whether only the D×K map was learned.
        forward_passes: (pair) partial forwards spent in training.
    """

    location: str
    basis: Tensor
    epochs: int
    loss: float
    runtime_s: float
    low_rank: bool
    forward_passes: int

    @property
    def dim(self) -> int:
        return int(self.basis.shape[1])

    def interventions(self) -> Interventions:
        """The single hard interchange on the learned subspace."""
        ones = torch.ones(1, self.dim, device=self.basis.device, dtype=self.basis.dtype)
        return Interventions({self.location: ones}, {self.location: self.basis})


class _Rotation(nn.Module):
    """Holds one (D, C) weight; ``orthogonal`` keeps its columns orthonormal."""

    def __init__(self, initial: Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(initial.clone())


def initial_rotation(width: int, columns: int, generator: torch.Generator,
                     frame: Tensor | None = None) -> Tensor:
    """(D, C) orthonormal columns: ``frame``'s columns first (as many as fit), then random.

    Args:
        frame: (D, K0) orthonormal columns to start from, or None for a random rotation.
    """
    random = torch.randn(width, columns, generator=generator, dtype=torch.float64)
    if frame is not None:
        given = frame[:, :columns].detach().to("cpu", torch.float64)
        random = torch.cat([given, random[:, given.shape[1]:]], dim=1)
    q, r = torch.linalg.qr(random)  # q (D, C); sign fix keeps the frame's directions
    signs = torch.sign(torch.diagonal(r))
    rotation: Tensor = q * torch.where(signs == 0, torch.ones_like(signs), signs)
    return rotation


def current_basis(rotation: nn.Module, k: int) -> Tensor:
    """(D, K) the first K columns of the parametrised (orthonormal) weight."""
    return cast(Tensor, rotation.weight)[:, :k]


def _take(trace: Trace, index: Tensor) -> Trace:
    return trace.select(index)


def interchange_loss(net: InterventableNet, traces: BankTraces, index: Tensor, location: str,
                     basis: Tensor, targets: Tensor) -> Tensor:
    """Mean over pairs of the cross-entropy summed over output heads.

    Args:
        index: (B,) pair indices; basis: (D, K); targets: (P, O) counterfactual labels.
    """
    base, source = _take(traces.base, index), _take(traces.source, index)
    ones = torch.ones(1, basis.shape[1], device=basis.device, dtype=basis.dtype)
    edit = partial(interchange, h_source=source.activations[location], coefficients=ones,
                   frame=basis)
    logits = net.resume(base, {location: edit})  # (B, O, C)
    per_head = F.cross_entropy(logits.transpose(1, 2), targets[index], reduction="none")
    return per_head.sum(dim=1).mean()  # (B, O) -> scalar


def train_das(net: InterventableNet, traces: BankTraces, targets: Tensor, location: str,
              k: int, config: DasConfig = DasConfig(), init: Tensor | None = None,
              checkpoint: Callable[[], None] | None = None) -> DasFit:
    """Fit a K-dim DAS subspace at ``location`` to one variable's counterfactual labels.

    Args:
        net: the frozen net (its weights are read, never changed).
        traces: clean traces of the fit bank, on the net's device.
        targets: (P, O) counterfactual labels of the variable on that bank.
        location: a net location (``layer:1``); k: subspace rank, 1 <= k <= D.
        init: (D, K0) orthonormal frame the basis starts from (e.g. PCA directions).
        checkpoint: called before each batch; a cancelled job's raises ``JobCancelled``.

    Returns:
        The trained basis (D, K) with its epochs, final loss and runtime.

    Raises:
        SiteError: unknown location, or k outside [1, D].
        JobCancelled: raised by ``checkpoint``.
    """
    started = time.perf_counter()
    if location not in net.widths:
        raise SiteError(f"the net has no location {location!r} (it has {', '.join(net.widths)})",
                        location)
    width = net.widths[location]
    if not 1 <= k <= width:
        raise SiteError(f"DAS dimension {k} is outside [1, {width}]", f"{location}/das:{k}")
    device = traces.base.activations[location].device
    generator = torch.Generator().manual_seed(config.seed)
    low_rank = config.is_low_rank(width)
    start = initial_rotation(width, k if low_rank else width, generator, init)
    rotation = orthogonal(_Rotation(start.to(device, torch.float32)))
    parameters = list(rotation.parameters())
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    targets = targets.to(device)
    pairs = traces.pairs
    best, stale, loss, epochs = float("inf"), 0, float("inf"), 0
    for epochs in range(1, config.max_epochs + 1):
        order = torch.randperm(pairs, generator=generator).to(device)
        total = 0.0
        for b0 in range(0, pairs, config.batch_size):
            if checkpoint is not None:
                checkpoint()
            index = order[b0:b0 + config.batch_size]
            batch_loss = interchange_loss(net, traces, index, location,
                                          current_basis(rotation, k), targets)
            # grads of the basis only: the net's parameters get no .grad
            grads = torch.autograd.grad(batch_loss, parameters)
            for parameter, grad in zip(parameters, grads, strict=True):
                parameter.grad = grad
            optimizer.step()
            total += float(batch_loss.detach()) * index.numel()
        loss = total / pairs
        if loss < best * (1 - config.rel_delta):
            best, stale = loss, 0
        else:
            stale += 1
        if epochs >= config.min_epochs and (stale >= config.patience or loss < config.min_loss):
            break
    with torch.no_grad():
        basis = current_basis(rotation, k).detach().clone()  # (D, K)
    return DasFit(location, basis, epochs, loss, time.perf_counter() - started, low_rank,
                  epochs * pairs)


def das_iia(net: InterventableNet, traces: BankTraces, bank: PairBank, variable: str,
            fit: DasFit, max_rows: int) -> IIA:
    """IIA of the hard interchange on ``fit``'s subspace over one bank (traced as ``traces``).

    Args:
        bank: the bank whose labels score it, on the traces' device.
    """
    hits = exact_matches(net, traces, fit.interventions(), bank.counterfactual_labels[variable],
                         max_rows)[0]  # (P,)
    scored = bank.scored(variable)
    return summarize_iia(hits[scored], bank.changes_output(variable)[scored])
