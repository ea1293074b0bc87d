"""Controls beside the localization: real handles against a random net and permuted labels.

For each task (the HEQ MLP, the 4-bit adder GRU; the MCQA transformer with ``--tasks mcqa``)
and seed, the task's default job runs with its controls on (``run_job``, the default
schedule, 1000 pairs per bank), once per ``--weights`` mode of the random net and per
``--scopes`` (``controls.random_net_scope``: ``handles``, the real handles' site sets;
``first_level``, those and the first level; ``schedule``, the whole rerun), with the
controls' seconds as a share of the levels' and of the job's. Per variable it reports the
real handle's test IIA next to the random-net control's, the label-permutation control at
the handle's level (the real row's mass on its kept sites, the mean mass of couplings on
permuted labels, the uniform level and the most a row can hold there), and the depth check
at the last location. Then one job on a counterfactual dataset of the HEQ net where a third
variable ``WX_copy`` has exactly WX's counterfactual labels: the diagnostics must name the
pair.

Writes ``controls.json`` and ``controls.md`` (``--name``) to --out; the job's seconds
(``job s``) include what runs outside the timed stages (before the depth check traced its
own locations, the job re-traced every location for it there, untimed).

    OMP_NUM_THREADS=1 python bench/controls.py --seeds 0 --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.causal.bank import PairBank
from core.causal.dataset import write_dataset
from core.causal.registry import bank_generators, build_task
from core.job import JobContext, run_job, task_default_net
from core.result import JobResult
from core.spec import parse_job_spec

TASKS = ("hierarchical_equality", "binary_addition", "mcqa")
DEFAULT_TASKS = ("hierarchical_equality", "binary_addition")
SHORT = {"hierarchical_equality": "HEQ MLP", "binary_addition": "adder GRU",
         "mcqa": "MCQA transformer"}


def job_row(task: str, seed: int, weights: str, scope: str, result: JobResult
            ) -> dict[str, Any]:
    """The controls of one job, per variable, with the job's timing."""
    controls = result.controls
    assert controls is not None and controls.random_net is not None
    variables = {}
    for variable, handle in result.handles.items():
        control = controls.random_net.handles[variable]
        mass = controls.label_permutation[variable]
        depth = controls.depth[variable]
        variables[variable] = {
            "iia_test": handle.iia_test.overall, "sites": handle.sites,
            "random_net_iia_test": control.iia_test.overall,
            "random_net_sites": control.sites,
            "kept": mass.kept, "real_mass": mass.real_mass, "control_mass": mass.control_mass,
            "uniform_mass": mass.uniform_mass, "max_mass": mass.max_mass,
            "depth": [{"location": p.location, "iia_test": p.iia_test} for p in depth],
        }
    timing = result.timing
    levels_s = timing["signatures_s"] + timing["coupling_s"] + timing["calibration_s"]
    return {"task": task, "seed": seed, "weights": weights, "scope": scope,
            "variables": variables, "levels_s": levels_s,
            "controls_share_of_levels": timing["controls_s"] / levels_s,
            "controls_share_of_job": timing["controls_s"] / timing["total_s"],
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "base_accuracy": controls.base_accuracy,
            "random_net_base_accuracy": controls.random_net.base_accuracy,
            "warnings": controls.warnings,
            "level_warnings": [w for level in result.levels for w in level.warnings],
            "timing": result.timing}


def run_task(task: str, seed: int, weights: str, scope: str, context: JobContext,
             pairs: int) -> JobResult:
    spec = parse_job_spec({
        "task": {"builtin": task}, "seed": seed,
        "pairs": {"fit": pairs, "calibration": pairs, "test": pairs, "seed": seed},
        "controls": {"random_weights": weights, "random_net_scope": scope},
    })
    return run_job(spec, context)


