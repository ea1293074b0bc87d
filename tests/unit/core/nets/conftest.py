"""Tiny nets built from a config, seeded, shared by the nets tests."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from core.nets import GRUNet, InterventableNet, build_net

MLP_CONFIG: dict[str, Any] = {
    "arch": "mlp",
    "input_dim": 6,
    "hidden_dims": [5, 4, 3],
    "num_classes": 3,
    "activation": "relu",
}
GRU_CONFIG: dict[str, Any] = {
    "arch": "gru",
    "input_size": 2,
    "hidden_size": 5,
    "num_steps": 4,
    "num_classes": 2,
}


def seeded_net(config: dict[str, Any], seed: int = 0) -> InterventableNet:
    """A net from ``config`` with parameters drawn from ``seed``."""
    torch.manual_seed(seed)
    return build_net(config).eval()


def random_inputs(net: InterventableNet, n: int, seed: int) -> torch.Tensor:
    """(n, *input_shape) standard-normal inputs."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, *net.input_shape, generator=generator)


@pytest.fixture
def mlp() -> InterventableNet:
    return seeded_net(MLP_CONFIG)


@pytest.fixture
def gru() -> GRUNet:
    net = seeded_net(GRU_CONFIG)
    assert isinstance(net, GRUNet)
    return net


@pytest.fixture(params=["mlp", "gru"])
def net(request: pytest.FixtureRequest) -> InterventableNet:
    return seeded_net(MLP_CONFIG if request.param == "mlp" else GRU_CONFIG)
