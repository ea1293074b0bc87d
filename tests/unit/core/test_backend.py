"""LocalBackend: the in-process ComputeBackend, and the level loop and DAS reaching their
compute only through ``LevelInputs.backend``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor

from core.backend import ComputeBackend, LocalBackend, ProgressFn, Split
from core.calibrate import exact_matches
from core.causal.bank import Banks
from core.das_search import run_das
from core.das_training import DasTarget, DasTraining, train_target
from core.engine import Interventions, trace_bank
from core.level_inputs import LevelInputs
from core.plan_grid import GridProblem, PlanOutcome, grid_problem, solve_grid
from core.progressive import run_levels
from core.result import DasRun
from core.signatures import neural_signatures
from core.sites import Site, location_sites, neuron_sites
from core.spec import CalibrationSpec, CouplingSpec, DasSpec, LevelSpec
from tests.unit.core.planted import planted_level_inputs
from tests.unit.core.planted_rotated import planted_rotated_bank, planted_rotated_mlp


@dataclasses.dataclass
class CountingBackend:
    """A ComputeBackend that counts the calls it forwards to a LocalBackend."""

    inner: LocalBackend
    calls: dict[str, int] = dataclasses.field(default_factory=dict)

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    @property
    def traced_rows(self) -> int:
        return self.inner.traced_rows

    def scope(self, locations: Sequence[str] | None,
              splits: Sequence[Split] | None = None) -> None:
        self._count("scope")
        self.inner.scope(locations, splits)

    def pca_frames(self, locations: Sequence[str]) -> dict[str, Tensor]:
        self._count("pca_frames")
        return self.inner.pca_frames(locations)

    def signatures(self, sites: Sequence[Site], frames: dict[str, Tensor],
                   progress: ProgressFn | None = None) -> Tensor:
        self._count("signatures")
        return self.inner.signatures(sites, frames, progress)

    def matches(self, split: Split, interventions: Interventions, targets: Tensor,
                progress: Callable[[int], None] | None = None, pairs: int | None = None
                ) -> Tensor:
        self._count("matches")
        return self.inner.matches(split, interventions, targets, progress, pairs)

    def predictions(self, split: Split, interventions: Interventions,
                    progress: Callable[[int], None] | None = None) -> Tensor:
        self._count("predictions")
        return self.inner.predictions(split, interventions, progress)

    def solve_grid(self, problem: GridProblem) -> list[PlanOutcome]:
        self._count("solve_grid")
        return self.inner.solve_grid(problem)

    def train_das(self, trainings: Sequence[DasTraining], inputs: LevelInputs, spec: DasSpec,
                  seed: int, done: Callable[[int], None],
                  checkpoint: Callable[[], None] | None = None) -> list[tuple[DasRun, int]]:
        self._count("train_das")
        return self.inner.train_das(trainings, inputs, spec, seed, done, checkpoint)


def counting(inputs: LevelInputs) -> tuple[LevelInputs, CountingBackend]:
    backend = CountingBackend(LocalBackend(inputs.net, inputs.traces, inputs.max_rows))
    return dataclasses.replace(inputs, backend=backend), backend


@pytest.fixture(scope="module")
def planted() -> LevelInputs:
    return planted_level_inputs(64, top_k=[1, 2], strengths=[1.0])


def test_level_inputs_local_run_in_this_process_on_their_own_net(planted: LevelInputs) -> None:
    backend = planted.backend
    assert isinstance(backend, LocalBackend)
    assert backend.net is planted.net and backend.traces is planted.traces
    assert backend.max_rows == planted.max_rows
    protocol: ComputeBackend = backend  # LocalBackend has the protocol's four methods
    assert protocol is backend


def test_local_signatures_are_the_fit_bank_neural_signatures(planted: LevelInputs) -> None:
    sites = neuron_sites(location_sites(planted.net.widths))
    got = planted.backend.signatures(sites, {})
    want = neural_signatures(planted.net, planted.traces["fit"], sites, {}, planted.max_rows)
    assert got.shape == (len(sites), 64, 4)
    torch.testing.assert_close(got, want)


def test_local_matches_use_the_split_and_only_its_first_pairs(planted: LevelInputs) -> None:
    plan = Interventions({"layer:1": torch.rand(5, 6, generator=torch.Generator().manual_seed(1))},
                         {})
    targets = planted.banks.test.counterfactual_labels["P"]
    full = planted.backend.matches("test", plan, targets)
    want = exact_matches(planted.net, planted.traces["test"], plan, targets, planted.max_rows)
    assert full.shape == (5, 64) and torch.equal(full, want)
    first = planted.backend.matches("test", plan, targets[:10], pairs=10)
    assert torch.equal(first, full[:, :10])
    fit = planted.backend.matches("fit", plan, planted.banks.fit.counterfactual_labels["P"])
    assert not torch.equal(fit, full)  # another bank


def test_local_solve_grid_is_the_in_process_grid(planted: LevelInputs) -> None:
    signatures = torch.rand(7, 30, 4, generator=torch.Generator().manual_seed(0))
    cost = torch.rand(3, 7, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    problem = grid_problem(cost, signatures, CouplingSpec(epsilons=[0.05, 0.5]),
                           CalibrationSpec(), variables=2)
    got, want = planted.backend.solve_grid(problem), solve_grid(problem)
    assert len(got) == 2
    for mine, theirs in zip(got, want, strict=True):
        torch.testing.assert_close(mine.coupling.plan, theirs.coupling.plan)
        assert mine.candidates == theirs.candidates


def test_local_train_das_trains_in_order_and_reports_each_completion() -> None:
    net = planted_rotated_mlp()
    banks = Banks(*(planted_rotated_bank(64, seed) for seed in range(3)))
    traces = {s: trace_bank(net, getattr(banks, s)) for s in ("fit", "calibration", "test")}
    inputs = LevelInputs.local(net, banks, traces, CouplingSpec(), CalibrationSpec(), 50_000)
    spec = DasSpec(mode="full", dims=[1, 2], max_epochs=2, batch_size=32)
    trainings = [DasTraining(DasTarget("Q", "layer:1", (1, 2)), k) for k in (2, 1)]
    done: list[int] = []
    runs = inputs.backend.train_das(trainings, inputs, spec, 3, done.append)
    assert done == [1, 2]
    assert [run.site for run, _ in runs] == ["layer:1/das:2", "layer:1/das:1"]
    want, passes = train_target(trainings[1].target, 1, inputs, spec, 3)
    assert runs[1][1] == passes
    assert (runs[1][0].iia_calibration, runs[1][0].epochs) == (want.iia_calibration,
                                                               want.epochs)


def test_das_trains_through_the_job_backend() -> None:
    net = planted_rotated_mlp()
    banks = Banks(*(planted_rotated_bank(64, seed) for seed in range(3)))
    traces = {s: trace_bank(net, getattr(banks, s)) for s in ("fit", "calibration", "test")}
    inputs, backend = counting(LevelInputs.local(net, banks, traces, CouplingSpec(),
                                                 CalibrationSpec(), 50_000))
    spec = DasSpec(mode="full", dims=[1], max_epochs=1, min_epochs=1, batch_size=32)
    result = run_das(spec, inputs, [])
    assert backend.calls == {"train_das": 1}  # one call with every training
    assert result.trainings == 2 * 2  # locations × variables


def test_a_level_runs_its_batched_work_only_on_the_backend(planted: LevelInputs) -> None:
    inputs, backend = counting(planted)
    run_levels([LevelSpec(granularity="neuron")], inputs)
    # one signatures call per level, one grid per coupling group and cost kind, matches per
    # variable
    kinds = len(planted.coupling.cost)
    assert kinds == 2  # the default: mse and cosine
    assert backend.calls["signatures"] == 1 and backend.calls["solve_grid"] == kinds
    assert backend.calls["matches"] >= 2 * 3  # candidates, then soft test, hard cal, hard test
    assert "train_das" not in backend.calls
