"""train_net on trivially learnable tasks: reaches its target, deterministic per seed."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor
from torch.nn import functional
from torch.testing import assert_close

from core.errors import JobCancelled, SpecError, TaskError
from core.nets import (
    ExampleSampler,
    InterventableNet,
    TrainConfig,
    TrainProgress,
    build_net,
    evaluate_net,
    train_net,
)
from core.nets.train import summed_head_loss

SIGN_MLP = {"arch": "mlp", "input_dim": 2, "hidden_dims": [8], "num_classes": 2}
COPY_GRU = {"arch": "gru", "input_size": 1, "hidden_size": 6, "num_steps": 3, "num_classes": 2}
FAST = TrainConfig(lr=0.03, batch_size=64, max_steps=400, eval_size=256, eval_every=10)


def sample_sign(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Label is whether the first coordinate is positive."""
    inputs = torch.randn(n, 2, generator=generator)
    return inputs, (inputs[:, :1] > 0).long()  # (n, 1)


def sample_copy(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Head t repeats bit t; the final head repeats the last bit."""
    bits = torch.randint(2, (n, 3), generator=generator)
    labels = torch.cat([bits, bits[:, -1:]], dim=1)  # (n, 4)
    return bits.unsqueeze(-1).float(), labels


def sample_noise(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Labels independent of the inputs: no net can beat a coin."""
    return torch.randn(n, 2, generator=generator), torch.randint(2, (n, 1), generator=generator)


@pytest.mark.slow
def test_mlp_reaches_its_target_on_a_learnable_task() -> None:
    net = build_net(SIGN_MLP)
    report = train_net(net, sample_sign, seed=0, config=FAST)
    assert report.reached_target
    assert report.accuracy >= FAST.target_accuracy
    assert report.held_out_loss <= FAST.target_loss
    assert report.steps < FAST.max_steps
    fresh_accuracy, _ = evaluate_net(net, *sample_sign(2000, torch.Generator().manual_seed(9)))
    assert fresh_accuracy >= 0.98


@pytest.mark.slow
def test_gru_reaches_exact_match_over_all_heads() -> None:
    net = build_net(COPY_GRU)
    report = train_net(net, sample_copy, seed=0, config=replace(FAST, target_accuracy=1.0))
    assert report.reached_target
    every_input = torch.tensor([[(k >> t) & 1 for t in range(3)] for k in range(8)])
    inputs = every_input.unsqueeze(-1).float()
    labels = torch.cat([every_input, every_input[:, -1:]], dim=1)
    assert evaluate_net(net, inputs, labels)[0] == 1.0


@pytest.mark.slow
def test_training_is_deterministic_for_a_seed() -> None:
    nets: list[InterventableNet] = []
    for global_seed in (1, 2):  # different starting weights; the seed decides them
        torch.manual_seed(global_seed)
        nets.append(build_net(SIGN_MLP))
    reports = [train_net(net, sample_sign, seed=5, config=FAST) for net in nets]
    assert replace(reports[0], seconds=0.0) == replace(reports[1], seconds=0.0)
    for name, tensor in nets[0].state_dict().items():
        assert_close(tensor, nets[1].state_dict()[name], rtol=0, atol=0)

    other = build_net(SIGN_MLP)
    train_net(other, sample_sign, seed=6, config=FAST)
    assert not torch.equal(other.linears[0].weight, nets[0].linears[0].weight)


@pytest.mark.slow
def test_training_does_not_touch_the_global_rng() -> None:
    net = build_net(SIGN_MLP)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    train_net(net, sample_sign, seed=1, config=replace(FAST, max_steps=5))
    assert_close(torch.rand(3), expected)


@pytest.mark.slow
def test_progress_reports_every_evaluation() -> None:
    seen: list[TrainProgress] = []
    report = train_net(build_net(SIGN_MLP), sample_sign, seed=0, config=FAST, progress=seen.append)
    assert [p.step for p in seen] == list(range(10, report.steps + 1, 10))
    assert seen[-1].accuracy == report.accuracy


@pytest.mark.slow
def test_unlearnable_task_runs_out_of_steps() -> None:
    config = replace(FAST, max_steps=25)
    report = train_net(build_net(SIGN_MLP), sample_noise, seed=0, config=config)
    assert not report.reached_target
    assert report.steps == 25


@pytest.mark.slow
def test_trained_net_is_left_frozen_in_eval_mode() -> None:
    net = build_net(SIGN_MLP)
    net.requires_grad_(False)  # as load_net leaves it: training must still work
    report = train_net(net, sample_sign, seed=0, config=FAST)
    assert report.reached_target
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_summed_head_loss_adds_the_heads() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 2, generator=generator)
    labels = torch.randint(2, (4, 3), generator=generator)
    per_head = [functional.cross_entropy(logits[:, o], labels[:, o]) for o in range(3)]
    assert_close(summed_head_loss(logits, labels), torch.stack(per_head).sum())


