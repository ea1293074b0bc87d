"""run_job over a dataset file: its errors name the dataset as the spec does (relative to
the data root), never as a server path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.control import JobControl
from core.errors import DatasetError
from core.job import JobContext, run_job
from core.nets.io import save_net
from core.spec import parse_job_spec
from tests.unit.core.planted import planted_mlp


def test_a_bad_row_is_named_relative_to_the_data_root(tmp_path: Path) -> None:
    save_net(planted_mlp(), tmp_path / "nets" / "planted")
    (tmp_path / "data" / "sets").mkdir(parents=True)
    row = {"base": [0.0], "source": [0.0], "base_label": 0, "counterfactual_labels": {"P": 0}}
    (tmp_path / "data" / "sets" / "bad.jsonl").write_text(json.dumps(row) + "\n")
    spec = parse_job_spec({"model": {"path": "planted"}, "task": {"dataset": "sets/bad.jsonl"}})
    context = JobContext(model_root=tmp_path / "nets", data_root=tmp_path / "data",
                         cache_dir=tmp_path / "cache", device="cpu")
    with pytest.raises(DatasetError) as refused:
        run_job(spec, context, JobControl(lambda event: None))
    assert refused.value.where == "sets/bad.jsonl:1"
    assert str(tmp_path) not in str(refused.value)
