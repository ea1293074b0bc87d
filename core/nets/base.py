"""The interface the intervention engine needs of a net: trace once, resume with edits.

A net is a chain of *locations* (hidden layers, recurrent steps). ``trace`` runs it once
and keeps every location's activation; ``resume`` re-runs only the part after the first
edited location, on ``copies`` stacked copies of the traced batch, applying an edit at
each edited location. So a sweep over many sites costs a partial forward per site, and
the base and source activations are computed once per bank.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from core.errors import SiteError

# An edit maps the current activation at a location to the new one, (copies * B, D). At the
# first edited location it receives the untiled (B, D) activation, shared by every copy, so
# an edit that broadcasts (core.intervene.interchange) never materialises the tiled copy.
Edit = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Trace:
    """One clean forward pass of a batch.

    Attributes:
        inputs: (B, *input_shape) the batch.
        activations: location -> (B, D) activation at that location.
        logits: (B, O, C) output logits of the O heads.
    """

    inputs: Tensor
    activations: dict[str, Tensor]
    logits: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.inputs.shape[0])

    def slice(self, start: int, stop: int) -> Trace:
        """The trace of examples ``start:stop``."""
        return Trace(
            inputs=self.inputs[start:stop],
            activations={k: v[start:stop] for k, v in self.activations.items()},
            logits=self.logits[start:stop],
        )


class InterventableNet(nn.Module, ABC):
    """A net the engine can trace and resume. Subclasses are plain ``nn.Module``s.

    Attributes:
        config: the ``config.json`` dict the net was built from.
    """

    config: dict[str, Any]

    @property
    @abstractmethod
    def widths(self) -> dict[str, int]:
        """Location id -> activation width D, in forward order."""

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example (without the batch dimension)."""

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, int]:
        """(O heads, C classes)."""

    @abstractmethod
    def trace(self, inputs: Tensor) -> Trace:
        """Run the clean forward pass on (B, *input_shape) and keep every activation."""

    @abstractmethod
    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        """Re-run from the first edited location on ``copies`` stacked copies of ``trace``.

        Copy ``c`` of example ``b`` is row ``c * B + b``. Locations before the first edit
        are not recomputed.

        Returns:
            (copies * B, O, C) logits.
        """

    def forward(self, inputs: Tensor) -> Tensor:
        """(B, *input_shape) -> (B, O, C) logits."""
        return self.trace(inputs).logits

    def first_edited(self, edits: Mapping[str, Edit]) -> int:
        """Index (in forward order) of the earliest edited location.

        Raises:
            SiteError: ``edits`` is empty, or names a location the net does not have.
        """
        order = list(self.widths)
        unknown = [loc for loc in edits if loc not in self.widths]
        if unknown:
            raise SiteError(f"unknown location; the net has {order}", where=unknown[0])
        if not edits:
            raise SiteError("resume needs at least one edited location", where="edits")
        return min(order.index(loc) for loc in edits)


def apply_first_edit(edit: Edit, activation: Tensor, copies: int) -> Tensor:
    """Apply the first edit to the shared (B, D) activation; tile if the edit did not."""
    out = edit(activation)
    if out.shape[0] != copies * activation.shape[0]:
        out = tile(out, copies)
    return out


def tile(tensor: Tensor, copies: int) -> Tensor:
    """(B, ...) -> (copies * B, ...), copy-major."""
    if copies == 1:
        return tensor
    return tensor.repeat(copies, *([1] * (tensor.dim() - 1)))


def net_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device
