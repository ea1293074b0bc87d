"""Net sizes from configs alone: exact parameter counts of the built-in archs, and absurd
configs refused before any tensor is allocated."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from core.causal.registry import build_task
from core.errors import ModelLoadError
from core.nets.io import load_net
from core.nets.registry import build_net
from core.nets.size import NetLimits, check_net_size, estimate_net_size

MLP: dict[str, Any] = {"arch": "mlp", "input_dim": 16, "hidden_dims": [16, 16, 16],
                       "num_classes": 2, "activation": "relu"}
GRU: dict[str, Any] = {"arch": "gru", "input_size": 2, "hidden_size": 16, "num_steps": 4,
                       "num_classes": 2}


@pytest.mark.parametrize("config", [MLP, GRU, build_task("mcqa").default_net_config()],
                         ids=["mlp", "gru", "transformer"])
def test_the_estimate_equals_the_built_nets_parameter_count(config: dict[str, Any]) -> None:
    net = build_net(config)
    size = estimate_net_size(config)
    assert size.parameters == sum(p.numel() for p in net.parameters())
    assert size.bytes == 4 * size.parameters
    if size.tokens == 1:  # MLP and GRU: a trace holds every location's whole width
        assert size.stream_width == sum(net.widths.values())
        assert size.locations == len(net.widths)


ABSURD: list[tuple[dict[str, Any], str]] = [
    ({**MLP, "hidden_dims": [100_000_000]}, "config.json:hidden_dims.0"),
    ({**MLP, "hidden_dims": [100_000, 100_000]}, "config.json:hidden_dims.0"),
    ({**GRU, "hidden_size": 100_000}, "config.json:hidden_size"),
    ({**build_task("mcqa").default_net_config(), "vocab_size": 10_000_000},
     "config.json:vocab_size"),
    ({**MLP, "hidden_dims": [60_000] * 4}, "config.json:hidden_dims.3"),  # 10.8e9 params
    ({**MLP, "hidden_dims": [16] * 5000}, "config.json:hidden_dims"),
]


@pytest.mark.parametrize(("config", "where"), ABSURD, ids=[c[1] for c in ABSURD])
def test_an_absurd_config_is_refused_before_allocation(config: dict[str, Any], where: str
                                                       ) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ModelLoadError) as refused:
            build_net(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.where == where
    assert "over the limit of" in refused.value.message and "parameters" in refused.value.message
    assert peak < 10 * 2**20  # arithmetic only: nothing near the net's size was allocated


def test_the_parameter_message_gives_the_estimate_and_the_limit() -> None:
    with pytest.raises(ModelLoadError) as refused:
        check_net_size(MLP, NetLimits(max_parameters=100))
    assert refused.value.message.startswith("the net would hold about 850 parameters")
    assert "over the limit of 100 (max_parameters)" in refused.value.message


def test_a_huge_hugging_face_config_is_refused_before_transformers_loads(tmp_path: Path
                                                                        ) -> None:
    (tmp_path / "plot.json").write_text(json.dumps({"arch": "hf", "labels": [" A", " B"]}))
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 16384, "num_hidden_layers": 126,
        "intermediate_size": 53248, "vocab_size": 128256, "torch_dtype": "bfloat16"}))
    with pytest.raises(ModelLoadError) as refused:
        load_net(tmp_path)
    assert refused.value.where == "config.json:num_hidden_layers"
    assert "max_parameters" in refused.value.message


def test_a_hugging_face_config_size_reads_its_fields() -> None:
    size = estimate_net_size({"hidden_size": 64, "num_hidden_layers": 2,
                              "intermediate_size": 128, "vocab_size": 1000,
                              "torch_dtype": "float16"})
    assert size.parameters == 1000 * 64 + 2 * (4 * 64 * 64 + 3 * 64 * 128)
    assert size.bytes == 2 * size.parameters and size.arch == "hf"
