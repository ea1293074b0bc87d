"""The generic causal model: topological runs and interchange interventions."""

from __future__ import annotations

import pytest
import torch

from core.causal.model import CausalModel, Variable
from core.errors import TaskError


def chain_model() -> CausalModel:
    # declared out of order on purpose: run must sort them
    return CausalModel(
        [
            Variable("D", ("C", "A"), lambda c, a: c * 10 + a),
            Variable("B", ("A",), lambda a: a + 1),
            Variable("A"),
            Variable("C", ("B",), lambda b: b * 2),
            Variable("E", ("A",), lambda a: -a),
        ],
        outputs=["D", "E"],
    )


def test_run_evaluates_in_topological_order():
    values = chain_model().run({"A": torch.tensor([0, 3])})
    torch.testing.assert_close(values["B"], torch.tensor([1, 4]))
    torch.testing.assert_close(values["C"], torch.tensor([2, 8]))
    torch.testing.assert_close(values["D"], torch.tensor([20, 83]))


def test_interchange_sets_variable_from_source_and_recomputes_descendants_only():
    model = chain_model()
    base, source = {"A": torch.tensor([1, 2])}, {"A": torch.tensor([5, 7])}
    values = model.interchange(base, source, ["B"])
    torch.testing.assert_close(values["B"], torch.tensor([6, 8]))  # source's B
    torch.testing.assert_close(values["C"], torch.tensor([12, 16]))  # recomputed
    torch.testing.assert_close(values["D"], torch.tensor([121, 162]))  # base A, new C
    torch.testing.assert_close(values["E"], torch.tensor([-1, -2]))  # not a descendant


def test_interchange_of_several_variables_is_joint():
    model = chain_model()
    values = model.interchange({"A": torch.tensor([1])}, {"A": torch.tensor([5])}, ["C", "E"])
    torch.testing.assert_close(values["D"], torch.tensor([121]))
    torch.testing.assert_close(values["E"], torch.tensor([-5]))


def test_output_labels_stack_output_heads():
    model = chain_model()
    labels = model.output_labels(model.run({"A": torch.tensor([0, 3])}))
    torch.testing.assert_close(labels, torch.tensor([[20, 0], [83, -3]]))
    assert model.inputs == ("A",)


def test_cycle_is_refused():
    with pytest.raises(TaskError, match="cycle"):
        CausalModel([Variable("A", ("B",), abs), Variable("B", ("A",), abs)], outputs=["A"])


def test_unknown_parent_is_refused_naming_the_variable():
    with pytest.raises(TaskError) as info:
        CausalModel([Variable("A", ("Q",), abs)], outputs=["A"])
    assert info.value.where == "causal.A"


def test_missing_input_and_unknown_intervention_are_refused():
    model = chain_model()
    with pytest.raises(TaskError, match="missing input"):
        model.run({})
    with pytest.raises(TaskError) as info:
        model.interchange({"A": torch.tensor([1])}, {"A": torch.tensor([2])}, ["Z"])
    assert info.value.where == "causal.Z"
