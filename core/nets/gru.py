"""The built-in GRU-cell net: one input vector per step, one head per step, a final head.

Site ``step:{t}`` is the hidden state after step ``t``. Logits are (B, T + 1, C): head
``t`` reads the state after step ``t`` (the binary adder's sum bit t) and the last head
reads the final state (the adder's carry out).

The cell's arithmetic is written out (``gru_step``) rather than called as ``nn.GRUCell``:
the input half of the gates is computed once per example and shared by every stacked copy
of a resume, the recurrent half is one fused matmul-plus-bias, and the state update is a
single ``lerp`` (the CPU ``gru_cell`` runs about a dozen separate kernels per step). A
resume whose only edit is at its first location runs the untouched suffix in blocks of
copies small enough to stay in cache. Trace and resume share the step, so a resume agrees
with recomputation.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.nets.base import Edit, InterventableNet, Trace, apply_first_edit

# rows of a stacked block that runs the suffix at once (its gate tensors fit in cache)
BLOCK_ROWS = 8192


def gru_step(input_gates: Tensor, h: Tensor, weight_hh: Tensor, bias_hh: Tensor) -> Tensor:
    """One ``nn.GRUCell`` step of N stacked copies of a batch, with the input half shared.

    Args:
        input_gates: (B, 3H) ``W_ih x + b_ih`` of the batch (gate order r, z, n).
        h: (N * B, H) states, copy-major.
        weight_hh, bias_hh: (3H, H) and (3H,) the recurrent weights.

    Returns:
        (N * B, H) ``(1 - z) n + z h`` with ``r, z = σ(i_rz + h_rz)``,
        ``n = tanh(i_n + r h_n)`` (as ``2 σ(2x) - 1``: equal to float rounding).
    """
    batch, width = input_gates.shape[0], h.shape[1]
    copies = h.shape[0] // batch
    recurrent = torch.addmm(bias_hh, h, weight_hh.t()).view(copies, batch, 3 * width)
    rz = torch.sigmoid(recurrent[..., : 2 * width] + input_gates[:, : 2 * width])
    pre = torch.addcmul(input_gates[:, 2 * width :], rz[..., :width], recurrent[..., 2 * width :])
    # tanh(x) = 2 σ(2x) - 1: the CPU tanh kernel is about 10x slower than sigmoid's
    squashed = torch.sigmoid(pre.mul_(2))
    n = squashed * 2 - 1 if torch.is_grad_enabled() else squashed.mul_(2).sub_(1)
    return torch.lerp(n, h.view(copies, batch, width), rz[..., width:]).view(-1, width)


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

    def _input_gates(self, inputs: Tensor) -> Tensor:
        """(B, T', 3H) the input half of every step's gates."""
        return F.linear(inputs, self.cell.weight_ih, self.cell.bias_ih)

    def _step(self, input_gates: Tensor, h: Tensor) -> Tensor:
        return gru_step(input_gates, h, self.cell.weight_hh, self.cell.bias_hh)

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        gates = self._input_gates(inputs)
        h = inputs.new_zeros(inputs.shape[0], self.cell.hidden_size)
        activations: dict[str, Tensor] = {}
        logits = []
        for t in range(self.num_steps):
            h = self._step(gates[:, t], h)  # (B, H)
            activations[f"step:{t}"] = h
            logits.append(self.heads[t](h))
        logits.append(self.final_head(h))
        return Trace(inputs=inputs, activations=activations, logits=torch.stack(logits, dim=1))

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        start = self.first_edited(edits)
        batch = trace.inputs.shape[0]
        gates = self._input_gates(trace.inputs[:, start + 1:])  # (B, T - start - 1, 3H)
        h = apply_first_edit(edits[f"step:{start}"], trace.activations[f"step:{start}"], copies)
        out = trace.logits.new_empty(copies, batch, *self.output_shape)
        out[:, :, :start] = trace.logits[:, :start]  # untouched heads, broadcast
        later = {int(loc.split(":")[1]): e for loc, e in edits.items() if loc != f"step:{start}"}
        per_block = copies if later else max(1, BLOCK_ROWS // max(1, batch))
        for c0 in range(0, copies, per_block):
            c1 = min(c0 + per_block, copies)
            self._suffix(h[c0 * batch: c1 * batch], gates, start, later, out[c0:c1])
        return out.view(copies * batch, *self.output_shape)

    def _suffix(self, h: Tensor, gates: Tensor, start: int, edits: Mapping[int, Edit],
                out: Tensor) -> None:
        """Run steps ``start + 1..`` from the (n * B, H) edited state ``h`` after step
        ``start``, writing every head from ``start`` on into ``out`` (n, B, T + 1, C)."""
        copies, batch = out.shape[0], out.shape[1]
        out[:, :, start] = self.heads[start](h).view(copies, batch, -1)
        for t in range(start + 1, self.num_steps):
            h = self._step(gates[:, t - start - 1], h)
            edit = edits.get(t)
            if edit is not None:
                h = edit(h)
            out[:, :, t] = self.heads[t](h).view(copies, batch, -1)
        out[:, :, -1] = self.final_head(h).view(copies, batch, -1)
