"""PLOT on planted nets: each variable on its planted neuron, never on its exact copy."""

from __future__ import annotations

import pytest
import torch

from core.level_inputs import LevelInputs
from core.progressive import best_handles, run_levels
from core.result import JobResult, LevelResult
from core.spec import CalibrationSpec, LevelSpec
from tests.unit.core.planted import (
    COPIES,
    P_NEURON,
    Q_NEURON,
    planted_level_inputs,
)


@pytest.fixture(scope="module")
def inputs() -> LevelInputs:
    return planted_level_inputs(300, top_k=[1, 2, 4], strengths=[1.0, 2.0])


def test_planted_net_is_exact(inputs: LevelInputs) -> None:
    bank = inputs.banks.test
    assert bool((inputs.net(bank.base).argmax(-1) == bank.base_labels).all())


def _check_planted(levels: list[LevelResult]) -> None:
    handles = best_handles(levels)
    assert handles["P"].sites[0] == P_NEURON
    assert handles["Q"].sites[0] == Q_NEURON
    for handle in handles.values():
        assert not set(handle.sites) & set(COPIES)
        assert handle.iia_test.overall >= 0.99
        assert handle.hard_iia_test.overall >= 0.99
        assert handle.iia_test.sensitivity is not None and handle.iia_test.sensitivity >= 0.99
        assert handle.iia_test.invariance is not None and handle.iia_test.invariance >= 0.99


def test_one_coupling_over_all_neurons_finds_the_planted_neurons(inputs: LevelInputs) -> None:
    levels = run_levels([LevelSpec(granularity="neuron")], inputs)
    _check_planted(levels)
    coupling = torch.tensor(levels[0].coupling)
    sites = levels[0].sites
    for row, planted in ((0, P_NEURON), (1, Q_NEURON)):
        # the planted neuron holds the row's largest mass; a copy (no downstream effect)
        # holds at most what the balanced marginals force onto the cheapest leftovers
        assert int(coupling[row].argmax()) == sites.index(planted)
        for copy in COPIES:
            assert float(coupling[row, sites.index(copy)]) < 0.5 * float(coupling[row].max())


def test_progressive_schedule_finds_the_same_neurons(inputs: LevelInputs) -> None:
    levels = run_levels([LevelSpec(granularity="block", block_size=3, keep=1),
                         LevelSpec(granularity="neuron")], inputs)
    assert levels[1].sites == [f"layer:1/dims:{i}" for i in range(6)]  # refined kept blocks
    _check_planted(levels)
    assert best_handles(levels)["P"].level == 1


def test_resume_skips_completed_levels_and_reproduces_them(inputs: LevelInputs) -> None:
    schedule = [LevelSpec(granularity="block", block_size=3, keep=1),
                LevelSpec(granularity="neuron")]
    full = run_levels(schedule, inputs)
    seen: list[int] = []
    resumed = run_levels(schedule, inputs, completed=full[:1],
                         on_level=lambda level: seen.append(level.index))
    assert seen == [1]
    torch.testing.assert_close(torch.tensor(resumed[1].coupling), torch.tensor(full[1].coupling))
    assert resumed[1].handles["P"].sites == full[1].handles["P"].sites


def test_level_results_round_trip_through_json(inputs: LevelInputs) -> None:
    level = run_levels([LevelSpec(granularity="neuron")], inputs)[0]
    assert LevelResult.model_validate(level.to_json()) == level
    job = JobResult(variables=["P", "Q"], levels=[level], handles=best_handles([level]),
                    timing={"total_s": 1.0}, forward_passes=1, net={}, banks={}, spec={},
                    device="cpu", max_rows=1)
    assert JobResult.model_validate(job.to_json()) == job


def test_successive_halving_keeps_the_answer_and_spends_fewer_forwards(
        inputs: LevelInputs) -> None:
    import dataclasses

    exhaustive = dataclasses.replace(inputs, calibration=CalibrationSpec(
        top_k=[1, 2, 4], strengths=[0.5, 1.0, 2.0, 4.0], screen_pairs=0))
    halving = dataclasses.replace(inputs, calibration=CalibrationSpec(
        top_k=[1, 2, 4], strengths=[0.5, 1.0, 2.0, 4.0], screen_pairs=60, finalists=3))
    full = run_levels([LevelSpec(granularity="neuron")], exhaustive)[0]
    fast = run_levels([LevelSpec(granularity="neuron")], halving)[0]
    assert fast.forward_passes < full.forward_passes
    for variable in ("P", "Q"):
        assert fast.handles[variable].sites == full.handles[variable].sites
        assert fast.handles[variable].iia_calibration == full.handles[variable].iia_calibration
