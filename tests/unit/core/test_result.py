"""Results are frozen pydantic models: stored JSON (older too) loads, non-finite floats are
null in JSON and NaN in Python, unknown fields are refused."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.result import DasRun, JobResult, LevelResult, to_finite

# Written by main's code before results were typed (to_storable(JobResult.to_json()) of a
# HEQ job: 200 pairs per bank, one neuron level, guided DAS k=1, every control on).
BEFORE_TYPED = Path(__file__).parents[2] / "fixtures" / "heq_result_before_typed.json"


# fields added after the fixture was written: they load as None and are written as null
ADDED_LATER = ("cost_kind", "verdict", "verdict_reason")


def without_added_fields(document: Any) -> Any:
    """``document`` without the null fields added after the fixture was written."""
    if isinstance(document, dict):
        return {key: without_added_fields(value) for key, value in document.items()
                if not (key in ADDED_LATER and value is None)}
    if isinstance(document, list):
        return [without_added_fields(value) for value in document]
    return document


@pytest.fixture
def stored() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(BEFORE_TYPED.read_text())
    return document


def test_a_result_stored_before_typed_results_loads_and_round_trips(
        stored: dict[str, Any]) -> None:
    result = JobResult.model_validate(stored)
    # fields added since are written with their defaults
    levels = [{**level, "site_labels": {}} for level in stored["levels"]]
    das = {**stored["das"], "widened": {}}
    assert without_added_fields(result.to_json()) == {**stored, "levels": levels, "das": das}
    assert JobResult.model_validate(result.to_json()) == result
    handle = result.handles["WX"]
    assert (handle.cost_kind, handle.verdict, handle.verdict_reason) == (None, None, None)
    assert result.levels[0].plans[0].cost_kind is None
    level = result.levels[0]
    assert level.granularity == "neuron" and len(level.sites) == len(level.cost[0]) == 48
    assert result.das is not None and result.das.best["WX"].iia_test.pairs == 200
    assert result.controls is not None and result.controls.random_net is not None
    assert result.controls.depth["WX"][0].location == "layer:0"
    assert level.diagnostics is not None and level.diagnostics.pairs[0].first == "WX"
    assert LevelResult.model_validate(stored["levels"][0]) == level


def test_a_result_written_before_das_and_controls_existed_loads(stored: dict[str, Any]
                                                                 ) -> None:
    older = {key: value for key, value in stored.items() if key not in ("das", "controls")}
    older["levels"] = [{key: value for key, value in level.items()
                        if key not in ("warnings", "diagnostics", "label_permutation")}
                       for level in stored["levels"]]
    result = JobResult.model_validate(older)
    assert result.das is None and result.controls is None
    assert result.levels[0].warnings == [] and result.levels[0].diagnostics is None


def test_non_finite_floats_are_null_in_json_and_nan_when_read_back(
        stored: dict[str, Any]) -> None:
    level = stored["levels"][0]
    level["cost"][0][0] = math.nan
    level["timing"]["coupling_s"] = math.inf
    level["handles"]["WX"]["iia_test"]["overall"] = math.nan
    level["label_permutation"]["WX"]["real_mass"] = -math.inf
    stored["das"]["runs"][0]["loss"] = math.inf
    result = JobResult.model_validate(stored)
    document = result.to_json()
    json.dumps(document, allow_nan=False)  # valid JSON, storable in JSONB
    assert document["levels"][0]["cost"][0][0] is None
    assert document["levels"][0]["timing"]["coupling_s"] is None
    assert document["levels"][0]["handles"]["WX"]["iia_test"]["overall"] is None
    assert document["levels"][0]["label_permutation"]["WX"]["real_mass"] is None
    assert document["das"]["runs"][0]["loss"] is None
    assert json.loads(result.model_dump_json()) == document
    again = JobResult.model_validate(document)
    assert math.isnan(again.levels[0].cost[0][0])
    assert math.isnan(again.levels[0].timing["coupling_s"])
    assert math.isnan(again.levels[0].handles["WX"].iia_test.overall)
    assert again.levels[0].label_permutation is not None
    assert math.isnan(again.levels[0].label_permutation["WX"].real_mass)
    assert again.das is not None and math.isnan(again.das.runs[0].loss)
    assert again.levels[0].handles["WX"].iia_test.sensitivity is not None  # others untouched


def test_to_finite_nulls_non_finite_floats_at_any_depth() -> None:
    assert to_finite({"a": [1.0, math.nan, (math.inf, 2)], "b": "nan"}) == {
        "a": [1.0, None, [None, 2]], "b": "nan"}


def test_unknown_fields_are_refused_and_results_are_frozen(stored: dict[str, Any]) -> None:
    run = stored["das"]["runs"][0]
    with pytest.raises(ValidationError, match="extra"):
        DasRun.model_validate({**run, "surprise": 1})
    with pytest.raises(ValidationError):
        LevelResult.model_validate({**stored["levels"][0], "cost": "not a matrix"})
    result = JobResult.model_validate(stored)
    with pytest.raises(ValidationError, match="frozen"):
        result.device = "cuda"  # type: ignore[misc]


def test_the_json_schema_describes_levels_handles_and_controls() -> None:
    schema = JobResult.model_json_schema(mode="serialization")
    definitions = schema["$defs"]
    assert {"levels", "handles", "das", "controls"} <= set(schema["properties"])
    assert {"LevelResult", "HandleResult", "ControlsResult", "DasRun", "IIA",
            "PlanSummary", "DepthPoint", "CouplingDiagnostics"} <= set(definitions)
    runtime = definitions["LevelResult"]["properties"]["runtime_s"]
    assert {"type": "null"} in runtime["anyOf"]  # a non-finite float is written as null
