"""Binary addition: the ripple adder against integer arithmetic, and carry interchanges."""

from __future__ import annotations

import torch

from core.causal.addition import BinaryAddition
from core.spec import LevelSpec


def all_operand_pairs(num_bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    values = torch.arange(2**num_bits)
    a, b = torch.meshgrid(values, values, indexing="ij")
    return a.reshape(-1), b.reshape(-1)


def integer_bits(total: torch.Tensor, count: int) -> torch.Tensor:
    """(B, count) long: the low ``count`` bits of ``total``, LSB first."""
    return (total.unsqueeze(-1) >> torch.arange(count)) & 1


def test_output_is_the_binary_sum_for_every_operand_pair():
    task = BinaryAddition()
    a, b = all_operand_pairs(4)
    values = task.causal.run(task.split_bits(a, b))
    torch.testing.assert_close(task.causal.output_labels(values), integer_bits(a + b, 5))
    # carries are the carries of integer addition: C_i = bit i of (a mod 2^i + b mod 2^i)
    for i in (1, 2, 3):
        low = 2**i - 1
        torch.testing.assert_close(values[f"C{i}"], ((a & low) + (b & low)) >> i)


def test_interchange_of_c2_recomputes_s2_c3_s3_c4_exactly():
    task = BinaryAddition()
    a, b = all_operand_pairs(4)  # every base ...
    generator = torch.Generator().manual_seed(0)
    sa = torch.randint(16, a.shape, generator=generator)  # ... with a random source
    sb = torch.randint(16, a.shape, generator=generator)
    values = task.causal.interchange(task.split_bits(a, b), task.split_bits(sa, sb), ["C2"])
    carry = ((sa & 3) + (sb & 3)) >> 2  # the source's C2
    high = (a >> 2) + (b >> 2) + carry  # upper two bit pairs of the base, with that carry in
    expected = ((a + b) & 3) | (high << 2)  # the base's own S0 S1 are untouched
    torch.testing.assert_close(task.causal.output_labels(values), integer_bits(expected, 5))
    assert bool((carry != (((a & 3) + (b & 3)) >> 2)).any())  # the test exercises changes


def test_encode_feeds_bit_pairs_lsb_first():
    task = BinaryAddition()
    x = task.encode(task.split_bits(torch.tensor([0b0110]), torch.tensor([0b0011])))
    expected = torch.tensor([[[0.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]]])
    torch.testing.assert_close(x, expected)


def test_shapes_and_defaults_scale_with_num_bits():
    task = BinaryAddition(num_bits=6)
    assert task.variables == ("C1", "C2", "C3", "C4", "C5")
    x, y = task.sample_examples(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 6, 2) and y.shape == (64, 7)
    a = (x[:, :, 0].long() << torch.arange(6)).sum(-1)
    b = (x[:, :, 1].long() << torch.arange(6)).sum(-1)
    torch.testing.assert_close(y, integer_bits(a + b, 7))
    four = BinaryAddition()
    assert four.variables == ("C1", "C2", "C3")
    assert four.output_shape == (5, 2) and four.input_shape == (4, 2)
    assert four.default_net_config() == {
        "arch": "gru", "input_size": 2, "hidden_size": 16, "num_steps": 4, "num_classes": 2,
    }
    levels = [LevelSpec(**level) for level in four.default_levels()]  # valid specs
    assert [level.granularity for level in levels] == ["step", "pca"]
    assert levels[1].scope == "per_variable"  # stage B stays inside each carry's timestep