def identical_variables_job(seed: int, context: JobContext, pairs: int) -> JobResult:
    """HEQ net, a dataset whose variable ``WX_copy`` gives exactly WX's labels."""
    task = build_task("hierarchical_equality", {})
    net_dir = task_default_net(task, context.cache_dir, seed)
    bank = task.sample_bank(3 * pairs, bank_generators(seed)[0], 0.5)
    labels = dict(bank.counterfactual_labels)
    labels["WX_copy"] = labels["WX"].clone()
    with tempfile.TemporaryDirectory() as folder:
        write_dataset(Path(folder) / "pairs.jsonl",
                      PairBank(bank.base, bank.source, bank.base_labels, labels))
        spec = parse_job_spec({
            "model": {"path": net_dir.name}, "task": {"dataset": "pairs.jsonl"}, "seed": seed,
            "pairs": {"fit": pairs, "calibration": pairs, "test": pairs, "seed": seed},
            "levels": [{"granularity": "neuron"}],
        })
        return run_job(spec, JobContext(net_dir.parent, Path(folder), context.cache_dir,
                                         context.device))


def markdown(rows: list[dict[str, Any]], identical: dict[str, Any]) -> str:
    lines = [
        "| task | seed | random weights | random net | variable | real test IIA | "
        "random-net test IIA | kept-site mass: real / permuted labels / uniform / max | "
        "full-vector IIA at the last location | PLOT levels s | controls s (random net / "
        "depth / permutation) | controls ÷ levels | controls ÷ job | job s | load |",
        "|---|---:|---|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        timing = row["timing"]
        levels_s = timing["signatures_s"] + timing["coupling_s"] + timing["calibration_s"]
        for variable, v in row["variables"].items():
            lines.append(
                f"| {SHORT[row['task']]} | {row['seed']} | {row['weights']} | {row['scope']} | "
                f"{variable} | {v['iia_test']:.3f} | {v['random_net_iia_test']:.3f} | "
                f"{v['real_mass']:.3f} / {v['control_mass']:.3f} / {v['uniform_mass']:.3f} / "
                f"{v['max_mass']:.3f} | {v['depth'][-1]['iia_test']:.3f} "
                f"({v['depth'][-1]['location']}) | {levels_s:.2f} | "
                f"{timing['controls_s']:.2f} ({timing['random_net_s']:.2f} / "
                f"{timing['depth_check_s']:.2f} / {timing['label_permutation_s']:.2f}) | "
                f"{row['controls_share_of_levels']:.0%} | {row['controls_share_of_job']:.0%} | "
                f"{timing['total_s']:.2f} | {row['load']} |")
    lines += ["", "Identical variables (HEQ net, dataset with WX_copy = WX):", ""]
    lines += [f"- {w}" for w in identical["warnings"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--weights", nargs="+", default=["reinit", "shuffle"],
                        choices=["reinit", "shuffle"])
    parser.add_argument("--scopes", nargs="+", default=["handles", "schedule"],
                        choices=["handles", "first_level", "schedule"],
                        help="controls.random_net_scope: handles (the real handles' site "
                        "sets), first_level (and the first level), schedule (the old rerun)")
    parser.add_argument("--tasks", nargs="+", default=list(DEFAULT_TASKS), choices=TASKS)
    parser.add_argument("--no-identical", action="store_true",
                        help="skip the identical-variables job")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--name", default="controls",
                        help="the report's file name in --out, without .json / .md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    context = JobContext(args.cache, args.cache, args.cache, "cpu")
    rows = []
    started = time.perf_counter()
    for task in args.tasks:
        for seed in args.seeds:
            task_default_net(build_task(task, {}), args.cache, seed)  # train outside timing
            for weights in args.weights:
                for scope in args.scopes:
                    result = run_task(task, seed, weights, scope, context, args.pairs)
                    rows.append(job_row(task, seed, weights, scope, result))
                    print(markdown(rows[-1:], {"warnings": []}), flush=True)
    identical: dict[str, Any] = {"warnings": []}
    if not args.no_identical:
        same = identical_variables_job(args.seeds[0], context, args.pairs)
        level = same.levels[-1]
        assert level.diagnostics is not None
        identical = {
            "variables": same.variables, "warnings": level.warnings,
            "pairs": [vars(p) for p in level.diagnostics.pairs],
            "handles": {v: {"sites": h.sites, "iia_test": h.iia_test.overall}
                        for v, h in same.handles.items()},
        }
    report = {"machine": {"platform": platform.platform(), "torch": torch.__version__,
                          "threads": args.threads},
              "pairs": args.pairs, "rows": rows, "identical_variables": identical,
              "wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    table = markdown(rows, identical)
    (args.out / f"{args.name}.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
