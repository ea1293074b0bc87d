"""build_net: the config.json contract of the built-in architectures."""

from __future__ import annotations

from typing import Any

import pytest

from core.errors import ModelLoadError
from core.nets import ARCHS, MLP, GRUNet, build_net, validate_net_config
from core.nets.transformer import TransformerNet
from tests.unit.core.nets.conftest import GRU_CONFIG, MLP_CONFIG


def test_archs_name_the_built_in_nets() -> None:
    assert dict(ARCHS) == {"mlp": MLP, "gru": GRUNet, "transformer": TransformerNet}


def test_build_mlp_follows_the_config() -> None:
    net = build_net(MLP_CONFIG)
    assert isinstance(net, MLP)
    assert net.widths == {"layer:0": 5, "layer:1": 4, "layer:2": 3}
    assert net.input_shape == (6,)
    assert net.output_shape == (1, 3)
    shapes = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    assert shapes == {
        "linears.0.weight": (5, 6),
        "linears.0.bias": (5,),
        "linears.1.weight": (4, 5),
        "linears.1.bias": (4,),
        "linears.2.weight": (3, 4),
        "linears.2.bias": (3,),
        "linears.3.weight": (3, 3),
        "linears.3.bias": (3,),
    }


def test_build_gru_follows_the_config() -> None:
    net = build_net(GRU_CONFIG)
    assert isinstance(net, GRUNet)
    assert list(net.widths) == ["step:0", "step:1", "step:2", "step:3"]
    assert net.input_shape == (4, 2)
    assert net.output_shape == (5, 2)
    names = set(net.state_dict())
    assert {"cell.weight_ih", "cell.weight_hh", "cell.bias_ih", "cell.bias_hh"} <= names
    assert {"final_head.weight", "final_head.bias", "heads.3.weight", "heads.0.bias"} <= names
    assert tuple(net.state_dict()["cell.weight_ih"].shape) == (15, 2)


def test_mlp_activation_defaults_to_relu() -> None:
    config = {k: v for k, v in MLP_CONFIG.items() if k != "activation"}
    assert validate_net_config(config)["activation"] == "relu"
    assert build_net(config).config["activation"] == "relu"


def _without(config: dict[str, Any], field: str) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k != field}


@pytest.mark.parametrize(
    ("config", "where"),
    [
        ([1, 2], "config.json"),
        ({**MLP_CONFIG, "arch": "lstm"}, "config.json:arch"),
        (_without(MLP_CONFIG, "arch"), "config.json:arch"),
        (_without(MLP_CONFIG, "hidden_dims"), "config.json:hidden_dims"),
        (_without(GRU_CONFIG, "num_steps"), "config.json:num_steps"),
        ({**MLP_CONFIG, "dropout": 0.1}, "config.json:dropout"),
        ({**GRU_CONFIG, "hidden_dims": [4]}, "config.json:hidden_dims"),
        ({**MLP_CONFIG, "input_dim": "6"}, "config.json:input_dim"),
        ({**MLP_CONFIG, "input_dim": True}, "config.json:input_dim"),
        ({**MLP_CONFIG, "input_dim": 6.0}, "config.json:input_dim"),
        ({**MLP_CONFIG, "num_classes": 0}, "config.json:num_classes"),
        ({**MLP_CONFIG, "hidden_dims": []}, "config.json:hidden_dims"),
        ({**MLP_CONFIG, "hidden_dims": [4, -1]}, "config.json:hidden_dims"),
        ({**MLP_CONFIG, "activation": "swish"}, "config.json:activation"),
        ({**GRU_CONFIG, "hidden_size": None}, "config.json:hidden_size"),
    ],
)
def test_bad_config_names_the_field(config: Any, where: str) -> None:
    with pytest.raises(ModelLoadError) as caught:
        build_net(config)
    assert caught.value.where == where
