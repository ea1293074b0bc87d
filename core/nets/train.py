"""Supervised training of a built-in net on a task's factual examples, deterministic per seed.

The loss is cross-entropy summed over the O output heads (averaged over the batch); the
stopping rule is exact-match accuracy (every head right) on a held-out sample drawn once,
from its own seeded stream, before training starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional

from core.errors import SpecError, TaskError
from core.nets.base import InterventableNet, net_device

# (n, generator) -> inputs (n, *input_shape) in net.input_dtype, labels (n, O) long
ExampleSampler = Callable[[int, torch.Generator], tuple[Tensor, Tensor]]

# Offsets the held-out stream from the training stream of the same seed.
_HELD_OUT_SEED_OFFSET = 0x5EED_0F_7E57


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation knobs; the defaults train both built-in nets (HEQ MLP, adder GRU).

    Attributes:
        lr: Adam learning rate (decayed by cosine to ``lr * min_lr_ratio`` over ``max_steps``).
        batch_size: fresh examples drawn per step.
        max_steps: the most optimiser steps.
        target_accuracy: stop once held-out exact-match accuracy reaches this ...
        target_loss: ... and the held-out loss (summed over heads) is at most this, so a
            net that just crossed the accuracy target is trained on until it is confident.
        eval_size: examples in the held-out sample.
        eval_every: steps between held-out evaluations.
        min_lr_ratio: final learning rate as a share of ``lr``.
        reinitialize: re-initialise the parameters from the seed first, so the trained net
            depends only on (config, seed, sampler) and not on how the net was built.
        threads: torch CPU threads while training (the caller's are restored after), so
            the net is the same whatever the caller's thread count (CPU float sums depend
            on how they are split); None: the caller's.
        accept_loss: the held-out loss at or under which a net that ran out of steps still
            counts as having reached its target (None: ``target_loss``). ``target_loss``
            is where training may stop early; this is what the recipe must reach.
    """

    lr: float = 3e-3
    batch_size: int = 256
    max_steps: int = 4000
    target_accuracy: float = 0.995
    target_loss: float = 0.05
    eval_size: int = 2048
    eval_every: int = 50
    min_lr_ratio: float = 0.05
    reinitialize: bool = True
    threads: int | None = 1
    accept_loss: float | None = None

    def __post_init__(self) -> None:
        positive = {
            "lr": self.lr,
            "batch_size": self.batch_size,
            "max_steps": self.max_steps,
            "eval_size": self.eval_size,
            "eval_every": self.eval_every,
        }
        for name, value in positive.items():
            if not value > 0:
                raise SpecError(f"must be positive, found {value!r}", where=f"train.{name}")
        if not 0.0 < self.target_accuracy <= 1.0:
            raise SpecError(
                f"must be in (0, 1], found {self.target_accuracy!r}", where="train.target_accuracy"
            )
        if self.threads is not None and self.threads < 1:
            raise SpecError(f"must be at least 1, found {self.threads!r}",
                            where="train.threads")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise SpecError(
                f"must be in [0, 1], found {self.min_lr_ratio!r}", where="train.min_lr_ratio"
            )


@dataclass(frozen=True)
class TrainProgress:
    """One held-out evaluation during training, passed to the progress callback.

    Attributes:
        step: optimiser steps taken so far.
        loss: the training loss of the last step (summed over heads).
        held_out_loss: the loss on the held-out sample.
        accuracy: held-out exact-match accuracy.
    """

    step: int
    loss: float
    held_out_loss: float
    accuracy: float


@dataclass(frozen=True)
class TrainReport:
    """How a training run ended.

    Attributes:
        accuracy: held-out exact-match accuracy (all O heads right) at the end.
        reached_target: whether both the accuracy and the loss target were met.
        steps: optimiser steps taken.
        seconds: wall time of the run.
        held_out_loss: the held-out loss (summed over heads) at the end.
        seed: the seed it ran with.
    """

    accuracy: float
    reached_target: bool
    steps: int
    seconds: float
    held_out_loss: float
    seed: int


def evaluate_net(net: InterventableNet, inputs: Tensor, labels: Tensor) -> tuple[float, float]:
    """Exact-match accuracy (every head's argmax equals its label) and summed-head loss.

    Args:
        net: the net, called without gradients.
        inputs: (N, *input_shape).
        labels: (N, O) class indices.

    Returns:
        (accuracy, loss).
    """
    with torch.no_grad():
        logits = net(inputs)  # (N, O, C)
        correct = (logits.argmax(dim=-1) == labels).all(dim=1)  # (N,)
        return float(correct.float().mean()), float(summed_head_loss(logits, labels))


