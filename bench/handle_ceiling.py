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

A test bank of 1000 sensitive pairs per variable rests on few distinct rows where the
equality holds (HEQ: 13–31), so one bank's figure is a noisy draw. With the paper scheme's
HEQ banks (``--population N``, 0 to skip), each seed also gets a **population bank**: the
test banks' construction again, ``N`` sensitive and ``N`` invariant pairs per variable, each
kind from a fresh pool of ``--population-pool`` rows (20,000: about 200 rows with W == X),
drawn apart from the job's banks. On it are scored: the handle chosen on calibration; the
handle chosen on a **per-variable calibration bank** (a method, not a bound:
``pairs.calibration_scope: per_variable``, the test banks' construction drawn from the
job's calibration generator, as many pairs as the authors' bank, each variable's handle
chosen on its own pairs, where the authors' bank scores WX on WX-only and YZ-only pairs
alike); and the population's own ceilings (chosen on the population bank's pairs of the
variable).

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
from core.causal.bank import Banks, PairBank
from core.causal.heq import HierarchicalEquality
from core.causal.paper_heq import scored_banks
from core.causal.registry import make_banks
from core.engine import BankTraces, trace_bank
from core.job import JobContext
from core.level_inputs import LevelInputs
from core.progressive import best_handles, run_levels
from core.result import HandleResult
from core.spec import LevelSpec, PairScheme, PairsSpec

TASKS = ("hierarchical_equality", "binary_addition")
CEILINGS = ("sensitive", "scored")  # the test pairs a ceiling's handle is chosen on
POPULATION_PAIRS = 4000  # per variable and kind (sensitive / invariant)
POPULATION_POOL = 20_000  # rows per pool of the population bank
POPULATION_SEED = 0x5EED_0001  # + pairs.seed: the population bank's generator, apart


def scores(iia: IIA) -> dict[str, float | None]:
    """Overall IIA beside the paper's sensitivity, invariance and their mean."""
    return {"overall": iia.overall, **paper_score(iia)}


Traced = tuple[PairBank, BankTraces]  # a bank and its clean traces


def traced(inputs: LevelInputs, bank: PairBank) -> Traced:
    return bank, trace_bank(inputs.net, bank, inputs.max_rows)


def replaced(inputs: LevelInputs, calibration: Traced | None = None,
             test: Traced | None = None, screen: bool = True) -> LevelInputs:
    """``inputs`` with the calibration and / or test bank replaced; without ``screen``,
    every candidate is scored on every calibration pair."""
    banks, traces = inputs.banks, dict(inputs.traces)
    if calibration is not None:
        traces["calibration"] = calibration[1]
    if test is not None:
        traces["test"] = test[1]
    knobs = inputs.calibration if screen else inputs.calibration.model_copy(
        update={"screen_pairs": 0})
    return LevelInputs.local(
        inputs.net, Banks(banks.fit, banks.calibration if calibration is None else calibration[0],
                          banks.test if test is None else test[0]),
        traces, inputs.coupling, knobs, inputs.max_rows)


def handle_entry(handle: HandleResult) -> dict[str, Any]:
    return {"sites": handle.sites, "k": handle.k, "strength": handle.strength}


def chosen_on(inputs: LevelInputs, schedule: list[LevelSpec], variable: str,
              pairs: str, bank: Traced | None = None) -> dict[str, Any]:
    """``variable``'s handle when the levels choose it on its pairs of ``bank`` (default:
    the test bank; ``pairs``: ``sensitive`` or ``scored``), every candidate on every pair,
    scored on ``bank``."""
    on = inputs.banks.test if bank is None else bank[0]
    mask = on.scored(variable)
    if pairs == "sensitive":
        mask = mask & on.changes_output(variable)
    chosen_pairs = on.subset(mask)  # every one scores the variable (the others: unused)
    oracle = replaced(inputs, calibration=traced(inputs, PairBank(
        chosen_pairs.base, chosen_pairs.source, chosen_pairs.base_labels,
        chosen_pairs.counterfactual_labels)), test=bank, screen=False)
    handle = best_handles(run_levels(schedule, oracle))[variable]
    return {**handle_entry(handle), "iia_chosen_on": handle.iia_calibration,
            "test": scores(handle.iia_test)}


