"""JobSpec: refuses unknown keys and bad values naming the field path; accepts the README's
example spec and every value of each vocabulary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, get_args

import pydantic
import pytest
import yaml

from core.errors import SpecError
from core.spec import (
    CostKind,
    DasInit,
    DasMode,
    DasRank,
    Granularity,
    JobSpec,
    LevelScope,
    SiteMarginal,
    Solver,
    load_job_spec,
    parse_job_spec,
)

README = Path(__file__).resolve().parents[3] / "README.md"
TASK = {"builtin": "hierarchical_equality"}


def _refusal(data: Any) -> str:
    with pytest.raises(SpecError) as error:
        parse_job_spec(data)
    assert error.value.where == "spec"
    return error.value.message


def readme_spec_text() -> str:
    """The YAML block of the README's "Job spec" section, exactly as written."""
    section = README.read_text().split("## Job spec", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the README's Job spec section has no YAML block"
    return block.group(1)


def test_a_minimal_spec_gets_the_methods_defaults() -> None:
    spec = parse_job_spec({"task": TASK})
    assert (spec.coupling.solver, spec.coupling.cost, spec.coupling.site_marginal) == (
        "sinkhorn", ["mse", "cosine"], "uniform")
    assert spec.coupling.null_row is True
    assert spec.levels is None and spec.das.mode == "off"
    assert (spec.pairs.fit, spec.pairs.calibration, spec.pairs.test) == (1000, 1000, 1000)


def test_a_single_cost_kind_is_a_one_kind_list_and_a_repeat_is_refused() -> None:
    spec = parse_job_spec({"task": TASK, "coupling": {"cost": "cosine"}})
    assert spec.coupling.cost == ["cosine"]
    with pytest.raises(SpecError, match=r"coupling\.cost"):
        parse_job_spec({"task": TASK, "coupling": {"cost": ["mse", "mse"]}})
    with pytest.raises(SpecError, match=r"coupling\.cost"):
        parse_job_spec({"task": TASK, "coupling": {"cost": []}})


@pytest.mark.parametrize(("data", "path"), [
    ({"task": TASK, "colour": 1}, "colour"),
    ({"task": TASK, "coupling": {"epsilon": [0.1]}}, "coupling.epsilon"),
    ({"task": TASK, "levels": [{"granularity": "layer", "keep_top": 2}]}, "levels.0.keep_top"),
    ({"task": {**TASK, "seed": 1}}, "task.seed"),
])
def test_unknown_keys_are_refused_naming_their_path(data: dict[str, Any], path: str) -> None:
    message = _refusal(data)
    assert message.startswith(f"{path}: ")
    assert "Extra inputs are not permitted" in message


@pytest.mark.parametrize(("data", "path"), [
    ({"task": TASK, "coupling": {"solver": "lbfgs"}}, "coupling.solver"),
    ({"task": TASK, "coupling": {"cost": "l1"}}, "coupling.cost"),
    ({"task": TASK, "coupling": {"cost": ["mse", "l1"]}}, "coupling.cost.1"),
    ({"task": TASK, "coupling": {"site_marginal": "mass"}}, "coupling.site_marginal"),
    ({"task": TASK, "levels": [{"granularity": "voxel"}]}, "levels.0.granularity"),
    ({"task": TASK, "levels": [{"granularity": "layer", "keep": 0}]}, "levels.0.keep"),
    ({"task": TASK, "das": {"dims": [4, 0]}}, "das.dims.1"),
    ({"task": TASK, "das": {"rank": "half"}}, "das.rank"),
    ({"task": TASK, "priority": 11}, "priority"),
    ({"task": TASK, "pairs": {"fit": 1}}, "pairs.fit"),
    ({"task": {"builtin": "sudoku"}}, "task.builtin"),
    ({"task": TASK, "coupling": {"epsilons": [0.1, -1.0]}}, "coupling"),
    ({"task": TASK, "calibration": {"top_k": []}}, "calibration"),
    ({"task": TASK, "das": {"min_epochs": 5, "max_epochs": 2}}, "das"),
    ({"task": {**TASK, "dataset": "pairs.jsonl"}}, "task"),
    ({"task": TASK, "model": {"path": "nets/heq", "id": "m1"}}, "model"),
])
def test_bad_values_are_refused_naming_their_path(data: dict[str, Any], path: str) -> None:
    assert _refusal(data).startswith(f"{path}: ")


def test_every_problem_is_named_in_one_error() -> None:
    message = _refusal({"task": TASK, "seed": "x", "coupling": {"tol": 0, "solver": "x"}})
    assert [part.split(":")[0] for part in message.split("; ")] == [
        "coupling.solver", "coupling.tol", "seed"]


def test_a_spec_that_is_not_a_mapping_is_refused() -> None:
    assert _refusal(["task"]) == "a job spec is a mapping, got list"


def test_a_spec_is_frozen() -> None:
    spec = parse_job_spec({"task": TASK})
    with pytest.raises(pydantic.ValidationError):
        spec.coupling.solver = "emd"  # type: ignore[misc]


@pytest.mark.parametrize(("field", "vocabulary"), [
    ("coupling.solver", Solver), ("coupling.cost", CostKind),
    ("coupling.site_marginal", SiteMarginal), ("das.mode", DasMode), ("das.init", DasInit),
    ("das.rank", DasRank), ("levels.0.granularity", Granularity),
    ("levels.0.scope", LevelScope),
])
def test_every_value_of_a_vocabulary_is_accepted(field: str, vocabulary: Any) -> None:
    for value in get_args(vocabulary):
        data: dict[str, Any] = {"task": TASK, "levels": [{"granularity": "layer"}]}
        *parents, key = field.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[key] = value
        spec = parse_job_spec(data)
        got: Any = spec
        for part in field.split("."):
            got = got[int(part)] if part.isdigit() else getattr(got, part)
        assert got == ([value] if field == "coupling.cost" else value)


@pytest.mark.parametrize("mode", ["off", '"off"'])
def test_the_readme_example_is_accepted_with_das_mode_bare_or_quoted(mode: str) -> None:
    text = readme_spec_text().replace("mode: off", f"mode: {mode}")
    spec = parse_job_spec(yaml.safe_load(text))
    assert spec.model.path == "nets/heq" and spec.task.builtin == "hierarchical_equality"
    assert [level.granularity for level in spec.levels or []] == ["block", "neuron"]
    assert spec.calibration.top_k == list(range(1, 21))
    assert spec.das.mode == "off" and spec.controls.random_weights == "reinit"


def test_the_readme_example_is_accepted_as_written(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(readme_spec_text())
    assert load_job_spec(path).das.mode == "off"


def test_a_spec_file_that_is_missing_or_not_yaml_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(SpecError) as error:
        load_job_spec(missing)
    assert error.value.where == str(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("task: {builtin: [\n")
    with pytest.raises(SpecError) as error:
        load_job_spec(broken)
    assert error.value.where == str(broken) and "not valid YAML" in error.value.message


def test_a_spec_file_that_does_not_validate_names_the_file_and_the_field(tmp_path: Path
                                                                        ) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("task: {builtin: hierarchical_equality}\ncoupling: {cost: l1}\n")
    with pytest.raises(SpecError) as error:
        load_job_spec(path)
    assert error.value.where == str(path) and error.value.message.startswith("coupling.cost: ")


def test_a_spec_round_trips_through_json() -> None:
    spec = parse_job_spec(yaml.safe_load(readme_spec_text().replace("mode: off", 'mode: "off"')))
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec
