"""Coupling diagnostics: row entropy, margins, null mass, look-alike variables, warnings."""

from __future__ import annotations

import math

import pytest
import torch

from core.causal.bank import Banks, PairBank
from core.diagnostics import (
    CouplingDiagnostics,
    PairDiagnostics,
    VariableDiagnostics,
    coupling_warnings,
    diagnose_pairs,
    diagnose_row,
)
from core.engine import trace_bank
from core.level_inputs import LevelInputs
from core.progressive import run_levels
from core.result import LevelResult
from core.signatures import abstract_signatures
from core.spec import CalibrationSpec, CouplingSpec, LevelSpec
from tests.unit.core.planted import planted_bank, planted_mlp

SITES = ["s0", "s1", "s2", "s3"]


def test_a_row_is_diagnosed_from_its_plan() -> None:
    # rows: variable 0, variable 1, null; columns: 4 sites
    plan = torch.tensor([[0.20, 0.10, 0.03, 0.00],
                         [0.00, 0.10, 0.10, 0.13],
                         [0.05, 0.05, 0.12, 0.12]], dtype=torch.float64)
    row = diagnose_row(plan, 0, null_row=True, kept=[0, 1],
                       cost_row=torch.tensor([0.1, 0.3, 0.6, 0.9]), site_ids=SITES)
    p = torch.tensor([0.20, 0.10, 0.03, 0.0]) / 0.33
    entropy = -sum(float(x) * math.log(float(x)) for x in p if x > 0) / math.log(4)
    assert row.entropy == pytest.approx(entropy)
    assert (row.best_site, row.second_site) == ("s0", "s1")
    assert row.margin == pytest.approx(0.10 / 0.33)
    assert row.cost_margin == pytest.approx(0.2)
    assert row.null_mass == pytest.approx(0.34 / 1.0)
    assert row.null_share_kept == pytest.approx(0.10 / 0.50)  # null 0.05 + 0.05 of 0.5
    assert not row.near_uniform


def test_entropy_is_one_for_a_uniform_row_and_zero_for_one_site() -> None:
    plan = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    uniform = diagnose_row(plan, 0, False, [0], torch.zeros(4), SITES)
    single = diagnose_row(plan, 1, False, [0], torch.zeros(4), SITES)
    assert uniform.entropy == pytest.approx(1.0) and uniform.near_uniform
    assert uniform.margin == 0.0 and uniform.null_mass is None
    assert single.entropy == pytest.approx(0.0) and single.margin == pytest.approx(1.0)


def _bank() -> PairBank:
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 3, (400, 1), generator=g)
    a = torch.randint(0, 3, (400, 1), generator=g)
    b = torch.randint(0, 3, (400, 1), generator=g)
    return PairBank(base.float(), base.float(), base, {"A": a, "A2": a.clone(), "B": b})


def test_identical_labels_give_cosine_one_and_full_agreement() -> None:
    bank = _bank()
    variables = ["A", "A2", "B"]
    rows = {"A": torch.tensor([0.5, 0.5, 0.0]), "A2": torch.tensor([0.5, 0.5, 0.0]),
            "B": torch.tensor([0.0, 0.25, 0.75])}
    pairs = diagnose_pairs(variables, abstract_signatures(bank, variables, 3),
                           bank.counterfactual_labels, bank.base_labels, rows)
    same, a_b = pairs[0], pairs[1]
    assert (same.first, same.second) == ("A", "A2")
    assert same.signature_cosine == pytest.approx(1.0) and same.label_agreement == 1.0
    assert same.row_overlap == pytest.approx(1.0) and same.similar
    assert (a_b.first, a_b.second) == ("A", "B")
    assert a_b.row_overlap == pytest.approx(0.25)
    # independent labels over 3 classes: the same label on about a third of moved pairs
    assert 0.15 < a_b.label_agreement < 0.5 and a_b.signature_cosine < 0.6
    assert not a_b.similar


def test_warnings_name_the_pair_and_by_how_much() -> None:
    row = VariableDiagnostics(0.995, "s0", "s1", 0.001, 0.01, 0.33, 0.0)
    clear = VariableDiagnostics(0.3, "s2", "s3", 0.4, 0.2, 0.33, 0.0)
    diagnostics = CouplingDiagnostics(
        {"A": row, "A2": clear, "B": clear},
        [PairDiagnostics("A", "A2", 0.998, 0.97, 0.91),
         PairDiagnostics("A", "B", 0.40, 0.3, 0.1)])
    warnings = coupling_warnings(["A", "A2", "B"], diagnostics, every_plan_uniform=["B"],
                                 silent=[])
    assert any("A and A2 have nearly identical signatures (cosine 0.998" in w
               and "97.0 %" in w and "overlap 0.910" in w for w in warnings)
    assert not any("A and B" in w for w in warnings)
    assert any(w.startswith("the row of A in its chosen plan is nearly uniform (entropy 0.995")
               for w in warnings)
    assert any(w.startswith("every plan's row for B is nearly uniform") for w in warnings)
    assert not any("A2" in w and "uniform" in w for w in warnings)


@pytest.fixture(scope="module")
def copied() -> list[LevelResult]:
    """The planted net with a third variable whose labels are exactly P's, and a silent R."""
    def with_copies(bank: PairBank) -> PairBank:
        labels = dict(bank.counterfactual_labels)
        labels["P_copy"] = labels["P"].clone()
        labels["R"] = bank.base_labels.clone()  # never moves the output
        return PairBank(bank.base, bank.source, bank.base_labels, labels)

    net = planted_mlp()
    banks = Banks(*(with_copies(planted_bank(300, seed)) for seed in range(3)))
    traces = {s: trace_bank(net, getattr(banks, s)) for s in ("fit", "calibration", "test")}
    inputs = LevelInputs.local(net, banks, traces, CouplingSpec(epsilons=[0.01]),
                               CalibrationSpec(top_k=[1], strengths=[1.0]), 50_000)
    return run_levels([LevelSpec(granularity="neuron")], inputs)


def test_a_copied_variable_is_flagged_with_its_twin(copied: list[LevelResult]) -> None:
    level = copied[0]
    assert level.diagnostics is not None
    pairs = {(p.first, p.second): p for p in level.diagnostics.pairs}
    twin = pairs[("P", "P_copy")]
    assert twin.signature_cosine == pytest.approx(1.0) and twin.label_agreement == 1.0
    assert twin.row_overlap > 0.99  # balanced transport gives them the same row
    assert pairs[("P", "Q")].signature_cosine < 0.9 and not pairs[("P", "Q")].similar
    flagged = [w for w in level.warnings if "nearly identical signatures" in w]
    assert len(flagged) == 1 and flagged[0].startswith("P and P_copy ")
    assert any(w.startswith("R never changes the output") for w in level.warnings)


def test_level_diagnostics_describe_its_rows(copied: list[LevelResult]) -> None:
    level = copied[0]
    assert level.diagnostics is not None
    q = level.diagnostics.variables["Q"]
    assert q.best_site == level.kept_by_variable["Q"][0] == "layer:1/dims:4"
    assert 0.0 <= q.entropy < 0.99 and q.null_mass == pytest.approx(1 / 5)
    assert LevelResult.model_validate(level.to_json()) == level
