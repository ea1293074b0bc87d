"""Admission control: absurd specs refused by field, value and limit; normal ones admitted
with estimates that match a hand computation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from core.admission import (
    DEFAULT_LIMITS,
    AdmissionLimits,
    NetInfo,
    admit,
    describe_job,
    estimate_sites,
    traced_width,
)
from core.errors import PlotError, SpecError
from core.nets.size import estimate_net_size
from core.spec import JobSpec, LevelSpec, parse_job_spec

HEQ: dict[str, Any] = {"task": {"builtin": "hierarchical_equality"}}
README = Path(__file__).resolve().parents[3] / "README.md"

# The 13 absurd specs, with the field each must be refused by, the value and the
# limit its message must name.
ABSURD: list[tuple[dict[str, Any], str, str, str]] = [
    ({"pairs": {"fit": 10**9}}, "pairs.fit", "1000000000", "10000000"),
    ({"calibration": {"top_k": list(range(1, 100_001))}}, "calibration.top_k", "100000", "256"),
    ({"calibration": {"strengths": [1.0] * 100_000}}, "calibration.strengths", "100000", "256"),
    ({"coupling": {"epsilons": [0.1] * 100_000}}, "coupling.epsilons", "100000", "64"),
    ({"controls": {"permutations": 10**6}}, "controls.permutations", "1000000", "10000"),
    ({"levels": [{"granularity": "neuron"}] * 1000}, "levels", "1000", "16"),
    ({"das": {"mode": "full", "restarts": 10**6}}, "das.restarts", "1000000", "100"),
    ({"coupling": {"max_iter": 10**12}}, "coupling.max_iter", "1000000000000", "1000000"),
    ({"calibration": {"finalists": 10**9}}, "calibration.finalists", "1000000000", "100000"),
    ({"levels": [{"granularity": "block", "keep": 10**9}, {"granularity": "neuron"}]},
     "levels.0.keep", "1000000000", "4096"),
    ({"pairs": {"seed": 10**30}}, "pairs.seed", str(10**30), str(2**63 - 1)),
    ({"seed": -(10**30)}, "seed", str(-(10**30)), str(-(2**63))),
    ({"task": {"builtin": "hierarchical_equality", "params": {"bogus": 1}}},
     "task.params.bogus", "bogus", "allowed: num_entities, embedding_dim, seed"),
]


def submit(data: dict[str, Any], limits: AdmissionLimits = DEFAULT_LIMITS) -> Any:
    """What a submission does: validate, describe the job, admit it."""
    spec = parse_job_spec(data)
    return admit(spec, limits, describe_job(spec, None))


@pytest.mark.parametrize(("extra", "where", "value", "limit"), ABSURD,
                         ids=[case[1] for case in ABSURD])
def test_each_absurd_spec_is_refused_naming_its_field_value_and_limit(
        extra: dict[str, Any], where: str, value: str, limit: str) -> None:
    with pytest.raises(SpecError) as refused:
        submit({**HEQ, **extra})
    text = str(refused.value)
    assert where in text and value in text.replace(",", "") and limit in text, text


# Specs the schema allows but the default one-GPU budgets do not.
OVER_BUDGET: list[tuple[dict[str, Any], str, str]] = [
    ({"pairs": {"fit": 200_000}}, "pairs.fit", "max_pairs_per_bank"),
    ({"pairs": {"test": 100_001}}, "pairs.test", "max_pairs_per_bank"),
    ({"levels": [{"granularity": "neuron"}] * 9}, "levels", "max_levels"),
    ({"calibration": {"top_k": list(range(1, 201)), "strengths": [1.0] * 30}},
     "calibration.top_k", "max_calibration_candidates"),
    ({"controls": {"permutations": 5000}}, "controls.permutations", "max_permutations"),
    ({"das": {"mode": "full", "restarts": 100}}, "das.restarts", "max_das_trainings"),
    ({"coupling": {"max_iter": 500_000}}, "coupling.max_iter", "max_coupling_iterations"),
    ({"das": {"mode": "full", "max_epochs": 100_000}, "pairs": {"fit": 100_000}},
     "das.max_epochs", "max_forward_passes"),
]


@pytest.mark.parametrize(("extra", "where", "limit"), OVER_BUDGET,
                         ids=[case[2] + ":" + case[1] for case in OVER_BUDGET])
def test_a_spec_over_a_deployment_budget_is_refused_by_that_budget(
        extra: dict[str, Any], where: str, limit: str) -> None:
    with pytest.raises(SpecError) as refused:
        submit({**HEQ, **extra})
    assert refused.value.where == where
    assert limit in refused.value.message and "over the limit of" in refused.value.message


def test_a_lifted_budget_admits_what_the_default_refuses() -> None:
    spec = {**HEQ, "pairs": {"fit": 200_000}}
    with pytest.raises(SpecError):
        submit(spec)
    assert submit(spec, AdmissionLimits(max_pairs_per_bank=200_000)).pairs == 202_000


def test_the_normal_specs_and_the_readme_example_are_admitted() -> None:
    text = README.read_text()
    block = text[text.index("## Job spec"):]
    block = block[block.index("```yaml") + len("```yaml"):]
    example = yaml.safe_load(block[:block.index("```")])
    example.pop("model")  # a net directory of the reader's; the task's default net here
    for data in (example, HEQ, {"task": {"builtin": "binary_addition"}},
                 {"task": {"builtin": "mcqa"}, "das": {"mode": "full"}}):
        assert submit(data).forward_passes > 0


def test_the_estimate_of_the_heq_default_job_equals_a_hand_computation() -> None:
    admission = submit(HEQ)
    # HEQ default: one neuron level over the MLP (16, 16, 16): 48 sites; 2 variables;
    # 5 epsilons × 20 k × 17 λ = 1,700 candidates per variable and cost kind (mse and
    # cosine, each calibrated on its own); 1,000 pairs per bank.
    per_kind = 5 * 20 * 17
    candidates = 2 * per_kind
    signatures = 48 * 1000
    # every candidate on the first rung (64 pairs) and the screening pairs (256), then 32
    # finalists on the whole bank
    calibration = 2 * 2 * (per_kind * (64 + 256) + 32 * 1000)
    test = 2 * 2 * 2 * 1000  # soft and hard handles of each kind
    # the random net (scope handles): its banks traced, each handle recalibrated over the
    # 17 strengths and tested (soft and hard)
    random_net = 2 * 3000 + 2 * (17 * 1000 + 2 * 1000)
    expected = {
        "traces": 2 * 3000, "signatures": signatures, "calibration": calibration,
        "test": test, "das": 0, "random_net": random_net,
        "depth_check": 3 * 1000,  # the full vector at the 3 layers, for both variables
    }
    assert admission.sites == (48,)
    assert admission.calibration_candidates == candidates
    assert admission.terms == expected
    assert admission.forward_passes == sum(expected.values())
    assert admission.trace_bytes == 3000 * 2 * 48 * 4
    assert admission.das_trainings == 0 and admission.permutations == 16
    # a per-variable calibration bank: each variable's finalists run on its own 500 pairs
    scoped = submit({**HEQ, "pairs": {"scheme": "paper", "calibration_scope": "per_variable"}})
    assert scoped.terms["calibration"] == 2 * 2 * (per_kind * (64 + 256) + 32 * 500)


def test_full_das_counts_locations_dims_variables_and_restarts() -> None:
    admission = submit({**HEQ, "das": {"mode": "full", "restarts": 3}})
    assert admission.das_trainings == 3 * 5 * 2 * 3  # layers × dims × variables × restarts


def test_guided_das_counts_kept_sites_the_restart_and_the_widest_widening() -> None:
    guided = submit({**HEQ, "das": {"mode": "guided", "restarts": 2}})
    # HEQ's neuron level keeps 2 sites per variable: 2 × 2 ranks, 1 restart of the best,
    # widening to the 2 other layers × 3 ranks; × 2 variables × 2 restarts
    assert guided.das_trainings == (2 * 2 + 1 + 3 * 2) * 2 * 2
    narrow = submit({**HEQ, "das": {"mode": "guided", "restart_best": False,
                                    "widen_margin": None, "widen_weak_handle": None}})
    assert narrow.das_trainings == 2 * 2 * 2


def test_sites_refine_the_kept_sites_of_the_level_before() -> None:
    size = estimate_net_size({"arch": "mlp", "input_dim": 16, "hidden_dims": [64, 64],
                              "num_classes": 2, "activation": "relu"})
    schedule = [LevelSpec(granularity="layer", keep=1),
                LevelSpec(granularity="block", block_size=8, keep=2),
                LevelSpec(granularity="neuron")]
    # 2 layers; 1 kept per variable (3 variables) -> 2 parents × 64/8 blocks; 2 × 3 blocks
    # of 8 -> 6 × 8 neurons
    assert estimate_sites(schedule, size, 3) == [2, 16, 48]


def test_multi_resolution_groups_and_pca_prefixes_are_counted() -> None:
    size = estimate_net_size({"arch": "mlp", "input_dim": 16, "hidden_dims": [64, 64],
                              "num_classes": 2, "activation": "relu"})
    schedule = [LevelSpec(granularity="layer", keep=1),
                LevelSpec(granularity="block", block_sizes=[8, 32], keep=1),
                LevelSpec(granularity="pca", band_size=4)]
    # 2 parents × (64/8 + 64/32) groups; then 2 parents of up to 32 coordinates (the widest
    # group) × (8 bands + prefixes 1, 2, 4, 8, 16, 32)
    assert estimate_sites(schedule, size, 2) == [2, 20, 2 * (8 + 6)]
    no_prefixes = [*schedule[:2], LevelSpec(granularity="pca", band_size=4, prefixes=False)]
    assert estimate_sites(no_prefixes, size, 2)[2] == 2 * 8


def test_a_wide_registered_net_is_refused_by_sites_and_trace_memory() -> None:
    wide = {"arch": "mlp", "input_dim": 16, "hidden_dims": [60_000] * 4, "num_classes": 2}
    spec = parse_job_spec({"task": {"dataset": "pairs.jsonl"},
                           "levels": [{"granularity": "neuron"}]})
    with pytest.raises(SpecError) as refused:
        admit(spec, DEFAULT_LIMITS, describe_job(spec, wide, variables=2))
    assert refused.value.where in ("model", "levels.0")
    small = {**wide, "hidden_dims": [30_000]}
    with pytest.raises(SpecError, match="max_trace_bytes"):
        admit(parse_job_spec({"task": {"dataset": "d"}, "pairs": {"fit": 100_000}}),
              DEFAULT_LIMITS, describe_job(spec, small, variables=2))


def test_a_net_over_the_parameter_budget_is_refused_at_admission() -> None:
    spec = parse_job_spec(HEQ)
    info = describe_job(spec, None)
    with pytest.raises(SpecError) as refused:
        admit(spec, AdmissionLimits(max_net_parameters=100), info)
    assert refused.value.where == "model" and "max_net_parameters" in refused.value.message


def test_an_unknown_task_param_is_refused_before_any_task_is_built() -> None:
    spec = JobSpec.model_validate({"task": {"builtin": "binary_addition",
                                            "params": {"num_bits": 10**6}}})
    with pytest.raises(PlotError) as refused:
        admit(spec, DEFAULT_LIMITS, NetInfo())
    assert refused.value.where == "task.params.num_bits" and "1000000" in str(refused.value)


@pytest.mark.parametrize(("extra", "where"), [({"pairs": {"seed": 1e30}}, "pairs.seed"),
                                              ({"pairs": {"fit": 1e9}}, "pairs.fit")])
def test_a_json_float_past_a_ceiling_is_refused_with_the_limit(extra: dict[str, Any],
                                                                where: str) -> None:
    with pytest.raises(SpecError) as refused:
        submit({**HEQ, **extra})
    assert f"{where}: " in str(refused.value) and "is over the limit of" in str(refused.value)


def test_a_token_nets_trace_bytes_are_its_largest_levels_layers() -> None:
    size = estimate_net_size({"arch": "transformer", "vocab_size": 40, "d_model": 64,
                              "n_layers": 6, "n_heads": 4, "d_mlp": 128, "max_len": 10,
                              "label_token_ids": [1, 2], "pad_token_id": 0})
    position = LevelSpec(granularity="position")
    layer = LevelSpec(granularity="layer", keep=1)
    pca = LevelSpec(granularity="pca")
    # position: one residual layer; layer: the 6 block outputs; PCA on 1 kept site per
    # variable (2): at most 3 layers each, capped by every layer (2·6 + 1)
    assert traced_width([position], size, 2) == 64
    assert traced_width([position, layer, pca], size, 2) == 6 * 64
    assert traced_width([pca], size, 2) == 13 * 64 == size.stream_width


def test_the_random_net_estimate_follows_its_scope() -> None:
    terms = {scope: submit({**HEQ, "controls": {"random_net_scope": scope}}).terms
             for scope in ("handles", "first_level", "schedule")}
    whole = terms["schedule"]
    # the whole rerun: the random net's traces and every level again
    assert whole["random_net"] == (whole["traces"] + whole["signatures"]
                                   + whole["calibration"] + whole["test"])
    # the first level (here the only one) adds its signatures and calibration to the handles'
    assert terms["handles"]["random_net"] < terms["first_level"]["random_net"]
    assert terms["first_level"]["random_net"] == (
        terms["handles"]["random_net"] + whole["signatures"] + whole["calibration"]
        + whole["test"])
