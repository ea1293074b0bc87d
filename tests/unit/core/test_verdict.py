"""Verdicts: a silent variable and look-alike variables are not identifiable (the look-alike
named), a random net's handles are never localized, a planted net's are."""

from __future__ import annotations

import pytest
import torch

from core.calibrate import IIA
from core.controls import randomized_net, run_controls
from core.engine import trace_bank
from core.handle_verdicts import with_verdicts
from core.label_permutation import PermutationControl
from core.level_inputs import LevelInputs
from core.progressive import run_levels
from core.spec import ControlsSpec, LevelSpec
from core.verdict import ControlEvidence, bank_evidence, judge
from tests.unit.core.planted import planted_level_inputs

GOOD = IIA(0.98, 0.97, 0.99, 400, 200)
NO_CONTROLS = ControlEvidence(None, None, None)
SEPARATED = PermutationControl(["layer:1/dims:0"], 0.5, 0.1, 0.1, 0.5, 8)


def labels(*columns: list[int]) -> torch.Tensor:
    return torch.tensor(columns).T.reshape(-1, 1)


def test_a_variable_that_never_moves_the_output_is_not_identifiable() -> None:
    base = labels([0, 1, 0, 1] * 25)
    moving = labels([1, 1, 0, 1] * 25)  # changes the output on a quarter of the pairs
    evidence = bank_evidence(["silent", "moving"], {"silent": base.clone(), "moving": moving},
                             base)
    assert evidence["silent"].changed_pairs == 0 and evidence["moving"].changed_share == 0.25
    judged = judge("silent", IIA(1.0, None, 1.0, 100, 0), evidence["silent"],
                   ControlEvidence(IIA(0.5, 0.0, 1.0, 100, 0), SEPARATED, ("layer:2", 0.4)))
    assert judged.verdict == "not_identifiable"
    assert "0 of 100 calibration pairs" in judged.reason
    # one change in 100 pairs is still "almost never"; the moving variable is judged on
    rare = labels([1] + [0, 1, 0, 1][1:] + [0, 1, 0, 1] * 24)
    assert bank_evidence(["rare"], {"rare": rare}, base)["rare"].changed_share == 0.01
    assert judge("rare", GOOD, bank_evidence(["rare"], {"rare": rare}, base)["rare"],
                 NO_CONTROLS).verdict == "not_identifiable"
    assert judge("moving", GOOD, evidence["moving"], NO_CONTROLS).verdict is None


def test_a_scoped_bank_gives_each_variable_its_change_share_over_its_own_pairs() -> None:
    base = labels([0] * 100)
    wx = labels([1, 0] * 25 + [0] * 50)  # WX's pairs (the first half): half change
    yz = labels([0] * 50 + [1, 0, 0, 0] * 12 + [1, 0])  # YZ's pairs: a quarter change
    first = torch.arange(100) < 50
    evidence = bank_evidence(["WX", "YZ"], {"WX": wx, "YZ": yz}, base,
                             {"WX": first, "YZ": ~first})
    assert (evidence["WX"].changed_pairs, evidence["WX"].pairs) == (25, 50)
    assert evidence["WX"].changed_share == 0.5
    assert (evidence["YZ"].changed_pairs, evidence["YZ"].pairs) == (13, 50)
    unscoped = bank_evidence(["WX", "YZ"], {"WX": wx, "YZ": yz}, base)
    assert unscoped["WX"].changed_share == 0.25 and unscoped["WX"].pairs == 100


