"""trace/resume of the built-in MLP and GRU: resume must agree with a clean or patched run."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from core.errors import SiteError
from core.nets import GRUNet, InterventableNet
from core.nets import gru as gru_module
from tests.unit.core.nets.conftest import random_inputs


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


def test_resume_with_identity_edit_at_each_location_equals_trace(net: InterventableNet) -> None:
    trace = net.trace(random_inputs(net, 7, seed=1))
    for location in net.widths:
        assert_close(net.resume(trace, {location: _identity}), trace.logits)


def test_resume_with_identity_edits_everywhere_equals_trace(net: InterventableNet) -> None:
    trace = net.trace(random_inputs(net, 7, seed=1))
    edits = dict.fromkeys(net.widths, _identity)
    assert_close(net.resume(trace, edits), trace.logits)


def test_trace_logits_have_output_shape(net: InterventableNet) -> None:
    trace = net.trace(random_inputs(net, 7, seed=1))
    assert trace.logits.shape == (7, *net.output_shape)
    for location, width in net.widths.items():
        assert trace.activations[location].shape == (7, width)


def test_resume_copies_are_copy_major(net: InterventableNet) -> None:
    batch, copies = 5, 3
    trace = net.trace(random_inputs(net, batch, seed=2))
    location = list(net.widths)[-1]
    scale = torch.arange(1, copies + 1).float().view(copies, 1, 1)  # (c, 1, 1)

    def per_copy(h: torch.Tensor) -> torch.Tensor:
        # the first edit gets the shared (B, D) activation and broadcasts it over the copies
        assert h.shape[0] == batch
        return (h.unsqueeze(0) * scale).reshape(copies * batch, -1)

    stacked = net.resume(trace, {location: per_copy}, copies=copies)

    assert stacked.shape == (copies * batch, *net.output_shape)
    for c in range(copies):
        single = net.resume(trace, {location: lambda h, k=c + 1: h * k})
        assert_close(stacked[c * batch : (c + 1) * batch], single)
    # the edit must matter, or the check above could pass on an ignored edit
    assert not torch.allclose(stacked[:batch], stacked[batch : 2 * batch])


def test_resume_unknown_location_is_a_site_error(net: InterventableNet) -> None:
    trace = net.trace(random_inputs(net, 2, seed=1))
    with pytest.raises(SiteError) as caught:
        net.resume(trace, {"layer:99": _identity})
    assert caught.value.where == "layer:99"


def test_resume_without_edits_is_a_site_error(net: InterventableNet) -> None:
    trace = net.trace(random_inputs(net, 2, seed=1))
    with pytest.raises(SiteError):
        net.resume(trace, {})


def test_mlp_copying_source_activation_reproduces_source_logits(mlp: InterventableNet) -> None:
    base = mlp.trace(random_inputs(mlp, 6, seed=3))
    source = mlp.trace(random_inputs(mlp, 6, seed=4))
    assert not torch.allclose(base.logits, source.logits)
    for location in mlp.widths:
        patched = mlp.resume(base, {location: lambda h, loc=location: source.activations[loc]})
        assert_close(patched, source.logits)


def test_mlp_resume_starts_from_the_traced_activation(mlp: InterventableNet) -> None:
    trace = mlp.trace(random_inputs(mlp, 4, seed=5))
    expected = trace.logits.clone()
    # resume at layer:1 must not look at the inputs or layer:0 again
    trace.inputs.zero_()
    trace.activations["layer:0"].zero_()
    assert_close(mlp.resume(trace, {"layer:1": _identity}), expected)


def test_mlp_patched_neuron_matches_hand_written_forward(mlp: InterventableNet) -> None:
    inputs = random_inputs(mlp, 4, seed=6)
    trace = mlp.trace(inputs)

    def zero_neuron(h: torch.Tensor) -> torch.Tensor:
        h = h.clone()
        h[:, 2] = 0.0
        return h

    patched = mlp.resume(trace, {"layer:1": zero_neuron})

    linears = mlp.linears
    h = torch.relu(linears[1](torch.relu(linears[0](inputs))))
    h[:, 2] = 0.0
    expected = linears[3](torch.relu(linears[2](h))).unsqueeze(1)
    assert_close(patched, expected)


def _unrolled(gru: GRUNet, inputs: torch.Tensor, step: int, value: torch.Tensor) -> torch.Tensor:
    """A hand-written GRU run with the state after ``step`` replaced by ``value``."""
    h = inputs.new_zeros(inputs.shape[0], gru.cell.hidden_size)
    logits = []
    for t in range(gru.num_steps):
        h = gru.cell(inputs[:, t], h)
        if t == step:
            h = value
        logits.append(gru.heads[t](h))
    logits.append(gru.final_head(h))
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("step", [0, 1, 2, 3])
def test_gru_resume_at_step_keeps_earlier_heads_and_matches_unrolled_run(
    gru: GRUNet, step: int
) -> None:
    inputs = random_inputs(gru, 6, seed=7)
    trace = gru.trace(inputs)
    value = torch.randn(6, gru.cell.hidden_size, generator=torch.Generator().manual_seed(8))

    patched = gru.resume(trace, {f"step:{step}": lambda h: value})

    assert_close(patched[:, :step], trace.logits[:, :step])
    assert not torch.allclose(patched[:, step:], trace.logits[:, step:])
    assert_close(patched, _unrolled(gru, inputs, step, value))


def test_gru_resume_with_copies_keeps_earlier_heads_per_copy(gru: GRUNet) -> None:
    trace = gru.trace(random_inputs(gru, 3, seed=9))
    patched = gru.resume(trace, {"step:2": torch.zeros_like}, copies=2)
    for c in range(2):
        assert_close(patched[c * 3 : (c + 1) * 3, :2], trace.logits[:, :2])


@pytest.mark.parametrize("later_edit", [False, True])
def test_gru_stacked_resume_in_blocks_matches_nn_grucell_per_copy(
    gru: GRUNet, monkeypatch: pytest.MonkeyPatch, later_edit: bool
) -> None:
    # blocks of 2 copies (8 rows over a batch of 4): 5 copies run as blocks of 2, 2, 1
    monkeypatch.setattr(gru_module, "BLOCK_ROWS", 8)
    batch, copies = 4, 5
    inputs = random_inputs(gru, batch, seed=10)
    trace = gru.trace(inputs)
    source = torch.randn(batch, gru.cell.hidden_size, generator=torch.Generator().manual_seed(11))
    scale = torch.linspace(0.2, 1.8, copies).view(copies, 1, 1)

    def first(h: torch.Tensor) -> torch.Tensor:  # copy c moves scale[c] of the way to source
        return (h + scale * (source - h)).reshape(copies * batch, -1)

    def halve(h: torch.Tensor) -> torch.Tensor:
        return h * 0.5

    edits = {"step:1": first, **({"step:2": halve} if later_edit else {})}
    stacked = gru.resume(trace, edits, copies=copies).view(copies, batch, *gru.output_shape)

    for c in range(copies):  # recomputed with nn.GRUCell, one copy at a time
        h = inputs.new_zeros(batch, gru.cell.hidden_size)
        logits = []
        for t in range(gru.num_steps):
            h = gru.cell(inputs[:, t], h)
            if t == 1:
                h = h + scale[c] * (source - h)
            if t == 2 and later_edit:
                h = h * 0.5
            logits.append(gru.heads[t](h))
        logits.append(gru.final_head(h))
        assert_close(stacked[c], torch.stack(logits, dim=1))
    assert not torch.allclose(stacked[0], stacked[-1])
