"""Real language-model sizes: a GPT-2-small-shaped and a Gemma-2-shaped random model through
the default three-level token schedule (position → layer → PCA) on MCQA-style text prompts.

Per model, in its own process (so its peak memory is its own): wall time per level,
interventions per second at each level beside plain forward examples per second of the same
model and batch, and peak memory beside the floor (weights + one level's traces) and beside
what tracing every location of every bank would hold (the engine before levels traced only
what they need).

Goals: peak ≤ weights + 2 × the largest level's traces (above the process's memory before
the net was loaded); interventions/s ≥ 0.5 × forward examples/s at the position level.

Usage (one thread on CPU; the default --pairs is 200 per bank, 1000 on a GPU):
    OMP_NUM_THREADS=1 python bench/scale.py --pairs 24
    python bench/scale.py --device cuda --dtype bf16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.causal.dataset import write_dataset  # noqa: E402
from core.causal.mcqa import VOCAB, MultipleChoiceColours  # noqa: E402
from core.control import NO_CONTROL  # noqa: E402
from core.job import JobContext, default_levels, prepare_job  # noqa: E402
from core.level_sites import level_locations  # noqa: E402
from core.memory import parse_bytes, trace_bytes_per_example  # noqa: E402
from core.progressive import run_level  # noqa: E402
from core.sites import parse_site  # noqa: E402
from core.spec import parse_job_spec  # noqa: E402

MODELS = ("gpt2-small", "gemma2-4l")
OBJECTS = 3  # MCQA prompts of 25 words: three objects, a question, three options


def save_model(name: str, directory: Path, vocab_size: int, max_len: int = 25) -> Path:
    """A random model of ``name``'s shape, a word-level tokenizer over the MCQA words and
    plot.json (``max_len`` tokens), saved with safetensors; ``vocab_size`` is the Gemma-2
    shape's (the GPT-2 shape keeps GPT-2's 50,257)."""
    import tokenizers
    import transformers

    vocab = {word: i for i, word in enumerate(VOCAB)}
    word_level = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<pad>"))
    word_level.pre_tokenizer = tokenizers.pre_tokenizers.WhitespaceSplit()
    transformers.PreTrainedTokenizerFast(tokenizer_object=word_level, pad_token="<pad>",
                                         unk_token="<pad>").save_pretrained(directory)
    torch.manual_seed(0)
    if name == "gpt2-small":
        config: Any = transformers.GPT2Config(vocab_size=50257, n_embd=768, n_layer=12,
                                              n_head=12, n_positions=64)
        model: Any = transformers.GPT2LMHeadModel(config)
    else:
        config = transformers.Gemma2Config(
            vocab_size=vocab_size, hidden_size=2304, num_attention_heads=8,
            num_key_value_heads=4, head_dim=256, intermediate_size=9216, num_hidden_layers=4,
            max_position_embeddings=64, pad_token_id=0, bos_token_id=None, eos_token_id=None)
        model = transformers.Gemma2ForCausalLM(config)
    model.save_pretrained(directory, safe_serialization=True)
    (directory / "plot.json").write_text(json.dumps(
        {"arch": "hf", "labels": ["A", "B", "C"], "max_len": max_len}))
    return directory


def write_pairs(path: Path, pairs: int) -> None:
    """3 × ``pairs`` MCQA text pairs as a counterfactual dataset (one JSONL row each)."""
    bank = MultipleChoiceColours(num_objects=OBJECTS).sample_bank(
        3 * pairs, torch.Generator().manual_seed(0), 0.5)
    write_dataset(path, bank, words=VOCAB)


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # VmHWM: this process's peak RSS since its exec (ru_maxrss also counts the parent's
    # pages at the fork, and the parent built the models)
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status
                    if line.startswith("VmHWM"))


def reset_peak(device: torch.device) -> None:
    """Start the peak over from the current memory (Linux: ``clear_refs`` 5 resets VmHWM)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def current_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@torch.no_grad()
