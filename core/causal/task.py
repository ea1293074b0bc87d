"""What the engine needs of a built-in task: variables, a pair-bank sampler, a default net."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from core.causal.bank import PairBank


class CausalTask(Protocol):
    """A built-in causal task that generates factual examples and counterfactual pairs.

    Attributes:
        name: the builtin name used in job specs (``hierarchical_equality``).
        params: the parameters it was built with (recorded next to a trained net).
        variables: the abstract variables that can be localized, in a fixed order.
        input_shape: shape of one net input.
        output_shape: (O heads, C classes) of the net's output.
    """

    name: str
    params: dict[str, Any]
    variables: tuple[str, ...]
    input_shape: tuple[int, ...]
    output_shape: tuple[int, int]

    def sample_examples(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n factual examples: inputs (n, *input_shape) float and labels (n, O) long."""
        ...

    def sample_evaluation_examples(self, n: int,
                                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n factual examples drawn like the pairs' sides: a trained net's held-out sample."""
        ...

    def sample_bank(self, n: int, generator: torch.Generator, changed_share: float) -> PairBank:
        """n counterfactual pairs in which each variable's interchange changes the output
        in about ``changed_share`` of the pairs (as close as the task allows)."""
        ...

    def default_net_config(self) -> dict[str, Any]:
        """The ``config.json`` of the net ``plot train`` trains for this task."""
        ...

    def default_levels(self) -> list[dict[str, Any]]:
        """The default progressive schedule, as LevelSpec dicts."""
        ...
