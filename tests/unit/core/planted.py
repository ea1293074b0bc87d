"""A planted MLP whose variables live in known neurons, next to exact non-causal copies.

Inputs (p, q) in {0, 1}²; output class 2p + q (one head, 4 classes); variables P and Q.
Hidden layer 0 mixes p and q (no single neuron is a variable); hidden layer 1 holds p in
neuron 1 and q in neuron 4, exact copies of p and q in neurons 0 and 3 that the output
never reads, and two filler neurons.
"""

from __future__ import annotations

import torch

from core.causal.bank import Banks, PairBank
from core.engine import trace_bank
from core.level_inputs import LevelInputs
from core.nets.mlp import MLP
from core.spec import CalibrationSpec, ControlsSpec, CouplingSpec

P_NEURON = "layer:1/dims:1"
Q_NEURON = "layer:1/dims:4"
COPIES = ("layer:1/dims:0", "layer:1/dims:3")


def planted_mlp(scale: float = 8.0) -> MLP:
    net = MLP({"arch": "mlp", "input_dim": 2, "hidden_dims": [4, 6], "num_classes": 4,
               "activation": "relu"})
    with torch.no_grad():
        l0, l1, out = net.linears
        # layer 0: n0 = p + q, n1 = p - q + 1, n2 = (p + q) / 2, n3 = 1
        l0.weight.copy_(torch.tensor([[1.0, 1.0], [1.0, -1.0], [0.5, 0.5], [0.0, 0.0]]))
        l0.bias.copy_(torch.tensor([0.0, 1.0, 0.0, 1.0]))
        # layer 1: p = (n0 + n1 - n3) / 2, q = (n0 - n1 + n3) / 2
        p_row = [0.5, 0.5, 0.0, -0.5]
        q_row = [0.5, -0.5, 0.0, 0.5]
        l1.weight.copy_(torch.tensor([p_row, p_row, [0, 0, 1.0, 0], q_row, q_row,
                                      [0, 0, 0.5, 0.5]]))
        l1.bias.zero_()
        # output: logit_k = scale * (2 v_k z - v_k²) with z = 2p + q read from neurons 1, 4
        values = torch.arange(4.0)
        weight = torch.zeros(4, 6)
        weight[:, 1] = scale * 2 * values * 2
        weight[:, 4] = scale * 2 * values
        out.weight.copy_(weight)
        out.bias.copy_(-scale * values**2)
    return net.eval().requires_grad_(False)


def planted_bank(n: int, seed: int) -> PairBank:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 2, (n, 2), generator=g).float()
    source = torch.randint(0, 2, (n, 2), generator=g).float()

    def label(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return (2 * p + q).long().unsqueeze(1)

    return PairBank(
        base=base, source=source, base_labels=label(base[:, 0], base[:, 1]),
        counterfactual_labels={"P": label(source[:, 0], base[:, 1]),
                               "Q": label(base[:, 0], source[:, 1])})


def planted_level_inputs(pairs: int, top_k: list[int], strengths: list[float],
                         controls: ControlsSpec | None = None) -> LevelInputs:
    """The planted net with fit / calibration / test banks of ``pairs`` (seeds 0, 1, 2),
    traced, and a coupling grid of ε 0.01 and 0.1."""
    net = planted_mlp()
    banks = Banks(*(planted_bank(pairs, seed) for seed in range(3)))
    traces = {s: trace_bank(net, getattr(banks, s)) for s in ("fit", "calibration", "test")}
    return LevelInputs.local(net, banks, traces, CouplingSpec(epsilons=[0.01, 0.1]),
                             CalibrationSpec(top_k=top_k, strengths=strengths), 50_000,
                             controls=controls or ControlsSpec())
