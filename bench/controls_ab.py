"""The random-net control (scope ``handles``) and the depth check, old against new, in one
process on the same job's levels, alternating, one thread.

For each task the default job's levels run once (1000 pairs per bank); then, ``--reps``
times in alternating order, the new ``core.controls`` and an older ``core/controls.py``
given by ``--old`` (e.g. ``git show 08210f6:core/controls.py > /tmp/old_controls.py``)
each run (after one untimed warm-up run of each) the random-net control and the depth
check on a fresh backend holding the last level's traces, as the job leaves them. The old
depth check is timed with the re-trace of every location the job ran before it
(``scope(None)``). Both sides must give the same random-net IIA and depth profiles; the
table gives seconds (median of the reps), forward passes, the bytes the random net's clean
traces hold (old: every location; new: the handles' locations) and the load.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/controls_ab.py --old /tmp/old_controls.py
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from core import controls as new
from core.backend import LocalBackend
from core.causal.registry import build_task
from core.control import NO_CONTROL
from core.job import JobContext, default_levels, prepare_job, task_default_net
from core.level_inputs import LevelInputs
from core.progressive import best_handles, run_levels
from core.spec import parse_job_spec

SHORT = {"hierarchical_equality": "HEQ MLP", "binary_addition": "adder GRU",
         "mcqa": "MCQA transformer"}


def load_old(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("old_controls", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fresh(inputs: LevelInputs, held: list[str] | None) -> LevelInputs:
    """The job's inputs on a new backend holding what the last level held."""
    if not inputs.net.scoped_traces:
        return inputs  # the traces hold every location: nothing is re-traced
    traces = {split: t.without_activations() for split, t in inputs.traces.items()}
    backend = LocalBackend(inputs.net, traces, inputs.max_rows, inputs.banks, None)
    backend.scope(held)
    return dataclasses.replace(inputs, traces=traces, backend=backend)


def run_side(side: str, module: ModuleType, schedule: Any, inputs: LevelInputs,
             levels: Any) -> dict[str, Any]:
    started = time.perf_counter()
    random = module.run_random_net_control(schedule, inputs, "reinit", 0, real=levels,
                                           scope="handles")
    random_s = time.perf_counter() - started
    started = time.perf_counter()
    if side == "old":
        inputs.backend.scope(None)  # what the job ran before the old depth check
    depth, passes = module.run_depth_check(inputs, best_handles(levels))
    return {"side": side, "random_net_s": random_s, "depth_s": time.perf_counter() - started,
            "random_passes": random.forward_passes, "depth_passes": passes,
            "random_iia": {v: h.iia_test.overall for v, h in random.handles.items()},
            "depth": {v: [[p.location, p.iia_test] for p in ps] for v, ps in depth.items()},
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def random_trace_bytes(old: ModuleType, inputs: LevelInputs, levels: Any) -> dict[str, int]:
    """Bytes the random net's clean traces hold: old (every location), new (the handles')."""
    handles = [h for level in levels for h in level.handles.values()]
    locations, _ = new.handle_locations(inputs.net.widths, handles)
    mine, _ = new.random_net_inputs(inputs, "reinit", 0, NO_CONTROL, locations)
    theirs, _ = old.random_net_inputs(inputs, "reinit", 0, NO_CONTROL)
    return {side: sum(t.activation_bytes for t in held.traces.values())
            for side, held in (("old", theirs), ("new", mine))}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Old: `{report['old']}`; new: this tree. {report['pairs']} pairs per bank, "
             f"{report.get('reps', 3)} timed runs per side after a warm-up, alternating, one "
             "thread; seconds are medians. The old depth check includes the job's re-trace of "
             "every location of the three banks (`scope(None)`) that preceded it.", "",
             "| task | levels s | side | random net s (median) | depth check s (median) | "
             "random-net passes | random-net trace MiB | depth passes | same results | "
             "load at the end |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---|"]
    for task, entry in report["tasks"].items():
        for side in ("old", "new"):
            rows = [r for r in entry["rows"] if r["side"] == side]
            lines.append(
                f"| {SHORT[task]} | {entry['levels_s']:.2f} | {side} | "
                f"{statistics.median(r['random_net_s'] for r in rows):.3f} | "
                f"{statistics.median(r['depth_s'] for r in rows):.3f} | "
                f"{rows[0]['random_passes']} | {entry['trace_bytes'][side] / 2**20:.1f} | "
                f"{rows[0]['depth_passes']} | "
                f"{entry['same']} | {rows[-1]['load']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="an older core/controls.py")
    parser.add_argument("--tasks", nargs="+", default=list(SHORT), choices=list(SHORT))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    old = load_old(args.old)
    context = JobContext(args.cache, args.cache, args.cache, "cpu")
    report: dict[str, Any] = {"old": str(args.old), "pairs": args.pairs, "reps": args.reps,
                              "tasks": {}}
    for task in args.tasks:
        task_default_net(build_task(task, {}), args.cache, 0)  # trained outside the timing
        pairs = {"fit": args.pairs, "calibration": args.pairs, "test": args.pairs, "seed": 0}
        spec = parse_job_spec({"task": {"builtin": task}, "seed": 0, "pairs": pairs})
        job = prepare_job(spec, context, NO_CONTROL, None)
        schedule = default_levels(spec, job.task, job.inputs.net)
        started = time.perf_counter()
        levels = run_levels(schedule, job.inputs)
        levels_s = time.perf_counter() - started
        backend = job.inputs.backend
        held = backend.held if isinstance(backend, LocalBackend) else None
        for module in (new, old):  # warm-up, untimed: the first run of either pays it
            run_side("new" if module is new else "old", module, schedule,
                     fresh(job.inputs, held), levels)
        rows = []
        for rep in range(args.reps):
            for side in ("new", "old") if rep % 2 == 0 else ("old", "new"):
                module = new if side == "new" else old
                rows.append(run_side(side, module, schedule, fresh(job.inputs, held), levels))
                print(task, {k: v for k, v in rows[-1].items() if k.endswith(("_s", "passes"))},
                      rows[-1]["load"], flush=True)
        same = all(a["random_iia"] == b["random_iia"] and a["depth"] == b["depth"]
                   for a in rows for b in rows)
        report["tasks"][task] = {"levels_s": levels_s, "rows": rows, "same": same,
                                 "trace_bytes": random_trace_bytes(old, job.inputs, levels)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "controls-ab.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    (args.out / "controls-ab.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
