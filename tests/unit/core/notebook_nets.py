"""A user's own modules, none of the built-in architectures, built analytically: a residual
MLP and a 1-D CNN over a bit sequence. Both compute ``O = P xor Q`` with ``P`` and ``Q`` two
ANDs of input bits, planted in known coordinates (see each class)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from core.causal.model import CausalModel, Variable


def xor_of_ands(a: tuple[str, str], b: tuple[str, str], bits: int) -> CausalModel:
    """x0..x{bits-1} -> P = a0 & a1, Q = b0 & b1 -> O = P xor Q."""
    return CausalModel([*(Variable(f"x{i}") for i in range(bits)),
                        Variable("P", a, lambda u, v: u * v),
                        Variable("Q", b, lambda u, v: u * v),
                        Variable("O", ("P", "Q"), lambda p, q: (p + q) % 2)], ["O"])


def random_bits(count: int) -> Callable[[int, torch.Generator], dict[str, Tensor]]:
    """The sampler of ``count`` independent uniform input bits x0.."""
    def sample(n: int, generator: torch.Generator) -> dict[str, Tensor]:
        return {f"x{i}": torch.randint(0, 2, (n,), generator=generator) for i in range(count)}
    return sample


def as_vector(inputs: dict[str, Tensor]) -> Tensor:
    return torch.stack([inputs[f"x{i}"] for i in range(len(inputs))], dim=-1).float()


class Residual(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.down(torch.relu(self.up(h)))


class ResidualMLP(nn.Module):
    """Stream of width 8: coords 0-3 carry the bits; ``blocks.0`` writes P = x0&x1 to coord 5,
    Q = x2&x3 to coord 6 and a distractor to 7; ``blocks.1`` writes P&Q to coord 4; the head
    reads 5, 6 and 4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.ModuleList([Residual(8, 4), Residual(8, 4)])
        self.head = nn.Linear(8, 2)
        with torch.no_grad():
            for p in self.parameters():
                p.zero_()
            self.stem.weight[:4, :4] = torch.eye(4)
            up, down = self.blocks[0].up, self.blocks[0].down
            up.weight[0, [0, 1]] = 1.0
            up.weight[1, [2, 3]] = 1.0
            up.weight[2, 0], up.weight[2, 3] = 1.0, -1.0
            up.bias[:2] = -1.0
            down.weight[5, 0] = down.weight[6, 1] = down.weight[7, 2] = 1.0
            up, down = self.blocks[1].up, self.blocks[1].down
            up.weight[0, [5, 6]] = 1.0
            up.bias[0] = -1.0
            down.weight[4, 0] = 1.0
            self.head.weight[1, [5, 6]] = 1.0
            self.head.weight[1, 4] = -2.0
            self.head.bias[1] = -0.5

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.head(h)


def bit_cnn() -> nn.Sequential:
    """(B, 1, 6) bits -> Conv1d (kernel 2) -> ReLU -> ... : module ``1`` (the ReLU) holds, at
    position t, channel 0 = x_t & x_{t+1} and channel 1 = a distractor; the head reads
    channel 0 at positions 0 (P = x0&x1) and 4 (Q = x4&x5)."""
    net = nn.Sequential(nn.Conv1d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(10, 3),
                        nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net[0].weight[0, 0] = 1.0
        net[0].bias[0] = -1.0
        net[0].weight[1, 0, 0], net[0].weight[1, 0, 1] = 1.0, -1.0
        net[3].weight[0, 0] = net[3].weight[1, 4] = 1.0  # flattened index: channel * 5 + t
        net[3].weight[2, 0] = net[3].weight[2, 4] = 1.0
        net[3].bias[2] = -1.0
        net[5].weight[1] = torch.tensor([1.0, 1.0, -2.0])
        net[5].bias[1] = -0.5
    return net
