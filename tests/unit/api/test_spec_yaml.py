"""YAML specs: nesting is bounded by a linear scan before PyYAML runs; aliases refused."""

from __future__ import annotations

import pytest

from api.errors import InputError
from api.spec_yaml import measure_yaml_depth, parse_yaml_spec


@pytest.mark.parametrize(("text", "depth"), [
    ("task: x\n", 1),
    ("task:\n  builtin: x\n", 2),
    ("levels:\n  - granularity: neuron\n", 3),
    ("a: [[1, 2], {b: 3}]\n", 3),
    ("a:\n  - - - 1\n", 5),
    ("# [[[[ a comment\na: 1\n", 1),
])
def test_depth_counts_blocks_dashes_and_flow_brackets(text: str, depth: int) -> None:
    assert measure_yaml_depth(text)[0] == depth


def test_deep_nesting_is_refused_by_line_before_parsing() -> None:
    text = "task: x\nlevels: " + "[" * 100_000 + "]" * 100_000 + "\n"
    with pytest.raises(InputError) as refused:
        parse_yaml_spec(text.encode(), max_depth=32)
    assert refused.value.where == "line 2"
    assert "PLOT_MAX_YAML_DEPTH" in refused.value.message


def test_a_spec_within_the_depth_is_read() -> None:
    spec = parse_yaml_spec(b"task:\n  builtin: hierarchical_equality\nlevels: [[1]]\n", 32)
    assert spec == {"task": {"builtin": "hierarchical_equality"}, "levels": [[1]]}


@pytest.mark.parametrize(("data", "where"), [
    (b"a: &x [1]\nb: *x\n", "line 2"),
    (b"\xff", "body"),
    (b"- 1\n", "body"),
    (b"a: [1\n", "line 2"),
])
def test_malformed_specs_are_refused_naming_where(data: bytes, where: str) -> None:
    with pytest.raises(InputError) as refused:
        parse_yaml_spec(data, 32)
    assert refused.value.where == where


def test_a_spec_of_too_many_nodes_is_refused_before_objects_are_built() -> None:
    data = b"task: [" + b"1, " * 60_000 + b"1]\n"
    with pytest.raises(InputError) as refused:
        parse_yaml_spec(data, 32)
    assert "YAML nodes" in refused.value.message and refused.value.where == "line 1"
