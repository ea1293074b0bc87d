"""``plot run --module pkg.mod:factory`` and ``plot export``: a user's module from the command
line, its handle exported and applied by the plain torch hook file."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

from api.cli import main
from core.causal.bank import concat_banks
from core.causal.dataset import read_dataset, split_dataset, write_dataset
from core.notebook import PythonTask
from core.spec import PairsSpec
from tests.unit.core.notebook_nets import ResidualMLP, as_vector, random_bits, xor_of_ands

FACTORY = """
from core import ModuleNet
from tests.unit.core.notebook_nets import ResidualMLP

def make():
    return ModuleNet(ResidualMLP(), ["blocks.0", "blocks.1"], input_shape=(4,))
"""


@pytest.mark.slow  # runs a whole job (controls off), ~1 s
def test_run_with_a_module_factory_then_export_the_handle_as_a_torch_hook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "usernet.py").write_text(FACTORY)
    task = PythonTask(xor_of_ands(("x0", "x1"), ("x2", "x3"), 4), ("P", "Q"), random_bits(4),
                      as_vector)
    generator = torch.Generator().manual_seed(0)
    write_dataset(tmp_path / "pairs.jsonl", concat_banks(
        [task.sample_bank(200, generator, 0.5) for _ in range(2)]))
    pairs = {"fit": 128, "calibration": 128, "test": 128}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({
        "task": {"dataset": "pairs.jsonl"}, "pairs": pairs,
        "levels": [{"granularity": "neuron"}],
        "controls": {"random_net": False, "label_permutation": False, "depth_check": False}}))
    try:
        assert main(["run", "spec.yaml", "--module", "usernet:make", "--out", "out",
                     "--plain"]) == 0
        result = json.loads((tmp_path / "out" / "result.json").read_text())
        assert result["handles"]["P"]["sites"] == ["module:blocks.0/dims:5"]
        assert result["net"]["config"]["class"] == "ResidualMLP"
        assert main(["export", "out/result.json", "--variable", "P"]) == 2  # no --module
        assert "give the same --module" in capsys.readouterr().err
        assert main(["export", "out/result.json", "--variable", "P", "--module",
                     "usernet:make", "--out", "handle"]) == 0
        sys.path.insert(0, str(tmp_path / "handle"))
        sys.modules.pop("plot_handle", None)
        hook = importlib.import_module("plot_handle")
        bank = read_dataset(tmp_path / "pairs.jsonl", input_shape=(4,), output_shape=(1, 2))
        test = split_dataset(bank, PairsSpec(**pairs)).test
        logits = hook.run_with_handle(ResidualMLP(), tmp_path / "handle", test.base,
                                      test.source)
        hits = logits.argmax(-1) == test.counterfactual_labels["P"][:, 0]
        assert float(hits.float().mean()) == result["handles"]["P"]["iia_test"]["overall"]
    finally:
        sys.modules.pop("plot_handle", None)
        sys.modules.pop("usernet", None)
        if str(tmp_path / "handle") in sys.path:
            sys.path.remove(str(tmp_path / "handle"))


def test_a_bad_module_reference_is_refused_naming_the_flag(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump({"task": {"builtin": "mcqa"}}))
    assert main(["run", "spec.yaml", "--module", "nosuchmodule:make", "--out", "o"]) == 2
    assert "--module: cannot import 'nosuchmodule'" in capsys.readouterr().err
