"""Head to head (plot-method.md §6): transport-only PLOT, PLOT-guided DAS and full DAS.

For each task (the HEQ MLP, the 4-bit adder GRU; the MCQA transformer with ``--tasks mcqa``)
and each seed, the task's default net is trained (or reused from the cache) with that seed,
the fit / calibration / test banks are drawn once, and the three methods run on the same
banks and traces:

- ``PLOT``: the task's default levels; the best handle per variable (soft handle test IIA),
  with its verdict (``core.verdict``: the job's controls run after the levels, their time
  is not in PLOT's wall time);
- ``PLOT+guided DAS``: the same levels, then DAS only at the kept locations (cost = both);
- ``full DAS``: DAS at every location × k × variable. For a token net (MCQA) the locations
  are the residual stream after every block at every distinct position (``full_targets``'
  ``resid`` token × layer grid, with position labels that resolve to the same token on
  every pair of the banks merged: a named position or ``last`` stands for its index).

Per task, DAS tries ``--dims`` (default: 1..16 for the MLP and GRU, as the reference;
[1, 2, 4, 8, 16, 32] clipped to d_model for the transformer, whose grid has 3 × 17
locations). The JSON and markdown also record stage A: each variable's kept sites and
handle at PLOT's first level (for MCQA, the positions).

``--scheme paper`` draws the PLOT authors' banks (``pairs.scheme: paper``: HEQ 1000 fit,
1000 WX-only / YZ-only calibration, 1000 sensitive + 1000 invariant test pairs per
variable; the adder 128 / 64 / 64 bases × 26 structured sources) instead of the balanced ones.

The table gives, per method × variable, test IIA mean ± sd over seeds and the worst seed,
and the paper's score: ½(sensitivity + invariance) on the test bank, mean and worst seed;
per method the mean wall time, sites looked at (PLOT: sites of every level; DAS: locations
trained), (pair) forward passes, DAS trainings and speed-up over full DAS. Writes
``compare.json``, ``compare.md`` and ``compare.png`` (IIA vs wall time, log x) to --out, and
each (task, seed) to ``runs.jsonl`` as it ends.

    python bench/compare.py --seeds 0 1 2 --out bench/results
    python bench/compare.py --seeds 0..9 --scheme paper --out bench/results/paper
    python bench/compare.py --tasks mcqa --seeds 0 --out bench/results/mcqa
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from core.calibrate import IIA
from core.causal.bank import Banks
from core.causal.task import CausalTask
from core.controls import run_controls
from core.das_search import full_targets, run_das, run_das_targets
from core.das_training import DasTarget, das_config
from core.engine import BankTraces, trace_bank
from core.handle_verdicts import with_verdicts
from core.job import JobContext, default_levels, resolve_banks, resolve_net, resolve_task
from core.level_inputs import LevelInputs
from core.nets.base import InterventableNet
from core.nets.mlp import MLP
from core.progressive import run_levels
from core.result import DasResult, LevelResult
from core.sites import is_token_net, parse_site, parse_token_location
from core.spec import (
    CalibrationScope,
    DasSpec,
    JobSpec,
    LevelSpec,
    PairScheme,
    parse_job_spec,
)

METHODS = ("PLOT", "PLOT+guided DAS", "full DAS")
PEER_METHODS = {"pyvene": "full DAS (pyvene)"}  # --peers: other libraries, MLP nets only
TASKS = ("hierarchical_equality", "binary_addition", "mcqa")
DEFAULT_TASKS = ("hierarchical_equality", "binary_addition")  # the README's table
REFERENCE_DIMS = list(range(1, 17))
# the paper scheme's bank sizes (fit, calibration, test) where they differ from --pairs:
# the adder's 128 / 64 / 64 bases of 26 sources each
PAPER_SIZES = {"binary_addition": (3328, 1664, 1664)}
TASK_DIMS = {"mcqa": [1, 2, 4, 8, 16, 32]}  # clipped to d_model (32 for the default net)


def task_dims(task_name: str, requested: list[int] | None) -> list[int]:
    """The DAS rank grid of a task: --dims if given, else the task's default."""
    return requested or TASK_DIMS.get(task_name, REFERENCE_DIMS)


