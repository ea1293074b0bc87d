"""From a notebook: a user's own modules (a residual MLP, a 1-D CNN over a sequence, none of
the built-in architectures) and a causal model defined in Python, localized in one call.

Each test's user code, from import to result, is the block between the ``# user code``
markers (at most 10 lines); the nets are built analytically in ``notebook_nets`` so the
planted coordinates are known and the test takes a few seconds.
"""

from __future__ import annotations

import html

import pytest

from core.report import render_report
from core.result import JobResult
from tests.unit.core.notebook_nets import ResidualMLP, as_vector, bit_cnn, random_bits, xor_of_ands

pytestmark = pytest.mark.slow  # runs whole jobs (controls included), ~2 s each


def test_a_residual_mlp_gives_up_its_planted_variables() -> None:
    # user code: 5 lines
    from core import PythonTask, localize
    causal = xor_of_ands(("x0", "x1"), ("x2", "x3"), bits=4)  # P = x0&x1, Q = x2&x3, O = P^Q
    task = PythonTask(causal, ("P", "Q"), random_bits(4), as_vector)
    result = localize(ResidualMLP(), task, sites=["blocks.0", "blocks.1"],
                      pairs={"fit": 128, "calibration": 128, "test": 256})
    # end of user code
    assert_planted(result, {"P": "module:blocks.0/dims:5", "Q": "module:blocks.0/dims:6"})
    assert result.net["config"]["class"] == "ResidualMLP" and result.net["path"] is None
    text = repr(result)
    assert "P: module:blocks.0/dims:5 IIA 1.000 (random net" in text and len(text) < 300
    page = result._repr_html_()
    assert "<td>module:blocks.0/dims:6</td>" in page
    assert html.escape(render_report(result), quote=True) in page  # the report, heatmaps too


def test_a_cnn_over_a_sequence_is_localized_by_position_then_neuron() -> None:
    # user code: 5 lines
    from core import PythonTask, localize
    causal = xor_of_ands(("x0", "x1"), ("x4", "x5"), bits=6)  # ANDs at positions 0 and 4
    task = PythonTask(causal, ("P", "Q"), random_bits(6), lambda x: as_vector(x).unsqueeze(1))
    result = localize(bit_cnn(), task, sites=["1"], token_axis=2,
                      pairs={"fit": 128, "calibration": 128, "test": 256})
    # end of user code
    assert [level.granularity for level in result.levels] == ["position", "neuron"]
    assert_planted(result, {"P": "module:1/pos:0/dims:0", "Q": "module:1/pos:4/dims:0"})


def assert_planted(result: JobResult, planted: dict[str, str]) -> None:
    """Each variable's handle is its planted site alone, at IIA ≥ 0.99, well above the
    random net's."""
    assert result.controls is not None and result.controls.random_net is not None
    for variable, site in planted.items():
        assert result.handles[variable].sites == [site]
        assert result.handles[variable].iia_test.overall >= 0.99
        assert result.controls.random_net.handles[variable].iia_test.overall < 0.9
