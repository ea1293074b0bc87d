"""run_job with its controls: on by default, each can be turned off, timed, reported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.causal.bank import PairBank, concat_banks
from core.causal.dataset import write_dataset
from core.control import JobControl
from core.errors import SpecError
from core.events import EngineEvent
from core.job import JobContext, run_job
from core.nets.io import save_net
from core.report import render_report
from core.result import JobResult
from core.spec import parse_job_spec
from tests.unit.core.planted import planted_bank, planted_mlp


def _with_copy(bank: PairBank) -> PairBank:
    labels = {**bank.counterfactual_labels, "P_copy": bank.counterfactual_labels["P"].clone()}
    return PairBank(bank.base, bank.source, bank.base_labels, labels)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("job")
    save_net(planted_mlp(), root / "nets" / "planted")
    (root / "data").mkdir()
    bank = concat_banks([planted_bank(300, seed) for seed in range(3)])
    write_dataset(root / "data" / "pairs.jsonl", bank)
    write_dataset(root / "data" / "copied.jsonl", _with_copy(bank))
    return root


def _run(roots: Path, controls: dict[str, Any] | None = None, dataset: str = "pairs.jsonl"
         ) -> tuple[JobResult, list[EngineEvent]]:
    spec: dict[str, Any] = {
        "model": {"path": "planted"}, "task": {"dataset": dataset},
        "pairs": {"fit": 250, "calibration": 250, "test": 250},
        "levels": [{"granularity": "block", "block_size": 3, "keep": 1},
                   {"granularity": "neuron"}],
        "coupling": {"epsilons": [0.01, 0.1]},
        "calibration": {"top_k": [1, 2], "strengths": [1.0, 2.0]},
    }
    if controls is not None:
        spec["controls"] = controls
    events: list[EngineEvent] = []
    context = JobContext(model_root=roots / "nets", data_root=roots / "data",
                         cache_dir=roots / "cache", device="cpu")
    return run_job(parse_job_spec(spec), context, JobControl(events.append)), events


@pytest.fixture(scope="module")
def default(roots: Path) -> tuple[JobResult, list[EngineEvent]]:
    return _run(roots)


@pytest.mark.slow
def test_controls_run_by_default_beside_the_handles(
        default: tuple[JobResult, list[EngineEvent]]) -> None:
    result, events = default
    controls = result.controls
    assert controls is not None and controls.random_net is not None
    assert controls.random_net.weights == "reinit"
    for variable, handle in result.handles.items():
        assert handle.iia_test.overall >= 0.99
        assert controls.random_net.handles[variable].iia_test.overall < 0.6
        mass = controls.label_permutation[variable]
        assert mass.kept == result.levels[handle.level].kept_by_variable[variable]
        assert mass.separated and mass.control_mass < 1.5 * mass.uniform_mass
        assert [p.location for p in controls.depth[variable]] == ["layer:1"]
    assert controls.base_accuracy == 1.0 and controls.warnings == []
    assert all(level.label_permutation and level.diagnostics for level in result.levels)
    assert any(e.kind == "control" for e in events)
    assert [e.kind for e in events][-1] == "finished"


@pytest.mark.slow
def test_the_controls_cost_is_in_the_timing(
        default: tuple[JobResult, list[EngineEvent]]) -> None:
    timing = default[0].timing
    parts = ("random_net_s", "label_permutation_s", "depth_check_s")
    assert all(timing[part] > 0 for part in parts)
    assert timing["controls_s"] == pytest.approx(sum(timing[part] for part in parts))
    assert timing["total_s"] >= timing["random_net_s"] + timing["depth_check_s"] + sum(
        level.runtime_s for level in default[0].levels)


@pytest.mark.slow
def test_the_result_round_trips_and_the_report_shows_the_controls(
        default: tuple[JobResult, list[EngineEvent]]) -> None:
    result = default[0]
    assert JobResult.model_validate(result.to_json()) == result
    assert result.controls is not None and result.controls.random_net is not None
    page = render_report(result)
    assert "<h2>Controls</h2>" in page and "random-net IIA test" in page
    control = result.controls.random_net.handles["P"].iia_test.overall
    assert f"{control:.3f}" in page
    assert "row entropy" in page and "signature cosine" in page


@pytest.mark.slow
def test_each_control_can_be_turned_off(roots: Path,
                                        default: tuple[JobResult, list[EngineEvent]]) -> None:
    result, events = _run(roots, {"random_net": False, "label_permutation": False,
                                  "depth_check": False})
    assert result.controls is None
    assert result.timing["controls_s"] == 0.0
    assert all(level.label_permutation is None for level in result.levels)
    assert all(level.diagnostics is not None for level in result.levels)  # always computed
    assert all(e.kind != "control" for e in events)
    assert "Turned off in the spec" in render_report(result)
    # the controls do not change the localization (only the verdicts they judge), and cost
    # forwards
    unjudged = {"verdict": None, "verdict_reason": None}
    assert ({v: h.model_copy(update=unjudged) for v, h in result.handles.items()}
            == {v: h.model_copy(update=unjudged) for v, h in default[0].handles.items()})
    assert all(h.verdict is None and h.verdict_reason for h in result.handles.values())
    assert result.forward_passes < default[0].forward_passes

    only_depth, _ = _run(roots, {"random_net": False, "label_permutation": False})
    assert only_depth.controls is not None and only_depth.controls.random_net is None
    assert only_depth.controls.label_permutation == {}
    assert only_depth.controls.depth.keys() == {"P", "Q"}
    assert only_depth.timing["random_net_s"] == 0.0
    page = render_report(only_depth)
    assert "<h2>Controls</h2>" in page and "<td>off</td>" in page and "layer:1</code>*" in page


@pytest.mark.slow
def test_shuffled_weights_are_a_spec_choice(roots: Path) -> None:
    result, _ = _run(roots, {"random_weights": "shuffle", "label_permutation": False,
                             "depth_check": False, "seed": 4})
    assert result.controls is not None and result.controls.random_net is not None
    assert (result.controls.random_net.weights, result.controls.random_net.seed) == (
        "shuffle", 4)
    assert all(h.iia_test.overall < 0.6 for h in result.controls.random_net.handles.values())


@pytest.mark.slow
def test_a_copied_variable_is_flagged_on_every_level(roots: Path) -> None:
    result, _ = _run(roots, {"random_net": False}, dataset="copied.jsonl")
    for level in result.levels:
        flagged = [w for w in level.warnings if "nearly identical signatures" in w]
        assert len(flagged) == 1 and flagged[0].startswith("P and P_copy have"), level.warnings
        assert "cosine 1.000" in flagged[0] and "100.0 %" in flagged[0]
    assert "P and P_copy have nearly identical signatures" in render_report(result)


@pytest.mark.parametrize(("controls", "field"), [
    ({"permutations": 0}, "controls.permutations"),
    ({"random_weights": "zeros"}, "controls.random_weights"),
    ({"random": False}, "controls.random"),
])
def test_a_bad_controls_field_is_named(controls: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_job_spec({"task": {"builtin": "hierarchical_equality"}, "controls": controls})
    assert field in str(error.value)
