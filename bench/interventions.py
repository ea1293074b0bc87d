"""Interchange interventions per second (pair × site) next to plain forward examples per second.

For the HEQ MLP (16, 16, 16) and the 4-bit adder GRU (hidden 16), on the same pairs and the
same device, in one run:

- ``forward``: plain forward passes of the base inputs, examples per second;
- ``engine``: a whole site sweep (every neuron, and for the GRU every step) by the batched
  engine — sources traced once, sites stacked, only the part after the site recomputed;
- ``per-site loop``: the reference's way — one full forward of the base and the source per
  site with the edit applied in between (what a hook-per-site wrapper does).

ratio = engine interventions/s ÷ forward examples/s (≥ 1 means a site sweep costs no more
than plain forwards of the same pairs). Nets are freshly initialised with the task's
default config: speed does not depend on the weights. Run single-threaded for comparable
CPU figures:  OMP_NUM_THREADS=1 python bench/interventions.py
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from core.causal.registry import build_task
from core.engine import trace_bank
from core.intervene import interchange
from core.nets.base import InterventableNet
from core.nets.registry import build_net
from core.signatures import neural_signatures
from core.sites import Site, location_sites, neuron_sites


def write_rows(path: Path, table: list[dict[str, Any]], **meta: Any) -> None:
    """Write ``{"meta", "rows"}`` JSON to ``path`` (its folder made); meta gains the thread
    count, the torch version and the machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": platform.machine()}
    path.write_text(json.dumps({"meta": meta, "rows": table}, indent=2))
    print(f"wrote {path}")


def best_of(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Best wall time of ``repeats`` calls (after one warm-up), synchronising CUDA."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def per_site_loop(net: InterventableNet, base: torch.Tensor, source: torch.Tensor,
                  sites: list[Site]) -> None:
    """One full base and source forward per site, the edit applied at the site."""
    for site in sites:
        source_trace = net.trace(source)
        mask = torch.zeros(1, net.widths[site.location], device=base.device)
        mask[0, site.start:site.stop] = 1.0
        edit = {site.location: lambda h, m=mask, src=source_trace.activations[site.location]:
                interchange(h, src, m)}
        net.resume(net.trace(base), edit)


def measure(name: str, pairs: int, device: torch.device, repeats: int) -> list[dict[str, object]]:
    task = build_task(name, {})
    net = build_net(task.default_net_config()).to(device).eval()
    bank = task.sample_bank(pairs, torch.Generator().manual_seed(0), 0.5).to(device)
    rows = []
    locations = location_sites(net.widths)
    sweeps = {"neurons": neuron_sites(locations)}
    if name == "binary_addition":
        sweeps["steps"] = locations
    with torch.no_grad():
        t_forward = best_of(lambda: net(bank.base), repeats, device)
    for sweep, sites in sweeps.items():
        def engine_with_traces(sites: list[Site] = sites) -> None:
            neural_signatures(net, trace_bank(net, bank), sites, {}, max_rows=262_144)

        t_engine = best_of(engine_with_traces, repeats, device)
        t_loop = best_of(lambda sites=sites: per_site_loop(net, bank.base, bank.source, sites),
                         max(1, repeats // 3), device)
        interventions = pairs * len(sites)
        rows.append({
            "net": name, "sweep": sweep, "sites": len(sites), "pairs": pairs,
            "forward_examples_per_s": pairs / t_forward,
            "engine_interventions_per_s": interventions / t_engine,
            "loop_interventions_per_s": interventions / t_loop,
            "ratio_engine_vs_forward": (interventions / t_engine) / (pairs / t_forward),
            "ratio_loop_vs_forward": (interventions / t_loop) / (pairs / t_forward),
            "engine_speedup_over_loop": t_loop / t_engine,
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench/results/interventions.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [row for name in ("hierarchical_equality", "binary_addition")
            for row in measure(name, args.pairs, device, args.repeats)]
    header = (f"{'net':<22}{'sweep':<9}{'sites':>6}{'fwd ex/s':>12}{'engine iv/s':>13}"
              f"{'loop iv/s':>12}{'engine/fwd':>11}{'loop/fwd':>10}{'engine/loop':>12}")
    print(f"device={device} threads={torch.get_num_threads()} pairs={args.pairs}")
    print(header)
    for r in rows:
        print(f"{r['net']:<22}{r['sweep']:<9}{r['sites']:>6}{r['forward_examples_per_s']:>12,.0f}"
              f"{r['engine_interventions_per_s']:>13,.0f}{r['loop_interventions_per_s']:>12,.0f}"
              f"{r['ratio_engine_vs_forward']:>11.2f}{r['ratio_loop_vs_forward']:>10.2f}"
              f"{r['engine_speedup_over_loop']:>12.1f}")
    write_rows(args.out, rows, device=str(device), pairs=args.pairs)


if __name__ == "__main__":
    main()