@pytest.mark.parametrize(
    ("sampler", "where"),
    [
        (lambda n, g: (torch.randn(n, 3, generator=g), torch.zeros(n, 1).long()), "inputs"),
        (lambda n, g: (torch.randn(n, 2, generator=g), torch.zeros(n).long()), "labels"),
        (lambda n, g: (torch.randn(n, 2, generator=g), torch.zeros(n, 1)), "labels"),
        (lambda n, g: (torch.randn(n, 2, generator=g), torch.full((n, 1), 2)), "labels"),
    ],
)
def test_sampler_that_does_not_fit_the_net_is_a_task_error(
    sampler: ExampleSampler, where: str
) -> None:
    with pytest.raises(TaskError) as caught:
        train_net(build_net(SIGN_MLP), sampler, seed=0, config=FAST)
    assert caught.value.where == where


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"lr": 0.0}, "train.lr"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"target_accuracy": 1.5}, "train.target_accuracy"),
        ({"min_lr_ratio": -0.1}, "train.min_lr_ratio"),
        ({"threads": 0}, "train.threads"),
    ],
)
def test_bad_train_config_names_the_field(changes: dict[str, float], where: str) -> None:
    with pytest.raises(SpecError) as caught:
        TrainConfig(**changes)  # type: ignore[arg-type]
    assert caught.value.where == where


def test_the_checkpoint_runs_before_every_batch_and_can_stop_training() -> None:
    calls: list[int] = []

    def stop_at_fifth() -> None:
        calls.append(1)
        if len(calls) == 5:
            raise JobCancelled("cancelled", "model")

    with pytest.raises(JobCancelled):
        train_net(build_net(SIGN_MLP), sample_sign, seed=0, config=FAST,
                  checkpoint=stop_at_fifth)
    assert len(calls) == 5  # four batches trained, the fifth never started


def test_training_runs_on_its_own_thread_count_and_restores_the_callers() -> None:
    seen: list[int] = []

    def sample(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        seen.append(torch.get_num_threads())
        return sample_sign(n, generator)

    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        train_net(build_net(SIGN_MLP), sample, seed=0, config=replace(FAST, max_steps=3))
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        train_net(build_net(SIGN_MLP), sample, seed=0,
                  config=replace(FAST, max_steps=3, threads=None))
        assert set(seen) == {2}  # threads None: the caller's
    finally:
        torch.set_num_threads(caller)


def test_accept_loss_judges_a_net_that_ran_out_of_steps() -> None:
    strict = replace(FAST, max_steps=40, target_accuracy=0.5, target_loss=1e-6)
    report = train_net(build_net(SIGN_MLP), sample_sign, seed=0, config=strict)
    assert report.steps == 40 and not report.reached_target
    accepting = replace(strict, accept_loss=report.held_out_loss + 1e-6)
    again = train_net(build_net(SIGN_MLP), sample_sign, seed=0, config=accepting)
    assert again.steps == 40 and again.reached_target  # the same run, judged on accept_loss
    assert again.held_out_loss == report.held_out_loss
