"""Hierarchical equality: entity table, factual sampling and interchange mechanisms."""

from __future__ import annotations

import torch

from core.causal.heq import HierarchicalEquality


def test_entity_table_is_fixed_by_seed():
    a, b = HierarchicalEquality(seed=3), HierarchicalEquality(seed=3)
    torch.testing.assert_close(a.embeddings, b.embeddings)
    assert not torch.equal(a.embeddings, HierarchicalEquality(seed=4).embeddings)
    assert a.embeddings.shape == (100, 4)


def test_encode_concatenates_entity_vectors():
    task = HierarchicalEquality(num_entities=5, embedding_dim=3)
    inputs = {name: torch.tensor([i]) for i, name in enumerate("WXYZ")}
    x = task.encode(inputs)
    assert x.shape == (1, 12)
    torch.testing.assert_close(x[0, 6:9], task.embeddings[2])


def test_evaluation_examples_balance_both_equalities_and_label_the_output():
    task = HierarchicalEquality()
    generator = torch.Generator().manual_seed(0)
    inputs = task.sample_inputs(4000, generator)
    wx = inputs["W"] == inputs["X"]
    yz = inputs["Y"] == inputs["Z"]
    assert abs(wx.float().mean().item() - 0.5) < 0.04
    assert abs(yz.float().mean().item() - 0.5) < 0.04
    x, y = task.sample_evaluation_examples(500, torch.Generator().manual_seed(1))
    assert x.shape == (500, 16) and y.shape == (500, 1) and y.dtype == torch.long
    # decode the ids back from the vectors and recompute the label by hand
    ids = torch.cdist(x.reshape(500, 4, 4), task.embeddings).argmin(dim=-1)  # (500, 4)
    expected = ((ids[:, 0] == ids[:, 1]) == (ids[:, 2] == ids[:, 3])).long()
    torch.testing.assert_close(y[:, 0], expected)


def test_training_examples_draw_every_entity_uniformly() -> None:
    task = HierarchicalEquality(num_entities=10)
    x, y = task.sample_examples(20_000, torch.Generator().manual_seed(4))
    ids = torch.cdist(x.reshape(-1, 4, 4), task.embeddings).argmin(dim=-1)  # (n, 4)
    counts = torch.bincount(ids.flatten(), minlength=10).float()
    assert float(counts.min() / counts.max()) > 0.9  # every entity about as often
    wx = (ids[:, 0] == ids[:, 1]).float().mean().item()
    assert abs(wx - 0.1) < 0.01  # W == X by chance only: 1 / num_entities
    expected = ((ids[:, 0] == ids[:, 1]) == (ids[:, 2] == ids[:, 3])).long()
    torch.testing.assert_close(y[:, 0], expected)


def test_interchange_of_wx_compares_source_wx_with_base_yz():
    task = HierarchicalEquality()
    generator = torch.Generator().manual_seed(2)
    base, source = task.sample_inputs(1000, generator), task.sample_inputs(1000, generator)
    values = task.causal.interchange(base, source, ["WX"])
    expected = (source["W"] == source["X"]) == (base["Y"] == base["Z"])
    torch.testing.assert_close(values["O"], expected)
    values = task.causal.interchange(base, source, ["YZ"])
    expected = (base["W"] == base["X"]) == (source["Y"] == source["Z"])
    torch.testing.assert_close(values["O"], expected)


def test_pair_bank_labels_match_the_mechanism():
    task = HierarchicalEquality()
    bank = task.draw_pairs(300, torch.Generator().manual_seed(5))
    ids = {
        side: torch.cdist(x.reshape(300, 4, 4), task.embeddings).argmin(dim=-1)
        for side, x in (("base", bank.base), ("source", bank.source))
    }
    b, s = ids["base"], ids["source"]
    expected_wx = ((s[:, 0] == s[:, 1]) == (b[:, 2] == b[:, 3])).long()
    torch.testing.assert_close(bank.counterfactual_labels["WX"][:, 0], expected_wx)
    torch.testing.assert_close(
        bank.base_labels[:, 0], ((b[:, 0] == b[:, 1]) == (b[:, 2] == b[:, 3])).long()
    )


def test_defaults_follow_the_paper():
    task = HierarchicalEquality()
    assert task.variables == ("WX", "YZ")
    assert task.input_shape == (16,) and task.output_shape == (1, 2)
    assert task.default_net_config() == {
        "arch": "mlp", "input_dim": 16, "hidden_dims": [16, 16, 16], "num_classes": 2,
        "activation": "relu",
    }
    assert task.default_levels() == [{"granularity": "neuron"}]
