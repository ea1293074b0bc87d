"""``plot run`` admits the spec under the default limits; ``--no-limits`` lifts them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from api.cli import main
from core.nets.io import save_net
from core.nets.registry import build_net


def write_job(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_net(build_net({"arch": "mlp", "input_dim": 4, "hidden_dims": [8], "num_classes": 2}),
             tmp_path / "net")
    spec = {"model": {"path": "net"}, "task": {"dataset": "missing.jsonl"},
            "pairs": {"fit": 200_000}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_plot_run_refuses_a_spec_over_the_default_limits(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_job(tmp_path)
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "pairs.fit" in err and "200,000" in err and "max_pairs_per_bank" in err
    assert not (tmp_path / "out").exists()


def test_no_limits_lets_the_same_spec_reach_the_engine(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_job(tmp_path)
    code = main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--no-limits"])
    err = capsys.readouterr().err
    assert code == 2 and "max_pairs_per_bank" not in err
    assert "missing.jsonl" in err  # the engine got as far as reading the dataset
