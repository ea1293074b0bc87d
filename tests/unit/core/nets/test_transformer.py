"""The built-in transformer: trace/resume agree, patches land where their ids say."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.testing import assert_close

from core.errors import ModelLoadError, SiteError
from core.nets import build_net
from core.nets.transformer import TransformerNet
from core.sites import parse_site

CONFIG: dict[str, Any] = {
    "arch": "transformer", "vocab_size": 12, "d_model": 16, "n_layers": 3, "n_heads": 2,
    "d_mlp": 24, "max_len": 6, "label_token_ids": [1, 2, 3], "pad_token_id": 0,
    "named_positions": {"marker": {"token": 11, "offset": 1}},
}


def tiny(config: dict[str, Any] | None = None, seed: int = 0) -> TransformerNet:
    torch.manual_seed(seed)
    net = build_net(config or CONFIG).eval()
    assert isinstance(net, TransformerNet)
    return net


def token_ids(n: int, seed: int, length: int = 6) -> torch.Tensor:
    """(n, length) ids with the marker token 11 at position 1 and some right padding."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 11, (n, length), generator=generator)
    ids[:, 1] = 11
    lengths = torch.randint(3, length + 1, (n,), generator=generator)
    ids[torch.arange(length).expand(n, length) >= lengths.unsqueeze(1)] = 0
    return ids


def _identity(h: torch.Tensor) -> torch.Tensor:
    return h


def test_resume_with_identity_edit_at_every_location_equals_trace() -> None:
    net = tiny()
    trace = net.trace(token_ids(5, seed=1))
    for location in net.widths:
        assert_close(net.resume(trace, {location: _identity}), trace.logits,
                     msg=lambda m, loc=location: f"{loc}: {m}")


def test_every_location_has_its_width_and_forward_order() -> None:
    net = tiny()
    trace = net.trace(token_ids(4, seed=1))
    assert list(net.widths)[:2] == ["head:0.0/pos:0", "head:0.0/pos:1"]
    assert list(net.widths)[-1] == "resid:2/pos:marker"
    for location, width in net.widths.items():
        assert trace.activations[location].shape == (4, width)


def test_copying_the_source_residual_at_the_last_block_reproduces_source_logits() -> None:
    net = tiny()
    base, source = net.trace(token_ids(6, seed=2)), net.trace(token_ids(6, seed=3))
    assert not torch.allclose(base.logits, source.logits)
    location = "resid:2/pos:last"
    patched = net.resume(base, {location: lambda h: source.activations[location]})
    assert_close(patched, source.logits)


def test_resume_does_not_recompute_blocks_before_the_first_edit() -> None:
    net = tiny()
    trace = net.trace(token_ids(4, seed=5))
    expected = trace.logits.clone()
    streams = trace.activations.streams  # type: ignore[attr-defined]
    streams["resid"][:, 0] = 0.0  # an edit in block 1 starts from block 0's output
    assert_close(net.resume(trace, {"attn:1/pos:3": _identity}), expected)
    streams["resid"][:, 1] = 0.0  # an edit of block 1's output starts from it
    assert_close(net.resume(trace, {"resid:1/pos:3": _identity}), expected)
    assert not torch.allclose(net.resume(trace, {"mlp:1/pos:3": _identity}), expected)


def test_head_attn_and_mlp_edits_change_the_output_they_should() -> None:
    net = tiny()
    trace = net.trace(token_ids(5, seed=6))
    for location in ("head:1.1/pos:last", "attn:1/pos:last", "mlp:1/pos:last"):
        zeroed = net.resume(trace, {location: torch.zeros_like})
        assert not torch.allclose(zeroed, trace.logits), location


def test_resume_copies_are_copy_major_and_the_first_edit_gets_the_untiled_batch() -> None:
    net, batch, copies = tiny(), 4, 3
    trace = net.trace(token_ids(batch, seed=7))
    scale = torch.arange(1, copies + 1).float().view(copies, 1, 1)

    def per_copy(h: torch.Tensor) -> torch.Tensor:
        assert h.shape[0] == batch
        return (h.unsqueeze(0) * scale).reshape(copies * batch, -1)

    stacked = net.resume(trace, {"mlp:0/pos:2": per_copy, "resid:1/pos:last": _identity},
                         copies=copies)
    for c in range(copies):
        single = net.resume(trace, {"mlp:0/pos:2": lambda h, k=c + 1: h * k})
        assert_close(stacked[c * batch:(c + 1) * batch], single)


def test_last_follows_padding_and_minus_one_is_its_alias() -> None:
    net = tiny()
    ids = token_ids(3, seed=8)
    trace = net.trace(ids)
    lengths = (ids != 0).sum(dim=1)
    rows = torch.arange(3)
    expected = trace.activations.streams["resid"][rows, 3, lengths - 1]  # type: ignore[attr-defined]
    assert_close(trace.activations["resid:2/pos:last"], expected)
    assert parse_site("resid:2/pos:-1", net.widths).location == "resid:2/pos:last"
    assert_close(trace.activations["resid:0/pos:marker"], trace.activations["resid:0/pos:2"])


