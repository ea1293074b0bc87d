"""Results: per-level checkpoints and the whole job's result, frozen pydantic models.

``model_validate`` reads a stored result (older ones too) and ``to_json`` writes one. JSON has
no NaN or infinity, so a non-finite float is written as null and read back as NaN, here and
nowhere else (``ResultModel``). Results hold lists, never tensors.
"""

from __future__ import annotations

import html
import math
import types
from dataclasses import is_dataclass
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)
from pydantic.dataclasses import dataclass

from core.calibrate import IIA
from core.diagnostics import CouplingDiagnostics
from core.label_permutation import PermutationControl

# A float that JSON holds as null when it is NaN or infinite (the schema says so).
Real = Annotated[float, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "null"}]})]
# Optional floats (``float | None``) are null when missing or non-finite: read back as None.

_NO_EXTRA = ConfigDict(extra="forbid")


def to_finite(document: Any) -> Any:
    """``document`` (JSON-like: dicts, lists, scalars) with non-finite floats as None."""
    if isinstance(document, float):
        return document if math.isfinite(document) else None
    if isinstance(document, dict):
        return {key: to_finite(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [to_finite(value) for value in document]
    return document


@cache
def _field_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _restore_nan(hint: Any, value: Any) -> Any:
    """``value`` as read from JSON for a field typed ``hint``: a null float becomes NaN
    (through lists, dicts, optionals and dataclasses; a nested ResultModel does its own)."""
    if value is None:
        return math.nan if hint is float else None
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        return _restore_nan(inner[0], value) if len(inner) == 1 else value
    if isinstance(value, dict) and isinstance(hint, type) and is_dataclass(hint):
        hints = _field_hints(hint)
        return {key: _restore_nan(hints.get(key), item) for key, item in value.items()}
    if isinstance(value, dict) and origin is dict:
        return {key: _restore_nan(args[1], item) for key, item in value.items()}
    if isinstance(value, list) and origin is list:
        return [_restore_nan(args[0], item) for item in value]
    return value


class ResultModel(BaseModel):
    """Frozen, no unknown fields; non-finite floats are null in JSON and NaN in Python."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _nan_for_null(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        hints = _field_hints(cls)
        return {key: _restore_nan(hints.get(key), value) for key, value in data.items()}

    # No return annotation on purpose: pydantic then keeps each model's own schema for its
    # JSON output (an annotation, even Any, would replace it in the OpenAPI).
    @model_serializer(mode="wrap")
    def _null_for_non_finite(  # type: ignore[no-untyped-def]
            self, handler: SerializerFunctionWrapHandler, info: SerializationInfo):
        document = handler(self)
        return to_finite(document) if info.mode_is_json() else document

    def to_json(self) -> dict[str, Any]:
        """The JSON document (``model_dump(mode="json")``): storable as is."""
        return self.model_dump(mode="json")


class HandleResult(ResultModel):
    """The calibrated handle of one variable at one level.

    Attributes:
        sites: site ids, strongest first; weights: their renormalised coupling weights.
        k, strength: the chosen handle size and λ; epsilon, beta: the chosen plan's knobs.
        iia_calibration: exact-match accuracy on the calibration bank (the selection score).
        iia_test: soft-handle IIA on the test bank; hard_iia_test: the plain interchange
            of the same sites.
        cost_kind: the cost kind the handle's plan was solved on, chosen on the calibration
            bank with the other knobs (None in results written before the choice existed).
        verdict: ``localized``, ``not_identifiable``, ``no_better_than_control`` or
            ``output_copy`` (``core.verdict``); None where the controls that judge it did
            not run, or in results written before verdicts; verdict_reason: why, in words.
    """

    variable: str
    level: int
    sites: list[str]
    weights: list[Real]
    k: int
    strength: Real
    epsilon: float | None
    beta: float | None
    iia_calibration: Real
    iia_test: IIA
    hard_iia_calibration: Real
    hard_iia_test: IIA
    cost_kind: str | None = None
    verdict: str | None = None
    verdict_reason: str | None = None


# PlanSummary and DepthPoint are pydantic dataclasses: the engine builds them positionally.
@dataclass(frozen=True, config=_NO_EXTRA)
class PlanSummary:
    """One solved plan of a level: its knobs, whether it converged, its near-uniform rows."""

    epsilon: float | None
    beta: float | None
    n_iter: int
    converged: bool
    near_uniform_variables: list[str]
    variable: str | None = None  # the variable of a per-variable coupling, None when shared
    cost_kind: str | None = None  # the plan's cost kind (None in results before the choice)


class LevelResult(ResultModel):
    """One progressive level: the checkpoint a restarted job resumes after.

    Attributes:
        cost: (V, S) normalised cost, each variable's row of the cost kind its handle chose;
            coupling: (V, S) each variable's row of its chosen plan, normalised to a
            distribution over sites (0 outside a per-variable scope).
        kept: site ids the next level refines (top ``keep`` per variable, in union);
            kept_by_variable: the same per variable.
        timing: seconds spent tracing the banks for the level (``trace_s``), on
            signatures, coupling, calibration and test evaluation,
            and on the label-permutation control (``label_permutation_s``).
        forward_passes: (pair × intervention) partial forwards run by this level.
        warnings: near-uniform rows, look-alike variables (core.diagnostics).
        diagnostics: per variable and pair of variables, how much the coupling says.
        label_permutation: per variable, its kept-site mass against permuted labels
            (None when the control is off).
        site_labels: site id -> display label, for the sites of a token net: the id, then
            the token its position holds in (most of) the bank, quoted (``resid:3/pos:7
            "Paris"``; the id alone where the token varies). Empty for other nets and in
            results written before it existed: show ``site_labels.get(id, id)``.
    """

    index: int
    granularity: str
    variables: list[str]
    sites: list[str]
    cost: list[list[Real]]
    coupling: list[list[Real]]
    kept: list[str]
    kept_by_variable: dict[str, list[str]]
    handles: dict[str, HandleResult]
    plans: list[PlanSummary]
    runtime_s: Real
    forward_passes: int
    timing: dict[str, Real]
    warnings: list[str] = Field(default_factory=list)
    diagnostics: CouplingDiagnostics | None = None
    label_permutation: dict[str, PermutationControl] | None = None
    site_labels: dict[str, str] = Field(default_factory=dict)

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


class DasRun(ResultModel):
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
    iia_calibration: Real
    iia_test: IIA
    epochs: int
    loss: Real
    runtime_s: Real
    init: str
    low_rank: bool


class DasResult(ResultModel):
    """The DAS baseline of a job (plot-method.md §6).

    Attributes:
        mode: ``full`` or ``guided``.
        runs: every (site, k, variable) trained, in training order.
        best: per variable, the run with the best calibration IIA (ties: smaller k).
        trainings: DAS fits run, restarts included.
        forward_passes: (pair) partial forwards of training epochs and scoring.
        widened: guided: per variable whose search widened beyond PLOT's locations, why
            (``core.das_search.widen_reason``).
    """

    mode: str
    runs: list[DasRun]
    best: dict[str, DasRun]
    trainings: int
    forward_passes: int
    runtime_s: Real
    widened: dict[str, str] = Field(default_factory=dict)


class RandomNetControl(ResultModel):
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
    base_accuracy: Real
    runtime_s: Real
    forward_passes: int


@dataclass(frozen=True, config=_NO_EXTRA)
class DepthPoint:
    """Test IIA of the plain full-vector interchange at one location, for one variable.

    ``in_handle``: the variable's handle has a site at this location.
    """

    location: str
    iia_test: Real
    in_handle: bool


class ControlsResult(ResultModel):
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
    base_accuracy: Real
    warnings: list[str]
    timing: dict[str, Real]


class JobResult(ResultModel):
    """A whole job: every level, the best handle per variable, timings, provenance, and the
    DAS baseline and controls when they ran."""

    variables: list[str]
    levels: list[LevelResult]
    handles: dict[str, HandleResult]
    timing: dict[str, Real]
    forward_passes: int
    net: dict[str, Any]
    banks: dict[str, Any]
    spec: dict[str, Any]
    device: str
    max_rows: int
    das: DasResult | None = None
    controls: ControlsResult | None = None

    def _handle_rows(self) -> list[tuple[str, str, str, str, str]]:
        """Per variable: sites, test IIA, the random net's test IIA, the verdict if any."""
        random = self.controls.random_net if self.controls is not None else None
        rows = []
        for variable, handle in self.handles.items():
            control = random.handles.get(variable) if random is not None else None
            rows.append((variable, ", ".join(handle.sites), f"{handle.iia_test.overall:.3f}",
                         f"{control.iia_test.overall:.3f}" if control is not None else "-",
                         str(handle.verdict or "")))
        return rows

    def __repr__(self) -> str:
        parts = [f"{v}: {sites} IIA {iia} (random net {rnd}{', ' + verdict if verdict else ''})"
                 for v, sites, iia, rnd, verdict in self._handle_rows()]
        return (f"JobResult({len(self.levels)} levels, "
                f"{self.timing.get('total_s', math.nan):.2f} s; " + "; ".join(parts) + ")")

    def __str__(self) -> str:
        return repr(self)

    def _repr_html_(self) -> str:
        """The handles table, then the whole report (heatmaps included) in a frame."""
        from core.report import render_report  # the report imports this module

        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in self._handle_rows())
        report = html.escape(render_report(self), quote=True)
        return ("<table><tr><th>variable</th><th>sites</th><th>IIA test</th>"
                f"<th>random net</th><th>verdict</th></tr>{cells}</table>"
                f'<iframe srcdoc="{report}" style="width:100%;height:480px;border:0"></iframe>')
