"""Handles out: an exported handle applied through pyvene 0.1.8 and through the plain torch
hook file reproduces the handle's test IIA in the result exactly."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from core import PythonTask, export, localize
from core.causal.bank import PairBank
from core.errors import SiteError
from core.nets.registry import build_net
from core.notebook import net_and_banks
from core.result import JobResult
from core.spec import parse_job_spec
from tests.unit.core.notebook_nets import ResidualMLP, as_vector, bit_cnn, random_bits, xor_of_ands

pytestmark = pytest.mark.slow  # runs whole jobs (controls off), ~1 s each

QUICK = {"pairs": {"fit": 96, "calibration": 96, "test": 192},
         "controls": {"random_net": False, "label_permutation": False, "depth_check": False},
         "calibration": {"top_k": [1, 2, 4, 8], "strengths": [0.5, 1.0, 2.0, 3.0]}}


@pytest.fixture()
def loaders() -> Iterator[Callable[[Path], tuple[Any, Any]]]:
    """Import an export directory's plot_handle / plot_pyvene as a user would."""
    added: list[str] = []

    def load(directory: Path) -> tuple[Any, Any]:
        sys.path.insert(0, str(directory))
        added.append(str(directory))
        for name in ("plot_handle", "plot_pyvene"):
            sys.modules.pop(name, None)
        return importlib.import_module("plot_handle"), importlib.import_module("plot_pyvene")

    yield load
    for path in added:
        sys.path.remove(path)
    for name in ("plot_handle", "plot_pyvene"):
        sys.modules.pop(name, None)


def _iia(output: Any, bank: PairBank, variable: str) -> float:
    logits = output if output.dim() == 3 else output.unsqueeze(1)  # (B, O, C)
    hits = (logits.argmax(-1) == bank.counterfactual_labels[variable]).all(-1)
    return float(hits.float().mean())


def _round_trip(result: JobResult, variable: str, model: nn.Module, causal: Any, tmp: Path,
                load: Callable[[Path], tuple[Any, Any]], **net: Any) -> None:
    directory = export(result, variable, tmp / variable, net=model, causal=causal,
                       format="pyvene", **net)
    hook, pyvene_loader = load(directory)
    _, banks, _ = net_and_banks(model, causal, parse_job_spec(result.spec), **net)
    test = banks.test
    expected = result.handles[variable].iia_test.overall
    assert _iia(hook.run_with_handle(model, directory, test.base, test.source), test,
                variable) == expected
    intervenable = pyvene_loader.intervenable_model(model, directory)
    assert _iia(pyvene_loader.run(intervenable, test.base, test.source), test,
                variable) == expected
    document = json.loads((directory / "handle.json").read_text())
    assert document["sites"] == result.handles[variable].sites


def test_a_soft_pca_handle_round_trips_through_pyvene_and_the_hook(
        tmp_path: Path, loaders: Callable[[Path], tuple[Any, Any]]) -> None:
    net, sites = ResidualMLP(), ["blocks.0", "blocks.1"]
    task = PythonTask(xor_of_ands(("x0", "x1"), ("x2", "x3"), 4), ("P", "Q"), random_bits(4),
                      as_vector)
    result = localize(net, task, sites=sites, levels=[{"granularity": "pca", "band_size": 1}],
                      **QUICK)
    handle = result.handles["P"]
    assert all("/pca:" in site for site in handle.sites)
    assert 0.55 < handle.iia_test.overall < 1.0  # a soft, imperfect handle: exactness bites
    _round_trip(result, "P", net, task, tmp_path, loaders, sites=sites)


def test_a_neuron_handle_at_a_sequence_position_round_trips(
        tmp_path: Path, loaders: Callable[[Path], tuple[Any, Any]]) -> None:
    net = bit_cnn()
    task = PythonTask(xor_of_ands(("x0", "x1"), ("x4", "x5"), 6), ("P", "Q"), random_bits(6),
                      lambda x: as_vector(x).unsqueeze(1))
    result = localize(net, task, sites=["1"], token_axis=2, **QUICK)
    assert result.handles["Q"].sites == ["module:1/pos:4/dims:0"]
    _round_trip(result, "Q", net, task, tmp_path, loaders, sites=["1"], token_axis=2)


def test_a_built_in_mlp_handle_is_hooked_at_the_next_linear_input(
        tmp_path: Path, loaders: Callable[[Path], tuple[Any, Any]]) -> None:
    torch.manual_seed(0)
    net = build_net({"arch": "mlp", "input_dim": 16, "hidden_dims": [8, 8], "num_classes": 2})
    result = localize(net, "hierarchical_equality", **{
        **QUICK, "levels": [{"granularity": "pca", "band_size": 2}]})
    _round_trip(result, "WX", net, "hierarchical_equality", tmp_path, loaders)


def test_export_names_a_missing_variable(tmp_path: Path) -> None:
    net = ResidualMLP()
    task = PythonTask(xor_of_ands(("x0", "x1"), ("x2", "x3"), 4), ("P", "Q"), random_bits(4),
                      as_vector)
    result = localize(net, task, sites=["blocks.0"], levels=[{"granularity": "block"}],
                      **QUICK)
    with pytest.raises(SiteError, match="no handle for 'R' \\(the result has P, Q\\)"):
        export(result, "R", tmp_path, net=net, causal=task, sites=["blocks.0"])