def every_position_from(net: TransformerNet, x: torch.Tensor, block: int,
                        positions: torch.Tensor) -> torch.Tensor:
    """Logits of blocks ``block``.. run at every position on the stream ``x`` (reference)."""
    for index in range(block, net.n_layers):
        layer = net.block(index)
        x = x + layer.out(layer.heads(x).flatten(2))
        x = x + layer.mlp(x)
    return net.readout(x, positions)


@pytest.mark.parametrize("block", [0, 1])
def test_the_unedited_last_block_computed_at_the_last_token_alone_matches_every_position(
    block: int,
) -> None:
    net = tiny()
    ids = token_ids(7, seed=11)  # padded: the last real token differs between rows
    trace = net.trace(ids)
    streams = trace.activations.streams  # type: ignore[attr-defined]
    rows = torch.arange(7)
    x = streams["resid"][:, block + 1].clone()
    x[rows, 2] = 0.0
    expected = every_position_from(net, x, block + 1, streams["positions"])
    patched = net.resume(trace, {f"resid:{block}/pos:2": torch.zeros_like})
    assert_close(patched, expected)
    assert not torch.allclose(patched, trace.logits)


def test_two_labels_of_one_token_edit_it_in_turn_and_a_tiling_edit_tiles_the_next() -> None:
    net, batch = tiny(), 4
    ids = token_ids(batch, seed=12)
    ids[ids == 0] = 5  # unpadded: last is index 5
    trace = net.trace(ids)
    streams = trace.activations.streams  # type: ignore[attr-defined]
    edits = {"resid:0/pos:5": lambda h: torch.cat([h + 1.0, h + 2.0]),
             "resid:0/pos:last": lambda h: h * 3.0}
    stacked = net.resume(trace, edits, copies=2)
    for copy, shift in enumerate((1.0, 2.0)):
        x = streams["resid"][:, 1].clone()
        x[:, 5] = (x[:, 5] + shift) * 3.0
        expected = every_position_from(net, x, 1, streams["positions"])
        assert_close(stacked[copy * batch:(copy + 1) * batch], expected)
    assert_close(net.trace(ids).activations.streams["resid"], streams["resid"])  # type: ignore[attr-defined]


def test_edits_in_the_last_block_at_other_tokens_and_at_the_last_one_match_every_position(
) -> None:
    net = tiny()
    ids = token_ids(6, seed=13)
    ids[ids == 0] = 4  # unpadded: last is index 5
    trace = net.trace(ids)
    streams = trace.activations.streams  # type: ignore[attr-defined]
    x = streams["resid"][:, 1].clone()
    x[:, 2] = 0.0  # resid:0/pos:2 zeroed; block 1 runs at every position
    layer = net.block(1)
    x = x + layer.out(layer.heads(x).flatten(2))
    x = x + layer.mlp(x)
    layer = net.block(2)
    z = layer.heads(x)
    z[:, 5, 1] = z[:, 5, 1] * 2.0  # head:2.1/pos:last
    attn = layer.out(z.flatten(2))
    x = x + attn
    mlp = layer.mlp(x)
    mlp[:, 3] = 0.0  # mlp:2/pos:3 (reaches no output)
    x = x + mlp
    ramp = torch.linspace(-1.0, 1.0, x.shape[-1])  # not a constant: ln_f would remove it
    x[:, 5] = x[:, 5] + ramp  # resid:2/pos:5, the last token under another label
    expected = net.readout(x, streams["positions"])
    patched = net.resume(trace, {"resid:0/pos:2": torch.zeros_like,
                                 "head:2.1/pos:last": lambda h: h * 2.0,
                                 "mlp:2/pos:3": torch.zeros_like,
                                 "resid:2/pos:5": lambda h: h + ramp})
    assert_close(patched, expected)


def test_a_missing_named_position_is_a_site_error() -> None:
    net = tiny()
    ids = token_ids(2, seed=9)
    ids[:, 1] = 4
    with pytest.raises(SiteError, match="marker"):
        net.trace(ids)


@pytest.mark.parametrize(("change", "field"), [
    ({"n_heads": 3}, "config.json:n_heads"),
    ({"label_token_ids": [1, 12]}, "config.json:label_token_ids"),
    ({"named_positions": {"last": {"token": 1}}}, "config.json:named_positions.last"),
    ({"named_positions": {"x": {"token": 1, "ofset": 1}}}, "config.json:named_positions.x"),
])
def test_bad_transformer_configs_name_their_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ModelLoadError) as error:
        build_net({**CONFIG, **change})
    assert error.value.where == field
