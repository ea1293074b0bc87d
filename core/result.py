"""Results: per-level checkpoints and the whole job's result, frozen and JSON round-trippable."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.calibrate import IIA
from core.diagnostics import CouplingDiagnostics
from core.label_permutation import PermutationControl


@dataclass(frozen=True)
class HandleResult:
    """The calibrated handle of one variable at one level.

    Attributes:
        sites: site ids, strongest first; weights: their renormalised coupling weights.
        k, strength: the chosen handle size and λ; epsilon, beta: the chosen plan's knobs.
        iia_calibration: exact-match accuracy on the calibration bank (the selection score).
        iia_test: soft-handle IIA on the test bank; hard_iia_test: the plain interchange
            of the same sites.
    """

    variable: str
    level: int
    sites: list[str]
    weights: list[float]
    k: int
    strength: float
    epsilon: float | None
    beta: float | None
    iia_calibration: float
    iia_test: IIA
    hard_iia_calibration: float
    hard_iia_test: IIA

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HandleResult:
        return cls(**{**data, "iia_test": IIA(**data["iia_test"]),
                      "hard_iia_test": IIA(**data["hard_iia_test"])})


@dataclass(frozen=True)
class PlanSummary:
    epsilon: float | None
    beta: float | None
    n_iter: int
    converged: bool
    near_uniform_variables: list[str]
    variable: str | None = None  # the variable of a per-variable coupling, None when shared


@dataclass(frozen=True)
class LevelResult:
    """One progressive level: the checkpoint a restarted job resumes after.

    Attributes:
        cost: (V, S) normalised cost; coupling: (V, S) each variable's row of its chosen
            plan, normalised to a distribution over sites (0 outside a per-variable scope).
        kept: site ids the next level refines (top ``keep`` per variable, in union);
            kept_by_variable: the same per variable.
        timing: seconds spent on signatures, coupling, calibration and test evaluation,
            and on the label-permutation control (``label_permutation_s``).
        forward_passes: (pair × intervention) partial forwards run by this level.
        warnings: near-uniform rows, look-alike variables (core.diagnostics).
        diagnostics: per variable and pair of variables, how much the coupling says.
        label_permutation: per variable, its kept-site mass against permuted labels
            (None when the control is off).
    """

    index: int
    granularity: str
    variables: list[str]
    sites: list[str]
    cost: list[list[float]]
    coupling: list[list[float]]
    kept: list[str]
    kept_by_variable: dict[str, list[str]]
    handles: dict[str, HandleResult]
    plans: list[PlanSummary]
    runtime_s: float
    forward_passes: int
    timing: dict[str, float]
    warnings: list[str] = field(default_factory=list)
    diagnostics: CouplingDiagnostics | None = None
    label_permutation: dict[str, PermutationControl] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LevelResult:
        diagnostics, permutation = data.get("diagnostics"), data.get("label_permutation")
        return cls(**{
            **data,
            "handles": {v: HandleResult.from_json(h) for v, h in data["handles"].items()},
            "plans": [PlanSummary(**p) for p in data["plans"]],
            "diagnostics": (CouplingDiagnostics.from_json(diagnostics)
                            if diagnostics is not None else None),
            "label_permutation": ({v: PermutationControl(**c) for v, c in permutation.items()}
                                  if permutation is not None else None),
        })

    def summary(self) -> dict[str, Any]:
        """A small record for progress events and logs."""
        return {
            "level": self.index,
            "granularity": self.granularity,
            "sites": len(self.sites),
            "kept": self.kept,
            "runtime_s": round(self.runtime_s, 4),
            "forward_passes": self.forward_passes,
            "handles": {v: {"sites": h.sites, "iia_calibration": h.iia_calibration,
                            "iia_test": h.iia_test.overall} for v, h in self.handles.items()},
        }


@dataclass(frozen=True)
class DasRun:
    """One trained DAS subspace (the best of its restarts) for one variable.

    Attributes:
        site: ``location/das:k``; dim: k.
        iia_calibration: exact-match accuracy on the calibration bank (the selection score).
        iia_test: IIA of the hard subspace interchange on the test bank.
        epochs, loss: of the kept restart; runtime_s: all restarts, training and scoring.
        init: ``random`` or ``handle`` (the kept restart's starting basis; ``pca`` in
            results written before ``handle`` existed).
    """

    site: str
    dim: int
    variable: str
    iia_calibration: float
    iia_test: IIA
    epochs: int
    loss: float
    runtime_s: float
    init: str
    low_rank: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DasRun:
        return cls(**{**data, "iia_test": IIA(**data["iia_test"])})


@dataclass(frozen=True)
class DasResult:
    """The DAS baseline of a job (plot-method.md §6).

    Attributes:
        mode: ``full`` or ``guided``.
        runs: every (site, k, variable) trained, in training order.
        best: per variable, the run with the best calibration IIA (ties: smaller k).
        trainings: DAS fits run, restarts included.
        forward_passes: (pair) partial forwards of training epochs and scoring.
    """

    mode: str
    runs: list[DasRun]
    best: dict[str, DasRun]
    trainings: int
    forward_passes: int
    runtime_s: float

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DasResult:
        return cls(**{**data, "runs": [DasRun.from_json(r) for r in data["runs"]],
                      "best": {v: DasRun.from_json(r) for v, r in data["best"].items()}})


@dataclass(frozen=True)
class RandomNetControl:
    """The job's schedule rerun on a random net of the same architecture.

    Attributes:
        weights: ``reinit`` or ``shuffle``; seed: of the weights.
        handles: the random net's best handle per variable (chosen as the job's are: best
            calibration IIA over its levels).
        base_accuracy: share of test-bank base inputs on which the random net's output
            equals the causal model's (every head).
        runtime_s, forward_passes: of the whole rerun, traces included.
    """

    weights: str
    seed: int
    handles: dict[str, HandleResult]
    base_accuracy: float
    runtime_s: float
    forward_passes: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RandomNetControl:
        return cls(**{**data, "handles": {v: HandleResult.from_json(h)
                                          for v, h in data["handles"].items()}})


@dataclass(frozen=True)
class DepthPoint:
    """Test IIA of the plain full-vector interchange at one location, for one variable.

    ``in_handle``: the variable's handle has a site at this location.
    """

    location: str
    iia_test: float
    in_handle: bool


@dataclass(frozen=True)
class ControlsResult:
    """Controls of a job (core.controls), each None or empty when turned off.

    Attributes:
        random_net: the schedule rerun on a random net.
        label_permutation: per variable, the kept-site masses at its handle's level.
        depth: per variable, full-vector interchange IIA from its handle's earliest
            location to the last location, in forward order.
        base_accuracy: the real net's share of test base inputs matching the causal model.
        warnings: controls the real result does not clearly beat, in words.
        timing: seconds per control (``random_net_s``, ``label_permutation_s``,
            ``depth_check_s``).
    """

    random_net: RandomNetControl | None
    label_permutation: dict[str, PermutationControl]
    depth: dict[str, list[DepthPoint]]
    base_accuracy: float
    warnings: list[str]
    timing: dict[str, float]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ControlsResult:
        random_net = data["random_net"]
        return cls(**{
            **data,
            "random_net": RandomNetControl.from_json(random_net) if random_net else None,
            "label_permutation": {v: PermutationControl(**c)
                                  for v, c in data["label_permutation"].items()},
            "depth": {v: [DepthPoint(**p) for p in points]
                      for v, points in data["depth"].items()},
        })


@dataclass(frozen=True)
class JobResult:
    """A whole job: every level, the best handle per variable, timings, provenance, and the
    DAS baseline and controls when they ran."""

    variables: list[str]
    levels: list[LevelResult]
    handles: dict[str, HandleResult]
    timing: dict[str, float]
    forward_passes: int
    net: dict[str, Any]
    banks: dict[str, Any]
    spec: dict[str, Any]
    device: str
    max_rows: int
    das: DasResult | None = None
    controls: ControlsResult | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobResult:
        das, controls = data.get("das"), data.get("controls")
        return cls(**{
            **data,
            "levels": [LevelResult.from_json(level) for level in data["levels"]],
            "handles": {v: HandleResult.from_json(h) for v, h in data["handles"].items()},
            "das": DasResult.from_json(das) if das is not None else None,
            "controls": ControlsResult.from_json(controls) if controls is not None else None,
        })
