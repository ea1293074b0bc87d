"""A job cancelled while its built-in task's default net trains stops there and caches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.control import JobControl
from core.errors import JobCancelled
from core.job import JobContext, run_job
from core.spec import parse_job_spec


@pytest.mark.slow
def test_a_cancel_during_default_net_training_stops_it_and_caches_nothing(
        tmp_path: Path) -> None:
    polls: list[int] = []

    def cancel_on_third_poll() -> bool:
        polls.append(1)
        return len(polls) >= 3

    spec = parse_job_spec({"task": {"builtin": "hierarchical_equality"},
                           "pairs": {"fit": 64, "calibration": 64, "test": 64}})
    context = JobContext(model_root=tmp_path, data_root=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(JobCancelled) as error:
        run_job(spec, context, JobControl(should_cancel=cancel_on_third_poll))
    assert error.value.where == "model"
    assert len(polls) == 3  # polled before each training batch, stopped at the first true
    assert not list((tmp_path / "cache").rglob("model.safetensors"))
