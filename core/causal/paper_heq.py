"""The PLOT authors' HEQ pair banks (``pairs.scheme: paper``).

Every bank draws its own pool of distinct entity rows (W, X, Y, Z), each entity uniform
(so W == X in about 1 / num_entities of the rows), and pairs two different rows of the
pool in random order, keeping a pair only while its *kind* still has room:

- fit: half the pairs change the output under some variable's interchange, half under none;
- calibration: half WX-only pairs (the WX interchange changes the output, the YZ one does
  not), half YZ-only pairs, each scored for both variables (or, ``calibration_scope:
  per_variable``, the test banks' construction: each variable's own pairs, scored for it);
- test: for each variable, ``n`` sensitive pairs (its interchange changes the output) and
  ``n`` invariant ones, each scored for that variable alone (``PairBank.scope``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from core.causal.bank import Banks, PairBank, concat_banks
from core.causal.heq import ENTITIES, HierarchicalEquality
from core.causal.sampling import label_pairs
from core.errors import TaskError

POOL_ROWS = 2048  # rows per pool (the reference's pair pool)
RARE_POOL_ROWS = 4096  # rows per pool of a WX-only / YZ-only bank
CHUNK = 1 << 14  # candidate pairs drawn and labelled at once

Kind = Callable[[dict[str, Tensor]], Tensor]
"""(P,) bool: the candidate pairs of one kind, from each variable's (P,) bool "its
interchange changes the output"."""


def sample_rows(task: HierarchicalEquality, size: int, generator: torch.Generator) -> Tensor:
    """(size, 4) long distinct entity rows, every entity uniform."""
    total = task.num_entities ** len(ENTITIES)
    if size > total:
        raise TaskError(f"a pool of {size} rows needs more than {total} distinct rows",
                        "pairs")
    codes = torch.zeros(0, dtype=torch.long)
    while codes.numel() < size:
        drawn = torch.randint(total, (2 * size,), generator=generator)
        codes = torch.unique(torch.cat([codes, drawn]))
    codes = codes[torch.randperm(codes.numel(), generator=generator)[:size]]
    digits = [codes // task.num_entities ** (3 - i) % task.num_entities for i in range(4)]
    return torch.stack(digits, dim=1)


def pool_pairs(task: HierarchicalEquality, n: int, generator: torch.Generator,
               kinds: list[tuple[Kind, int]], pool_rows: int = POOL_ROWS) -> PairBank:
    """Pairs of distinct rows of one fresh pool, ``count`` of each ``(kind, count)``, taken
    in the order random draws of the pool's ordered pairs meet them; no pair repeats.

    Raises:
        TaskError: the pool holds too few pairs of some kind.
    """
    rows = sample_rows(task, pool_rows, generator)
    ordered = pool_rows * (pool_rows - 1)
    wanted = torch.tensor([count for _, count in kinds])
    picked: list[PairBank] = []
    seen = torch.zeros(0, dtype=torch.long)
    while seen.numel() < ordered:
        index = _fresh(torch.randint(ordered, (CHUNK,), generator=generator), seen)
        seen = torch.cat([seen, index])
        base, shift = index // (pool_rows - 1), index % (pool_rows - 1)
        source = (base + 1 + shift) % pool_rows  # every other row, once each
        changes = _changes_output(rows[base], rows[source])
        taken = torch.zeros(index.numel(), dtype=torch.bool)
        for k, (kind, _) in enumerate(kinds):
            members = (kind(changes) & ~taken).nonzero().squeeze(-1)[:int(wanted[k])]
            taken[members] = True
            wanted[k] -= members.numel()
        chosen = taken.nonzero().squeeze(-1)
        picked.append(_label(task, rows[base[chosen]], rows[source[chosen]]))
        if int(wanted.sum()) == 0:
            return concat_banks(picked)
    raise TaskError(f"a pool of {pool_rows} rows has too few pairs for a bank of {n}",
                    "pairs")


def _fresh(index: Tensor, seen: Tensor) -> Tensor:
    """The entries of ``index`` not in ``seen`` and not repeating an earlier entry, in order."""
    _, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel())
    first = torch.full((int(inverse.max()) + 1,), index.numel()).scatter_reduce(
        0, inverse, positions, reduce="amin")
    keep = first[inverse] == positions
    if seen.numel():
        keep &= ~torch.isin(index, seen)
    return index[keep]


