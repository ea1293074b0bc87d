"""One DAS training (plot-method.md §6): a (location, k, variable) target, its restarts, the
best on the calibration bank, then tested. The unit of work a compute backend trains."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from torch import Tensor

from core.das import DasConfig, DasFit, das_iia, train_das
from core.result import DasRun
from core.spec import DasSpec

if TYPE_CHECKING:  # the level inputs carry the backend that trains these
    from core.level_inputs import LevelInputs


@dataclass(frozen=True)
class DasTarget:
    """Where to train for one variable: a location, the ranks to try, a starting frame.

    Attributes:
        init: (D, K0) orthonormal frame the first restart starts from, or None (random).
    """

    variable: str
    location: str
    dims: tuple[int, ...]
    init: Tensor | None = None


@dataclass(frozen=True)
class DasTraining:
    """One (target, k) to train: ``restarts`` fits, the best on calibration, then tested."""

    target: DasTarget
    k: int


def das_config(spec: DasSpec, seed: int) -> DasConfig:
    """The training knobs of a DasSpec."""
    return DasConfig(max_epochs=spec.max_epochs, min_epochs=spec.min_epochs, lr=spec.lr,
                     batch_size=spec.batch_size, patience=spec.patience,
                     rel_delta=spec.rel_delta, rank=spec.rank,
                     low_rank_above=spec.low_rank_above, seed=seed)


def train_target(target: DasTarget, k: int, inputs: LevelInputs, spec: DasSpec, seed: int,
                 checkpoint: Callable[[], None] | None = None) -> tuple[DasRun, int]:
    """Train ``spec.restarts`` fits of one (location, k, variable); keep the best on the
    calibration bank and test it.

    Returns:
        The run and the (pair) partial forwards it spent.
    """
    started = time.perf_counter()
    net, traces = inputs.net, inputs.traces
    device = traces["fit"].base.logits.device
    calibration, test = inputs.banks.calibration.to(device), inputs.banks.test.to(device)
    targets = inputs.banks.fit.counterfactual_labels[target.variable]
    best: tuple[float, DasFit, str] | None = None
    passes = 0
    for restart in range(spec.restarts):
        init = target.init if restart == 0 else None
        config = replace(das_config(spec, seed), seed=seed + restart)
        fit = train_das(net, traces["fit"], targets, target.location, k, config, init,
                        checkpoint)
        score = das_iia(net, traces["calibration"], calibration, target.variable, fit,
                        inputs.max_rows).overall
        passes += fit.forward_passes + calibration.size
        if best is None or score > best[0]:
            best = (score, fit, "random" if init is None else "handle")
    assert best is not None  # restarts >= 1 (DasSpec)
    score, fit, init_kind = best
    tested = das_iia(net, traces["test"], test, target.variable, fit, inputs.max_rows)
    passes += test.size
    run = DasRun(site=f"{target.location}/das:{k}", dim=k, variable=target.variable,
                 iia_calibration=score, iia_test=tested, epochs=fit.epochs, loss=fit.loss,
                 runtime_s=time.perf_counter() - started, init=init_kind,
                 low_rank=fit.low_rank)
    return run, passes