def summed_head_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy summed over heads, averaged over the batch.

    Args:
        logits: (B, O, C).
        labels: (B, O).
    """
    per_example = functional.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), reduction="none"
    )  # (B*O,)
    return per_example.view(labels.shape).sum(dim=1).mean()


def _check_examples(net: InterventableNet, inputs: Tensor, labels: Tensor) -> None:
    """Refuse a sampler whose examples do not fit the net."""
    n = inputs.shape[0]
    if tuple(inputs.shape[1:]) != net.input_shape or inputs.dtype != net.input_dtype:
        raise TaskError(
            f"expected {net.input_dtype} (n, {net.input_shape}), found {inputs.dtype} "
            f"{tuple(inputs.shape)}",
            where="inputs",
        )
    heads, classes = net.output_shape
    if tuple(labels.shape) != (n, heads) or labels.dtype != torch.long:
        raise TaskError(
            f"expected long (n, {heads}), found {labels.dtype} {tuple(labels.shape)}",
            where="labels",
        )
    if labels.numel() and not (int(labels.min()) >= 0 and int(labels.max()) < classes):
        raise TaskError(f"class indices must lie in [0, {classes})", where="labels")


def _reset_parameters(net: InterventableNet, seed: int) -> None:
    """Re-draw every parameter from ``seed`` without touching the global RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in net.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


def train_net(
    net: InterventableNet,
    sample_examples: ExampleSampler,
    *,
    seed: int = 0,
    config: TrainConfig | None = None,
    progress: Callable[[TrainProgress], None] | None = None,
    held_out: ExampleSampler | None = None,
    checkpoint: Callable[[], None] | None = None,
) -> TrainReport:
    """Train ``net`` in place with Adam on fresh examples until the held-out target is met.

    Args:
        net: the net to train; left in eval mode with ``requires_grad`` False.
        sample_examples: draws n examples from a generator: inputs (n, *input_shape),
            labels (n, O) long (inputs in ``net.input_dtype``: token ids for a token net).
            Called with CPU generators; tensors go to the net's device.
        seed: seeds the initialisation, the training stream and the held-out stream.
        config: optimisation knobs (``TrainConfig()`` when None).
        progress: called after each held-out evaluation.
        held_out: draws the held-out sample the stopping rule is judged on, when it
            should come from another distribution than training (``sample_examples``).
        checkpoint: called before each training batch; a cancelled job's raises there.

    Returns:
        The report; ``reached_target`` is False when ``max_steps`` ran out before the
        accuracy target and the loss target (``accept_loss`` when set) were met.

    Raises:
        TaskError: the sampler's inputs or labels do not fit the net's shapes.
    """
    config = config or TrainConfig()
    caller_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _train(net, sample_examples, seed, config, progress, held_out, checkpoint)
    finally:
        torch.set_num_threads(caller_threads)


def _train(
    net: InterventableNet,
    sample_examples: ExampleSampler,
    seed: int,
    config: TrainConfig,
    progress: Callable[[TrainProgress], None] | None,
    held_out: ExampleSampler | None,
    checkpoint: Callable[[], None] | None,
) -> TrainReport:
    started = time.perf_counter()
    device = net_device(net)
    eval_inputs, eval_labels = (held_out or sample_examples)(
        config.eval_size, torch.Generator().manual_seed(seed + _HELD_OUT_SEED_OFFSET)
    )
    _check_examples(net, eval_inputs, eval_labels)
    eval_inputs, eval_labels = eval_inputs.to(device), eval_labels.to(device)
    if config.reinitialize:
        _reset_parameters(net, seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.max_steps, eta_min=config.lr * config.min_lr_ratio
    )
    net.requires_grad_(True)
    step, loss, accuracy, held_out_loss = 0, float("nan"), 0.0, float("inf")
    while step < config.max_steps:
        if checkpoint is not None:
            checkpoint()
        net.train()
        inputs, labels = sample_examples(config.batch_size, generator)
        batch_loss = summed_head_loss(net(inputs.to(device)), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        step, loss = step + 1, batch_loss.detach().item()
        if step % config.eval_every == 0 or step == config.max_steps:
            net.eval()
            accuracy, held_out_loss = evaluate_net(net, eval_inputs, eval_labels)
            if progress is not None:
                progress(TrainProgress(step, loss, held_out_loss, accuracy))
            if _met(config, accuracy, held_out_loss):
                break
    net.eval()
    net.requires_grad_(False)
    return TrainReport(
        accuracy=accuracy,
        reached_target=_met(config, accuracy, held_out_loss, final=True),
        steps=step,
        seconds=time.perf_counter() - started,
        held_out_loss=held_out_loss,
        seed=seed,
    )


def _met(config: TrainConfig, accuracy: float, held_out_loss: float,
         final: bool = False) -> bool:
    """Whether training may stop (``final``: whether the finished net reached its target)."""
    loss = config.accept_loss if final and config.accept_loss is not None else config.target_loss
    return accuracy >= config.target_accuracy and held_out_loss <= max(loss, config.target_loss)
