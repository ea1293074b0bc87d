"""GeneratedTask: what every built-in task shares once it can sample and encode inputs.

A subclass provides ``causal`` (its causal model), ``variables``, ``sample_inputs`` (causal
input values of n random examples) and ``encode`` (those values -> net inputs); factual
examples, independent pairs and change-share-controlled pair banks follow from them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from core.causal.bank import PairBank
from core.causal.model import CausalModel
from core.causal.sampling import label_pairs, sample_controlled_bank


class GeneratedTask:
    """Base of the built-in tasks (see the module docstring)."""

    causal: CausalModel
    variables: tuple[str, ...]

    def sample_inputs(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    def encode(self, inputs: Mapping[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def sample_examples(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n factual training examples: net inputs (n, *input_shape), labels (n, O) long.
        By default drawn like the pairs' sides (``sample_evaluation_examples``)."""
        return self.sample_evaluation_examples(n, generator)

    def sample_evaluation_examples(self, n: int,
                                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n factual examples drawn like the sides of the counterfactual pairs: the
        distribution a trained net is judged on (its held-out sample)."""
        inputs = self.sample_inputs(n, generator)
        return self.encode(inputs), self.causal.output_labels(self.causal.run(inputs))

    def draw_pairs(self, n: int, generator: torch.Generator) -> PairBank:
        """n independent (base, source) pairs, each side sampled like a factual example."""
        base = self.sample_inputs(n, generator)
        source = self.sample_inputs(n, generator)
        return label_pairs(self.causal, self.encode, base, source, self.variables)

    def sample_bank(self, n: int, generator: torch.Generator,
                    changed_share: float = 0.5) -> PairBank:
        """n pairs where each variable's interchange changes the output in ~``changed_share``
        of them (as close as the task allows)."""
        return sample_controlled_bank(self.draw_pairs, n, generator, changed_share)
