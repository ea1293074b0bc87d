"""The change-share controlled sampler, on both tasks and on synthetic change patterns."""

from __future__ import annotations

import pytest
import torch

from core.causal.addition import BinaryAddition
from core.causal.bank import PairBank
from core.causal.heq import HierarchicalEquality
from core.causal.sampling import (
    allocate_quotas,
    change_codes,
    code_bits,
    rake_weights,
    sample_controlled_bank,
)
from core.errors import TaskError

TASKS = [HierarchicalEquality(), BinaryAddition()]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
@pytest.mark.parametrize("share", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_change_rate_of_every_variable_hits_the_share(task, share):
    bank = task.sample_bank(400, torch.Generator().manual_seed(0), share)
    assert bank.size == 400
    for variable, rate in bank.change_rates().items():
        assert abs(rate - share) <= 0.05, (variable, rate)


def test_unbalanced_raw_rates_are_corrected():
    # C1 changes in only 3/8 of uniform pairs: the sampler must lift it to 1/2
    task = BinaryAddition()
    raw = task.draw_pairs(4000, torch.Generator().manual_seed(0)).change_rates()
    assert raw["C1"] < 0.42
    bank = task.sample_bank(1000, torch.Generator().manual_seed(0), 0.5)
    assert abs(bank.change_rates()["C1"] - 0.5) <= 0.05


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.name)
def test_same_seed_same_bank_other_seed_other_bank(task):
    one = task.sample_bank(100, torch.Generator().manual_seed(7), 0.5)
    two = task.sample_bank(100, torch.Generator().manual_seed(7), 0.5)
    other = task.sample_bank(100, torch.Generator().manual_seed(8), 0.5)
    torch.testing.assert_close(one.base, two.base)
    torch.testing.assert_close(one.source, two.source)
    for v in one.variables:
        torch.testing.assert_close(one.counterfactual_labels[v], two.counterfactual_labels[v])
    assert not torch.equal(one.base, other.base)


def test_pairs_are_shuffled_not_grouped_by_pattern():
    bank = HierarchicalEquality().sample_bank(400, torch.Generator().manual_seed(0), 0.5)
    codes = change_codes(bank)
    assert int((codes[1:] != codes[:-1]).sum()) > 100  # grouped runs would switch ~3 times


def synthetic_draw(rates: dict[str, float], coupled: bool = False):
    """A draw whose variables change the single-head output independently at ``rates``
    (or all together, at the first rate, when ``coupled``)."""

    def draw(m: int, generator: torch.Generator) -> PairBank:
        first = torch.rand(m, generator=generator)
        labels = {}
        for v, rate in rates.items():
            u = first if coupled else torch.rand(m, generator=generator)
            labels[v] = (u < rate).long().unsqueeze(-1)
        return PairBank(
            base=torch.zeros(m, 1), source=torch.zeros(m, 1),
            base_labels=torch.zeros(m, 1, dtype=torch.long), counterfactual_labels=labels,
        )

    return draw


def test_variable_that_never_changes_stays_at_zero_while_others_hit_the_share():
    draw = synthetic_draw({"dead": 0.0, "live": 0.1})
    bank = sample_controlled_bank(draw, 500, torch.Generator().manual_seed(0), 0.5)
    rates = bank.change_rates()
    assert rates["dead"] == 0.0
    assert abs(rates["live"] - 0.5) <= 0.05


def test_rare_pattern_is_filled_over_several_chunks():
    draw = synthetic_draw({"a": 0.03, "b": 0.03})  # both change together in ~0.1%
    bank = sample_controlled_bank(draw, 300, torch.Generator().manual_seed(0), 1.0)
    assert bank.change_rates() == {"a": 1.0, "b": 1.0}


def test_unfillable_quota_terminates_and_fills_as_close_as_possible():
    # one round only: quotas cannot be met from a single chunk, so the greedy fill finishes
    draw = synthetic_draw({"a": 0.01, "b": 0.02})
    bank = sample_controlled_bank(draw, 2000, torch.Generator().manual_seed(0), 0.5, max_rounds=1)
    assert bank.size == 2000
    rates = bank.change_rates()
    assert rates["a"] < 0.5 and rates["b"] < 0.5
    # everything that moves a variable is used: far above the raw rates
    assert rates["a"] > 0.03 and rates["b"] > 0.06


def test_coupled_variables_reach_a_feasible_share():
    draw = synthetic_draw({"a": 0.2, "b": 0.2}, coupled=True)
    bank = sample_controlled_bank(draw, 400, torch.Generator().manual_seed(0), 0.5)
    rates = bank.change_rates()
    assert abs(rates["a"] - 0.5) <= 0.05 and abs(rates["b"] - 0.5) <= 0.05


def test_rake_weights_hit_marginals_and_keep_dependence():
    frequency = torch.tensor([0.5, 0.1, 0.1, 0.3])  # patterns 00, 01, 10, 11
    bits = code_bits(torch.arange(4), 2)
    weights = rake_weights(frequency, bits, 0.5)
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0, dtype=torch.float64))
    marginals = (weights.unsqueeze(-1) * bits).sum(0)
    torch.testing.assert_close(marginals, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert weights[3] > 0.25  # the positive association of the two variables survives


def test_allocate_quotas_sums_exactly():
    quotas = allocate_quotas(torch.tensor([1 / 3, 1 / 3, 1 / 3], dtype=torch.float64), 10)
    assert int(quotas.sum()) == 10 and sorted(quotas.tolist()) == [3, 3, 4]


def test_bad_arguments_are_refused():
    draw = synthetic_draw({"a": 0.5})
    with pytest.raises(TaskError) as info:
        sample_controlled_bank(draw, 10, torch.Generator(), 1.5)
    assert info.value.where == "pairs.changed_share"
    with pytest.raises(TaskError):
        sample_controlled_bank(draw, 0, torch.Generator(), 0.5)