def full_das_targets(net: Any, variables: list[str], dims: list[int],
                     traces: dict[str, BankTraces]) -> list[DasTarget]:
    """``full_targets``, with a token net's aliased positions merged.

    Position labels (indices, ``last``, named positions) that resolve to the same token
    on every base and source row of every bank are one site: the first in the order
    named, ``last``, index is kept, so the grid is every layer × every distinct position
    and reads with the task's names.
    """
    targets = full_targets(net, variables, dims)
    if not is_token_net(net.widths):
        return targets
    labels: list[str] = list(net.labels)
    resolved = torch.cat([getattr(t, side).activations.streams["positions"]
                          for t in traces.values() for side in ("base", "source")])
    named = [lb for lb in labels if not lb.isdigit() and lb != "last"]
    order = [*named, "last", *(lb for lb in labels if lb.isdigit())]
    keep: dict[tuple[int, ...], str] = {}
    for label in order:
        keep.setdefault(tuple(resolved[:, labels.index(label)].tolist()), label)
    kept = set(keep.values())
    out = []
    for target in targets:
        parsed = parse_token_location(target.location)
        if parsed is not None and parsed.position in kept:
            out.append(target)
    return out


def level_summary(levels: list[LevelResult]) -> list[dict[str, Any]]:
    """Per PLOT level: each variable's kept sites and handle (sites, calibration and test
    IIA); the last level's sites and coupling rows too (what guided DAS reads)."""
    out: list[dict[str, Any]] = [
        {"granularity": level.granularity, "kept": level.kept_by_variable,
         "handle": {v: {"sites": h.sites, "iia_calibration": h.iia_calibration,
                        "iia_test": h.iia_test.overall} for v, h in level.handles.items()}}
        for level in levels]
    if levels:
        out[-1]["sites"] = levels[-1].sites
        out[-1]["coupling"] = dict(zip(levels[-1].variables, levels[-1].coupling, strict=True))
    return out


def parse_seeds(words: Sequence[str]) -> list[int]:
    """Seeds from words like ``0 1 2`` or ``0..9`` (inclusive ranges)."""
    seeds: list[int] = []
    for word in words:
        if ".." in word:
            low, high = word.split("..", 1)
            seeds += range(int(low), int(high) + 1)
        else:
            seeds.append(int(word))
    return seeds


def paper_score(iia: IIA) -> dict[str, float | None]:
    """The paper's per-variable test figures: sensitivity, invariance and their mean."""
    mean = (None if iia.sensitivity is None or iia.invariance is None
            else (iia.sensitivity + iia.invariance) / 2)
    return {"sensitivity": iia.sensitivity, "invariance": iia.invariance, "mean": mean}


def bank_sizes(task_name: str, pairs: int, scheme: PairScheme) -> tuple[int, int, int]:
    """(fit, calibration, test) pairs: ``pairs`` each, or the paper scheme's own sizes."""
    return PAPER_SIZES.get(task_name, (pairs,) * 3) if scheme == "paper" else (pairs,) * 3


@dataclass(frozen=True)
class SeedSetup:
    """One task and seed as a job resolves them: its default net, banks, their traces and
    the default levels."""

    spec: JobSpec
    task: CausalTask
    net: InterventableNet
    banks: Banks
    traces: dict[str, BankTraces]
    max_rows: int
    schedule: list[LevelSpec]


def seed_setup(task_name: str, seed: int, context: JobContext,
               sizes: tuple[int, int, int], scheme: PairScheme,
               calibration_scope: CalibrationScope = "shared") -> SeedSetup:
    """Resolve ``task_name``'s default net for ``seed`` (trained into the cache on first
    use), draw its banks of ``sizes`` (fit, calibration, test) and trace them."""
    fit, calibration, test = sizes
    spec: JobSpec = parse_job_spec({
        "task": {"builtin": task_name}, "seed": seed,
        "pairs": {"fit": fit, "calibration": calibration, "test": test, "seed": seed,
                  "scheme": scheme, "calibration_scope": calibration_scope},
    })
    task = resolve_task(spec, context)
    assert task is not None  # a built-in task
    net, _ = resolve_net(spec, context, task)
    banks = resolve_banks(spec, context, task, net)
    max_rows = context.max_rows(None)
    traces = {s: trace_bank(net, getattr(banks, s), max_rows)
              for s in ("fit", "calibration", "test")}
    return SeedSetup(spec, task, net, banks, traces, max_rows,
                     default_levels(spec, task, net))


