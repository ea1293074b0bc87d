"""The PLOT authors' adder pair banks (``pairs.scheme: paper``).

Every operand pair (a, b) is a base of exactly one bank: the bases are dealt round-robin
from buckets of equal longest carry run (each bucket shuffled), so every bank sees every
run length. Each base is paired with its *structured sources*, never random ones:

- the 2n single-bit flips of a or b;
- for each carry C_i (i = 1..n), the ``carry_sources(n)[i - 1]`` operand pairs that flip
  C_i and, among those, share the most earlier sum bits S_0..S_{i-1} with the base, then
  differ least in the other carries and sum bits, then in input bits (ties by (a, b)).

For 4 bits that is 8 flips + 3 + 5 + 7 + 3 carry targets = 26 sources per base, and the
reference's 128 / 64 / 64 bases give 3328 / 1664 / 1664 pairs. Every pair scores every
carry; its sensitive and invariant pairs are the ones where that carry's interchange does
or does not change the output.
"""

from __future__ import annotations

import torch
from torch import Tensor

from core.causal.addition import BinaryAddition
from core.causal.bank import Banks, PairBank
from core.causal.sampling import label_pairs
from core.errors import TaskError

MAX_PAPER_BITS = 6  # every operand pair is a candidate source: 4096 of them at 6 bits


def carry_sources(num_bits: int) -> tuple[int, ...]:
    """Targeted sources per carry C_1..C_n: 3 each, 5 for C_2 and 7 for C_3 (the reference's
    ``structured_26`` policy, which weights the carries that are hardest to isolate)."""
    counts = [3] * num_bits
    if num_bits >= 3:
        counts[1], counts[2] = 5, 7
    return tuple(counts)


def sources_per_base(num_bits: int) -> int:
    return 2 * num_bits + sum(carry_sources(num_bits))


def _bits(task: BinaryAddition, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, n) carries C_1..C_n, (B, n) sum bits S_0..S_{n-1}, (B, 2n) input bits."""
    values = task.causal.run(task.split_bits(a, b))
    n = task.num_bits
    carries = torch.stack([values[f"C{i}"] for i in range(1, n + 1)], dim=1)
    sums = torch.stack([values[f"S{i}"] for i in range(n)], dim=1)
    inputs = torch.stack([values[f"{s}{i}"] for i in range(n) for s in "ab"], dim=1)
    return carries, sums, inputs


def longest_carry_run(carries: Tensor) -> Tensor:
    """(B,) long: the longest run of consecutive set carries in each row of (B, n)."""
    run = torch.zeros(carries.shape[0], dtype=torch.long)
    best = torch.zeros_like(run)
    for i in range(carries.shape[1]):
        run = (run + 1) * carries[:, i]
        best = torch.maximum(best, run)
    return best


def split_bases(task: BinaryAddition, counts: tuple[int, int, int],
                generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Disjoint fit / calibration / test bases, each (count,) long codes ``a * 2**n + b``,
    dealt round-robin over buckets of equal longest carry run.

    Raises:
        TaskError: the three counts need more bases than there are operand pairs.
    """
    n = task.num_bits
    codes = torch.arange(4 ** n)
    if sum(counts) > codes.numel():
        raise TaskError(f"{n}-bit operands make {codes.numel()} bases, but the banks need "
                        f"{sum(counts)} ({' + '.join(map(str, counts))} pairs / "
                        f"{sources_per_base(n)} sources per base)", "pairs")
    carries, _, _ = _bits(task, codes >> n, codes & (2 ** n - 1))
    runs = longest_carry_run(carries)
    buckets = []
    for length in torch.unique(runs).tolist():
        members = codes[runs == length]
        buckets.append(members[torch.randperm(members.numel(), generator=generator)])
    depth = max(bucket.numel() for bucket in buckets)
    dealt = torch.stack([torch.cat([bucket, torch.full((depth - bucket.numel(),), -1)])
                         for bucket in buckets], dim=1).reshape(-1)  # round by round
    dealt = dealt[dealt >= 0][:sum(counts)]
    fit, calibration, test = torch.split(dealt, list(counts))
    return fit, calibration, test


def structured_sources(task: BinaryAddition, bases: Tensor) -> Tensor:
    """(B, sources_per_base) long source codes of each base code in ``bases`` (B,)."""
    n = task.num_bits
    mask = 2 ** n - 1
    a, b = bases >> n, bases & mask
    flips = [torch.stack([((a ^ (1 << i)) << n) | b, (a << n) | (b ^ (1 << i))], dim=1)
             for i in range(n)]
    every = torch.arange(4 ** n)
    base_carries, base_sums, base_inputs = _bits(task, a, b)
    carries, sums, inputs = _bits(task, every >> n, every & mask)  # (M, ·)
    endogenous = torch.cat([carries, sums], dim=1)
    base_endogenous = torch.cat([base_carries, base_sums], dim=1)
    differ = base_endogenous.unsqueeze(1) != endogenous.unsqueeze(0)  # (B, M, 2n)
    hamming = (base_inputs.unsqueeze(1) != inputs.unsqueeze(0)).sum(-1)  # (B, M)
    targeted = []
    for i, count in enumerate(carry_sources(n), start=1):
        prefix = (base_sums[:, :i].unsqueeze(1) != sums[:, :i].unsqueeze(0)).sum(-1)
        others = differ.sum(-1) - differ[..., i - 1].long()
        # lexicographic (prefix, others, hamming, code): each term below the next's unit
        key = ((prefix * (4 * n + 1) + others) * (2 * n + 1) + hamming) * 4 ** n + every
        flips_carry = base_carries[:, i - 1].unsqueeze(1) != carries[:, i - 1].unsqueeze(0)
        key = torch.where(flips_carry, key, torch.iinfo(torch.long).max)
        targeted.append(torch.topk(key, count, dim=1, largest=False).indices)
    return torch.cat([*flips, *targeted], dim=1)


def _bank(task: BinaryAddition, bases: Tensor) -> PairBank:
    n = task.num_bits
    sources = structured_sources(task, bases)
    base = bases.unsqueeze(1).expand_as(sources).reshape(-1)
    source = sources.reshape(-1)
    mask = 2 ** n - 1
    return label_pairs(task.causal, task.encode, task.split_bits(base >> n, base & mask),
                       task.split_bits(source >> n, source & mask), task.variables)


def adder_paper_banks(task: BinaryAddition, fit: int, calibration: int, test: int,
                      generator: torch.Generator) -> Banks:
    """The reference's adder banks: ``size // sources_per_base`` bases per bank (at least
    one), each with all its structured sources, pairs grouped by base.

    Raises:
        TaskError: more than ``MAX_PAPER_BITS`` bits, or more bases than operand pairs.
    """
    if task.num_bits > MAX_PAPER_BITS:
        raise TaskError(f"the paper scheme pairs every base with every operand pair as a "
                        f"candidate source; at most {MAX_PAPER_BITS} bits, got "
                        f"{task.num_bits}", "task.params.num_bits")
    per_base = sources_per_base(task.num_bits)
    counts = tuple(max(1, size // per_base) for size in (fit, calibration, test))
    bases = split_bases(task, (counts[0], counts[1], counts[2]), generator)
    fit_bank, calibration_bank, test_bank = (_bank(task, codes) for codes in bases)
    return Banks(fit=fit_bank, calibration=calibration_bank, test=test_bank)
