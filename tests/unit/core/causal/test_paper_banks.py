"""The ``paper`` pair scheme: the PLOT authors' banks for HEQ, the adder and MCQA."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.causal.addition import BinaryAddition
from core.causal.bank import PairBank
from core.causal.heq import HierarchicalEquality
from core.causal.mcqa import MultipleChoiceColours
from core.causal.paper_adder import sources_per_base
from core.causal.registry import make_banks
from core.errors import TaskError
from core.spec import PairsSpec, load_job_spec


def _entities(task: HierarchicalEquality, inputs: torch.Tensor) -> torch.Tensor:
    """(P, 4) entity ids recovered from encoded rows (P, 4 * dim)."""
    chunks = inputs.reshape(inputs.shape[0], 4, -1)
    return torch.cdist(chunks, task.embeddings.unsqueeze(0)).argmin(-1)


def test_heq_paper_banks_have_the_reference_kinds_and_sizes():
    task = HierarchicalEquality()
    banks = make_banks(task, PairsSpec(scheme="paper", fit=200, calibration=200, test=100))
    assert (banks.fit.size, banks.calibration.size, banks.test.size) == (200, 200, 400)
    fit = banks.fit
    some = fit.changes_output("WX") | fit.changes_output("YZ")
    assert int(some.sum()) == 100  # half the fit pairs change the output under a variable
    cal = banks.calibration
    wx, yz = cal.changes_output("WX"), cal.changes_output("YZ")
    assert int((wx & ~yz).sum()) == 100 and int((yz & ~wx).sum()) == 100
    test = banks.test
    for variable in task.variables:
        scored = test.scored(variable)
        assert int(scored.sum()) == 200
        changes = test.changes_output(variable)[scored]
        assert int(changes.sum()) == 100  # a sensitive and an invariant bank of 100 each
    assert not bool((test.scored("WX") & test.scored("YZ")).any())
    # entities are uniform: W == X in about 1 % of invariant rows (balanced banks: half)
    invariant = _entities(task, test.base[test.scored("WX") & ~test.changes_output("WX")])
    assert float((invariant[:, 0] == invariant[:, 1]).float().mean()) < 0.05
    pairs = torch.cat([_entities(task, fit.base), _entities(task, fit.source)], dim=1)
    assert torch.unique(pairs, dim=0).shape[0] == fit.size  # no pair repeats
    assert not bool((pairs[:, :4] == pairs[:, 4:]).all(dim=1).any())  # base != source


def test_heq_per_variable_calibration_scores_each_variable_on_its_own_pairs():
    task = HierarchicalEquality()
    spec = PairsSpec(scheme="paper", fit=40, calibration=202, test=20,
                     calibration_scope="per_variable")
    banks = make_banks(task, spec)
    cal = banks.calibration
    assert cal.size == 200  # 202 rounded down to 4 x 50
    assert not bool((cal.scored("WX") & cal.scored("YZ")).any())
    for variable in task.variables:
        scored = cal.scored(variable)
        assert int(scored.sum()) == 100
        assert int(cal.changes_output(variable)[scored].sum()) == 50  # half sensitive
    # the shared bank of the same seed is the authors' (both variables score every pair)
    shared = make_banks(task, spec.model_copy(update={"calibration_scope": "shared"}))
    assert shared.calibration.scope is None and torch.equal(shared.test.base, banks.test.base)


def test_per_variable_calibration_is_refused_where_it_has_no_construction():
    with pytest.raises(ValueError, match="calibration_scope per_variable needs scheme: paper"):
        PairsSpec(calibration_scope="per_variable")
    spec = PairsSpec(scheme="paper", fit=26, calibration=26, test=26,
                     calibration_scope="per_variable")
    with pytest.raises(TaskError) as error:
        make_banks(BinaryAddition(), spec)
    assert error.value.where == "pairs.calibration_scope"
    with pytest.raises(TaskError) as error:
        make_banks(HierarchicalEquality(), spec.model_copy(update={"calibration": 3}))
    assert error.value.where == "pairs.calibration"


def test_heq_paper_banks_are_seeded():
    task = HierarchicalEquality()
    spec = PairsSpec(scheme="paper", fit=50, calibration=50, test=20, seed=3)
    first, again = make_banks(task, spec), make_banks(task, spec)
    assert torch.equal(first.test.base, again.test.base)
    assert torch.equal(first.calibration.source, again.calibration.source)
    other = make_banks(task, spec.model_copy(update={"seed": 4}))
    assert not torch.equal(first.fit.base, other.fit.base)


def _operands(bank_inputs: torch.Tensor) -> torch.Tensor:
    """(P,) codes a * 2**n + b from (P, n, 2) bit inputs."""
    n = bank_inputs.shape[1]
    weights = 2 ** torch.arange(n)
    a = (bank_inputs[..., 0].long() * weights).sum(-1)
    b = (bank_inputs[..., 1].long() * weights).sum(-1)
    return a * 2**n + b


def _sum_bits(task: BinaryAddition, codes: torch.Tensor) -> torch.Tensor:
    n = task.num_bits
    values = task.causal.run(task.split_bits(codes >> n, codes & (2**n - 1)))
    return torch.stack([values[f"S{i}"] for i in range(n)], dim=1)


def test_adder_paper_banks_pair_every_base_with_its_26_structured_sources():
    task = BinaryAddition(4)
    assert sources_per_base(4) == 26
    banks = make_banks(task, PairsSpec(scheme="paper", fit=3328, calibration=1664, test=1664))
    assert (banks.fit.size, banks.calibration.size, banks.test.size) == (3328, 1664, 1664)
    bases = [_operands(bank.base).reshape(-1, 26)
             for bank in (banks.fit, banks.calibration, banks.test)]
    assert all(bool((b == b[:, :1]).all()) for b in bases)  # grouped by base
    every = torch.cat([b[:, 0] for b in bases])
    assert torch.equal(every.sort().values, torch.arange(256))  # each base in one bank
    source = _operands(banks.fit.source).reshape(-1, 26)
    flipped = (source[:, :8] ^ bases[0][:, :8])
    assert bool((flipped.bitwise_and(flipped - 1) == 0).all())  # the 8 single-bit flips
    # the source shares the base's earlier sum bits S_0..S_{i-1} in the reference's
    # 85 / 70 / 52 % of the test pairs (C1 / C2 / C3; balanced banks: 47 / 24 / 12 %)
    test = banks.test
    base_sums = _sum_bits(task, _operands(test.base))
    source_sums = _sum_bits(task, _operands(test.source))
    shares = [float((base_sums[:, :i] == source_sums[:, :i]).all(1).float().mean())
              for i in (1, 2, 3)]
    for share, reference in zip(shares, (0.85, 0.70, 0.52), strict=True):
        assert abs(share - reference) < 0.03, shares
    rates = banks.test.change_rates()
    assert 0.15 < rates["C1"] < rates["C2"] < rates["C3"] < 0.5


def test_adder_paper_banks_refuse_more_bases_than_operand_pairs():
    with pytest.raises(TaskError) as caught:
        make_banks(BinaryAddition(3), PairsSpec(scheme="paper", fit=2000, calibration=100,
                                                test=100))
    assert caught.value.where == "pairs"
    with pytest.raises(TaskError) as caught:
        make_banks(BinaryAddition(8), PairsSpec(scheme="paper"))
    assert caught.value.where == "task.params.num_bits"


def test_mcqa_paper_bank_is_half_answer_position_pairs():
    task = MultipleChoiceColours()
    bank = make_banks(task, PairsSpec(scheme="paper", fit=400, calibration=10, test=10)).fit
    assert bank.size == 400
    # 200 answerPosition pairs, and the few pairs of the other half that happen to ask
    # the same object with the same colour
    assert 200 <= int(_answer_position(bank, task).sum()) <= 230
    moved = task.draw_answer_position_pairs(200, torch.Generator().manual_seed(0))
    assert bool(_answer_position(moved, task).all())
    assert bool(moved.changes_output("answer_pointer").all())  # the pointer moves
    assert not bool(moved.changes_output("answer_token").any())  # the colour stays


def _answer_position(bank: PairBank, task: MultipleChoiceColours) -> torch.Tensor:
    """(P,) bool: pairs whose source differs from the base only in option colours."""
    options = torch.zeros(task.length, dtype=torch.bool)
    options[4 * task.num_objects + 5 + 1::2][:task.num_options] = True
    same_rest = (bank.base[:, ~options] == bank.source[:, ~options]).all(1)
    same_set = (bank.base[:, options].sort(1).values == bank.source[:, options].sort(1).values
                ).all(1)
    return same_rest & same_set & (bank.base != bank.source).any(1)


@pytest.mark.parametrize("name", ["heq", "adder", "mcqa"])
def test_the_paper_examples_are_paper_scheme_specs(name: str):
    spec = load_job_spec(Path(__file__).parents[4] / "examples" / "paper" / f"{name}.yaml")
    assert spec.pairs.scheme == "paper" and spec.das.mode == "guided"