def run_seed(task_name: str, seed: int, context: JobContext, pairs: int,
             das: dict[str, Any], peers: Sequence[str] = (),
             scheme: PairScheme = "balanced",
             reuse: dict[tuple[str, int, str], dict[str, Any]] | None = None,
             calibration_scope: CalibrationScope = "shared") -> dict[str, Any]:
    """The three methods on one task and seed, sharing the net, banks and traces.

    Args:
        reuse: (task, seed, scheme) -> a stored run whose full DAS is taken instead of
            training it again (``--reuse-full``; checked: same bank sizes, ranks, locations).
    """
    setup = seed_setup(task_name, seed, context, bank_sizes(task_name, pairs, scheme), scheme,
                       calibration_scope)
    spec, net, banks, traces, max_rows = (setup.spec, setup.net, setup.banks, setup.traces,
                                          setup.max_rows)
    controls_spec = spec.controls.model_copy(update={"seed": seed})
    inputs = LevelInputs.local(net, banks, traces, spec.coupling, spec.calibration, max_rows,
                               controls_spec)
    schedule = setup.schedule

    started = time.perf_counter()
    levels = run_levels(schedule, inputs)
    permutation_s = sum(level.timing["label_permutation_s"] for level in levels)
    plot_s = time.perf_counter() - started - permutation_s  # PLOT's own time, as before
    plot_passes = sum(level.forward_passes for level in levels)
    controls, _ = run_controls(controls_spec, seed, schedule, inputs, levels)
    levels, handles = with_verdicts(levels, controls, banks.calibration, list(banks.variables))
    guided = run_das(DasSpec(mode="guided", **das), inputs, levels, seed)
    full_spec = DasSpec(mode="full", **das)
    targets = full_das_targets(net, list(banks.variables), full_spec.dims, traces)
    stored = (reuse or {}).get((task_name, seed, scheme))
    if stored is not None:
        check_reusable(stored, [banks.fit.size, banks.calibration.size, banks.test.size],
                       full_spec.dims, list(dict.fromkeys(t.location for t in targets)),
                       calibration_scope)
        full_entry: dict[str, Any] = stored["methods"]["full DAS"]
    else:
        full = run_das_targets("full", targets, inputs, full_spec, seed)
        full_entry = {
            "wall_s": full.runtime_s, "forward_passes": full.forward_passes,
            "trainings": full.trainings,
            "site_count": len({t.location for t in targets}),
            "iia": {v: r.iia_test.overall for v, r in full.best.items()},
            "paper": {v: paper_score(r.iia_test) for v, r in full.best.items()},
            "sites": {v: [r.site] for v, r in full.best.items()},
            "runs": das_runs(full)}
    methods: dict[str, Any] = {
        "PLOT": {"wall_s": plot_s, "forward_passes": plot_passes, "trainings": 0,
                 "site_count": sum(len(level.sites) for level in levels),
                 "iia": {v: h.iia_test.overall for v, h in handles.items()},
                 "iia_calibration": {v: h.iia_calibration for v, h in handles.items()},
                 "sensitivity": {v: h.iia_test.sensitivity for v, h in handles.items()},
                 "sites": {v: h.sites for v, h in handles.items()},
                 "paper": {v: paper_score(h.iia_test) for v, h in handles.items()},
                 "cost_kind": {v: h.cost_kind for v, h in handles.items()},
                 "verdict": {v: h.verdict for v, h in handles.items()},
                 "verdict_reason": {v: h.verdict_reason for v, h in handles.items()},
                 "controls_s": sum(controls.timing.values()),
                 "controls": controls.to_json()},
        "PLOT+guided DAS": {
            "wall_s": plot_s + guided.runtime_s,
            "forward_passes": plot_passes + guided.forward_passes,
            "trainings": guided.trainings,
            "site_count": sum(len(level.sites) for level in levels)
            + len({r.site.split("/das:")[0] for r in guided.runs}),
            "iia": {v: r.iia_test.overall for v, r in guided.best.items()},
            "paper": {v: paper_score(r.iia_test) for v, r in guided.best.items()},
            "sites": {v: [r.site] for v, r in guided.best.items()},
            "widened": guided.widened,
            "runs": das_runs(guided)},
        "full DAS": full_entry,
    }
    if "pyvene" in peers and isinstance(net, MLP):
        from peers.pyvene_das import pyvene_full_das  # bench/ is the script's folder

        methods[PEER_METHODS["pyvene"]] = pyvene_full_das(
            net, banks, full_spec.dims, das_config(full_spec, seed))
    return {
        "task": task_name, "seed": seed, "scheme": scheme,
        "calibration_scope": calibration_scope, "variables": list(banks.variables),
        "bank_sizes": [banks.fit.size, banks.calibration.size, banks.test.size],
        "dims": full_spec.dims,
        "full_das_locations": list(dict.fromkeys(t.location for t in targets)),
        "full_das_reused": stored is not None,
        "levels": level_summary(levels),
        "stage_a_locations": {v: list(dict.fromkeys(parse_site(s).location for s in kept))
                              for v, kept in levels[0].kept_by_variable.items()},
        "methods": methods,
    }


