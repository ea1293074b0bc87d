"""How far transport-only handles could go on a net: the handle PLOT chose on the
calibration bank against the best one its own candidate menu holds, chosen on the test bank.

For each task and seed, the task's default net and banks (``--scheme``), the default levels
run as a job runs them; each variable's handle is scored on the test bank. Then, per
variable, the same levels run again with the calibration bank replaced by the test bank's
pairs of that variable (its sensitive pairs alone: the best test sensitivity; all its scored
pairs: the best test IIA there, which on the paper scheme's HEQ banks of 1000 sensitive and
1000 invariant pairs is ½(sensitivity + invariance)), every candidate scored on every pair
(no screening). The coupling is fitted on the same fit bank, so the menu is the same; only
the choice differs. That choice is made on the test bank: it is a ceiling for diagnosis,
never a method or a reported figure.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/handle_ceiling.py --seeds 0..9 --scheme paper
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

# bench/ is the script's folder
from compare import bank_sizes, paper_score, parse_seeds, seed_setup

from core.calibrate import IIA
from core.causal.bank import Banks
from core.engine import trace_bank
from core.job import JobContext
from core.level_inputs import LevelInputs
from core.progressive import best_handles, run_levels
from core.spec import LevelSpec, PairScheme

TASKS = ("hierarchical_equality", "binary_addition")
CEILINGS = ("sensitive", "scored")  # the test pairs a ceiling's handle is chosen on


def scores(iia: IIA) -> dict[str, float | None]:
    """Overall IIA beside the paper's sensitivity, invariance and their mean."""
    return {"overall": iia.overall, **paper_score(iia)}


def chosen_on(inputs: LevelInputs, schedule: list[LevelSpec], variable: str,
              pairs: str) -> dict[str, Any]:
    """``variable``'s handle when the levels choose it on its test pairs (``pairs``:
    ``sensitive`` or ``scored``), every candidate on every pair."""
    test = inputs.banks.test
    mask = test.scored(variable)
    if pairs == "sensitive":
        mask = mask & test.changes_output(variable)
    calibration = test.subset(mask)
    traces = dict(inputs.traces, calibration=trace_bank(inputs.net, calibration,
                                                        inputs.max_rows))
    oracle = LevelInputs.local(
        inputs.net, Banks(inputs.banks.fit, calibration, test), traces, inputs.coupling,
        inputs.calibration.model_copy(update={"screen_pairs": 0}), inputs.max_rows)
    handle = best_handles(run_levels(schedule, oracle))[variable]
    return {"sites": handle.sites, "k": handle.k, "strength": handle.strength,
            "iia_chosen_on": handle.iia_calibration, "test": scores(handle.iia_test)}


def ceilings(inputs: LevelInputs, schedule: list[LevelSpec]) -> dict[str, Any]:
    """Per variable: the handle the levels choose on the calibration bank, and the
    ceilings (chosen on the variable's sensitive / scored test pairs), all scored on test."""
    handles = best_handles(run_levels(schedule, inputs))
    return {variable: {
        "chosen": {"sites": handle.sites, "k": handle.k, "strength": handle.strength,
                   "iia_calibration": handle.iia_calibration,
                   "test": scores(handle.iia_test)},
        **{f"ceiling_{pairs}": chosen_on(inputs, schedule, variable, pairs)
           for pairs in CEILINGS},
    } for variable, handle in handles.items()}


def run_seed(task_name: str, seed: int, scheme: PairScheme, context: JobContext,
             sizes: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """One task and seed; ``sizes``: (fit, calibration, test) pairs instead of
    bench/compare.py's."""
    setup = seed_setup(task_name, seed, context, sizes or bank_sizes(task_name, 1000, scheme),
                       scheme)
    inputs = LevelInputs.local(setup.net, setup.banks, setup.traces, setup.spec.coupling,
                               setup.spec.calibration, setup.max_rows)
    started = time.perf_counter()
    variables = ceilings(inputs, setup.schedule)
    return {"task": task_name, "seed": seed, "scheme": scheme,
            "wall_s": time.perf_counter() - started, "variables": variables}


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs):
        mine = [r for r in runs if r["task"] == task]
        for variable in mine[0]["variables"]:
            cells = [r["variables"][variable] for r in mine]

            def column(path: tuple[str, str], cells: list[dict[str, Any]] = cells
                       ) -> list[float]:
                return [c[path[0]]["test"][path[1]] for c in cells]

            row: dict[str, Any] = {"task": task, "variable": variable,
                                   "seeds": [r["seed"] for r in mine]}
            for name, path in {"chosen_sensitivity": ("chosen", "sensitivity"),
                               "ceiling_sensitivity": ("ceiling_sensitive", "sensitivity"),
                               "chosen_overall": ("chosen", "overall"),
                               "ceiling_overall": ("ceiling_scored", "overall")}.items():
                values = column(path)
                row[name] = {"mean": statistics.fmean(values), "min": min(values),
                             "per_seed": values}
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "",
             "| task | variable | test sensitivity: chosen on calibration, mean (worst) | "
             "ceiling: best on the test bank, mean (worst) | seeds under 0.99 at the ceiling "
             "| test IIA over the variable's pairs: chosen / ceiling, mean |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        chosen, ceiling = row["chosen_sensitivity"], row["ceiling_sensitivity"]
        under = [s for s, v in zip(row["seeds"], ceiling["per_seed"], strict=True) if v < 0.99]
        lines.append(
            f"| {row['task']} | {row['variable']} | {chosen['mean']:.3f} ({chosen['min']:.3f}) "
            f"| {ceiling['mean']:.3f} ({ceiling['min']:.3f}) | "
            f"{', '.join(map(str, under)) or '–'} | {row['chosen_overall']['mean']:.3f} / "
            f"{row['ceiling_overall']['mean']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["hierarchical_equality"], choices=TASKS)
    parser.add_argument("--seeds", nargs="+", default=["0..9"],
                        help="seeds, or inclusive ranges like 0..9")
    parser.add_argument("--scheme", choices=["balanced", "paper"], default="paper")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ceiling"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    context = JobContext(model_root=args.cache_dir, data_root=args.cache_dir,
                         cache_dir=args.cache_dir, device="cpu")
    runs = [run_seed(task, seed, args.scheme, context)
            for task in args.tasks for seed in parse_seeds(args.seeds)]
    rows = summary_rows(runs)
    header = (f"# Transport-only handles: chosen on calibration against the menu's ceiling\n\n"
              f"scheme {args.scheme}, seeds {parse_seeds(args.seeds)}, torch "
              f"{torch.__version__}, {platform.machine()}, 1 thread, load "
              f"{os.getloadavg()[0]:.1f}; the ceiling is chosen on the test bank (a bound "
              f"for diagnosis, not a method)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ceiling.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
         "summary": rows}, indent=2))
    (args.out / "ceiling.md").write_text(markdown(rows, header))
    print(markdown(rows, header))


if __name__ == "__main__":
    main()
