"""The interface the intervention engine needs of a net: trace once, resume with edits.

A net is a chain of *locations* (hidden layers, recurrent steps). ``trace`` runs it once
and keeps every location's activation; ``resume`` re-runs only the part after the first
edited location, on ``copies`` stacked copies of the traced batch, applying an edit at
each edited location. So a sweep over many sites costs a partial forward per site, and
the base and source activations are computed once per bank.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
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
        return self.select(slice(start, stop))

    def select(self, index: builtins.slice | Tensor) -> Trace:
        """The trace of the examples at ``index`` (a slice or a (n,) long index)."""
        activations = self.activations
        return Trace(
            inputs=self.inputs[index],
            activations=(activations.select(index)
                         if isinstance(activations, DerivedActivations)
                         else {k: v[index] for k, v in activations.items()}),
            logits=self.logits[index],
        )

    def to_device(self, device: torch.device, activations_only: bool = False,
                  pin: bool = False) -> Trace:
        """This trace with its activations (and, unless ``activations_only``, its inputs and
        logits) on ``device``; ``pin`` pins CPU activations (faster host -> GPU copies)."""
        def move(t: Tensor) -> Tensor:
            # asynchronous only towards a GPU (from pinned memory): a copy to the host is
            # read by the CPU right after
            t = t.to(device, non_blocking=device.type == "cuda")
            return t.pin_memory() if pin and t.device.type == "cpu" else t
        activations = self.activations
        moved = (activations.map(move) if isinstance(activations, DerivedActivations)
                 else {k: move(v) for k, v in activations.items()})
        if activations_only:
            return Trace(self.inputs, moved, self.logits)
        return Trace(self.inputs.to(device), moved, self.logits.to(device))

    def without_activations(self) -> Trace:
        """Only the inputs and the clean logits (what a level's bookkeeping reads)."""
        return Trace(self.inputs, {}, self.logits)

    @property
    def activation_bytes(self) -> int:
        """Bytes the activations hold."""
        activations = self.activations
        tensors = (activations.streams.values() if isinstance(activations, DerivedActivations)
                   else activations.values())
        return sum(t.numel() * t.element_size() for t in tensors)


class DerivedActivations(dict[str, Tensor]):
    """Location activations derived on demand from a few batch-first stream tensors.

    A token net has a location per (block, component, position): storing each (B, D)
    activation would cost locations × B × D. It keeps its per-token streams instead and
    derives a location's activation when it is looked up; nothing derived is cached, so
    memory stays at the streams' size. Iterating yields no keys (use the net's ``widths``).

    Attributes:
        streams: name -> (B, ...) tensors, batch first.
        derive: ``derive(streams, location) -> (B, D)``; raises ``KeyError`` for an
            unknown location.
    """

    def __init__(self, streams: dict[str, Tensor],
                 derive: Callable[[dict[str, Tensor], str], Tensor]) -> None:
        super().__init__()
        self.streams = streams
        self.derive = derive

    def __missing__(self, location: str) -> Tensor:
        return self.derive(self.streams, location)

    def select(self, index: builtins.slice | Tensor) -> DerivedActivations:
        """The streams of the examples at ``index``."""
        return self.map(lambda v: v[index])

    def map(self, fn: Callable[[Tensor], Tensor]) -> DerivedActivations:
        """The same derivation over ``fn`` of every stream (a slice, a device move)."""
        return DerivedActivations({k: fn(v) for k, v in self.streams.items()}, self.derive)

    @staticmethod
    def concat(parts: Sequence[DerivedActivations]) -> DerivedActivations:
        """The streams of ``parts`` concatenated along the batch."""
        streams = {k: torch.cat([p.streams[k] for p in parts]) for k in parts[0].streams}
        return DerivedActivations(streams, parts[0].derive)


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

    @property
    def input_dtype(self) -> torch.dtype:
        """dtype of the inputs: float vectors, or ``torch.long`` token ids for a token net."""
        return torch.float32

    @property
    def scoped_traces(self) -> bool:
        """Whether ``trace`` keeps less for fewer locations (worth re-tracing per level)."""
        return False

    @property
    def tokens_per_row(self) -> int:
        """Positions one resumed row carries; the engine divides its row budget by it."""
        return 1

    @property
    def working_bytes_per_row(self) -> int:
        """Bytes one resumed row's forward holds at its peak (``core.memory`` sizes
        micro-batches by it): 16 fp32 values of the widest location per position."""
        return self.tokens_per_row * max(self.widths.values()) * 64

    def text_encoder(self) -> Callable[[str], list[int]] | None:
        """``encode(text) -> input_shape token ids`` when the net has a tokenizer, else None."""
        return None

    def label_names(self) -> tuple[str, ...]:
        """The name of each output class (a text net's answer tokens, as a dataset row may
        give its labels), or () when the classes have no names."""
        return ()

    @abstractmethod
    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        """Run the clean forward pass on (B, *input_shape) and keep the activations.

        Args:
            locations: the locations the trace must serve (their activations and a resume
                whose edits are among them); None: every location. A net may keep more
                (the MLP and GRU keep everything: a location is one (B, D) row block); a
                token net keeps only the residual layers and head outputs they need.
        """

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


class StoredShapes:
    """The shape properties of a net that records them when it is built (``_widths``,
    ``_input_shape``, ``_output_shape``, ``_input_dtype``); list it before
    ``InterventableNet`` among the bases."""

    _widths: dict[str, int]
    _input_shape: tuple[int, ...]
    _output_shape: tuple[int, int]
    _input_dtype: torch.dtype

    @property
    def widths(self) -> dict[str, int]:
        return self._widths

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def output_shape(self) -> tuple[int, int]:
        return self._output_shape

    @property
    def input_dtype(self) -> torch.dtype:
        return self._input_dtype