def check_reusable(stored: dict[str, Any], bank_sizes: list[int], dims: list[int],
                   locations: list[str], calibration_scope: CalibrationScope = "shared"
                   ) -> None:
    """Refuse a stored full DAS drawn on other banks, ranks or locations, or chosen on
    another calibration bank."""
    mine = {"bank_sizes": bank_sizes, "dims": list(dims), "full_das_locations": locations,
            "calibration_scope": calibration_scope}
    for key, value in mine.items():
        if stored.get(key, "shared" if key == "calibration_scope" else None) != value:
            raise SystemExit(f"--reuse-full: the stored run of {stored['task']} seed "
                             f"{stored['seed']} has {key} {stored[key]}, this one {value}")


def read_runs(path: Path) -> list[dict[str, Any]]:
    """The runs of a runs.jsonl, or of a compare.json."""
    if path.suffix == ".json":
        return list(json.loads(path.read_text())["runs"])
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_reusable(path: Path) -> dict[tuple[str, int, str], dict[str, Any]]:
    """(task, seed, scheme) -> run, from a runs.jsonl or compare.json."""
    return {(r["task"], r["seed"], r["scheme"]): r for r in read_runs(path)}


def das_runs(result: DasResult) -> list[dict[str, Any]]:
    """Every trained (site, k, variable): calibration / test IIA, epochs, seconds."""
    return [{"site": r.site, "variable": r.variable, "iia_calibration": r.iia_calibration,
             "iia_test": r.iia_test.overall, "epochs": r.epochs, "runtime_s": r.runtime_s,
             "init": r.init} for r in result.runs]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def method_names(runs: list[dict[str, Any]]) -> list[str]:
    """The methods every run has: ours, then the peers that ran on every seed."""
    return [m for m in [*METHODS, *PEER_METHODS.values()]
            if all(m in r["methods"] for r in runs)]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task × method: IIA per variable (mean, sd), cost means, speed-up."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        mine = [r for r in runs if r["task"] == task]
        full_s = statistics.fmean(r["methods"]["full DAS"]["wall_s"] for r in mine)
        for method in method_names(mine):
            cells = [r["methods"][method] for r in mine]
            wall = statistics.fmean(c["wall_s"] for c in cells)
            variables = mine[0]["variables"]
            rows.append({
                "task": task, "method": method,
                "iia": {v: mean_sd([c["iia"][v] for c in cells]) for v in variables},
                "worst": {v: min(c["iia"][v] for c in cells) for v in variables},
                "paper": {v: paper_summary([c.get("paper", {}).get(v) for c in cells])
                          for v in variables},
                "site_count": statistics.fmean(c.get("site_count", 0) for c in cells),
                "wall_s": wall,
                "forward_passes": statistics.fmean(c["forward_passes"] for c in cells),
                "trainings": statistics.fmean(c["trainings"] for c in cells),
                "speedup_vs_full": full_s / wall if wall > 0 else float("inf"),
                "verdicts": verdict_counts(cells, mine[0]["variables"]),
            })
    return rows


def verdict_counts(cells: list[dict[str, Any]], variables: list[str]) -> dict[str, str]:
    """Per variable, its verdicts over the seeds (``localized 3/3``); PLOT's handles only
    (the controls judge transport handles, not DAS runs)."""
    if not all("verdict" in c for c in cells):
        return {}
    out = {}
    for v in variables:
        seen = [str(c["verdict"][v]) for c in cells]
        out[v] = ", ".join(f"{name} {seen.count(name)}/{len(seen)}"
                           for name in dict.fromkeys(seen))
    return out


def paper_summary(cells: list[dict[str, float | None] | None]) -> dict[str, float] | None:
    """Mean sensitivity, invariance and ½(sens + inv) over seeds, and the worst seed's
    ½(sens + inv); None when some seed lacks either (a bank with no such pair)."""
    if any(c is None or c["mean"] is None for c in cells):
        return None
    scores = [c for c in cells if c is not None]
    return {key: statistics.fmean(float(c[key] or 0.0) for c in scores)
            for key in ("sensitivity", "invariance", "mean")} | {
        "worst": min(float(c["mean"] or 0.0) for c in scores)}


