from __future__ import annotations

import torch
from torch.testing import assert_close

from core.engine import BankTraces, Interventions, run_interventions
from core.intervene import interchange
from core.nets.gru import GRUNet
from core.nets.mlp import MLP


def _loop_reference(net, base, source, location, coefficients):  # type: ignore[no-untyped-def]
    """One full forward per intervention with a plain edit at one location."""
    outs = []
    source_trace = net.trace(source)
    for row in coefficients:
        edit = {location: lambda h, row=row: interchange(h, source_trace.activations[location],
                                                         row[None])}
        outs.append(net.resume(net.trace(base), edit))
    return torch.stack(outs)


def test_stacked_mlp_sweep_equals_one_run_per_site(device: torch.device) -> None:
    torch.manual_seed(0)
    net = MLP({"arch": "mlp", "input_dim": 6, "hidden_dims": [8, 8, 8], "num_classes": 3,
               "activation": "relu"}).to(device)
    base, source = torch.randn(10, 6, device=device), torch.randn(10, 6, device=device)
    coefficients = torch.eye(8, device=device)
    traces = BankTraces(net.trace(base), net.trace(source))
    stacked = run_interventions(net, traces, Interventions({"layer:1": coefficients}, {}),
                                max_rows=24)  # forces chunking over copies and pairs
    assert_close(stacked, _loop_reference(net, base, source, "layer:1", coefficients))


def test_stacked_gru_sweep_equals_one_run_per_site(device: torch.device) -> None:
    torch.manual_seed(1)
    net = GRUNet({"arch": "gru", "input_size": 2, "hidden_size": 6, "num_steps": 4,
                  "num_classes": 2}).to(device)
    base = torch.randint(0, 2, (9, 4, 2), device=device).float()
    source = torch.randint(0, 2, (9, 4, 2), device=device).float()
    coefficients = torch.rand(5, 6, device=device)
    traces = BankTraces(net.trace(base), net.trace(source))
    stacked = run_interventions(net, traces, Interventions({"step:2": coefficients}, {}), 7)
    assert_close(stacked, _loop_reference(net, base, source, "step:2", coefficients))


def test_full_interchange_at_the_first_layer_gives_the_source_output(device: torch.device
                                                                      ) -> None:
    net = MLP({"arch": "mlp", "input_dim": 4, "hidden_dims": [5, 5], "num_classes": 2,
               "activation": "relu"}).to(device)
    base, source = torch.randn(6, 4, device=device), torch.randn(6, 4, device=device)
    traces = BankTraces(net.trace(base), net.trace(source))
    out = run_interventions(net, traces, Interventions({"layer:0": torch.ones(1, 5,
                                                                              device=device)},
                                                       {}), 1000)
    assert_close(out[0], traces.source.logits)