def forward_rate(net: Any, inputs: torch.Tensor, rows: int, device: torch.device) -> float:
    """Plain forward examples/s of ``net`` on batches of ``rows`` of ``inputs`` (tiled)."""
    batch = inputs.repeat(-(-rows // inputs.shape[0]), 1)[:rows].to(device)
    net.trace(batch, ())  # warm-up
    runs, started = 0, time.perf_counter()
    while runs < 2 or time.perf_counter() - started < 2.0:
        net.trace(batch, ())
        runs += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return rows * runs / (time.perf_counter() - started)


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """One model's job, measured (runs in its own process)."""
    root = Path(args.root)
    device = torch.device(args.device)
    floor_before = current_bytes(device)
    spec = parse_job_spec({
        "model": {"path": args.model}, "task": {"dataset": "pairs.jsonl"},
        "pairs": {"fit": args.pairs, "calibration": args.pairs, "test": args.pairs},
        "levels": [
            {"granularity": "position", "keep": 2,
             "positions": [*map(str, range(4 * OBJECTS + 12)), "last"]},
            {"granularity": "layer", "keep": 1, "scope": "per_variable"},
            {"granularity": "pca", "band_size": args.band, "scope": "per_variable"}],
        "calibration": {"top_k": [1, 2, 4], "strengths": [1.0, 2.0, 4.0]},
        "coupling": {"epsilons": [0.03, 0.1]},
        "controls": {"random_net": False, "depth_check": False, "label_permutation": False},
    })
    context = JobContext(root, root, root / "cache", args.device,
                         memory_budget=parse_bytes(args.budget) if args.budget else None)
    os.environ.pop("PLOT_MEMORY_BUDGET", None)
    if args.dtype:
        plot = json.loads((root / args.model / "plot.json").read_text())
        (root / args.model / "plot.json").write_text(json.dumps({**plot, "dtype": args.dtype}))
    started = time.perf_counter()
    job = prepare_job(spec, context, NO_CONTROL, None)
    load_peak = peak_bytes(device)
    reset_peak(device)  # the levels' peak apart from loading (which holds weights twice)
    inputs = job.inputs
    net = inputs.net
    weights = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    examples = 2 * sum(getattr(inputs.banks, s).size for s in ("fit", "calibration", "test"))
    every_location = examples * trace_bytes_per_example(net, None)
    schedule = default_levels(spec, None, net)
    levels, results = [], []
    for index, level in enumerate(schedule):
        kept = ({v: [parse_site(s, net.widths) for s in ids]
                 for v, ids in results[-1].kept_by_variable.items()} if results else None)
        locations = level_locations(level, inputs, kept)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = run_level(index, level, inputs, kept)
        results.append(result)
        held = sum(t.activation_bytes for t in inputs.traces.values())
        sites = len(result.sites)
        interventions = sites * inputs.banks.fit.size
        levels.append({
            "granularity": level.granularity, "sites": sites, "locations": len(locations),
            "wall_s": result.runtime_s, "trace_s": result.timing["trace_s"],
            "signatures_s": result.timing["signatures_s"],
            "calibration_s": result.timing["calibration_s"],
            "interventions": interventions,
            "interventions_per_s": interventions / max(result.timing["signatures_s"], 1e-9),
            "trace_bytes": held, "peak_bytes": peak_bytes(device)})
        # a level's figures as soon as it is done (a run stopped early keeps them)
        print(json.dumps({"model": args.model, "level": levels[-1],
                          "load_average": os.getloadavg()}), file=sys.stderr, flush=True)
    rows = min(inputs.max_rows, levels[0]["interventions"])
    rate = forward_rate(net, inputs.banks.fit.base, rows, device)
    largest = max(level["trace_bytes"] for level in levels)
    peak = max(level["peak_bytes"] for level in levels)
    above = peak - floor_before if device.type == "cpu" else peak  # levels, after loading
    return {
        "model": args.model, "device": args.device, "dtype": args.dtype or "saved",
        "parameters": sum(p.numel() for p in net.parameters()), "weights_bytes": weights,
        "pairs_per_bank": args.pairs, "max_rows": inputs.max_rows, "budget": args.budget,
        "levels": levels, "forward_rows": rows, "forward_examples_per_s": rate,
        "position_ratio": levels[0]["interventions_per_s"] / rate,
        "memory_before_net_bytes": floor_before, "load_peak_bytes": load_peak,
        "peak_bytes": peak,
        "peak_above_start_bytes": above, "floor_bytes": weights + largest,
        "goal_bytes": weights + 2 * largest, "every_location_trace_bytes": every_location,
        "memory_goal_met": above <= weights + 2 * largest,
        "speed_goal_met": levels[0]["interventions_per_s"] >= 0.5 * rate,
        "total_s": time.perf_counter() - started,
    }


def table(rows: list[dict[str, Any]]) -> str:
    mib = 2**20
    lines = ["model       level     sites  wall_s  trace_s  interv/s  fwd ex/s  traces_MiB",
             "-" * 78]
    for row in rows:
        for level in row["levels"]:
            lines.append(f"{row['model']:<11} {level['granularity']:<8} {level['sites']:>6} "
                         f"{level['wall_s']:>7.1f} {level['trace_s']:>8.1f} "
                         f"{level['interventions_per_s']:>9.1f} "
                         f"{row['forward_examples_per_s']:>9.1f} "
                         f"{level['trace_bytes'] / mib:>11.1f}")
    lines += ["", "model       weights_MiB  floor_MiB  peak_MiB  goal_MiB  every_loc_MiB  "
              "pos_ratio  load_peak_MiB", "-" * 92]
    for row in rows:
        lines.append(f"{row['model']:<11} {row['weights_bytes'] / mib:>11.0f} "
                     f"{row['floor_bytes'] / mib:>10.0f} "
                     f"{row['peak_above_start_bytes'] / mib:>9.0f} "
                     f"{row['goal_bytes'] / mib:>9.0f} "
                     f"{row['every_location_trace_bytes'] / mib:>14.0f} "
                     f"{row['position_ratio']:>10.2f} "
                     f"{(row['load_peak_bytes'] - row['memory_before_net_bytes']) / mib:>14.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=None,
                        help="pairs per bank (default 200 on CPU, 1000 on a GPU)")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=["bf16", "fp16", "fp32"])
    parser.add_argument("--budget", default="2GiB", help="PLOT_MEMORY_BUDGET of the job")
    parser.add_argument("--band", type=int, default=64, help="PCA band size")
    parser.add_argument("--vocab", type=int, default=32768,
                        help="vocabulary of the Gemma-2-shaped model (Gemma-2's is 256000)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "scale.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pairs is None:
        args.pairs = 1000 if args.device.startswith("cuda") else 200
    if args.child:
        print(json.dumps(run_child(args)))
        return
    load_start = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_pairs(root / "pairs.jsonl", args.pairs)
        for name in args.models.split(","):
            save_model(name, root / name, args.vocab)
            command = [sys.executable, __file__, "--child", "--root", str(root),
                       "--model", name, "--pairs", str(args.pairs), "--device", args.device,
                       "--budget", args.budget, "--band", str(args.band)]
            if args.dtype:
                command += ["--dtype", args.dtype]
            # the child's per-level lines stream to this process's stderr as they come
            done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{name} failed (its stderr is above)")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"{name}: {rows[-1]['total_s']:.0f} s", flush=True)
    report = {"load_average_start": load_start, "load_average_end": os.getloadavg(),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "runs": rows}
    print(table(rows))
    print(f"load average at start {load_start}, at end {report['load_average_end']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
