"""A default net that did not reach its training target is refused; a user's own net only
draws a warning. A dataset job refuses the paper pair scheme."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.causal.registry import build_task
from core.errors import DatasetError, ModelLoadError
from core.job import JobContext, net_warnings, resolve_banks, resolve_net
from core.nets.io import save_net
from core.nets.registry import build_net
from core.spec import parse_job_spec

SHORT = {"accuracy": 1.0, "held_out_loss": 0.038, "reached_target": False, "steps": 10000,
         "max_steps": 10000, "target_accuracy": 1.0, "target_loss": 0.001, "accept_loss": 0.02}


def test_a_default_net_short_of_its_target_is_refused_and_a_users_own_is_warned(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task = build_task("hierarchical_equality")
    directory = tmp_path / "nets" / "heq"
    save_net(build_net(task.default_net_config()), directory)
    (directory / "train.json").write_text(json.dumps(SHORT))
    monkeypatch.setattr("core.job.task_default_net", lambda *args, **kwargs: directory)
    context = JobContext(model_root=tmp_path, data_root=tmp_path, cache_dir=tmp_path)
    spec = parse_job_spec({"task": {"builtin": "hierarchical_equality"}, "seed": 3})
    with pytest.raises(ModelLoadError) as refused:
        resolve_net(spec, context, task)
    assert refused.value.where == "model"
    assert "seed 3" in refused.value.message and "0.038" in refused.value.message
    own = spec.model_copy(update={"model": spec.model.model_copy(update={"path": "nets/heq"})})
    _, resolved = resolve_net(own, context, task)  # a user's own net runs
    assert resolved == directory.resolve() or resolved == directory
    assert len(net_warnings(resolved)) == 1 and "0.038" in net_warnings(resolved)[0]
    (directory / "train.json").write_text(json.dumps(SHORT | {"reached_target": True}))
    resolve_net(spec, context, task)  # reached: runs
    assert net_warnings(directory) == []


def test_a_dataset_job_refuses_the_paper_scheme(tmp_path: Path) -> None:
    spec = parse_job_spec({"task": {"dataset": "pairs.jsonl"}, "model": {"path": "net"},
                           "pairs": {"scheme": "paper"}})
    context = JobContext(model_root=tmp_path, data_root=tmp_path, cache_dir=tmp_path)
    net = build_net(build_task("hierarchical_equality").default_net_config())
    with pytest.raises(DatasetError) as refused:
        resolve_banks(spec, context, None, net)
    assert refused.value.where == "pairs.scheme"
