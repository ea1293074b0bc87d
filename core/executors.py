"""Where a level's batched intervention work runs.

The level loop asks an ``InterventionExecutor`` for three things: the neural signatures of
a list of sites on the fit bank, the exact-match table of a batch of interventions on a
bank, and the solved knob grid of a coupling (plans and their calibration candidates).
``LocalExecutor`` does all three in this process; the Ray side (``workers/``) implements
the same protocol with intervention actors and CPU tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from torch import Tensor

from core.calibrate import exact_matches
from core.engine import BankTraces, Interventions
from core.nets.base import InterventableNet
from core.plan_grid import GridProblem, PlanOutcome, solve_grid
from core.signatures import neural_signatures
from core.sites import Site

Split = Literal["fit", "calibration", "test"]
ProgressFn = Callable[[int, int], None]


class InterventionExecutor(Protocol):
    """Runs batched interchange interventions and coupling solves for one job."""

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


@dataclass(frozen=True)
class LocalExecutor:
    """The in-process executor: the net and the traced banks live here."""

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
