"""The label-permutation control: permuted signatures and the kept-site mass they get."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.control import NO_CONTROL, JobControl
from core.errors import JobCancelled
from core.label_permutation import (
    PermutationControl,
    iter_permuted_signatures,
    level_permutation_controls,
    permuted_signatures,
)
from core.level_inputs import LevelInputs
from core.progressive import run_level_steps, run_levels
from core.result import LevelResult
from core.spec import ControlsSpec, LevelSpec
from tests.unit.core.planted import (
    P_NEURON,
    Q_NEURON,
    planted_level_inputs,
)


def test_each_variable_gets_its_own_permutation_of_the_pairs() -> None:
    signatures = torch.arange(2 * 50 * 3, dtype=torch.float32).view(2, 50, 3)
    permuted = permuted_signatures(signatures, 4, torch.Generator().manual_seed(0))
    assert permuted.shape == (4, 2, 50, 3)
    for n in range(4):
        for v in range(2):
            rows = permuted[n, v]
            # the same rows (whole (Y,) vectors moved together), in another order
            order = torch.argsort(rows[:, 0])
            torch.testing.assert_close(rows[order], signatures[v])
            assert not torch.equal(rows, signatures[v])
    # variable 1's rows are variable 0's + 150: a shared permutation would make them equal
    assert not torch.equal(permuted[0, 0, :, 0], permuted[0, 1, :, 0] - 150)
    assert not torch.equal(permuted[0], permuted[1])
    again = permuted_signatures(signatures, 4, torch.Generator().manual_seed(0))
    assert torch.equal(permuted, again)


def test_separated_means_a_quarter_of_the_range_above_the_control_level() -> None:
    def control(real: float, permuted: float) -> PermutationControl:
        return PermutationControl(["s"], real, permuted, 0.1, 0.5, 8)  # range 0.4

    assert control(0.5, 0.1).separated
    assert control(0.2, 0.05).separated  # uniform 0.1 + 0.1, exactly
    assert not control(0.19, 0.05).separated
    assert not control(0.5, 0.45).separated  # permuted labels reach it too


@pytest.fixture(scope="module")
def inputs() -> LevelInputs:
    return planted_level_inputs(400, top_k=[1, 2], strengths=[1.0],
                                controls=ControlsSpec(permutations=16))


@pytest.fixture(scope="module")
def level(inputs: LevelInputs) -> LevelResult:
    return run_levels([LevelSpec(granularity="neuron", keep=1)], inputs)[0]


def test_real_kept_mass_is_at_the_cap_and_permuted_labels_near_uniform(
        level: LevelResult) -> None:
    assert level.label_permutation is not None
    sites = len(level.sites)  # 10 neurons; rows: P, Q and the null row
    for variable, planted in (("P", P_NEURON), ("Q", Q_NEURON)):
        control = level.label_permutation[variable]
        assert control.kept == [planted]
        assert control.permutations == 16
        assert control.uniform_mass == pytest.approx(1 / sites)
        assert control.max_mass == pytest.approx(3 / sites)  # a site holds 1/S, a row 1/3
        row = level.coupling[level.variables.index(variable)]
        assert control.real_mass == pytest.approx(row[level.sites.index(planted)])
        assert control.real_mass > 0.95 * control.max_mass
        # no structure: at or below the uniform level, far from the real row
        assert control.control_mass < 1.5 * control.uniform_mass
        assert control.control_mass < 0.5 * control.real_mass
        assert control.separated


def test_the_control_costs_no_forward_pass_and_is_timed(
        inputs: LevelInputs, level: LevelResult) -> None:
    off = run_levels([LevelSpec(granularity="neuron", keep=1)],
                     dataclasses.replace(inputs, controls=None))[0]
    assert off.label_permutation is None
    assert off.forward_passes == level.forward_passes
    assert off.handles == level.handles
    assert level.timing["label_permutation_s"] > 0 and off.timing["label_permutation_s"] == 0


def test_the_same_seed_gives_the_same_control(inputs: LevelInputs, level: LevelResult) -> None:
    again = run_levels([LevelSpec(granularity="neuron", keep=1)], inputs)[0]
    assert again.label_permutation == level.label_permutation
    other = run_levels([LevelSpec(granularity="neuron", keep=1)], dataclasses.replace(
        inputs, controls=ControlsSpec(permutations=16, seed=5)))[0]
    assert other.label_permutation is not None and level.label_permutation is not None
    assert other.label_permutation["P"].control_mass != level.label_permutation["P"].control_mass


def test_chunks_are_the_same_permutations_drawn_as_they_are_used() -> None:
    signatures = torch.arange(2 * 50 * 3, dtype=torch.float32).view(2, 50, 3)
    whole = permuted_signatures(signatures, 20, torch.Generator().manual_seed(0))
    chunks = list(iter_permuted_signatures(signatures, 20, torch.Generator().manual_seed(0),
                                           chunk=8))
    assert [c.shape[0] for c in chunks] == [8, 8, 4]
    assert torch.equal(torch.cat(chunks), whole)


class CancelAfter:
    """A cancel check that turns true on its ``calls``-th poll; counts the polls."""

    def __init__(self, calls: int) -> None:
        self.calls = calls
        self.polls = 0

    def __call__(self) -> bool:
        self.polls += 1
        return self.polls >= self.calls


def test_a_cancel_stops_a_huge_permutation_control_within_one_chunk(
        inputs: LevelInputs) -> None:
    outcome = run_level_steps(0, LevelSpec(granularity="neuron", keep=1),
                              dataclasses.replace(inputs, controls=None), None, NO_CONTROL)
    huge = ControlsSpec().model_copy(update={"permutations": 1_000_000})  # past any limit
    cancel = CancelAfter(3)
    with pytest.raises(JobCancelled) as raised:
        level_permutation_controls(huge, inputs.coupling, outcome.signatures,
                                   inputs.num_classes, [s.id for s in outcome.found.sites],
                                   outcome.handles, JobControl(should_cancel=cancel))
    assert cancel.polls == 3  # two chunks coupled, the third never started
    assert raised.value.where == "controls.permutations"
