"""load_net / save_net / net_digest: round trips, broken directories, the model root."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from core.errors import ModelLoadError
from core.nets import InterventableNet, load_net, net_digest, save_net
from tests.unit.core.nets.conftest import MLP_CONFIG, random_inputs, seeded_net


@pytest.fixture
def saved_mlp(tmp_path: Path) -> Path:
    return save_net(seeded_net(MLP_CONFIG), tmp_path / "net")


def test_save_then_load_gives_identical_outputs(net: InterventableNet, tmp_path: Path) -> None:
    save_net(net, tmp_path / "net")
    loaded = load_net(tmp_path / "net")
    inputs = random_inputs(net, 9, seed=1)
    assert type(loaded) is type(net)
    assert loaded.config == net.config
    assert_close(loaded(inputs), net(inputs), rtol=0, atol=0)


def test_loaded_net_is_frozen_and_in_eval_mode(saved_mlp: Path) -> None:
    loaded = load_net(saved_mlp)
    assert not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())


def test_config_json_is_sorted_and_indented(saved_mlp: Path) -> None:
    text = (saved_mlp / "config.json").read_text()
    assert text == json.dumps(MLP_CONFIG, sort_keys=True, indent=2) + "\n"


def test_weights_use_the_documented_tensor_names(saved_mlp: Path) -> None:
    tensors = load_file(saved_mlp / "model.safetensors")
    assert sorted(tensors) == sorted(
        f"linears.{i}.{kind}" for i in range(4) for kind in ("weight", "bias")
    )
    assert tuple(tensors["linears.0.weight"].shape) == (5, 6)  # (out, in)


def test_digest_follows_content_not_location(saved_mlp: Path, tmp_path: Path) -> None:
    copy = save_net(load_net(saved_mlp), tmp_path / "copy")
    assert net_digest(copy) == net_digest(saved_mlp)
    assert len(net_digest(saved_mlp)) == 64
    assert net_digest("net", root=saved_mlp.parent) == net_digest(saved_mlp)

    other = seeded_net(MLP_CONFIG, seed=1)
    assert net_digest(save_net(other, tmp_path / "other")) != net_digest(saved_mlp)

    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps(config, indent=4))
    assert net_digest(copy) != net_digest(saved_mlp)


def test_digest_of_incomplete_directory_names_the_file(saved_mlp: Path) -> None:
    (saved_mlp / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as caught:
        net_digest(saved_mlp)
    assert caught.value.where == "model.safetensors"


def _edit_tensors(directory: Path, edit: Callable[[dict[str, torch.Tensor]], None]) -> None:
    path = directory / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path)


def _edit_config(directory: Path, **changes: object) -> None:
    path = directory / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


BREAKS: dict[str, tuple[Callable[[Path], None], str, tuple[str, ...]]] = {
    "missing config": (lambda d: (d / "config.json").unlink(), "config.json", ()),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors", ()),
    "invalid json": (
        lambda d: (d / "config.json").write_text('{"arch": "mlp",'),
        "config.json",
        ("JSON",),
    ),
    "unknown arch": (lambda d: _edit_config(d, arch="resnet"), "config.json:arch", ("resnet",)),
    "ill-typed field": (
        lambda d: _edit_config(d, hidden_dims="16,16"),
        "config.json:hidden_dims",
        (),
    ),
    "extra field": (lambda d: _edit_config(d, dropout=0.5), "config.json:dropout", ()),
    "missing tensor": (
        lambda d: _edit_tensors(d, lambda t: t.pop("linears.2.bias")),
        "linears.2.bias",
        ("missing",),
    ),
    "unexpected tensor": (
        lambda d: _edit_tensors(d, lambda t: t.update({"linears.4.weight": torch.zeros(2, 2)})),
        "linears.4.weight",
        ("unexpected",),
    ),
    "wrong shape": (
        lambda d: _edit_tensors(d, lambda t: t.update({"linears.1.weight": torch.zeros(5, 4)})),
        "linears.1.weight",
        ("(4, 5)", "(5, 4)"),
    ),
    "config disagrees with weights": (
        lambda d: _edit_config(d, hidden_dims=[5, 7, 3]),
        "linears.1.weight",
        ("(7, 5)", "(4, 5)"),
    ),
    "wrong dtype": (
        lambda d: _edit_tensors(
            d, lambda t: t.update({"linears.0.bias": t["linears.0.bias"].double()})
        ),
        "linears.0.bias",
        ("F32", "F64"),
    ),
    "not finite": (
        lambda d: _edit_tensors(
            d, lambda t: t["linears.3.weight"].__setitem__((0, 0), float("nan"))
        ),
        "linears.3.weight",
        ("NaN",),
    ),
    "not safetensors": (
        lambda d: (d / "model.safetensors").write_bytes(b"\x80\x04garbage"),
        "model.safetensors",
        (),
    ),
    "pickle, not safetensors": (
        lambda d: torch.save({"linears.0.weight": torch.zeros(5, 6)}, d / "model.safetensors"),
        "model.safetensors",
        (),
    ),
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_broken_directory_names_what_is_wrong(saved_mlp: Path, case: str) -> None:
    breaker, where, phrases = BREAKS[case]
    breaker(saved_mlp)
    with pytest.raises(ModelLoadError) as caught:
        load_net(saved_mlp)
    assert caught.value.where == where
    for phrase in phrases:
        assert phrase in caught.value.message


def test_missing_directory_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_net(tmp_path / "nowhere")
    assert caught.value.where == str(tmp_path / "nowhere")


def test_directory_under_root_loads_by_relative_path(saved_mlp: Path, tmp_path: Path) -> None:
    loaded = load_net("net", root=tmp_path)
    assert loaded.config == MLP_CONFIG
    assert load_net("sub/../net", root=tmp_path).config == MLP_CONFIG


@pytest.fixture
def root_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "models"
    root.mkdir()
    outside = save_net(seeded_net(MLP_CONFIG), tmp_path / "outside")
    return root, outside


def _assert_refused(directory: str | Path, root: Path) -> None:
    with pytest.raises(ModelLoadError) as caught:
        load_net(directory, root=root)
    assert "outside" in caught.value.message


def test_dotdot_out_of_root_is_refused(root_and_outside: tuple[Path, Path]) -> None:
    root, _ = root_and_outside
    _assert_refused("../outside", root)
    with pytest.raises(ModelLoadError):
        net_digest("../outside", root=root)


def test_absolute_path_out_of_root_is_refused(root_and_outside: tuple[Path, Path]) -> None:
    root, outside = root_and_outside
    _assert_refused(outside, root)


def test_symlinked_directory_out_of_root_is_refused(root_and_outside: tuple[Path, Path]) -> None:
    root, outside = root_and_outside
    (root / "link").symlink_to(outside, target_is_directory=True)
    _assert_refused("link", root)
    assert load_net(root.parent / "models" / "link").config == MLP_CONFIG  # no root, no check


def test_symlinked_weights_out_of_root_are_refused(root_and_outside: tuple[Path, Path]) -> None:
    root, outside = root_and_outside
    inside = root / "net"
    inside.mkdir()
    (inside / "config.json").write_bytes((outside / "config.json").read_bytes())
    (inside / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(ModelLoadError) as caught:
        load_net("net", root=root)
    assert caught.value.where == "model.safetensors"
