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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import torch
from torch import Tensor

from core.calibrate import exact_matches
from core.causal.bank import Banks
from core.das_training import DasTraining, train_target
from core.engine import BankTraces, Interventions, predicted_labels, trace_bank
from core.memory import fits, trace_bytes_per_example
from core.nets.base import InterventableNet, net_device
from core.pca import fit_frames
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

    @property
    def traced_rows(self) -> int:
        """Examples run through the net so far to trace the banks for a scope (every
        re-trace counted, on every process that holds the banks)."""
        ...

    def scope(self, locations: Sequence[str] | None,
              splits: Sequence[Split] | None = None) -> None:
        """Hold the banks' clean traces for ``locations`` (None: every location) from now
        on: the level's sites and any resume whose edits are among them. With ``splits``,
        only those banks need them (the others may be freed); traces already held for
        more locations are kept as they are."""
        ...

    def pca_frames(self, locations: Sequence[str]) -> dict[str, Tensor]:
        """(D, K) PCA frames of the fit bank's base and source activations at ``locations``
        (in scope)."""
        ...

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        """(S, P, Y) neural signatures of ``sites`` on the fit bank."""
        ...

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None,
                pairs: int | Tensor | None = None) -> Tensor:
        """(N, P) bool: every head's argmax equals ``targets`` (P, O), per intervention.

        With ``pairs``, only the split's first ``pairs`` pairs are used, or (a (P',) long
        index) the pairs it names, in its order; ``targets`` covers those.
        """
        ...

    def predictions(self, split: Split, interventions: Interventions,
                    progress: Callable[[int], None] | None = None) -> Tensor:
        """(N, P, O) long: every head's argmax per intervention and pair of ``split`` (what
        ``matches`` compares to one target; here scored against several)."""
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


@dataclass
class LocalBackend:
    """The in-process backend: the net and the traced banks live here.

    Attributes:
        traces: "fit" | "calibration" | "test" -> the clean traces of the job's banks; the
            same dict as the job's ``LevelInputs.traces`` (``scope`` replaces its values).
        max_rows: rows (intervention × pair) per stacked forward.
        banks: the banks ``scope`` re-traces; None: ``traces`` are final (``scope`` keeps
            them).
        budget: bytes the traces of a level may hold on the net's device (None: no bound).
            Beyond it they are kept in pinned host memory on a GPU, and on the CPU one bank
            at a time is traced, re-traced when needed again (``core.memory``).
        held: the locations the given ``traces`` were traced for, on the net's device
            (sorted; None: every location; ``[]``: none, the clean logits only).
    """

    net: InterventableNet
    traces: dict[str, BankTraces]
    max_rows: int
    banks: Banks | None = None
    budget: int | None = None
    held: list[str] | None = field(default_factory=list)
    mode: str = field(default="device", init=False)  # device | host | one bank at a time
    traced_rows: int = field(default=0, init=False)

    def scope(self, locations: Sequence[str] | None,
              splits: Sequence[Split] | None = None) -> None:
        if self.banks is None or not self.net.scoped_traces:
            return  # the traces were given, or the net keeps every location anyway
        wanted = None if locations is None else sorted(set(locations))
        needed_splits = list(self.traces) if splits is None else list(dict.fromkeys(splits))
        if self._serves(wanted) and self._traced(needed_splits):
            return  # what is held serves these locations: no re-trace
        for split, traces in self.traces.items():  # free the last scope first
            self.traces[split] = traces.without_activations()
        examples = 2 * sum(getattr(self.banks, split).size for split in needed_splits)
        needed = examples * trace_bytes_per_example(self.net, wanted)
        device = net_device(self.net)
        self.mode = ("device" if wanted is None or fits(needed, self.budget)
                     else "host" if device.type == "cuda" else "one")
        self.held = wanted
        if self.mode == "one":
            return  # traced bank by bank in ``split_traces``
        store = torch.device("cpu") if self.mode == "host" else None
        for split in needed_splits:
            self.traces[split] = trace_bank(self.net, getattr(self.banks, split),
                                            self.max_rows, wanted, store)
        self.traced_rows += examples

    def _serves(self, wanted: list[str] | None) -> bool:
        """Whether the traces held now serve ``wanted``: the same scope, or on the device
        (within the budget already) a wider one; host-held or bank-at-a-time traces are
        re-traced for a narrower scope, which may then fit the device."""
        if self.mode == "one":
            return False
        if wanted == self.held:
            return True
        covers = self.held is None or (wanted is not None and set(wanted) <= set(self.held))
        return self.mode == "device" and covers

    def _traced(self, splits: Sequence[str] | None = None) -> bool:
        return all(self.traces[split].activation_device() is not None
                   for split in (self.traces if splits is None else splits))

    def split_traces(self, split: str) -> BankTraces:
        """The traces of ``split``; with one bank at a time, the others' are dropped first."""
        traces = self.traces[split]
        if self.mode != "one" or traces.activation_device() is not None or self.banks is None:
            return traces
        for other, held in self.traces.items():
            self.traces[other] = held.without_activations()
        self.traces[split] = trace_bank(self.net, getattr(self.banks, split), self.max_rows,
                                        self.held)
        self.traced_rows += 2 * getattr(self.banks, split).size
        return self.traces[split]

    def pca_frames(self, locations: Sequence[str]) -> dict[str, Tensor]:
        fit = self.split_traces("fit")
        device = net_device(self.net)  # host-held traces derive on the host
        return {loc: frame.to(device) for loc, frame in fit_frames(fit, locations).items()}

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        return neural_signatures(self.net, self.split_traces("fit"), sites, frames,
                                 self.max_rows, progress)

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None,
                pairs: int | Tensor | None = None) -> Tensor:
        traces = self.split_traces(split)
        if isinstance(pairs, Tensor):
            traces = traces.select(pairs.cpu())  # a CPU index reads host and device traces
        elif pairs is not None:
            traces = traces.slice(0, pairs)
        return exact_matches(self.net, traces, interventions, targets, self.max_rows, progress)

    def predictions(self, split: Split, interventions: Interventions,
                    progress: Callable[[int], None] | None = None) -> Tensor:
        return predicted_labels(self.net, self.split_traces(split), interventions,
                                self.max_rows, progress)

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