def ceilings(inputs: LevelInputs, schedule: list[LevelSpec]) -> dict[str, Any]:
    """Per variable: the handle the levels choose on the calibration bank, and the
    ceilings (chosen on the variable's sensitive / scored test pairs), all scored on test."""
    handles = best_handles(run_levels(schedule, inputs))
    return {variable: {
        "chosen": {**handle_entry(handle), "iia_calibration": handle.iia_calibration,
                   "test": scores(handle.iia_test)},
        **{f"ceiling_{pairs}": chosen_on(inputs, schedule, variable, pairs)
           for pairs in CEILINGS},
    } for variable, handle in handles.items()}


def population(inputs: LevelInputs, schedule: list[LevelSpec], task: HierarchicalEquality,
               pairs: PairsSpec, population_pairs: int, pool: int) -> dict[str, Any]:
    """Per variable, on a population bank of ``population_pairs`` sensitive and as many
    invariant pairs (pools of ``pool`` rows): the handle chosen on calibration, the one
    chosen on the job's per-variable calibration bank (``pairs.calibration_scope:
    per_variable``; also scored on the test bank), and the population's ceilings."""
    variables = list(inputs.banks.variables)
    bank = traced(inputs, scored_banks(  # traced once, read by every run below
        task, variables, population_pairs,
        torch.Generator().manual_seed(POPULATION_SEED + pairs.seed), pool))
    chosen = best_handles(run_levels(schedule, replaced(inputs, test=bank)))
    own = traced(inputs, make_banks(
        task, pairs.model_copy(update={"calibration_scope": "per_variable"})).calibration)
    on_test = best_handles(run_levels(schedule, replaced(inputs, calibration=own)))
    on_population = best_handles(run_levels(
        schedule, replaced(inputs, calibration=own, test=bank)))
    out: dict[str, Any] = {}
    for variable in variables:
        out[variable] = {
            "chosen": scores(chosen[variable].iia_test),
            "per_variable_calibration": {
                **handle_entry(on_test[variable]),
                "iia_calibration": on_test[variable].iia_calibration,
                "test": scores(on_test[variable].iia_test),
                "population": scores(on_population[variable].iia_test)},
            **{f"ceiling_{kind}": chosen_on(inputs, schedule, variable, kind, bank)
               for kind in CEILINGS},
        }
    return {"pairs_per_kind": population_pairs, "pool_rows": pool,
            "per_variable_calibration_pairs": own[0].size, "variables": out}


def run_seed(task_name: str, seed: int, scheme: PairScheme, context: JobContext,
             sizes: tuple[int, int, int] | None = None,
             population_pairs: int = POPULATION_PAIRS,
             population_pool: int = POPULATION_POOL) -> dict[str, Any]:
    """One task and seed; ``sizes``: (fit, calibration, test) pairs instead of
    bench/compare.py's. The population part runs for the paper scheme's HEQ banks when
    ``population_pairs`` > 0."""
    setup = seed_setup(task_name, seed, context, sizes or bank_sizes(task_name, 1000, scheme),
                       scheme)
    inputs = LevelInputs.local(setup.net, setup.banks, setup.traces, setup.spec.coupling,
                               setup.spec.calibration, setup.max_rows)
    started = time.perf_counter()
    variables = ceilings(inputs, setup.schedule)
    on_population = None
    if population_pairs > 0 and scheme == "paper" and isinstance(setup.task,
                                                                   HierarchicalEquality):
        on_population = population(inputs, setup.schedule, setup.task, setup.spec.pairs,
                                   population_pairs, population_pool)
    return {"task": task_name, "seed": seed, "scheme": scheme,
            "wall_s": time.perf_counter() - started, "variables": variables,
            "population": on_population}


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
                row[name] = spread(column(path))
            rows.append(row)
    return rows


def spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "min": min(values), "per_seed": values}


POPULATION_COLUMNS = {  # name -> (entry of a population cell, its scores' key; None: itself)
    "chosen": ("chosen", None),
    "per_variable": ("per_variable_calibration", "population"),
    "ceiling_sensitive": ("ceiling_sensitive", "test"),
    "ceiling_scored": ("ceiling_scored", "test"),
}


def population_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per task and variable with a population part: each column's sensitivity and
    ½(sens + inv) on the population bank over the seeds, and the per-variable calibration's
    on the test bank."""
    rows = []
    for task in dict.fromkeys(r["task"] for r in runs if r.get("population")):
        mine = [r for r in runs if r["task"] == task and r.get("population")]
        for variable in mine[0]["population"]["variables"]:
            cells = [r["population"]["variables"][variable] for r in mine]
            row: dict[str, Any] = {"task": task, "variable": variable,
                                   "seeds": [r["seed"] for r in mine]}
            for name, (entry, where) in POPULATION_COLUMNS.items():
                figures = [c[entry] if where is None else c[entry][where] for c in cells]
                row[name] = {figure: spread([f[figure] for f in figures])
                             for figure in ("sensitivity", "mean")}
            row["per_variable_test"] = {
                figure: spread([c["per_variable_calibration"]["test"][figure] for c in cells])
                for figure in ("sensitivity", "mean")}
            rows.append(row)
    return rows


def population_markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""

    def cell(column: dict[str, Any], figure: str) -> str:
        return f"{column[figure]['mean']:.3f} ({column[figure]['min']:.3f})"

    lines = ["", "On the population bank (a separate draw of the test banks' construction, "
             "many more rows where the equality holds); mean over the seeds (worst):", "",
             "| task | variable | figure | chosen on calibration | chosen on a per-variable "
             "calibration bank | ceiling (chosen on the population bank) | per-variable "
             "calibration, on the test bank |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        for figure, label, ceiling in (("sensitivity", "sensitivity", "ceiling_sensitive"),
                                       ("mean", "½(sens + inv)", "ceiling_scored")):
            lines.append(
                f"| {row['task']} | {row['variable']} | {label} | "
                f"{cell(row['chosen'], figure)} | {cell(row['per_variable'], figure)} | "
                f"{cell(row[ceiling], figure)} | {cell(row['per_variable_test'], figure)} |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--population", type=int, default=POPULATION_PAIRS,
                        help="HEQ paper banks: sensitive (and invariant) pairs per variable "
                        "of the population bank; 0: none")
    parser.add_argument("--population-pool", type=int, default=POPULATION_POOL,
                        help="rows per pool of the population bank")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results/ceiling"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    context = JobContext(model_root=args.cache_dir, data_root=args.cache_dir,
                         cache_dir=args.cache_dir, device="cpu")
    started = time.perf_counter()
    runs = [run_seed(task, seed, args.scheme, context, population_pairs=args.population,
                     population_pool=args.population_pool)
            for task in args.tasks for seed in parse_seeds(args.seeds)]
    rows, on_population = summary_rows(runs), population_rows(runs)
    print(f"{time.perf_counter() - started:.0f} s for {len(runs)} runs")
    header = (f"# Transport-only handles: chosen on calibration against the menu's ceiling\n\n"
              f"scheme {args.scheme}, seeds {parse_seeds(args.seeds)}, torch "
              f"{torch.__version__}, {platform.machine()}, 1 thread, load "
              f"{os.getloadavg()[0]:.1f}; the ceiling is chosen on the test bank (a bound "
              f"for diagnosis, not a method); population bank: {args.population} sensitive + "
              f"{args.population} invariant pairs per variable, pools of "
              f"{args.population_pool} rows (HEQ paper banks only)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ceiling.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs,
         "summary": rows, "population_summary": on_population}, indent=2))
    text = markdown(rows, header) + population_markdown(on_population)
    (args.out / "ceiling.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
