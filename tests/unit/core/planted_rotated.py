"""A planted MLP whose variables live in rotated subspaces, for DAS.

Inputs (a, b, c) in {0, 1}³; output class 4a + 2b + c (one head, 8 classes). Variable P is
the pair (a, b), a 2-dim subspace; Q is c, a 1-dim subspace. Hidden layer 0 encodes a, b, c
along nearly parallel directions (no subspace isolates a variable there); hidden layer 1
holds u = (a, b, c, fillers) mixed by a fixed random rotation R: h = R u + 10, so no neuron
carries a variable but span(R e0, R e1) carries P and R e2 carries Q. The output reads a, b
and c separately (a 3-dim readout), so P needs k = 2.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from core.causal.bank import PairBank
from core.nets.mlp import MLP

WIDTH = 8
OFFSET = 10.0  # keeps layer 1 positive, so its ReLU is the identity on every interchange


def planted_rotation(seed: int = 7) -> Tensor:
    """(D, D) the fixed random rotation of layer 1."""
    q, _ = torch.linalg.qr(torch.randn(WIDTH, WIDTH, generator=torch.Generator().manual_seed(seed),
                                       dtype=torch.float64))
    return q


def planted_rotated_mlp(scale: float = 4.0) -> MLP:
    net = MLP({"arch": "mlp", "input_dim": 3, "hidden_dims": [4, WIDTH], "num_classes": 8,
               "activation": "relu"})
    encode = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.9, 0.8], [0.8, 1.0, 0.9]],
                          dtype=torch.float64)  # layer 0: n = E (a, b, c), nearly parallel rows
    rotation = planted_rotation()
    # u = (a, b, c, a + b, 0.5, 0, 0, 0) from n = (E x, 1)
    decode = torch.zeros(WIDTH, 4, dtype=torch.float64)
    decode[:3, :3] = torch.linalg.inv(encode)
    decode[3, :3] = decode[0, :3] + decode[1, :3]
    decode[4, 3] = 0.5
    # output: logit of class (α, β, γ) = scale Σ_i (2 α_i - 1)(2 u_i - 1)
    signs = torch.tensor(list(itertools.product([-1.0, 1.0], repeat=3)), dtype=torch.float64)
    readout = torch.zeros(8, WIDTH, dtype=torch.float64)
    readout[:, :3] = 2 * scale * signs
    readout_bias = -scale * signs.sum(dim=1)
    with torch.no_grad():
        l0, l1, out = net.linears
        l0.weight.copy_(torch.cat([encode, torch.zeros(1, 3, dtype=torch.float64)]))
        l0.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 1.0]))
        l1.weight.copy_(rotation @ decode)
        l1.bias.fill_(OFFSET)
        out.weight.copy_(readout @ rotation.T)  # reads u = Rᵀ (h - OFFSET)
        out.bias.copy_(readout_bias - readout @ rotation.T @ torch.full((WIDTH,), OFFSET,
                                                                        dtype=torch.float64))
    return net.eval().requires_grad_(False)


def planted_rotated_bank(n: int, seed: int) -> PairBank:
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, 2, (n, 3), generator=g).float()
    source = torch.randint(0, 2, (n, 3), generator=g).float()

    def label(x: Tensor) -> Tensor:
        return (4 * x[:, 0] + 2 * x[:, 1] + x[:, 2]).long().unsqueeze(1)  # (n, 1)

    with_p = torch.cat([source[:, :2], base[:, 2:]], dim=1)
    with_q = torch.cat([base[:, :2], source[:, 2:]], dim=1)
    return PairBank(base=base, source=source, base_labels=label(base),
                    counterfactual_labels={"P": label(with_p), "Q": label(with_q)})
