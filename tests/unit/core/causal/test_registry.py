"""Built-in tasks by name, parameter checks, and the seeded banks of a job."""

from __future__ import annotations

import pytest
import torch

from core.causal.addition import BinaryAddition
from core.causal.heq import HierarchicalEquality
from core.causal.registry import build_task, make_banks
from core.errors import TaskError
from core.spec import PairsSpec


def test_build_task_by_name_with_defaults_and_params():
    heq = build_task("hierarchical_equality", {})
    assert isinstance(heq, HierarchicalEquality)
    assert heq.params == {"num_entities": 100, "embedding_dim": 4, "seed": 0}
    small = build_task("hierarchical_equality", {"num_entities": 10, "embedding_dim": 2})
    assert small.input_shape == (8,) and small.params["num_entities"] == 10
    adder = build_task("binary_addition", {"num_bits": 5})
    assert isinstance(adder, BinaryAddition) and adder.output_shape == (6, 2)


@pytest.mark.parametrize(
    ("name", "params", "where"),
    [
        ("sorting", {}, "task.builtin"),
        ("binary_addition", {"bits": 4}, "task.params.bits"),
        ("binary_addition", {"num_bits": 1}, "task.params.num_bits"),
        ("binary_addition", {"num_bits": 99}, "task.params.num_bits"),
        ("binary_addition", {"num_bits": "4"}, "task.params.num_bits"),
        ("hierarchical_equality", {"num_entities": True}, "task.params.num_entities"),
        ("hierarchical_equality", {"embedding_dim": 2.5}, "task.params.embedding_dim"),
        ("hierarchical_equality", {"num_entities": 1}, "task.params.num_entities"),
    ],
)
def test_bad_name_or_params_are_refused_naming_the_field(name, params, where):
    with pytest.raises(TaskError) as info:
        build_task(name, params)
    assert info.value.where == where


def same_bank(one, two) -> bool:
    return torch.equal(one.base, two.base) and torch.equal(one.source, two.source) and all(
        torch.equal(one.counterfactual_labels[v], two.counterfactual_labels[v])
        for v in one.variables
    )


@pytest.mark.parametrize("name", ["hierarchical_equality", "binary_addition"])
def test_make_banks_sizes_determinism_and_independent_splits(name):
    task = build_task(name, {})
    pairs = PairsSpec(fit=120, calibration=80, test=60, seed=3)
    banks = make_banks(task, pairs)
    assert (banks.fit.size, banks.calibration.size, banks.test.size) == (120, 80, 60)
    again = make_banks(task, pairs)
    for split in ("fit", "calibration", "test"):
        assert same_bank(getattr(banks, split), getattr(again, split))
    # the three banks come from different generators
    assert not torch.equal(banks.fit.base[:60], banks.calibration.base[:60])
    assert not torch.equal(banks.fit.base[:60], banks.test.base)
    assert not torch.equal(banks.calibration.base[:60], banks.test.base)
    other = make_banks(task, PairsSpec(fit=120, calibration=80, test=60, seed=4))
    assert not same_bank(banks.fit, other.fit)
    for bank in (banks.fit, banks.calibration, banks.test):
        for rate in bank.change_rates().values():
            assert abs(rate - 0.5) <= 0.05


def test_heq_banks_share_few_pairs_across_splits():
    banks = make_banks(build_task("hierarchical_equality", {}), PairsSpec(fit=300, seed=0))
    fit_pairs = {tuple(row) for row in torch.cat([banks.fit.base, banks.fit.source], 1).tolist()}
    test = torch.cat([banks.test.base, banks.test.source], 1).tolist()
    assert sum(tuple(row) in fit_pairs for row in test) == 0


def test_make_banks_follows_changed_share():
    task = build_task("binary_addition", {})
    banks = make_banks(task, PairsSpec(fit=200, calibration=200, test=200, changed_share=0.9))
    for rate in banks.test.change_rates().values():
        assert abs(rate - 0.9) <= 0.05