def markdown(rows: list[dict[str, Any]], header: str,
             runs: list[dict[str, Any]] | None = None) -> str:
    lines = [header, "", "| task | method | verdict per variable (seeds) | test IIA per "
             "variable (mean ± sd, worst) | paper: sens / inv / ½(sens+inv) (worst) | wall s | "
             "sites | forward passes | DAS trainings | speed-up vs full DAS |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        iia = ", ".join(f"{v} {m:.3f} ± {s:.3f} ({row['worst'][v]:.3f})"
                        for v, (m, s) in row["iia"].items())
        verdicts = "; ".join(f"{v} {text}" for v, text in row.get("verdicts", {}).items())
        paper = ", ".join(
            f"{v} {p['sensitivity']:.3f} / {p['invariance']:.3f} / {p['mean']:.3f} "
            f"({p['worst']:.3f})" if p else f"{v} –" for v, p in row["paper"].items())
        lines.append(f"| {row['task']} | {row['method']} | {verdicts or '–'} | {iia} | "
                     f"{paper} | {row['wall_s']:.2f} | {row['site_count']:.0f} | "
                     f"{row['forward_passes']:.0f} | {row['trainings']:.0f} | "
                     f"{row['speedup_vs_full']:.1f}× |")
    if runs:
        lines += ["", "## Guided against full DAS, per seed", "", *per_seed_table(runs)]
    for run in runs or []:
        lines += ["", f"## {run['task']}, seed {run['seed']}: where each method looked", "",
                  f"DAS ranks {run['dims']}; full DAS over {len(run['full_das_locations'])} "
                  f"locations ({', '.join(run['full_das_locations'][:4])}, …)", "",
                  "| variable | " + " | ".join(f"PLOT {lv['granularity']}: kept"
                                             for lv in run["levels"])
                  + " | PLOT handle | guided DAS best | full DAS best |"
                  + "".join(f" {m} best |" for m in method_names([run])[3:])
                  + " PLOT verdict (cost kind) |",
                  "|---|" + "---|" * (len(run["levels"]) + len(method_names([run])) + 1)]
        methods = run["methods"]
        for v in run["variables"]:
            kept = [", ".join(f"`{s}`" for s in lv["kept"][v]) for lv in run["levels"]]
            best = [", ".join(f"`{s}`" for s in methods[m]["sites"][v])
                    for m in method_names([run])]
            plot = methods["PLOT"]
            verdict = [f"{plot['verdict'][v]} ({plot['cost_kind'][v]})"]
            lines.append(f"| {v} | " + " | ".join(kept + best + verdict) + " |")
    return "\n".join(lines) + "\n"


def per_seed_table(runs: list[dict[str, Any]]) -> list[str]:
    """Guided against full DAS per (task, seed): test IIA per variable and the difference,
    the sites each chose, the variables guided DAS widened, trainings and wall time."""
    lines = ["| task | seed | test IIA per variable: guided / full (guided − full) | "
             "guided DAS best | widened | trainings guided / full | wall s guided / full "
             "(share) |", "|---|---:|---|---|---|---:|---:|"]
    for run in runs:
        guided, full = run["methods"]["PLOT+guided DAS"], run["methods"]["full DAS"]
        scores = ", ".join(f"{v} {guided['iia'][v]:.3f} / {full['iia'][v]:.3f} "
                           f"({guided['iia'][v] - full['iia'][v]:+.3f})"
                           for v in run["variables"])
        sites = ", ".join(f"`{guided['sites'][v][0]}`" for v in run["variables"])
        widened = ", ".join(guided.get("widened", {})) or "–"
        share = guided["wall_s"] / full["wall_s"]
        lines.append(f"| {run['task']} | {run['seed']} | {scores} | {sites} | {widened} | "
                     f"{guided['trainings']} / {full['trainings']} | {guided['wall_s']:.1f} / "
                     f"{full['wall_s']:.1f} ({share:.2f}) |")
    return lines


