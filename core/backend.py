"""Where a job's compute runs: the ``ComputeBackend`` protocol and its in-process
implementation.

The level loop asks a backend for the neural signatures of a list of sites on the fit bank,
the exact-match table of a batch of interventions on a bank, the solved knob grid of a
coupling (plans and their calibration candidates), and, after the levels, the job's DAS
trainings. ``LocalBackend`` does all four in this process; the Ray side
(``workers/ray_backend.py``) implements the same protocol with intervention actors and CPU
tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from torch import Tensor

from core.calibrate import exact_matches
from core.das_training import DasTraining, train_target
from core.engine import BankTraces, Interventions
from core.nets.base import InterventableNet
from core.plan_grid import GridProblem, PlanOutcome, solve_grid
from core.result import DasRun
from core.signatures import neural_signatures
from core.sites import Site
from core.spec import DasSpec

if TYPE_CHECKING:  # the level inputs carry a backend; train_das reads their banks
    from core.level_inputs import LevelInputs

Split = Literal["fit", "calibration", "test"]
ProgressFn = Callable[[int, int], None]  # (done, total)


class ComputeBackend(Protocol):
    """Runs one job's batched interchange interventions, coupling solves and DAS trainings."""

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        """(S, P, Y) neural signatures of ``sites`` on the fit bank."""
        ...

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None, pairs: int | None = None
                ) -> Tensor:
        """(N, P) bool: every head's argmax equals ``targets`` (P, O), per intervention.

        With ``pairs``, only the split's first ``pairs`` pairs are used (and ``targets``
        covers those).
        """
        ...

    def solve_grid(self, problem: GridProblem) -> list[PlanOutcome]:
        """Every point of ``problem``'s knob grid, in grid order, on the problem's device."""
        ...

    def train_das(self, trainings: Sequence[DasTraining], inputs: LevelInputs, spec: DasSpec,
                  seed: int, done: Callable[[int], None],
                  checkpoint: Callable[[], None] | None = None) -> list[tuple[DasRun, int]]:
        """Every training's run and forward passes, in ``trainings`` order; ``done(n)`` after
        each completion with the number finished so far; ``checkpoint`` (it raises
        ``JobCancelled`` for a cancelled job) before each training batch run here."""
        ...


@dataclass(frozen=True)
class LocalBackend:
    """The in-process backend: the net and the traced banks live here.

    Attributes:
        traces: "fit" | "calibration" | "test" -> the clean traces of the job's banks.
        max_rows: rows (intervention × pair) per stacked forward.
    """

    net: InterventableNet
    traces: dict[str, BankTraces]
    max_rows: int

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        return neural_signatures(self.net, self.traces["fit"], sites, frames, self.max_rows,
                                 progress)

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None, pairs: int | None = None
                ) -> Tensor:
        traces = self.traces[split]
        if pairs is not None:
            traces = traces.slice(0, pairs)
        return exact_matches(self.net, traces, interventions, targets, self.max_rows, progress)

    def solve_grid(self, problem: GridProblem) -> list[PlanOutcome]:
        return solve_grid(problem)

    def train_das(self, trainings: Sequence[DasTraining], inputs: LevelInputs, spec: DasSpec,
                  seed: int, done: Callable[[int], None],
                  checkpoint: Callable[[], None] | None = None) -> list[tuple[DasRun, int]]:
        """The trainings one after another in this process."""
        out = []
        for training in trainings:
            out.append(train_target(training.target, training.k, inputs, spec, seed,
                                    checkpoint))
            done(len(out))
        return out
