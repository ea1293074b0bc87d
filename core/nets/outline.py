"""NetOutline: what a job driver needs of a net without its weights or activations.

On Ray the intervention actors load the net and trace the banks; the driver enumerates
sites, reads the banks and writes results from the net's locations, shapes, config and text
encoder alone. An outline answers those and refuses to run.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from torch import Tensor

from core.errors import PlotError
from core.nets.base import Edit, InterventableNet, StoredShapes, Trace

TOKEN_ATTRIBUTES = ("tokenizer", "labels", "named", "pad_token_id", "max_len")


class NetOutline(StoredShapes, InterventableNet):
    """The locations, shapes, config and text encoder of ``net``, with no parameter."""

    def __init__(self, net: InterventableNet) -> None:
        super().__init__()
        self.config = dict(net.config)
        self._widths = dict(net.widths)
        self._input_shape = tuple(net.input_shape)
        self._output_shape = net.output_shape
        self._input_dtype = net.input_dtype
        self._tokens_per_row = net.tokens_per_row
        self._scoped = net.scoped_traces
        self._encoder = net.text_encoder()
        self._working_bytes = net.working_bytes_per_row
        self._label_names = net.label_names()
        # what a token net's bank positions and text prompts read (core.token_positions,
        # core.job.task_for_net): the same answers on the driver as on the actors
        for name in TOKEN_ATTRIBUTES:
            if hasattr(net, name):
                setattr(self, name, getattr(net, name))
        self.parameter_bytes = sum(t.numel() * t.element_size()
                                   for t in [*net.parameters(), *net.buffers()])

    @property
    def working_bytes_per_row(self) -> int:
        return self._working_bytes

    @property
    def tokens_per_row(self) -> int:
        return self._tokens_per_row

    @property
    def scoped_traces(self) -> bool:
        return self._scoped

    def text_encoder(self) -> Callable[[str], list[int]] | None:
        return self._encoder

    def label_names(self) -> tuple[str, ...]:
        return self._label_names

    def trace(self, inputs: Tensor, locations: Collection[str] | None = None) -> Trace:
        raise PlotError("an outline holds no weights: the actors trace", "net")

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        raise PlotError("an outline holds no weights: the actors resume", "net")
