"""core.hooks.hooked: reads and replaces outputs, removes exactly its own handles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.hooks import Hook, hooked


def test_hooks_read_and_replace_and_are_removed_even_on_error() -> None:
    layer = nn.Linear(3, 3)
    foreign = layer.register_forward_hook(lambda module, args, out: None)
    seen: list[torch.Tensor] = []
    x = torch.randn(2, 3)
    with hooked([Hook(layer, lambda t: seen.append(t) or None),
                 Hook(layer, torch.zeros_like),
                 Hook(layer, lambda t: t + 1.0, "input")]):
        out = layer(x)
    torch.testing.assert_close(out, torch.zeros(2, 3))
    torch.testing.assert_close(seen[0], nn.functional.linear(x + 1.0, layer.weight, layer.bias))
    with pytest.raises(RuntimeError), hooked([Hook(layer, torch.zeros_like)]):
        raise RuntimeError("forward failed")
    assert list(layer._forward_hooks) == [foreign.id]
    assert not layer._forward_pre_hooks
    foreign.remove()


def test_a_tuple_output_keeps_its_other_items() -> None:
    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
            return x, "weights"

    module = Pair()
    with hooked([Hook(module, lambda t: t * 2)]):
        out = module(torch.ones(1))
    assert out[1] == "weights"
    torch.testing.assert_close(out[0], torch.full((1,), 2.0))
