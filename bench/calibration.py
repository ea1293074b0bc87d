"""Calibration on the authors' grid against the compute floor and a per-candidate loop.

For the HEQ MLP (level 0: every neuron), the adder GRU (level 1: each carry's principal
directions at its chosen step) and the MCQA transformer (level 0: the residual stream at
every position of the middle block), with the task's default net (trained into the engine
cache on first use), 1000 pairs per bank and one thread, in one run:

- the authors' grid: ε = 0.0014 × (1..30) (their ε 1..30 on raw costs, on our normalised
  cost: plot-method.md §10), top-k 1..20 (clipped to the sites), λ 1..80;
- ``exhaustive``: every candidate scored on every calibration pair (screening off);
- ``screened``: the job's default screening (``calibration.screen_pairs`` /
  ``finalists``), on the same plans;
- the nominal floor: candidate-pairs (every grid candidate × calibration pairs) ÷ the net's
  best plain-forward rate (examples/s of ``net(inputs)`` at its best batch of 256..16384,
  sustained for 3 s just before each mode, so floor and run share the machine's load; the
  floor at the best short burst is printed in brackets);
- the per-candidate loop, written here in the authors' style: one soft-intervened forward
  of the whole calibration bank per candidate (base and source run from the inputs, the
  edit applied in between), timed on a sample of the candidates right after each mode
  (under that mode's load) and scaled to the grid.

Every time is given per wall second and per CPU second of this process (on a shared
machine the CPU seconds are the work itself; the wall seconds include waiting for a core).

Calibration seconds cover the plans and their candidates (``solve_plans``) and the choice
of every variable's handle (``calibrate_handles``). The handles of both modes are compared.
Writes ``calibration.json`` and ``calibration.md`` to --out.

    OMP_NUM_THREADS=1 python bench/calibration.py --out bench/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from core.calibrate import Candidate, candidate_interventions
from core.causal.dataset import write_dataset
from core.causal.mcqa import VOCAB, MultipleChoiceColours
from core.control import NO_CONTROL
from core.engine import BankTraces, trace_bank
from core.intervene import interchange
from core.job import (
    JobContext,
    default_levels,
    resolve_banks,
    resolve_net,
    resolve_task,
    task_for_net,
)
from core.level_inputs import LevelInputs
from core.level_sites import LevelSites, enumerate_level_sites
from core.level_steps import (
    LevelHandles,
    calibrate_handles,
    compute_cost,
    compute_signatures,
    solve_plans,
)
from core.nets.base import InterventableNet
from core.progressive import run_levels
from core.sites import parse_site
from core.spec import CalibrationSpec, CouplingSpec, parse_job_spec

TASKS = {"hierarchical_equality": ("HEQ MLP", 0), "binary_addition": ("adder GRU", 1),
         "mcqa": ("MCQA transformer", 0), "hf_gpt2": ("HF GPT-2 (random, 2×64)", 0)}
HF_OBJECTS = 1  # MCQA prompts of 16 words + the read-out: an object, a question, 3 options
HF_WIDTH, HF_LAYERS = 64, 2
AUTHORS_EPSILONS = [round(0.0014 * e, 6) for e in range(1, 31)]
AUTHORS_TOP_K = list(range(1, 21))
AUTHORS_STRENGTHS = [float(s) for s in range(1, 81)]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def forward_rate(net: InterventableNet, inputs: torch.Tensor, seconds: float = 3.0
                 ) -> tuple[float, float]:
    """The net's plain-forward rate (examples/s): the best batch size of 256..16384 (best
    of 3 short runs), then sustained at that size for ``seconds`` (the mean rate), per
    wall second and per CPU second of this process. On a shared machine a short run
    catches the core at full speed and a long one gets its average share: the sustained
    wall rate is what a calibration of seconds to minutes sees; the CPU rate is the work
    itself, whatever the machine's load."""
    best, size = 0.0, 256
    with torch.no_grad():
        for batch in (256, 1024, 4096, 16384):
            x = inputs[:batch]
            net(x)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - start)
            if x.shape[0] / min(times) > best:
                best, size = x.shape[0] / min(times), x.shape[0]
        if seconds <= 0:
            return best, best
        x, rows = inputs[:size], 0
        start, cpu = time.perf_counter(), time.process_time()
        while time.perf_counter() - start < seconds:
            net(x)
            rows += x.shape[0]
    return rows / (time.perf_counter() - start), rows / (time.process_time() - cpu)


