"""Head to head (plot-method.md §6): transport-only PLOT, PLOT-guided DAS and full DAS.

For each task (the HEQ MLP, the 4-bit adder GRU) and each seed, the task's default net is
trained (or reused from the cache) with that seed, the fit / calibration / test banks are
drawn once, and the three methods run on the same banks and traces:

- ``PLOT``: the task's default levels; the best handle per variable (soft handle test IIA);
- ``PLOT+guided DAS``: the same levels, then DAS only at the kept locations (cost = both);
- ``full DAS``: DAS at every location × k × variable.

The table gives, per method × variable, test IIA mean ± sd over seeds, and per method the
mean wall time, (pair) forward passes, DAS trainings and speed-up over full DAS. Writes
``compare.json``, ``compare.md`` and ``compare.png`` (IIA vs wall time, log x) to --out.

    python bench/compare.py --seeds 0 1 2 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from core.das_search import run_das
from core.engine import trace_bank
from core.job import JobContext, default_levels, resolve_banks, resolve_net, resolve_task
from core.progressive import LevelInputs, best_handles, run_levels
from core.result import DasResult
from core.spec import DasSpec, JobSpec, parse_job_spec

METHODS = ("PLOT", "PLOT+guided DAS", "full DAS")
TASKS = ("hierarchical_equality", "binary_addition")


def run_seed(task_name: str, seed: int, context: JobContext, pairs: int,
             das: dict[str, Any]) -> dict[str, Any]:
    """The three methods on one task and seed, sharing the net, banks and traces."""
    spec: JobSpec = parse_job_spec({
        "task": {"builtin": task_name}, "seed": seed,
        "pairs": {"fit": pairs, "calibration": pairs, "test": pairs, "seed": seed},
    })
    task = resolve_task(spec, context)
    net, _ = resolve_net(spec, context, task, lambda event: None)
    banks = resolve_banks(spec, context, task, net)
    max_rows = context.max_rows(None)
    traces = {s: trace_bank(net, getattr(banks, s), max_rows)
              for s in ("fit", "calibration", "test")}
    inputs = LevelInputs(net, banks, traces, spec.coupling, spec.calibration, max_rows)
    schedule = default_levels(spec, task, net)

    started = time.perf_counter()
    levels = run_levels(schedule, inputs)
    plot_s = time.perf_counter() - started
    plot_passes = sum(level.forward_passes for level in levels)
    handles = best_handles(levels)
    guided = run_das(DasSpec(mode="guided", **das), inputs, levels, seed)
    full = run_das(DasSpec(mode="full", **das), inputs, levels, seed)
    return {
        "task": task_name, "seed": seed, "variables": list(banks.variables),
        "methods": {
            "PLOT": {"wall_s": plot_s, "forward_passes": plot_passes, "trainings": 0,
                     "iia": {v: h.iia_test.overall for v, h in handles.items()},
                     "sites": {v: h.sites for v, h in handles.items()}},
            "PLOT+guided DAS": {
                "wall_s": plot_s + guided.runtime_s,
                "forward_passes": plot_passes + guided.forward_passes,
                "trainings": guided.trainings,
                "iia": {v: r.iia_test.overall for v, r in guided.best.items()},
                "sites": {v: [r.site] for v, r in guided.best.items()},
                "runs": das_runs(guided)},
            "full DAS": {
                "wall_s": full.runtime_s, "forward_passes": full.forward_passes,
                "trainings": full.trainings,
                "iia": {v: r.iia_test.overall for v, r in full.best.items()},
                "sites": {v: [r.site] for v, r in full.best.items()},
                "runs": das_runs(full)},
        },
    }


def das_runs(result: DasResult) -> list[dict[str, Any]]:
    """Every trained (site, k, variable): calibration / test IIA, epochs, seconds."""
    return [{"site": r.site, "variable": r.variable, "iia_calibration": r.iia_calibration,
             "iia_test": r.iia_test.overall, "epochs": r.epochs, "runtime_s": r.runtime_s,
             "init": r.init} for r in result.runs]


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per task × method: IIA per variable (mean, sd), cost means, speed-up."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        mine = [r for r in runs if r["task"] == task]
        full_s = statistics.fmean(r["methods"]["full DAS"]["wall_s"] for r in mine)
        for method in METHODS:
            cells = [r["methods"][method] for r in mine]
            wall = statistics.fmean(c["wall_s"] for c in cells)
            rows.append({
                "task": task, "method": method,
                "iia": {v: mean_sd([c["iia"][v] for c in cells]) for v in mine[0]["variables"]},
                "wall_s": wall,
                "forward_passes": statistics.fmean(c["forward_passes"] for c in cells),
                "trainings": statistics.fmean(c["trainings"] for c in cells),
                "speedup_vs_full": full_s / wall if wall > 0 else float("inf"),
            })
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| task | method | test IIA per variable (mean ± sd) | wall s | "
             "forward passes | DAS trainings | speed-up vs full DAS |",
             "|---|---|---|---:|---:|---:|---:|"]
    for row in rows:
        iia = ", ".join(f"{v} {m:.3f} ± {s:.3f}" for v, (m, s) in row["iia"].items())
        lines.append(f"| {row['task']} | {row['method']} | {iia} | {row['wall_s']:.2f} | "
                     f"{row['forward_passes']:.0f} | {row['trainings']:.0f} | "
                     f"{row['speedup_vs_full']:.1f}× |")
    return "\n".join(lines) + "\n"


def plot_png(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    markers = dict(zip(METHODS, "os^", strict=True))
    for ax, task in zip(axes[0], tasks, strict=True):
        for row in (r for r in rows if r["task"] == task):
            mean_iia = statistics.fmean(m for m, _ in row["iia"].values())
            ax.scatter(row["wall_s"], mean_iia, marker=markers[row["method"]], s=60,
                       label=row["method"])
        ax.set_xscale("log")
        ax.set_xlabel("wall time (s, log)")
        ax.set_ylabel("test IIA (mean over variables and seeds)")
        ax.set_title(task)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--pairs", type=int, default=1000, help="pairs per bank")
    parser.add_argument("--dims", nargs="+", type=int, default=list(range(1, 17)),
                        help="subspace ranks of the DAS grid (default 1..16, the reference's)")
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1 gives comparable CPU timings)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    context = JobContext(model_root=args.cache_dir, data_root=args.cache_dir,
                         cache_dir=args.cache_dir, device=args.device)
    das = {"dims": args.dims, "max_epochs": args.max_epochs}
    runs = [run_seed(task, seed, context, args.pairs, das)
            for task in args.tasks for seed in args.seeds]
    rows = summarize(runs)
    device = str(context.torch_device())
    header = (f"# PLOT vs PLOT-guided DAS vs full DAS\n\nseeds {args.seeds}, {args.pairs} "
              f"pairs per bank, dims {args.dims}, device {device}, torch {torch.__version__}, "
              f"{platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "device": device,
         "runs": runs, "summary": rows}, indent=2))
    (args.out / "compare.md").write_text(markdown(rows, header))
    plot_png(rows, args.out / "compare.png")
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
