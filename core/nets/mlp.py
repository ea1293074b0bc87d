"""The built-in MLP: ``linears.{i}`` for hidden layers 0..L-1 then the output layer L.

Site ``layer:{i}`` is the post-activation output of hidden layer ``i``. The net has one
output head with ``num_classes`` classes, so logits are (B, 1, C).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from itertools import pairwise
from typing import Any

from torch import Tensor, nn

from core.nets.base import Edit, InterventableNet, Trace, apply_first_edit

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(InterventableNet):
    """A feed-forward classifier; ``config`` follows the MLP contract of the README."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        dims = [int(config["input_dim"]), *map(int, config["hidden_dims"])]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))
        self.linears.append(nn.Linear(dims[-1], int(config["num_classes"])))
        self.activation = ACTIVATIONS[config.get("activation", "relu")]()
        self._widths = {f"layer:{i}": d for i, d in enumerate(dims[1:])}

    @property
    def widths(self) -> dict[str, int]:
        return self._widths

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.config["input_dim"]),)

    @property
    def output_shape(self) -> tuple[int, int]:
        return (1, int(self.config["num_classes"]))

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        h = inputs
        activations: dict[str, Tensor] = {}
        for i, linear in enumerate(self.linears[:-1]):
            h = self.activation(linear(h))  # (B, D_i)
            activations[f"layer:{i}"] = h
        logits = self.linears[-1](h).unsqueeze(1)  # (B, 1, C)
        return Trace(inputs=inputs, activations=activations, logits=logits)

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        start = self.first_edited(edits)
        h = apply_first_edit(edits[f"layer:{start}"], trace.activations[f"layer:{start}"],
                             copies)  # (copies*B, D)
        for i in range(start + 1, len(self.linears) - 1):
            h = self.activation(self.linears[i](h))
            edit = edits.get(f"layer:{i}")
            if edit is not None:
                h = edit(h)
        logits: Tensor = self.linears[-1](h).unsqueeze(1)
        return logits
