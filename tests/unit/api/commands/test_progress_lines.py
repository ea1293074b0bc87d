"""Plain progress lines of ``plot run`` / ``plot train`` when stdout is not a terminal, the
training ETA, and the warning about a net that stopped short of its training target."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from api.cli import main
from api.commands.progress_lines import ProgressLines, StepRate, format_duration
from core.causal.registry import build_task
from core.events import EngineEvent
from core.nets import build_net
from core.nets.io import save_net

SMALL = {"pairs": {"fit": 200, "calibration": 200, "test": 200},
         "calibration": {"top_k": [1, 2, 4], "strengths": [1.0, 2.0]},
         "coupling": {"epsilons": [0.1]}}


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _seeded_heq_net(folder: Path) -> Path:
    """A net of the HEQ default architecture with seeded weights: a job runs on it in
    seconds (its handles are poor, which these tests do not look at)."""
    torch.manual_seed(0)
    return save_net(build_net(build_task("hierarchical_equality", {}).default_net_config()),
                    folder / "heq")


def _run_small_job(tmp_path: Path, net: Path) -> int:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SMALL, "model": {"path": net.name},
                                    "task": {"builtin": "hierarchical_equality"},
                                    "levels": [{"granularity": "neuron"}]}))
    return main(["run", str(spec), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--model-root", str(net.parent)])


def _positions(text: str, needles: list[str]) -> Iterator[int]:
    for needle in needles:
        assert needle in text, f"{needle!r} missing from:\n{text}"
        yield text.index(needle)


def test_run_prints_plain_lines_in_order_when_stdout_is_not_a_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_small_job(tmp_path, _seeded_heq_net(tmp_path)) == 0
    out = capsys.readouterr().out
    order = ["pairs traced (fit 200, calibration 200, test 200)",
             "level 0 (neuron) started: 48 sites\n",
             "level 0 signatures: ",
             "level 0 calibrated WX: top ",
             "level 0 finished in ",
             "job finished in ",
             "PLOT handles",
             f"wrote {tmp_path / 'out' / 'result.json'}"]
    positions = list(_positions(out, order))
    assert positions == sorted(positions)
    assert "\x1b" not in out  # no ANSI escape anywhere, tables included
    assert "reached_target" not in out  # the net has no train.json: nothing to warn about


def test_a_net_short_of_its_training_target_is_warned_about_by_its_train_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _seeded_heq_net(tmp_path)
    (net / "train.json").write_text(json.dumps({"accuracy": 0.61, "held_out_loss": 0.93,
                                                "reached_target": False, "steps": 4000}))
    assert _run_small_job(tmp_path, net) == 0
    out = capsys.readouterr().out
    warning = (f"warning: {net / 'train.json'} says reached_target: false (held-out accuracy "
               "0.6100, held-out loss 0.9300, steps 4000)")
    assert warning in out
    assert out.index(warning) < out.index("PLOT handles")  # before the results


def test_the_warning_names_the_targets_train_json_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _seeded_heq_net(tmp_path)
    (net / "train.json").write_text(json.dumps({
        "accuracy": 1.0, "held_out_loss": 0.0294, "reached_target": False, "steps": 10000,
        "target_accuracy": 1.0, "target_loss": 0.001, "max_steps": 10000}))
    assert _run_small_job(tmp_path, net) == 0
    assert ("(held-out accuracy 1.0000 (target 1.0000), held-out loss 0.0294 (target 0.0010), "
            "steps 10000 (of 10000))") in capsys.readouterr().out


def test_a_net_that_reached_its_target_gets_no_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = _seeded_heq_net(tmp_path)
    (net / "train.json").write_text(json.dumps({"accuracy": 1.0, "reached_target": True}))
    assert _run_small_job(tmp_path, net) == 0
    assert "reached_target" not in capsys.readouterr().out


def test_the_eta_follows_the_observed_step_rate() -> None:
    clock = FakeClock()
    rate = StepRate(clock)
    assert rate.seconds_left(200, 10_000) is None  # the first report starts the clock
    clock.now = 8.0
    assert rate.seconds_left(1000, 10_000) == pytest.approx(90.0)  # 800 steps / 8 s: 100/s
    clock.now = 12.0
    assert rate.seconds_left(1000, 10_000) == pytest.approx(9000 * 12.0 / 800)
    assert rate.seconds_left(10_000, 10_000) == 0.0


def test_durations_read_in_seconds_minutes_and_hours() -> None:
    assert [format_duration(s) for s in (0.2, 59.0, 90.0, 3599.5, 3725.0)] == [
        "1 s", "59 s", "1 min 30 s", "1 h 00 min", "1 h 02 min"]


def test_training_lines_carry_the_step_the_held_out_figures_and_the_eta() -> None:
    clock, lines = FakeClock(), []
    sink = ProgressLines(lines.append, clock)

    def report(done: int, at: float, **figures: object) -> None:
        clock.now = at
        sink(EngineEvent("progress", {"stage": "training", "done": done, "total": 10_000,
                                      **figures}))

    report(0, 0.0)
    report(50, 0.5, accuracy=0.5, held_out_loss=1.2)  # 0.5 % and 0.5 s: no line yet
    report(1000, 10.0, accuracy=0.9, held_out_loss=0.25)  # 100 steps/s: 90 s left
    report(10_000, 100.0, accuracy=1.0, held_out_loss=0.03)  # the last evaluation ...
    clock.now = 100.1
    sink(EngineEvent("progress", {"stage": "training", "done": 10_000, "total": 10_000,
                                  "accuracy": 1.0, "held_out_loss": 0.03,
                                  "reached_target": False}))  # ... then the verdict
    assert lines == [
        "training the default net: step 0/10000 (0 %)",
        "training the default net: step 1000/10000 (10 %), held-out accuracy 0.9000, "
        "loss 0.2500, ETA at most 1 min 30 s",
        "training the default net: step 10000/10000 (100 %), held-out accuracy 1.0000, "
        "loss 0.0300, target NOT reached",
    ]


def test_stage_lines_come_every_tenth_at_most_every_two_seconds_and_on_a_heartbeat() -> None:
    clock, lines = FakeClock(), []
    sink = ProgressLines(lines.append, clock)

    def report(done: int, at: float) -> None:
        clock.now = at
        sink(EngineEvent("progress", {"level": 1, "stage": "signatures", "done": done,
                                      "total": 100}))

    report(5, 0.0)  # the first report of a stage
    report(30, 1.0)  # a quarter further but only 1 s later
    report(31, 2.5)  # 2 s later and a quarter further
    report(32, 3.0)
    report(33, 40.0)  # barely further, but silent for 30 s
    report(100, 40.1)  # the end of the stage
    report(100, 40.2)  # the same line again
    assert lines == [f"level 1 signatures: {n}/100 ({n} %)" for n in (5, 31, 33, 100)]


@pytest.mark.slow
def test_train_prints_its_steps_and_its_verdict_and_warns_when_short_of_target(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net = tmp_path / "heq"
    assert main(["train", "hierarchical_equality", "--out", str(net)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("training the default net: step 0/10000 (0 %)\n")
    assert re.search(r"step \d+/10000 \(\d+ %\), held-out accuracy [\d.]+, loss [\d.]+, "
                     r"ETA at most \d", out)
    verdict = re.search(r"step (\d+)/\1 \(100 %\), held-out accuracy [\d.]+, loss [\d.]+, "
                        r"target (NOT )?reached\n", out)
    assert verdict is not None, out
    record = json.loads((net / "train.json").read_text())
    assert int(verdict.group(1)) == record["steps"]
    assert (verdict.group(2) is None) == record["reached_target"]
    assert (f"{net / 'train.json'} says reached_target: false" in out) == (
        not record["reached_target"])
    assert "\x1b" not in out