@torch.no_grad()
def authors_loop(net: InterventableNet, traces: BankTraces, inputs: tuple[torch.Tensor,
                 torch.Tensor], candidates: list[Candidate], found: LevelSites,
                 sites: list[Any]) -> tuple[float, float]:
    """Wall and CPU seconds per candidate of one soft-intervened forward of the bank per
    candidate."""
    base, source = inputs
    device = base.device
    start, cpu = time.perf_counter(), time.process_time()
    for candidate in candidates:
        plan = candidate_interventions([candidate], sites, found.directions, found.frames,
                                       device)
        source_run = net.trace(source)
        edits = {loc: partial(interchange, h_source=source_run.activations[loc],
                              coefficients=coef, frame=plan.frames.get(loc))
                 for loc, coef in plan.coefficients.items()}
        net.resume(net.trace(base), edits)
    return ((time.perf_counter() - start) / len(candidates),
            (time.process_time() - cpu) / len(candidates))


def handles_of(handles: LevelHandles) -> dict[str, dict[str, Any]]:
    return {v: {"sites": o.handle.sites, "k": o.handle.k, "strength": o.handle.strength,
                "epsilon": o.handle.epsilon, "iia_calibration": o.handle.iia_calibration,
                "iia_test": o.handle.iia_test.overall}
            for v, o in handles.by_variable.items()}


def save_hf_model(directory: Path, max_len: int = 4 * HF_OBJECTS + 13) -> None:
    """A random-init GPT-2 causal LM (2 blocks, d_model 64, 4 heads), built locally from
    its config class (nothing downloaded), a word-level tokenizer over the MCQA words and
    plot.json, saved with safetensors."""
    import tokenizers
    import transformers

    vocab = {word: i for i, word in enumerate(VOCAB)}
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    tokenizer: Any = transformers.PreTrainedTokenizerFast
    tokenizer(tokenizer_object=word_level, pad_token="<pad>",
              unk_token="<pad>").save_pretrained(directory)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(VOCAB), n_embd=HF_WIDTH,
                                     n_layer=HF_LAYERS, n_head=4, n_positions=64,
                                     bos_token_id=None, eos_token_id=None)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory, safe_serialization=True)
    (directory / "plot.json").write_text(json.dumps(
        {"arch": "hf", "labels": ["A", "B", "C"], "max_len": max_len}))


def hf_job(root: Path, pairs: int) -> tuple[dict[str, Any], JobContext]:
    """The HF model's spec and context: MCQA text prompts (3 × ``pairs`` rows) as a
    dataset, through the normal dataset path; level 0 is every position of the middle
    block."""
    model = root / f"hf-gpt2-{HF_LAYERS}x{HF_WIDTH}"
    dataset = root / f"pairs-{HF_OBJECTS}-{pairs}.jsonl"
    if not (model / "plot.json").exists():
        model.mkdir(parents=True, exist_ok=True)
        save_hf_model(model)
    if not dataset.exists():
        bank = MultipleChoiceColours(num_objects=HF_OBJECTS).sample_bank(
            3 * pairs, torch.Generator().manual_seed(0), 0.5)
        write_dataset(dataset, bank, words=VOCAB)
    spec = {"model": {"path": model.name}, "task": {"dataset": dataset.name},
            "levels": [{"granularity": "position", "keep": 2,
                        "positions": [*map(str, range(4 * HF_OBJECTS + 12)), "last"]}]}
    return spec, JobContext(root, root, root / "cache", "cpu")


