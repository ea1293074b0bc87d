"""core.hooks.hooked: reads and replaces outputs, removes exactly its own handles."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from core.hooks import Hook, hooked, replayed


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


def test_replayed_returns_the_recording_and_puts_back_a_wrapper_forward() -> None:
    layer, plain = nn.Linear(2, 2), nn.Linear(2, 2)
    wrapper_forward = layer.forward  # what a device-placement wrapper would have set
    layer.forward = wrapper_forward
    recorded = [torch.ones(1, 2), torch.full((1, 2), 2.0)]
    seen = []
    with replayed([layer, plain], recorded), \
            hooked([Hook(plain, lambda out: seen.append(out.sum().item()) or out * 3.0)]):
        assert torch.equal(layer(torch.zeros(1, 2)), recorded[0])
        assert torch.equal(plain(torch.zeros(1, 2)), recorded[1] * 3.0)  # hooks still run
    assert seen == [4.0]
    assert vars(layer)["forward"] is wrapper_forward and "forward" not in vars(plain)
    with pytest.raises(ValueError), replayed([plain], [recorded[0]]):
        raise ValueError("body failed")
    assert "forward" not in vars(plain)
    assert not torch.equal(plain(torch.zeros(1, 2)), recorded[0])
