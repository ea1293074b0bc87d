"""Pair banks: counterfactual (base, source) pairs with their base and counterfactual labels."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PairBank:
    """P shared (base, source) pairs and the labels every variable's interchange yields.

    Attributes:
        base: (P, *input_shape) inputs of the base runs.
        source: (P, *input_shape) inputs of the source runs.
        base_labels: (P, O) long, the causal model's output on the base (O output heads).
        counterfactual_labels: variable -> (P, O) long, the output of the base run with
            that variable set to its value on the source.
        scope: variable -> (P,) bool, the pairs that score that variable (a bank made of
            per-variable test banks, as the paper's HEQ test); None: every pair scores
            every variable.
    """

    base: Tensor
    source: Tensor
    base_labels: Tensor
    counterfactual_labels: dict[str, Tensor]
    scope: dict[str, Tensor] | None = None

    @property
    def size(self) -> int:
        return int(self.base.shape[0])

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.counterfactual_labels)

    def changes_output(self, variable: str) -> Tensor:
        """(P,) bool: pairs where interchanging ``variable`` changes some output head."""
        return (self.counterfactual_labels[variable] != self.base_labels).any(dim=-1)

    def scored(self, variable: str) -> Tensor:
        """(P,) bool: the pairs whose interchange of ``variable`` is scored."""
        if self.scope is None:
            return torch.ones(self.size, dtype=torch.bool, device=self.base.device)
        return self.scope[variable]

    def subset(self, index: Tensor | slice) -> PairBank:
        """The pairs at ``index`` (a slice, a long index or a bool mask)."""
        return PairBank(
            base=self.base[index],
            source=self.source[index],
            base_labels=self.base_labels[index],
            counterfactual_labels={v: y[index] for v, y in self.counterfactual_labels.items()},
            scope=None if self.scope is None else {v: m[index] for v, m in self.scope.items()},
        )

    def to(self, device: torch.device | str) -> PairBank:
        return PairBank(
            base=self.base.to(device),
            source=self.source.to(device),
            base_labels=self.base_labels.to(device),
            counterfactual_labels={
                v: y.to(device) for v, y in self.counterfactual_labels.items()
            },
            scope=None if self.scope is None else {
                v: m.to(device) for v, m in self.scope.items()},
        )

    def change_rates(self) -> dict[str, float]:
        """Share of each variable's scored pairs where its interchange changes the output."""
        return {v: float(self.changes_output(v)[self.scored(v)].float().mean())
                for v in self.variables}


@dataclass(frozen=True)
class Banks:
    """The three disjoint banks of one job: fit the coupling, calibrate handles, test them."""

    fit: PairBank
    calibration: PairBank
    test: PairBank

    @property
    def variables(self) -> tuple[str, ...]:
        return self.fit.variables


def concat_banks(banks: list[PairBank]) -> PairBank:
    """One bank holding the pairs of ``banks`` in order (they share variables and shapes);
    it has a scope when any of them has one."""
    first = banks[0]
    scoped = any(b.scope is not None for b in banks)
    return PairBank(
        base=torch.cat([b.base for b in banks]),
        source=torch.cat([b.source for b in banks]),
        base_labels=torch.cat([b.base_labels for b in banks]),
        counterfactual_labels={
            v: torch.cat([b.counterfactual_labels[v] for b in banks]) for v in first.variables
        },
        scope={v: torch.cat([b.scored(v) for b in banks]) for v in first.variables}
        if scoped else None,
    )
