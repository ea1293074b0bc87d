"""The built-in GRU-cell net: one input vector per step, one head per step, a final head.

Site ``step:{t}`` is the hidden state after step ``t``. Logits are (B, T + 1, C): head
``t`` reads the state after step ``t`` (the binary adder's sum bit t) and the last head
reads the final state (the adder's carry out).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from core.nets.base import Edit, InterventableNet, Trace, apply_first_edit, tile


class GRUNet(InterventableNet):
    """A GRU cell unrolled over ``num_steps`` steps with per-step and final heads."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        self.num_steps = int(config["num_steps"])
        hidden = int(config["hidden_size"])
        classes = int(config["num_classes"])
        self.cell = nn.GRUCell(int(config["input_size"]), hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, classes) for _ in range(self.num_steps))
        self.final_head = nn.Linear(hidden, classes)
        self._widths = {f"step:{t}": hidden for t in range(self.num_steps)}

    @property
    def widths(self) -> dict[str, int]:
        return self._widths

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.num_steps, int(self.config["input_size"]))

    @property
    def output_shape(self) -> tuple[int, int]:
        return (self.num_steps + 1, int(self.config["num_classes"]))

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        h = inputs.new_zeros(inputs.shape[0], self.cell.hidden_size)
        activations: dict[str, Tensor] = {}
        logits = []
        for t in range(self.num_steps):
            h = self.cell(inputs[:, t], h)  # (B, H)
            activations[f"step:{t}"] = h
            logits.append(self.heads[t](h))
        logits.append(self.final_head(h))
        return Trace(inputs=inputs, activations=activations, logits=torch.stack(logits, dim=1))

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        start = self.first_edited(edits)
        inputs = tile(trace.inputs[:, start + 1:], copies)  # (copies*B, T - start - 1, I)
        h = apply_first_edit(edits[f"step:{start}"], trace.activations[f"step:{start}"], copies)
        logits = [tile(trace.logits[:, :start], copies), self.heads[start](h).unsqueeze(1)]
        for t in range(start + 1, self.num_steps):
            h = self.cell(inputs[:, t - start - 1], h)
            edit = edits.get(f"step:{t}")
            if edit is not None:
                h = edit(h)
            logits.append(self.heads[t](h).unsqueeze(1))
        logits.append(self.final_head(h).unsqueeze(1))
        return torch.cat(logits, dim=1)