def plot_png(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    markers = dict(zip([*METHODS, *PEER_METHODS.values()], "os^D", strict=True))
    for ax, task in zip(axes[0], tasks, strict=True):
        for row in (r for r in rows if r["task"] == task):
            mean_iia = statistics.fmean(m for m, _ in row["iia"].values())
            ax.scatter(row["wall_s"], mean_iia, marker=markers[row["method"]], s=60,
                       label=row["method"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on short ranges
        ax.set_xlabel("wall time (s, log)")
        ax.set_ylabel("test IIA (mean over variables and seeds)")
        ax.set_title(task)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sweep(args: argparse.Namespace, context: JobContext) -> list[dict[str, Any]]:
    """Every task × seed of the command line; each run to runs.jsonl as it ends."""
    reuse = read_reusable(args.reuse_full) if args.reuse_full is not None else None
    runs = []
    with (args.out / "runs.jsonl").open("w") as partial:  # a stopped sweep keeps its seeds
        for task in args.tasks:
            for seed in args.seeds:
                runs.append(run_seed(task, seed, context, args.pairs,
                                     {"dims": task_dims(task, args.dims),
                                      "max_epochs": args.max_epochs},
                                     args.peers, args.scheme, reuse,
                                     args.calibration_scope))
                partial.write(json.dumps(runs[-1]) + "\n")
                partial.flush()
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=TASKS,
                        help="default: the HEQ MLP and the adder GRU (add mcqa for the "
                        "transformer)")
    parser.add_argument("--seeds", nargs="+", default=["0", "1", "2"],
                        help="seeds, or inclusive ranges like 0..9")
    parser.add_argument("--scheme", choices=["balanced", "paper"], default="balanced",
                        help="pairs.scheme: our balanced banks or the PLOT authors' banks")
    parser.add_argument("--calibration-scope", choices=["shared", "per_variable"],
                        default="shared",
                        help="pairs.calibration_scope (per_variable: HEQ paper banks, each "
                        "variable chosen on its own sensitive and invariant pairs)")
    parser.add_argument("--pairs", type=int, default=1000,
                        help="pairs per bank (paper scheme: the adder's are 3328 / 1664 / 1664)")
    parser.add_argument("--dims", nargs="+", type=int, default=None,
                        help="subspace ranks of the DAS grid (default 1..16, the reference's; "
                        "1 2 4 8 16 32 for mcqa)")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--peers", nargs="*", default=[], choices=sorted(PEER_METHODS),
                        help="also run full DAS through these libraries on the same nets and "
                        "banks (pyvene: MLP tasks; pip install .[bench])")
    parser.add_argument("--reuse-full", type=Path, default=None,
                        help="take full DAS from this earlier runs.jsonl / compare.json of the "
                        "same seeds and scheme instead of training it again (its wall time "
                        "is the earlier run's)")
    parser.add_argument("--from-runs", type=Path, nargs="+", default=None,
                        help="run nothing: summarize these runs.jsonl files (earlier sweeps, "
                        "e.g. one per task) into --out")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives comparable CPU timings)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.seeds = parse_seeds(args.seeds)

    context = JobContext(model_root=args.cache_dir, data_root=args.cache_dir,
                         cache_dir=args.cache_dir, device=args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.from_runs is not None:
        runs = [run for path in args.from_runs for run in read_runs(path)]
        args.tasks = list(dict.fromkeys(r["task"] for r in runs))
        args.seeds = list(dict.fromkeys(r["seed"] for r in runs))
        args.scheme = "/".join(dict.fromkeys(r["scheme"] for r in runs))
        args.calibration_scope = "/".join(dict.fromkeys(r.get("calibration_scope", "shared")
                                                        for r in runs))
    else:
        runs = sweep(args, context)
    rows = summarize(runs)
    device = str(context.torch_device())
    dims = "; ".join(f"{t} {task_dims(t, args.dims)}" for t in args.tasks)
    header = (f"# PLOT vs PLOT-guided DAS vs full DAS\n\nseeds {args.seeds}, scheme "
              f"{args.scheme}, calibration scope {args.calibration_scope}, {args.pairs} "
              f"pairs per bank, dims {dims}, device {device}, "
              f"torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads")
    if args.from_runs is not None:
        header += f"; summarized from {', '.join(map(str, args.from_runs))}"
    if args.reuse_full is not None:
        header += (f"; full DAS taken from {args.reuse_full} (not trained again: its wall "
                   "times are that run's)")
    (args.out / "compare.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "device": device,
         "runs": runs, "summary": rows}, indent=2))
    (args.out / "compare.md").write_text(markdown(rows, header, runs))
    plot_png(rows, args.out / "compare.png")
    print(markdown(rows, header, runs))


if __name__ == "__main__":
    main()
