"""Replay guided-DAS widening rules against a full DAS sweep: which (seed, variable) each loses.

A DAS training from a random start at (location, k) with the job's seed is the same whether
full DAS or a guided rule asks for it (``core.das_training``: the start and the minibatch
order depend only on the seed), so a rule that adds random-start trainings can be scored
exactly from the full sweep's runs in a ``bench/compare.py`` runs.jsonl: each added run's
calibration IIA, test IIA and seconds are the full sweep's. A run's own guided trainings at
its kept locations (whatever rule chose their ranks) are the base every rule starts from.

Rules (per variable): ``none``; ``widen below T`` (best calibration IIA under T) and
``widen margin M`` (it trails the handle's calibration IIA by more than M), each training
every other location with the variable's ranks, ``+next`` with the next rank too;
``restart the best``: the best run, when it started from the handle's axes, trained once
more from a random start.

    python bench/guided_rules.py bench/results/paper/compare.json

Prints, per rule: (seed, variable) pairs more than 0.01 under full DAS's test IIA, the worst
and mean difference, trainings, and time as a share of full DAS's (PLOT's wall time plus
the seconds of every training).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare import read_runs  # bench/ is the script's folder

Run = dict[str, Any]
Trigger = Callable[[float, float], bool]


def rank(site: str) -> int:
    return int(site.split("/das:")[1])


def location(site: str) -> str:
    return site.split("/das:")[0].split("/dims:")[0].split("/pca:")[0]


def handle_calibration(record: Run, variable: str) -> float:
    """The calibration IIA of the last PLOT level's handle (the job's handle in older runs;
    NaN in runs that did not record it, so a margin rule never fires there)."""
    handle = record["levels"][-1]["handle"][variable]
    if "iia_calibration" in handle:
        return float(handle["iia_calibration"])
    return float(record["methods"]["PLOT"].get("iia_calibration", {}).get(variable, "nan"))


def replay(record: Run, trigger: Trigger | None, add_next: bool, restart_best: bool = False
           ) -> tuple[dict[str, tuple[float, float]], float, int]:
    """Per variable (guided test IIA, full test IIA); seconds; trainings."""
    methods = record["methods"]
    guided, full = methods["PLOT+guided DAS"], methods["full DAS"]
    kept = record["levels"][-1]["kept"]
    grid = sorted({rank(r["site"]) for r in full["runs"]})
    seconds, trainings, out = methods["PLOT"]["wall_s"], 0, {}
    for variable in record["variables"]:
        at_kept = {location(s) for s in kept[variable]}
        chosen = [r for r in guided["runs"] if r["variable"] == variable
                  and location(r["site"]) in at_kept]
        best = max(chosen, key=lambda r: (r["iia_calibration"], -rank(r["site"])))
        if trigger is not None and trigger(best["iia_calibration"],
                                           handle_calibration(record, variable)):
            ks = sorted({rank(r["site"]) for r in chosen})
            ks += [k for k in grid if k > ks[-1]][:1] if add_next else []
            chosen += [r for r in full["runs"] if r["variable"] == variable
                       and location(r["site"]) not in at_kept and rank(r["site"]) in ks]
            best = max(chosen, key=lambda r: (r["iia_calibration"], -rank(r["site"])))
        if restart_best and best["init"] == "handle":
            again = [r for r in full["runs"] if r["variable"] == variable
                     and r["site"] == best["site"]]
            chosen += again
            best = max(chosen, key=lambda r: (r["iia_calibration"], -rank(r["site"])))
        seconds += sum(r["runtime_s"] for r in chosen)
        trainings += len(chosen)
        out[variable] = (best["iia_test"], full["iia"][variable])
    return out, seconds, trainings


RULES: dict[str, tuple[Trigger | None, bool, bool]] = {
    "none": (None, False, False),
    "widen below 0.9": (lambda b, h: b < 0.9, False, False),
    "widen below 0.95": (lambda b, h: b < 0.95, False, False),
    "widen below 0.95 +next": (lambda b, h: b < 0.95, True, False),
    "widen margin 0.01 +next": (lambda b, h: b < h - 0.01, True, False),
    "widen margin 0.02": (lambda b, h: b < h - 0.02, False, False),
    "widen margin 0.02 +next": (lambda b, h: b < h - 0.02, True, False),
    "widen below 0.99 +next, restart the best": (lambda b, h: b < 0.99, True, True),
    "widen margin 0.02 or handle < 0.9, +next, restart the best (default)": (
        lambda b, h: b < h - 0.02 or h < 0.9, True, True),
    "restart the best": (None, False, True),
    "widen margin 0.02 +next, restart the best": (lambda b, h: b < h - 0.02, True, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+",
                        help="compare.py runs.jsonl or compare.json files")
    parser.add_argument("--handle-calibration", type=Path, default=None,
                        help="JSON {seed: {variable: handle calibration IIA}} for runs that "
                        "did not record it (PLOT rerun on the same nets and banks)")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON")
    args = parser.parse_args()
    records = [record for path in args.runs for record in read_runs(path)]
    if args.handle_calibration is not None:
        given = json.loads(args.handle_calibration.read_text())
        for record in records:
            record["methods"]["PLOT"].setdefault("iia_calibration", given[str(record["seed"])])
    if any("iia_calibration" not in r["methods"]["PLOT"] for r in records):
        print("(some runs do not record their handles' calibration IIA: margin rules never "
              "fire on them)")
    rows = []
    print("| rule | lost > 0.01 | worst | mean diff | trainings | time vs full |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (trigger, add_next, restart) in RULES.items():
        diffs, lost, seconds, full_s, trainings = [], [], 0.0, 0.0, []
        for record in records:
            scores, spent, count = replay(record, trigger, add_next, restart)
            seconds += spent
            full_s += record["methods"]["full DAS"]["wall_s"]
            trainings.append(count)
            for variable, (guided, full) in scores.items():
                diffs.append(guided - full)
                if guided < full - 0.01:
                    lost.append(f"{record['task']} s{record['seed']} {variable}")
        row = {"rule": name, "lost": lost, "worst": min(diffs), "mean": statistics.fmean(diffs),
               "trainings": statistics.fmean(trainings), "time_share": seconds / full_s}
        rows.append(row)
        print(f"| {name} | {len(lost)}/{len(diffs)} | {row['worst']:+.3f} | "
              f"{row['mean']:+.4f} | {row['trainings']:.1f} | {row['time_share']:.3f} |")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
