"""Pair sampling that controls how often each variable's interchange changes the output.

Candidate pairs are drawn in vectorised chunks. Each pair has a *change pattern*: the set of
variables whose interchange moves the output, coded as bits. A target distribution over the
observed patterns is fitted by raking (iterative proportional fitting) so that every
variable's marginal change rate equals ``changed_share`` while staying as close as possible
(in KL) to how often the task produces each pattern; integer quotas per pattern are then
filled from fresh chunks, sized from the observed pattern rates so rare patterns still fill
in a few rounds. When a quota cannot be met (an infeasible share, or ``max_rounds`` spent),
the rest is filled greedily toward the target. No pool of ordered pairs is enumerated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from core.causal.bank import PairBank, concat_banks
from core.causal.model import CausalModel
from core.errors import TaskError

MAX_CHUNK = 1 << 18  # candidates drawn at once at most, to bound memory

Draw = Callable[[int, torch.Generator], PairBank]
"""``draw(m, generator)`` -> m labelled candidate pairs, drawn independently."""

Encode = Callable[[Mapping[str, Tensor]], Tensor]
"""Maps a batch of causal inputs (name -> (B,)) to net inputs (B, *input_shape)."""


def label_pairs(
    causal: CausalModel,
    encode: Encode,
    base_inputs: Mapping[str, Tensor],
    source_inputs: Mapping[str, Tensor],
    variables: Sequence[str],
) -> PairBank:
    """Label (base, source) pairs with the base output and every variable's counterfactual.

    Args:
        causal: the causal model H.
        encode: causal inputs -> net inputs (B, *input_shape).
        base_inputs: input name -> (B,) tensor of the base runs.
        source_inputs: input name -> (B,) tensor of the source runs.
        variables: the variables to interchange, one at a time.

    Returns:
        A PairBank of B pairs with (B, O) labels.
    """
    counterfactual = {
        v: causal.output_labels(causal.interchange(base_inputs, source_inputs, [v]))
        for v in variables
    }
    return PairBank(
        base=encode(base_inputs),
        source=encode(source_inputs),
        base_labels=causal.output_labels(causal.run(base_inputs)),
        counterfactual_labels=counterfactual,
    )


def change_codes(bank: PairBank) -> Tensor:
    """(P,) long: bit j is set where the interchange of ``bank.variables[j]`` changes the
    output."""
    codes = torch.zeros(bank.size, dtype=torch.long, device=bank.base.device)
    for j, variable in enumerate(bank.variables):
        codes |= bank.changes_output(variable).long() << j
    return codes


def code_bits(codes: Tensor, num_variables: int) -> Tensor:
    """(K, V) float 0/1: the variable bits of each pattern code in ``codes`` (K,)."""
    shifts = torch.arange(num_variables, device=codes.device)
    return ((codes.unsqueeze(-1) >> shifts) & 1).double()


def rake_weights(
    frequency: Tensor, bits: Tensor, share: float, max_iter: int = 500, tol: float = 1e-10
) -> Tensor:
    """Reweight patterns so every variable's marginal equals ``share`` (iterative
    proportional fitting); variables whose target is unreachable keep their marginal.

    Args:
        frequency: (K,) observed share of each pattern, positive.
        bits: (K, V) 0/1 membership of each variable in each pattern.
        share: target marginal in [0, 1].
        max_iter: raking sweeps over the variables.
        tol: stop when every reachable marginal is within ``tol`` of ``share``.

    Returns:
        (K,) weights summing to 1, the KL-closest to ``frequency`` with those marginals
        when they are feasible.
    """
    weights = frequency.double() / frequency.sum()
    for _ in range(max_iter):
        worst = 0.0
        for v in range(bits.shape[1]):
            has = bits[:, v] > 0
            marginal = float(weights[has].sum() / weights.sum())
            if marginal <= 0.0 or marginal >= 1.0:
                continue  # every or no pattern moves v: nothing to trade off
            worst = max(worst, abs(marginal - share))
            weights = torch.where(has, weights * share / marginal,
                                  weights * (1.0 - share) / (1.0 - marginal))
        if worst < tol:
            break
    return weights / weights.sum()


def allocate_quotas(weights: Tensor, n: int) -> Tensor:
    """(K,) long counts summing to ``n``, proportional to ``weights`` (largest remainder)."""
    exact = weights * n
    quotas = exact.floor().long()
    short = n - int(quotas.sum())
    if short > 0:
        order = torch.argsort(exact - quotas, descending=True)
        quotas[order[:short]] += 1
    return quotas


def sample_controlled_bank(
    draw: Draw,
    n: int,
    generator: torch.Generator,
    changed_share: float,
    max_rounds: int = 64,
) -> PairBank:
    """n pairs whose per-variable change rate is ``changed_share`` where the task allows.

    Args:
        draw: ``draw(m, generator)`` -> m labelled candidate pairs.
        n: number of pairs to return.
        generator: the only source of randomness (same seed, same bank).
        changed_share: target share of pairs where each variable's interchange changes
            the output, in [0, 1].
        max_rounds: candidate chunks to draw at most before filling greedily.

    Returns:
        A PairBank of exactly n pairs, in random order.

    Raises:
        TaskError: ``n`` < 1 or ``changed_share`` outside [0, 1].
    """
    if n < 1:
        raise TaskError(f"need at least one pair, got {n}", "pairs")
    if not 0.0 <= changed_share <= 1.0:
        raise TaskError(f"must lie in [0, 1], got {changed_share}", "pairs.changed_share")
    first_size = max(4 * n, 4096)
    chunk = draw(first_size, generator)
    num_variables = len(chunk.variables)
    patterns, counts = torch.unique(change_codes(chunk), return_counts=True)
    weights = rake_weights(counts.double(), code_bits(patterns, num_variables), changed_share)
    remaining = allocate_quotas(weights, n)
    seen = torch.zeros_like(remaining)  # candidates of each pattern drawn so far
    drawn = 0
    picked: list[PairBank] = []
    for round_index in range(max_rounds):
        if round_index > 0:
            chunk = draw(_next_chunk_size(remaining, seen, drawn, first_size), generator)
        codes = change_codes(chunk)
        seen += (codes.unsqueeze(-1) == patterns).sum(dim=0)
        drawn += chunk.size
        taken = _take_quotas(codes, patterns, remaining)
        picked.append(chunk.subset(taken))
        if int(remaining.sum()) == 0:
            break
    short = int(remaining.sum())
    if short > 0:
        filled = concat_banks(picked)
        leftover = torch.ones(chunk.size, dtype=torch.bool)
        leftover[taken] = False
        extra = _fill_greedily(chunk.subset(leftover), filled, short, changed_share)
        picked.append(extra)
    bank = concat_banks(picked)
    return bank.subset(torch.randperm(bank.size, generator=generator))


def _next_chunk_size(remaining: Tensor, seen: Tensor, drawn: int, floor: int) -> int:
    """Candidates the next chunk needs to meet the slowest open quota at the observed
    pattern rates (with a margin), between ``floor`` and ``MAX_CHUNK``."""
    open_ = remaining > 0
    rate = seen[open_].double() / drawn  # (K_open,) > 0: every quota's pattern was seen
    needed = float((remaining[open_].double() / rate).max()) * 1.25
    return int(min(max(needed, floor), max(MAX_CHUNK, floor)))


def _take_quotas(codes: Tensor, patterns: Tensor, remaining: Tensor) -> Tensor:
    """Indices into ``codes`` (P,) meeting up to ``remaining`` (K,) pairs of each pattern;
    decrements ``remaining`` in place."""
    taken = []
    for k in range(patterns.shape[0]):
        want = int(remaining[k])
        if want == 0:
            continue
        index = (codes == patterns[k]).nonzero().squeeze(-1)[:want]  # candidates are iid
        remaining[k] -= index.shape[0]
        taken.append(index)
    if not taken:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(taken)


def _fill_greedily(candidates: PairBank, filled: PairBank, short: int, share: float) -> PairBank:
    """``short`` pairs from ``candidates`` chosen one pattern at a time to pull the running
    change rates of ``filled`` plus the choice toward ``share`` (the infeasible case)."""
    num_variables = len(candidates.variables)
    codes = change_codes(candidates)
    patterns, available = torch.unique(codes, return_counts=True)
    bits = code_bits(patterns, num_variables)  # (K, V)
    changed = code_bits(change_codes(filled), num_variables).sum(dim=0)  # (V,)
    size = filled.size
    chosen = torch.zeros_like(available)
    for _ in range(min(short, candidates.size)):
        target = share * (size + 1)
        error = ((changed + bits - target) ** 2).sum(dim=-1)  # (K,)
        error[chosen >= available] = float("inf")
        k = int(torch.argmin(error))
        chosen[k] += 1
        changed += bits[k]
        size += 1
    taken = _take_quotas(codes, patterns, chosen)
    return candidates.subset(taken)