def _changes_output(base: Tensor, source: Tensor) -> dict[str, Tensor]:
    """Each variable's "its interchange changes O" for (P, 4) rows: O = (WX == YZ) flips
    exactly when the interchanged equality differs between base and source."""
    return {"WX": (base[:, 0] == base[:, 1]) != (source[:, 0] == source[:, 1]),
            "YZ": (base[:, 2] == base[:, 3]) != (source[:, 2] == source[:, 3])}


def _label(task: HierarchicalEquality, base: Tensor, source: Tensor) -> PairBank:
    base_inputs = dict(zip(ENTITIES, base.T, strict=True))
    source_inputs = dict(zip(ENTITIES, source.T, strict=True))
    return label_pairs(task.causal, task.encode, base_inputs, source_inputs, task.variables)


def _changes(variable: str, changed: bool = True) -> Kind:
    return lambda changes: changes[variable] == changed


def _only(variable: str, other: str) -> Kind:
    return lambda changes: changes[variable] & ~changes[other]


def _none_changes(changes: dict[str, Tensor]) -> Tensor:
    return ~(changes["WX"] | changes["YZ"])


def _some_change(changes: dict[str, Tensor]) -> Tensor:
    return changes["WX"] | changes["YZ"]


def heq_paper_banks(task: HierarchicalEquality, fit: int, calibration: int, test: int,
                    generators: tuple[torch.Generator, torch.Generator, torch.Generator],
                    per_variable_calibration: bool = False) -> Banks:
    """The reference's HEQ banks: ``fit`` pairs, ``calibration`` pairs and ``2 * 2 * test``
    test pairs (a sensitive and an invariant bank of ``test`` per variable).

    With ``per_variable_calibration`` the calibration bank is the test banks' construction
    instead: ``calibration // 4`` sensitive and as many invariant pairs per variable, each
    scored for its variable alone (``PairBank.scope``).
    """
    fit_gen, calibration_gen, test_gen = generators
    fit_bank = pool_pairs(task, fit, fit_gen,
                          [(_some_change, (fit + 1) // 2), (_none_changes, fit // 2)])
    if per_variable_calibration:
        per_kind = calibration // (2 * len(task.variables))
        if per_kind < 1:
            raise TaskError(f"a per-variable calibration bank of {calibration} pairs has no "
                            "pair of each kind per variable (at least 4)", "pairs.calibration")
        calibration_bank = scored_banks(task, task.variables, per_kind, calibration_gen)
    else:
        half = calibration // 2
        calibration_bank = concat_banks([
            pool_pairs(task, half, calibration_gen, [(_only("WX", "YZ"), half)],
                       RARE_POOL_ROWS),
            pool_pairs(task, calibration - half, calibration_gen,
                       [(_only("YZ", "WX"), calibration - half)], RARE_POOL_ROWS),
        ])
    return Banks(fit=_shuffled(fit_bank, fit_gen),
                 calibration=_shuffled(calibration_bank, calibration_gen),
                 test=scored_banks(task, task.variables, test, test_gen))


def scored_banks(task: HierarchicalEquality, variables: Sequence[str], n: int,
                 generator: torch.Generator, pool_rows: int = POOL_ROWS) -> PairBank:
    """For each of ``variables`` in turn, ``n`` pairs where its interchange changes the
    output and ``n`` where it does not (each from a fresh pool of ``pool_rows`` rows), each
    pair scored for that variable alone (``PairBank.scope``): the test banks' construction."""
    parts = []
    for variable in variables:
        for kind in (_changes(variable), _changes(variable, changed=False)):
            part = pool_pairs(task, n, generator, [(kind, n)], pool_rows)
            scope = {v: torch.full((part.size,), v == variable) for v in task.variables}
            parts.append(PairBank(part.base, part.source, part.base_labels,
                                  part.counterfactual_labels, scope))
    return concat_banks(parts)


def _shuffled(bank: PairBank, generator: torch.Generator) -> PairBank:
    return bank.subset(torch.randperm(bank.size, generator=generator))
