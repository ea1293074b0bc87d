"""ModuleNet: sites at module paths of any nn.Module, read and replaced through hooks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from core.engine import BankTraces, Interventions, run_interventions
from core.errors import SiteError
from core.nets.module import ModuleNet, ModuleSite
from core.sites import parse_site
from tests.unit.core.notebook_nets import ResidualMLP, bit_cnn


class TwoOutputs(nn.Module):
    """A block returning (hidden, aux) and a head: a tuple output picked by index."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)
        self.head = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(x)[1])

    def block(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return x, self.inner(x)


class NoTensor(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Identity()
        self.head = nn.Linear(3, 2)

    def forward(self, x: Tensor) -> Tensor:
        self.gate("not a tensor")
        return self.head(x)


def test_a_missing_path_is_refused_in_one_line_naming_the_nearest_modules() -> None:
    with pytest.raises(SiteError) as caught:
        ModuleNet(ResidualMLP(), ["blocks.0", "block.1.up"], input_shape=(4,))
    message = str(caught.value)
    assert "'block.1.up' does not exist" in message and "blocks.1.up" in message
    assert "\n" not in message


def test_an_output_holding_no_tensor_is_refused_naming_the_path() -> None:
    with pytest.raises(SiteError, match="'gate' returns str holding no tensor"):
        ModuleNet(NoTensor(), ["gate"], input_shape=(3,))


def test_locations_follow_module_order_and_positions_of_a_token_axis() -> None:
    net = ModuleNet(ResidualMLP(), ["blocks.1", "blocks.0"], input_shape=(4,))
    assert net.widths == {"module:blocks.0": 8, "module:blocks.1": 8}
    assert net.output_shape == (1, 2)
    cnn = ModuleNet(bit_cnn(), [ModuleSite("1", token_axis=2)], input_shape=(1, 6))
    assert list(cnn.widths) == [f"module:1/pos:{t}" for t in range(5)]
    assert parse_site("module:1/pos:4/dims:0", cnn.widths).location == "module:1/pos:4"
    assert parse_site("module:blocks.0/pca:2-3", net.widths).kind == "pca"


def test_trace_reads_the_module_output_and_resume_matches_a_patched_forward() -> None:
    model = ResidualMLP()
    net = ModuleNet(model, ["blocks.0", "blocks.1"], input_shape=(4,))
    x = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    trace = net.trace(x)
    assert torch.equal(trace.activations["module:blocks.0"], model.blocks[0](model.stem(x)))
    swap = torch.zeros(1, 8)
    swap[0, 5] = 1.0  # coordinate 5 (P) from the other example
    source = net.trace(x.flip(0))
    out = run_interventions(net, BankTraces(trace, source),
                            Interventions({"module:blocks.0": swap}, {}), 8)[0]
    # base 0: P 1 -> 0, Q 0: xor 0; base 1: P 0 -> 1, Q 1: xor 0
    assert out.argmax(-1).flatten().tolist() == [0, 0]
    assert trace.logits.argmax(-1).flatten().tolist() == [1, 1]


def test_a_sequential_child_resumes_from_its_output_like_a_full_recompute() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(),
                          nn.Linear(4, 2))
    skipping = ModuleNet(model, ["1", "3"], input_shape=(3,))
    recomputing = ModuleNet(model, ["1", "3"], input_shape=(3,))
    recomputing._resume_point = lambda path: None  # type: ignore[method-assign]
    x, y = torch.randn(5, 3), torch.randn(5, 3)
    traces = BankTraces(skipping.trace(x), skipping.trace(y))
    edits = Interventions({"module:1": torch.rand(3, 4), "module:3": torch.rand(3, 4)}, {})
    calls = []
    handle = model[0].register_forward_hook(lambda *args: calls.append(1))
    fast = run_interventions(skipping, traces, edits, 64)
    assert calls == []  # the prefix (model[0]) was not rerun
    slow = run_interventions(recomputing, traces, edits, 64)
    handle.remove()
    assert calls and torch.allclose(fast, slow, atol=1e-6)


def test_a_picked_tuple_element_is_read_and_written_back() -> None:
    model = TwoOutputs()
    model.block_module = nn.Identity()  # the block as a module whose output is a tuple
    model.block_module.forward = model.block  # type: ignore[method-assign,assignment]
    model.forward = lambda x: model.head(model.block_module(x)[1])  # type: ignore[method-assign]
    net = ModuleNet(model, [ModuleSite("block_module", pick=1)], input_shape=(3,))
    x = torch.randn(4, 3)
    trace = net.trace(x)
    assert torch.equal(trace.activations["module:block_module"], model.inner(x))
    half = Interventions({"module:block_module": torch.full((1, 3), 0.5)}, {})
    y = torch.randn(4, 3)
    out = run_interventions(net, BankTraces(trace, net.trace(y)), half, 16)[0, :, 0]
    mixed = 0.5 * (model.inner(x) + model.inner(y))
    assert torch.allclose(out, model.head(mixed), atol=1e-6)


def test_a_declared_resume_from_skips_the_prefix_and_matches_a_recompute() -> None:
    model = ResidualMLP()
    rest = {"blocks.0": lambda m, h: m.head(m.blocks[1](h))}
    declared = ModuleNet(model, ["blocks.0", "blocks.1"], input_shape=(4,), resume_from=rest)
    plain = ModuleNet(model, ["blocks.0", "blocks.1"], input_shape=(4,))
    x, y = torch.randint(0, 2, (6, 4)).float(), torch.randint(0, 2, (6, 4)).float()
    traces = BankTraces(plain.trace(x), plain.trace(y))
    edits = Interventions({"module:blocks.0": torch.rand(2, 8),
                           "module:blocks.1": torch.rand(2, 8)}, {})
    calls = []
    handle = model.stem.register_forward_hook(lambda *args: calls.append(1))
    fast = run_interventions(declared, traces, edits, 64)
    assert calls == []
    slow = run_interventions(plain, traces, edits, 64)
    handle.remove()
    assert calls and torch.allclose(fast, slow, atol=1e-6)
