"""run_job with DAS after the PLOT levels: events, timing, result and its JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.causal.dataset import write_dataset
from core.control import JobControl
from core.events import EngineEvent
from core.job import JobContext, run_job
from core.nets.io import save_net
from core.report import render_report
from core.result import JobResult
from core.spec import parse_job_spec
from tests.unit.core.planted_rotated import planted_rotated_bank, planted_rotated_mlp

pytestmark = pytest.mark.slow  # each test runs a whole job (on a planted net)


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("job")
    save_net(planted_rotated_mlp(), root / "nets" / "rotated")
    (root / "data").mkdir()
    write_dataset(root / "data" / "pairs.jsonl", planted_rotated_bank(600, 0))
    return root


def _spec(mode: str) -> dict[str, object]:
    return {
        "model": {"path": "rotated"},
        "task": {"dataset": "pairs.jsonl"},
        "pairs": {"fit": 200, "calibration": 200, "test": 200},
        "levels": [{"granularity": "layer", "keep": 1}],
        "coupling": {"epsilons": [0.1]},
        "calibration": {"top_k": [1], "strengths": [1.0]},
        "das": {"mode": mode, "dims": [1, 2], "lr": 0.05, "batch_size": 64, "max_epochs": 10},
    }


def _run(roots: Path, mode: str) -> tuple[JobResult, list[EngineEvent]]:
    events: list[EngineEvent] = []
    context = JobContext(model_root=roots / "nets", data_root=roots / "data",
                         cache_dir=roots / "cache", device="cpu")
    return run_job(parse_job_spec(_spec(mode)), context, JobControl(events.append)), events


def test_job_runs_full_das_after_the_levels(roots: Path) -> None:
    result, events = _run(roots, "full")
    assert result.das is not None and result.das.mode == "full"
    assert result.das.trainings == 2 * 2 * 2  # locations × ks × variables
    assert result.das.best["P"].site == "layer:1/das:2"
    assert result.das.best["Q"].site == "layer:1/das:1"
    assert result.das.best["P"].iia_test.overall >= 0.99
    progress = [e.data for e in events if e.kind == "das"]
    assert progress[0]["done"] == 0 and progress[-1] == {"mode": "full", "done": 8, "total": 8}
    assert [e.kind for e in events].index("das") > [e.kind for e in events].index(
        "level_finished")
    assert result.timing["das_s"] > 0
    assert JobResult.model_validate(result.to_json()) == result
    page = render_report(result)
    assert "DAS (full)" in page and "layer:1/das:2" in page


def test_job_without_das_has_no_das_result(roots: Path) -> None:
    result, events = _run(roots, "off")
    assert result.das is None and result.timing["das_s"] == 0.0
    assert "DAS (" not in render_report(result)
    assert all(e.kind != "das" for e in events)


def test_guided_job_trains_only_at_the_kept_location(roots: Path) -> None:
    result, _ = _run(roots, "guided")
    assert result.das is not None
    kept = result.levels[-1].kept_by_variable  # one location per variable (keep 1, layer level)
    assert result.das.widened == {}  # whole-layer handles are not judged weak guides
    assert result.das.trainings == 2 * len(result.variables)  # ks 1, 2 at that one location
    for run in result.das.runs:
        assert [run.site.split("/")[0]] == kept[run.variable]
