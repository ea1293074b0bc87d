"""Full DAS through pyvene (the library researchers use today), on our MLPs and banks.

The same protocol as ``core.das_search.run_das_targets`` in ``full`` mode: every hidden
layer × k in ``dims`` × variable, one rotation each (pyvene's ``RotatedSpaceIntervention``,
an orthogonal D×D rotation interchanging its first k coordinates), Adam with our DAS
defaults (lr, minibatch, epoch bounds, loss plateau), the best (layer, k) per variable chosen
on calibration IIA, tested on the test bank. Site ``layer:i`` (the post-activation of hidden
layer i) is the input of ``linears[i + 1]``, which is where pyvene hooks (through a wrapper that
gives pyvene the ``device`` and ``config`` attributes it reads). pyvene positions
index a sequence axis, so inputs go in as (B, 1, D) and every intervention is at position 0.

Only MLP nets (``arch: mlp``); needs ``pip install .[bench]`` (pyvene 0.1.8).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional

from core.causal.bank import Banks, PairBank
from core.das import DasConfig
from core.nets.mlp import MLP


@dataclass(frozen=True)
class PeerRun:
    """One trained (layer, k, variable): calibration and test IIA, epochs, seconds."""

    site: str
    variable: str
    iia_calibration: float
    iia_test: float
    epochs: int
    runtime_s: float


class _Wrapped(torch.nn.Module):
    """What pyvene asks of a model beyond ``forward``: a ``device`` and a ``config``."""

    def __init__(self, net: MLP) -> None:
        super().__init__()
        self.net = net
        self.config = SimpleNamespace(**net.config)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def forward(self, inputs: Tensor) -> Tensor:
        return self.net(inputs)


def _intervenable(net: MLP, layer: int, k: int) -> Any:
    import pyvene

    rotation = pyvene.RotatedSpaceIntervention(embed_dim=net.widths[f"layer:{layer}"])
    rotation.set_interchange_dim(k)  # the constructor sets it to embed_dim whatever it is given
    config = pyvene.IntervenableConfig(representations=[pyvene.RepresentationConfig(
        layer=layer, component=f"net.linears[{layer + 1}].input", unit="pos",
        max_number_of_units=1, intervention=rotation,
    )])
    intervenable = pyvene.IntervenableModel(config, _Wrapped(net))
    intervenable.disable_model_gradients()
    return intervenable


def _logits(intervenable: Any, base: Tensor, source: Tensor) -> Tensor:
    """(B, C) logits of the base run with the interchange from the source run."""
    at_zero = [[[0]] * base.shape[0]]
    _, out = intervenable({"inputs": base.unsqueeze(1)}, [{"inputs": source.unsqueeze(1)}],
                          {"sources->base": (at_zero, at_zero)})
    return out.reshape(base.shape[0], -1)  # (B, 1, 1, C) -> (B, C)


def _iia(intervenable: Any, bank: PairBank, variable: str, batch_size: int) -> float:
    hits = 0
    labels = bank.counterfactual_labels[variable][:, 0]  # (P,) one head
    with torch.no_grad():
        for b0 in range(0, bank.size, batch_size):
            logits = _logits(intervenable, bank.base[b0:b0 + batch_size],
                             bank.source[b0:b0 + batch_size])
            hits += int((logits.argmax(-1) == labels[b0:b0 + batch_size]).sum())
    return hits / bank.size


def train_pyvene_das(net: MLP, banks: Banks, variable: str, layer: int, k: int,
                     config: DasConfig) -> PeerRun:
    """Train and score one pyvene rotation (the early-stopping rule of ``core.das``)."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    intervenable = _intervenable(net, layer, k)
    parameters = [p for p in intervenable.get_trainable_parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=config.lr)
    fit = banks.fit
    targets = fit.counterfactual_labels[variable][:, 0]  # (P,)
    generator = torch.Generator().manual_seed(config.seed)
    best, stale, epochs = float("inf"), 0, 0
    for epochs in range(1, config.max_epochs + 1):
        order = torch.randperm(fit.size, generator=generator)
        total = 0.0
        for b0 in range(0, fit.size, config.batch_size):
            index = order[b0:b0 + config.batch_size]
            loss = functional.cross_entropy(
                _logits(intervenable, fit.base[index], fit.source[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.detach()) * index.numel()
        epoch_loss = total / fit.size
        if epoch_loss < best * (1 - config.rel_delta):
            best, stale = epoch_loss, 0
        else:
            stale += 1
        if epochs >= config.min_epochs and (stale >= config.patience
                                            or epoch_loss < config.min_loss):
            break
    scored = config.batch_size * 4
    return PeerRun(site=f"layer:{layer}/das:{k}", variable=variable,
                   iia_calibration=_iia(intervenable, banks.calibration, variable, scored),
                   iia_test=_iia(intervenable, banks.test, variable, scored), epochs=epochs,
                   runtime_s=time.perf_counter() - started)


def pyvene_full_das(net: MLP, banks: Banks, dims: Sequence[int], config: DasConfig
                    ) -> dict[str, Any]:
    """Every hidden layer × k × variable through pyvene; best per variable on calibration.

    Returns:
        ``wall_s``, ``trainings``, ``forward_passes`` (pair forwards: epochs × fit pairs,
        then the calibration and test banks, per run), ``iia`` (variable -> test IIA of its
        best run), ``sites`` (variable -> [best site]) and every run.
    """
    if not isinstance(net, MLP):
        raise TypeError(f"the pyvene peer runs on MLP nets, not {type(net).__name__}")
    started = time.perf_counter()
    runs = [train_pyvene_das(net, banks, variable, int(loc.split(":")[1]), k, config)
            for loc, width in net.widths.items() for k in sorted({*dims} & set(range(1, width + 1)))
            for variable in banks.variables]
    best: dict[str, PeerRun] = {}
    for run in sorted(runs, key=lambda r: (-r.iia_calibration, int(r.site.split(":")[-1]))):
        best.setdefault(run.variable, run)
    sizes = banks.fit.size, banks.calibration.size + banks.test.size
    return {"wall_s": time.perf_counter() - started, "trainings": len(runs),
            "forward_passes": sum(r.epochs * sizes[0] + sizes[1] for r in runs),
            "iia": {v: r.iia_test for v, r in best.items()},
            "sites": {v: [r.site] for v, r in best.items()},
            "runs": [vars(r) for r in runs]}