def test_observationally_identical_variables_are_named() -> None:
    base = labels([0, 1] * 50)
    first = labels([1, 1, 0, 0] * 25)
    other = labels([0, 0, 1, 1] * 25)
    evidence = bank_evidence(["WX", "WX_copy", "YZ"],
                             {"WX": first, "WX_copy": first.clone(), "YZ": other}, base)
    assert set(evidence["WX"].identical_to) == {"WX_copy"}
    assert set(evidence["WX_copy"].identical_to) == {"WX"}
    assert evidence["YZ"].identical_to == {}
    judged = judge("WX", GOOD, evidence["WX"],
                   ControlEvidence(IIA(0.5, 0.1, 0.9, 100, 50), SEPARATED, ("layer:2", 0.5)))
    assert judged.verdict == "not_identifiable" and "WX_copy" in judged.reason
    assert judge("YZ", GOOD, evidence["YZ"], ControlEvidence(
        IIA(0.5, 0.1, 0.9, 100, 50), SEPARATED, ("layer:2", 0.5))).verdict == "localized"


def test_each_control_can_stand_against_a_handle() -> None:
    evidence = bank_evidence(["V"], {"V": labels([1, 0] * 50)}, labels([0, 0] * 50))["V"]
    random_net = IIA(0.5, 0.2, 0.8, 100, 50)
    assert judge("V", GOOD, evidence, ControlEvidence(random_net, SEPARATED, ("step:3", 0.97))
                 ).verdict == "output_copy"
    close = IIA(0.9, 0.9, 0.9, 100, 50)
    assert judge("V", GOOD, evidence, ControlEvidence(close, SEPARATED, ("step:3", 0.2))
                 ).verdict == "no_better_than_control"
    # overall well clear, but not on the pairs where the output must change
    keeps = IIA(0.6, 0.95, 0.3, 100, 50)
    judged = judge("V", GOOD, evidence, ControlEvidence(keeps, SEPARATED, ("step:3", 0.2)))
    assert judged.verdict == "no_better_than_control" and "must change" in judged.reason
    unseparated = PermutationControl(["a"], 0.12, 0.11, 0.1, 0.5, 8)
    assert judge("V", GOOD, evidence, ControlEvidence(random_net, unseparated, ("step:3", 0.2))
                 ).verdict == "no_better_than_control"
    # controls off: never localized, but a control that ran can still find against it
    off = judge("V", GOOD, evidence, ControlEvidence(None, None, ("step:3", 0.2)))
    assert off.verdict is None and "random-net control was off" in off.reason
    assert judge("V", GOOD, evidence, ControlEvidence(None, None, ("step:3", 0.99))
                 ).verdict == "output_copy"


def _judged_handles(inputs: LevelInputs) -> dict[str, str | None]:
    """Per variable, the verdict of the job's handle and of each level's (``v@level``)."""
    schedule = [LevelSpec(granularity="neuron", keep=2)]
    levels = run_levels(schedule, inputs)
    spec = inputs.controls or ControlsSpec()
    controls, _ = run_controls(spec, 0, schedule, inputs, levels)
    levels, handles = with_verdicts(levels, controls, inputs.banks.calibration,
                                    list(inputs.variables))
    out = {v: h.verdict for v, h in handles.items()}
    out.update({f"{v}@{level.index}": h.verdict for level in levels
                for v, h in level.handles.items()})
    return out


def test_the_planted_nets_handles_are_localized() -> None:
    inputs = planted_level_inputs(200, top_k=[1, 2], strengths=[1.0],
                                  controls=ControlsSpec(permutations=4))
    assert set(_judged_handles(inputs).values()) == {"localized"}


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_nets_handles_are_never_localized(seed: int) -> None:
    planted = planted_level_inputs(200, top_k=[1, 2], strengths=[1.0],
                                   controls=ControlsSpec(permutations=4, seed=seed + 10))
    net = randomized_net(planted.net, "reinit", seed)
    traces = {s: trace_bank(net, getattr(planted.banks, s))
              for s in ("fit", "calibration", "test")}
    inputs = LevelInputs.local(net, planted.banks, traces, planted.coupling,
                               planted.calibration, 50_000, planted.controls)
    verdicts = _judged_handles(inputs)
    assert "localized" not in verdicts.values(), verdicts
    assert all(v is not None for v in verdicts.values())