def measure(task_name: str, context: JobContext, pairs: int, epsilons: list[float],
            loop_sample: int) -> dict[str, Any]:
    label, level_index = TASKS[task_name]
    sizes = {"pairs": {"fit": pairs, "calibration": pairs, "test": pairs}}
    if task_name == "hf_gpt2":
        hf_spec, context = hf_job(context.cache_dir / "calibration-bench", pairs)
        spec = parse_job_spec({**hf_spec, **sizes})
    else:
        spec = parse_job_spec({"task": {"builtin": task_name}, **sizes})
    task = resolve_task(spec, context)
    net, _ = resolve_net(spec, context, task)
    task = task_for_net(task, net)
    banks = resolve_banks(spec, context, task, net)
    max_rows = max(1, 65536 // net.tokens_per_row)
    traces = {s: trace_bank(net, getattr(banks, s), max_rows)
              for s in ("fit", "calibration", "test")}
    schedule = default_levels(spec, task, net)
    kept = None
    if level_index:
        earlier = run_levels(schedule[:level_index], LevelInputs.local(
            net, banks, traces, spec.coupling, spec.calibration, max_rows))
        kept = {v: [parse_site(s, net.widths) for s in ids]
                for v, ids in earlier[-1].kept_by_variable.items()}
    coupling = CouplingSpec(epsilons=epsilons)
    screened = CalibrationSpec(top_k=AUTHORS_TOP_K, strengths=AUTHORS_STRENGTHS)
    exhaustive = screened.model_copy(update={"screen_pairs": 0})
    level = schedule[level_index]
    rate, _ = forward_rate(net, banks.fit.base, seconds=0.0)  # the quiet-core best
    row: dict[str, Any] = {"task": task_name, "net": label, "level": level_index,
                           "granularity": level.granularity, "forward_rate": rate,
                           "pairs": banks.calibration.size, "epsilons": len(epsilons)}
    base_inputs = LevelInputs.local(net, banks, traces, coupling, screened, max_rows)
    found = enumerate_level_sites(level, base_inputs, kept)
    signatures = compute_signatures(found, base_inputs, lambda done, total: None)
    cost = compute_cost(signatures, base_inputs)
    row["sites"] = len(found.sites)
    # the per-candidate loop on a sample of the first group's candidates
    plans = solve_plans(found, signatures, cost, replace(base_inputs, calibration=screened))
    pool = [c for o in plans.groups[0].kinds[0].solved for c in o.candidates[0]]
    sample = pool[:: max(1, len(pool) // loop_sample)][:loop_sample]
    bank = banks.calibration.to(traces["calibration"].base.logits.device)
    modes: dict[str, Any] = {}
    for mode, calibration in (("exhaustive", exhaustive), ("screened", screened)):
        inputs = replace(base_inputs, calibration=calibration)
        # under the load this mode runs in
        mode_rate, cpu_rate = forward_rate(net, banks.fit.base)
        started, cpu = time.perf_counter(), time.process_time()
        plans = solve_plans(found, signatures, cost, inputs)
        planned = time.perf_counter()
        handles = calibrate_handles(level_index, level, found, plans, inputs, NO_CONTROL)
        done, cpu_s = time.perf_counter(), time.process_time() - cpu
        candidates = sum(len(o.candidates[j]) for g in plans.groups for kind in g.kinds
                         for o in kind.solved for j in range(len(g.group.variables)))
        # the loop's sample timed right after the mode, under the same load
        per_candidate, per_candidate_cpu = authors_loop(
            net, traces["calibration"], (bank.base, bank.source), sample, found,
            found.group_sites(0))
        modes[mode] = {"forward_rate": mode_rate, "forward_rate_cpu": cpu_rate,
                       "calibration_cpu_s": cpu_s,
                       "plans_s": planned - started, "handles_s": done - planned,
                       "calibration_s": done - started, "candidates": candidates,
                       "forward_passes": handles.passes, "handles": handles_of(handles),
                       "loop_s_per_candidate": per_candidate,
                       "loop_cpu_s_per_candidate": per_candidate_cpu,
                       "loop_s_estimate": per_candidate * candidates,
                       "loop_cpu_s_estimate": per_candidate_cpu * candidates,
                       "load": load()}
        print(f"{label} {mode}: {done - started:.1f} s, {candidates} candidates "
              f"(load {load()})", flush=True)
    candidates = modes["exhaustive"]["candidates"]
    floor = candidates * banks.calibration.size / rate
    for mode in modes.values():
        mode["floor_s"] = candidates * banks.calibration.size / mode["forward_rate"]
        mode["floor_cpu_s"] = candidates * banks.calibration.size / mode["forward_rate_cpu"]
        mode["candidates_per_s"] = candidates / mode["calibration_s"]
        mode["x_floor"] = mode["calibration_s"] / mode["floor_s"]
        mode["x_floor_cpu"] = mode["calibration_cpu_s"] / mode["floor_cpu_s"]
        mode["speedup_vs_loop"] = mode["loop_s_estimate"] / mode["calibration_s"]
        mode["speedup_vs_loop_cpu"] = mode["loop_cpu_s_estimate"] / mode["calibration_cpu_s"]
    row.update(modes=modes, floor_s=floor, loop_sample=len(sample),
               same_handles=all(
                   {k: v for k, v in modes["exhaustive"]["handles"][var].items()
                    if k != "iia_test"} ==
                   {k: v for k, v in modes["screened"]["handles"][var].items()
                    if k != "iia_test"}
                   for var in modes["exhaustive"]["handles"]),
               load_after=load())
    return row


def markdown(rows: list[dict[str, Any]], header: str) -> str:
    lines = [header, "", "| net | level | sites | grid candidates | mode | calibration s "
             "wall (CPU) | candidates/s wall | nominal floor s wall, sustained (CPU; best "
             "burst) | × floor wall (CPU) | per-candidate loop s est. wall (CPU) | "
             "× loop wall (CPU) | load |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        for name, mode in row["modes"].items():
            lines.append(
                f"| {row['net']} | {row['level']} ({row['granularity']}) | {row['sites']} | "
                f"{mode['candidates']} | {name} | "
                f"{mode['calibration_s']:.1f} ({mode['calibration_cpu_s']:.1f}) | "
                f"{mode['candidates_per_s']:,.0f} | {mode['floor_s']:.1f} "
                f"({mode['floor_cpu_s']:.1f}; {row['floor_s']:.1f}) | "
                f"{mode['x_floor']:.2f} ({mode['x_floor_cpu']:.2f}) | "
                f"{mode['loop_s_estimate']:.0f} ({mode['loop_cpu_s_estimate']:.0f}) | "
                f"{mode['speedup_vs_loop']:.0f}× ({mode['speedup_vs_loop_cpu']:.0f}×) | "
                f"{mode['load']} |")
    lines += ["", "| net | variable | exhaustive handle | screened handle | same |",
              "|---|---|---|---|---|"]
    for row in rows:
        for var, full in row["modes"]["exhaustive"]["handles"].items():
            fast = row["modes"]["screened"]["handles"][var]

            def show(h: dict[str, Any]) -> str:
                return (f"k {h['k']}, λ {h['strength']:g}, ε {h['epsilon']:g}, cal "
                        f"{h['iia_calibration']:.3f}, test {h['iia_test']:.3f}")

            same = {k: v for k, v in full.items() if k != "iia_test"} == \
                {k: v for k, v in fast.items() if k != "iia_test"}
            lines.append(f"| {row['net']} | {var} | {show(full)} | {show(fast)} | "
                         f"{'yes' if same else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--epsilons", type=int, default=30,
                        help="the first N of the authors' 30 ε (all by default)")
    parser.add_argument("--task-epsilons", nargs="*", default=[],
                        help="TASK=N: the first N ε for that task only (e.g. mcqa=2)")
    parser.add_argument("--task-pairs", nargs="*", default=[],
                        help="TASK=N: pairs per bank for that task only (e.g. hf_gpt2=200)")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other nets' rows of the calibration.json in --out")
    parser.add_argument("--loop-sample", type=int, default=32,
                        help="candidates timed in the per-candidate loop")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "plot")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    context = JobContext(args.cache_dir, args.cache_dir, args.cache_dir, "cpu")
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    earlier = (json.loads((args.out / "calibration.json").read_text())["rows"]
               if args.merge and (args.out / "calibration.json").exists() else [])
    for task in args.tasks:
        count = dict(item.split("=") for item in args.task_epsilons).get(task, args.epsilons)
        pairs = int(dict(item.split("=") for item in args.task_pairs).get(task, args.pairs))
        rows.append(measure(task, context, pairs, AUTHORS_EPSILONS[:int(count)],
                            args.loop_sample))
        merged = sorted([r for r in earlier if r["task"] not in args.tasks] + rows,
                        key=lambda r: list(TASKS).index(r["task"]))
        write(args, merged, time.perf_counter() - started)  # after each net: a partial table


def write(args: argparse.Namespace, rows: list[dict[str, Any]], wall_s: float) -> None:
    header = (f"# Calibration on the authors' grid (ε × top-k 1..20 × λ 1..80)\n\n"
              f"torch {torch.__version__}, "
              f"{platform.machine()}, {torch.get_num_threads()} thread(s); ε and pairs per "
              "bank per net: "
              + ", ".join(f"{r['net']} {r['epsilons']} ε, {r['pairs']} pairs" for r in rows)
              + f"; load average at the end {load()}"
              + ("; the HF row: level 0 is the 17 positions of block 0 of 2 (300 pairs "
                 "so that the default screening, 256 pairs, applies)"
                 if any(r["task"] == "hf_gpt2" for r in rows) else ""))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
         "wall_s": wall_s}, indent=1))
    table = markdown(rows, header)
    (args.out / "calibration.md").write_text(table)
    print(table, flush=True)

if __name__ == "__main__":
    main()
