"""The batched intervention engine: many interventions × many pairs through partial forwards.

Clean base and source activations are traced once per bank (``trace_bank``) and reused by
every site sweep and calibration candidate. ``iter_interventions`` stacks N interventions
over the P pairs as N copies of the batch and resumes the net only from the first edited
location, in micro-batches of at most ``max_rows`` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from core.causal.bank import PairBank
from core.intervene import interchange
from core.nets.base import DerivedActivations, InterventableNet, Trace


@dataclass(frozen=True)
class BankTraces:
    """Clean traces of a bank's base and source inputs, on the net's device."""

    base: Trace
    source: Trace

    @property
    def pairs(self) -> int:
        return self.base.batch_size

    def slice(self, start: int, stop: int) -> BankTraces:
        return BankTraces(self.base.slice(start, stop), self.source.slice(start, stop))

    def select(self, index: Tensor) -> BankTraces:
        """The traces of the pairs at a (P',) long ``index``, in its order."""
        return BankTraces(self.base.select(index), self.source.select(index))

    def on(self, device: torch.device) -> BankTraces:
        """These traces with their activations on ``device`` (a no-op when already there)."""
        if self.activation_device() in (None, device):
            return self
        return BankTraces(self.base.to_device(device, activations_only=True),
                          self.source.to_device(device, activations_only=True))

    def activation_device(self) -> torch.device | None:
        """Where the activations are kept (None: no activations)."""
        activations = self.base.activations
        tensors = list(activations.streams.values() if isinstance(activations, DerivedActivations)
                       else activations.values())
        return tensors[0].device if tensors else None

    @property
    def activation_bytes(self) -> int:
        return self.base.activation_bytes + self.source.activation_bytes

    def without_activations(self) -> BankTraces:
        return BankTraces(self.base.without_activations(), self.source.without_activations())


@dataclass(frozen=True)
class Interventions:
    """N interventions, each possibly spanning several locations.

    Attributes:
        coefficients: location -> (N, K) coefficients in that location's frame.
        frames: location -> (D, K) frame, or absent for the coordinate frame.
    """

    coefficients: dict[str, Tensor]
    frames: dict[str, Tensor]

    @property
    def count(self) -> int:
        return int(next(iter(self.coefficients.values())).shape[0])

    def slice(self, start: int, stop: int) -> Interventions:
        return Interventions({k: v[start:stop] for k, v in self.coefficients.items()},
                             self.frames)

    def take(self, index: Tensor) -> Interventions:
        """The interventions at ``index`` (a long tensor), in that order."""
        return Interventions({k: v[index] for k, v in self.coefficients.items()}, self.frames)

    def to(self, device: torch.device) -> Interventions:
        """The same interventions with their coefficients and frames on ``device``."""
        return Interventions({k: v.to(device) for k, v in self.coefficients.items()},
                             {k: v.to(device) for k, v in self.frames.items()})


@torch.no_grad()
def trace_inputs(net: InterventableNet, inputs: Tensor, max_rows: int,
                 locations: Collection[str] | None = None,
                 store: torch.device | None = None) -> Trace:
    """Trace (B, *input_shape) in micro-batches and concatenate.

    Args:
        locations: what the trace must serve (``InterventableNet.trace``); None: everything.
        store: where the activations are kept (the CPU, pinned when the net is on a GPU,
            for traces beyond the memory budget: ``iter_interventions`` streams them to the
            device a micro-batch at a time); None: the net's device.
    """
    pin = store is not None and store.type == "cpu" and inputs.device.type == "cuda"
    parts = []
    for i in range(0, inputs.shape[0], max_rows):
        part = net.trace(inputs[i:i + max_rows], locations)
        parts.append(part if store is None else part.to_device(store, activations_only=True))
    first = parts[0].activations
    activations = (
        DerivedActivations.concat([p.activations for p in parts
                                   if isinstance(p.activations, DerivedActivations)])
        if isinstance(first, DerivedActivations)
        else {k: torch.cat([p.activations[k] for p in parts]) for k in first}
    )
    trace = Trace(inputs=inputs, activations=activations,
                  logits=torch.cat([p.logits for p in parts]))
    return trace.to_device(torch.device("cpu"), activations_only=True, pin=True) if pin \
        else trace


def trace_bank(net: InterventableNet, bank: PairBank, max_rows: int = 65536,
               locations: Collection[str] | None = None,
               store: torch.device | None = None) -> BankTraces:
    """Trace a bank's base and source inputs once (2 P forward passes), keeping what
    ``locations`` need (None: everything), on the net's device or ``store``."""
    device = next(net.parameters()).device
    return BankTraces(trace_inputs(net, bank.base.to(device), max_rows, locations, store),
                      trace_inputs(net, bank.source.to(device), max_rows, locations, store))


def acting(coefficients: dict[str, Tensor]) -> dict[str, Tensor]:
    """The locations where some intervention of a batch has a non-zero coefficient (a zero
    coefficient leaves the activation as it is), or the first location if none has: the
    net then resumes from as late as the batch allows."""
    out = {loc: coef for loc, coef in coefficients.items() if bool(coef.any())}
    if out:
        return out
    first = next(iter(coefficients))
    return {first: coefficients[first]}


@torch.no_grad()
def iter_interventions(
    net: InterventableNet, traces: BankTraces, interventions: Interventions, max_rows: int
) -> Iterator[tuple[slice, slice, Tensor]]:
    """Run every intervention on every pair, chunk by chunk.

    Yields:
        (intervention slice, pair slice, logits (n, p, O, C)) in order; each row of the
        stacked batch is one (intervention, pair) partial forward.
    """
    pairs = traces.pairs
    pair_step = min(pairs, max_rows)
    device = traces.base.logits.device
    for p0 in range(0, pairs, pair_step):
        p1 = min(p0 + pair_step, pairs)
        chunk = traces.slice(p0, p1).on(device)  # streamed when kept on the host
        # a token net derives each location's activation on lookup: once per pair chunk
        sources = {loc: chunk.source.activations[loc] for loc in interventions.coefficients}
        copies_step = max(1, max_rows // (p1 - p0))
        for n0 in range(0, interventions.count, copies_step):
            n1 = min(n0 + copies_step, interventions.count)
            part = interventions.slice(n0, n1)
            edits = {
                loc: partial(interchange, h_source=sources[loc], coefficients=coef,
                             frame=part.frames.get(loc))
                for loc, coef in acting(part.coefficients).items()
            }
            logits = net.resume(chunk.base, edits, copies=n1 - n0)  # (n*p, O, C)
            yield slice(n0, n1), slice(p0, p1), logits.view(n1 - n0, p1 - p0, *logits.shape[1:])


def predicted_labels(net: InterventableNet, traces: BankTraces, interventions: Interventions,
                     max_rows: int, progress: Callable[[int], None] | None = None) -> Tensor:
    """(N, P, O) long: every output head's argmax per intervention and pair (interventions
    acting at the same locations are best adjacent: a stacked batch resumes from the
    earliest location any of its interventions acts at)."""
    out = torch.empty(interventions.count, traces.pairs, net.output_shape[0],
                      dtype=torch.long, device=traces.base.logits.device)
    for n_slice, p_slice, logits in iter_interventions(net, traces, interventions, max_rows):
        out[n_slice, p_slice] = logits.argmax(-1).to(out.device)
        if progress is not None:
            progress((n_slice.stop - n_slice.start) * (p_slice.stop - p_slice.start))
    return out


def run_interventions(
    net: InterventableNet, traces: BankTraces, interventions: Interventions, max_rows: int
) -> Tensor:
    """All logits at once: (N, P, O, C). Prefer ``iter_interventions`` to reduce on the fly."""
    out: Tensor | None = None
    for n_slice, p_slice, logits in iter_interventions(net, traces, interventions, max_rows):
        if out is None:
            out = logits.new_empty(interventions.count, traces.pairs, *logits.shape[2:])
        out[n_slice, p_slice] = logits
    assert out is not None  # count >= 1 and pairs >= 1 always yield a chunk
    return out
