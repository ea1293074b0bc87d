"""Traces that fit: a token net's trace keeps only the stream layers its locations need, the
activations and resumes it serves equal the full trace's, and a backend over a budget
(one bank traced at a time) gives the same signatures and matches as one that holds all."""

from __future__ import annotations

import pytest
import torch

from core.backend import LocalBackend
from core.causal.bank import Banks, PairBank
from core.engine import Interventions, trace_bank
from core.errors import PlotError
from core.intervene import interchange
from core.memory import parse_bytes, rows_for_budget, trace_bytes_per_example
from core.nets.tokens import StreamsKept, streams_needed
from core.sites import Site
from tests.unit.core.nets.test_transformer import tiny, token_ids


def test_each_component_needs_its_own_stream_layers() -> None:
    # resid:b reads layer b+1 (a resume from it starts there); attn/head read block b's
    # heads and resume from layer b; mlp reads both residuals around b and the heads
    assert streams_needed(["resid:1/pos:last"], 3) == StreamsKept((2,), ())
    assert streams_needed(["attn:1/pos:0", "head:2.1/pos:3"], 3) == StreamsKept((1, 2),
                                                                                (1, 2))
    assert streams_needed(["mlp:0/pos:last"], 3) == StreamsKept((0, 1), (0,))
    assert streams_needed(None, 2) == StreamsKept((0, 1, 2), (0, 1))
    assert streams_needed([], 2) == StreamsKept((), ())


def test_a_scoped_trace_serves_its_locations_like_the_full_trace_and_nothing_else() -> None:
    net = tiny()
    base, source = token_ids(5, 0), token_ids(5, 1)
    locations = ["resid:1/pos:last", "mlp:2/pos:3", "head:0.1/pos:marker"]
    full, scoped = net.trace(base), net.trace(base, locations)
    source_full, source_scoped = net.trace(source), net.trace(source, locations)
    assert scoped.activation_bytes < full.activation_bytes
    torch.testing.assert_close(scoped.logits, full.logits, rtol=0, atol=0)
    for location in locations:
        torch.testing.assert_close(scoped.activations[location], full.activations[location],
                                   rtol=0, atol=0)
        coefficients = torch.ones(1, net.widths[location])

        def edit(h: torch.Tensor, src: torch.Tensor, c: torch.Tensor = coefficients
                 ) -> torch.Tensor:
            return interchange(h, src, c)

        want = net.resume(full, {location: lambda h, s=source_full, loc=location: edit(
            h, s.activations[loc])})
        got = net.resume(scoped, {location: lambda h, s=source_scoped, loc=location: edit(
            h, s.activations[loc])})
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    with pytest.raises(KeyError, match="not traced"):
        scoped.activations["resid:0/pos:last"]


def test_trace_bytes_per_example_count_the_kept_layers() -> None:
    net = tiny()  # 3 blocks, width 16, 2 heads of 8, 6 positions, fp32
    assert trace_bytes_per_example(net, ["resid:1/pos:0"]) == 1 * 6 * 16 * 4
    assert trace_bytes_per_example(net, None) == (4 + 3) * 6 * 16 * 4
    # and the (B, 8 labels) long positions of the two examples
    held = net.trace(token_ids(2, 0), ["resid:1/pos:0"]).activation_bytes
    assert held == 2 * 6 * 16 * 4 + 2 * 8 * 8


def test_budget_sizes_parse_and_bound_the_rows() -> None:
    assert parse_bytes("8GiB") == 8 * 2**30 and parse_bytes("512 MB") == 512 * 10**6
    assert parse_bytes(1024) == 1024
    for bad in ("lots", "-1GiB", "0"):
        with pytest.raises(PlotError) as error:
            parse_bytes(bad)
        assert error.value.where == "PLOT_MEMORY_BUDGET"
    net = tiny()
    assert rows_for_budget(net, None, 999) == 999
    # a row of 6 positions: per token 8 stream-wide (d_model 16) and 5 MLP-wide fp32 values
    # and two score maps of 6 per head
    d_mlp, heads = net.config["d_mlp"], net.config["n_heads"]
    row = 6 * 4 * (8 * 16 + 5 * d_mlp + 2 * heads * 6)
    assert net.working_bytes_per_row == row
    assert rows_for_budget(net, 2**20, 999) == 2**20 // 4 // row
    # a wider MLP: a bigger working set, fewer rows per micro-batch
    wide = tiny({**net.config, "d_mlp": 4 * d_mlp})
    assert wide.working_bytes_per_row == row + 6 * 4 * 5 * 3 * d_mlp
    assert rows_for_budget(wide, 2**20, 999) < rows_for_budget(net, 2**20, 999)


def _bank(seed: int, size: int = 6) -> PairBank:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (size, 1), generator=generator)
    return PairBank(token_ids(size, seed), token_ids(size, seed + 100), labels,
                    {"V": torch.randint(0, 3, (size, 1), generator=generator)})


def test_one_bank_at_a_time_over_the_budget_gives_the_same_numbers() -> None:
    net = tiny()
    banks = Banks(_bank(0), _bank(1), _bank(2))
    sites = [Site("resid:0/pos:last"), Site("attn:1/pos:3", "block", 0, 8)]
    locations = [s.location for s in sites]
    plan = Interventions({"resid:0/pos:last": torch.rand(4, 16)}, {})
    results = []
    for budget in (None, 1):  # unbounded: every bank held; 1 byte: one bank at a time
        traces = {split: trace_bank(net, getattr(banks, split), 64, ())
                  for split in ("fit", "calibration", "test")}
        backend = LocalBackend(net, traces, 64, banks, budget)
        backend.scope(locations)
        assert backend.mode == ("device" if budget is None else "one")
        signatures = backend.signatures(sites, {})
        cal = backend.matches("calibration", plan, banks.calibration.counterfactual_labels["V"])
        test = backend.matches("test", plan, banks.test.counterfactual_labels["V"])
        frames = backend.pca_frames(["resid:0/pos:last"])
        held = [t.activation_device() is not None for t in traces.values()]
        results.append((signatures, cal, test, frames["resid:0/pos:last"], held))
        # every trace counted: three banks once; one at a time, fit again for the frames
        assert backend.traced_rows == 2 * 6 * (3 if budget is None else 4)
        backend.scope(locations)  # the same scope held: nothing re-traced
        assert backend.traced_rows == 2 * 6 * (3 if budget is None else 4)
    (want, got) = results
    for a, b in zip(want[:4], got[:4], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert want[4] == [True, True, True] and got[4].count(True) == 1
