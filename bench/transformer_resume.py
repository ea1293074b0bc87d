"""Transformer resume: the last block at the read-out token alone vs every token.

An interchange at block b re-runs blocks b+1.. of the built-in transformer. Every position of
those blocks is needed except in the last block, where only the read-out token (and the
tokens that block's own edits touch) reaches the output. ``TransformerNet.resume`` computes
the last block at those tokens only; the baseline here, ``EveryTokenTransformer``, is the
same net re-running every block at every token (the engine before 2026-12-01).

For the MCQA task's default net (freshly initialised: speed does not depend on the weights),
in one run on the same pairs: a whole position sweep by the engine (``neural_signatures``,
every residual location, i.e. every block × every position label) with each resume, per
block of the edit; interventions per second, the speed-up and the largest signature
difference between the two. Run single-threaded for comparable CPU figures:

    OMP_NUM_THREADS=1 python bench/transformer_resume.py
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from interventions import best_of, write_rows  # bench/ is the script's folder
from torch import Tensor

from core.causal.registry import build_task
from core.engine import trace_bank
from core.nets.base import Edit, Trace
from core.nets.registry import build_net
from core.nets.tokens import match_rows
from core.nets.transformer import TransformerNet
from core.signatures import neural_signatures
from core.sites import Site, location_sites, parse_token_location


class EveryTokenTransformer(TransformerNet):
    """The baseline: blocks from the first edited one re-run at every token, to the end."""

    def resume(self, trace: Trace, edits: Mapping[str, Edit], copies: int = 1) -> Tensor:
        grouped, positions, begin, x = self.resume_start(trace, edits)
        for index in range(begin, self.n_layers):
            x = self._block(index, x, positions, grouped.get(index, []))
        x = match_rows(x, copies * trace.batch_size)
        return self.readout(x, match_rows(positions, x.shape[0]))


def measure(pairs: int, repeats: int, device: torch.device) -> list[dict[str, Any]]:
    task = build_task("mcqa", {})
    config = task.default_net_config()
    net = build_net(config).to(device).eval()
    baseline = EveryTokenTransformer(config).to(device).eval()
    baseline.load_state_dict(net.state_dict())
    assert isinstance(net, TransformerNet)
    bank = task.sample_bank(pairs, torch.Generator().manual_seed(0), 0.5).to(device)
    traces = trace_bank(net, bank)
    rows = []
    for block in range(net.n_layers):
        sites = [s for s in location_sites(net.widths)
                 if (parsed := parse_token_location(s.location)) is not None
                 and parsed.component == "resid" and parsed.block == block]
        signatures: dict[str, Tensor] = {}

        def sweep(model: TransformerNet, name: str, sites: list[Site] = sites,
                  out: dict[str, Tensor] = signatures) -> None:
            with torch.no_grad():
                out[name] = neural_signatures(model, traces, sites, {}, max_rows=262_144)

        t_new = best_of(lambda: sweep(net, "last token"), repeats, device)
        t_old = best_of(lambda: sweep(baseline, "every token"), repeats, device)
        interventions = pairs * len(sites)
        rows.append({
            "block": block, "sites": len(sites), "pairs": pairs,
            "blocks_rerun": net.n_layers - 1 - block,
            "every_token_interventions_per_s": interventions / t_old,
            "last_token_interventions_per_s": interventions / t_new,
            "speedup": t_old / t_new,
            "max_signature_difference": float(
                (signatures["last token"] - signatures["every token"]).abs().max()),
        })
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path,
                        default=Path("bench/results/transformer_resume.json"))
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = measure(args.pairs, args.repeats, device)
    print(f"device={device} threads={torch.get_num_threads()} pairs={args.pairs} "
          "net=mcqa default (3 blocks, d_model 32)")
    print(f"{'edit at':<10}{'sites':>6}{'blocks re-run':>14}{'every token iv/s':>18}"
          f"{'last token iv/s':>17}{'speed-up':>10}{'max |Δ sig|':>13}")
    for r in rows:
        print(f"{'resid:' + str(r['block']):<10}{r['sites']:>6}{r['blocks_rerun']:>14}"
              f"{r['every_token_interventions_per_s']:>18,.0f}"
              f"{r['last_token_interventions_per_s']:>17,.0f}{r['speedup']:>9.2f}×"
              f"{r['max_signature_difference']:>13.1e}")
    write_rows(args.out, rows, device=str(device), pairs=args.pairs)


if __name__ == "__main__":
    main()
