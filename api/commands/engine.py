"""``plot train``, ``plot run`` and ``plot demo``: the engine from the command line, in-process."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from core.causal.registry import build_task
from core.events import EngineEvent
from core.job import JobContext, run_job, task_default_net, train_default_net
from core.report import render_report
from core.result import JobResult
from core.spec import JobSpec, load_job_spec, parse_job_spec

DEMO_SPEC: dict[str, Any] = {
    "task": {"builtin": "hierarchical_equality"},
    "pairs": {"fit": 1000, "calibration": 1000, "test": 1000, "seed": 0},
    "levels": [{"granularity": "neuron"}],
    "coupling": {"solver": "sinkhorn"},
}


def default_cache_dir() -> Path:
    """The user's cache for default nets: ``$PLOT_CACHE_DIR`` or ``~/.cache/plot``."""
    root = os.environ.get("PLOT_CACHE_DIR") or Path.home() / ".cache" / "plot"
    return Path(root)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    train = commands.add_parser("train", help="train a built-in task's net here (CPU)")
    train.add_argument("task", choices=["hierarchical_equality", "binary_addition"])
    train.add_argument("--out", type=Path, required=True, help="net directory to write")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(handler=train_command)

    run = commands.add_parser("run", help="run one job spec in-process")
    run.add_argument("spec", type=Path, help="YAML job spec")
    run.add_argument("--out", type=Path, required=True, help="writes result.json, report.html")
    run.add_argument("--device", default="auto", help="cpu, cuda or auto")
    run.add_argument("--model-root", type=Path, default=None,
                     help="model.path resolves under it (default: the spec's folder)")
    run.set_defaults(handler=run_command)

    demo = commands.add_parser("demo", help="train (or reuse) the HEQ net and localize WX, YZ")
    demo.add_argument("--out", type=Path, default=Path("plot-demo"))
    demo.add_argument("--device", default="auto")
    demo.set_defaults(handler=demo_command)


def train_command(args: argparse.Namespace) -> int:
    console = Console()
    task = build_task(args.task, {})
    with console.status(f"training {args.task} net"):
        report = train_default_net(task, args.out, args.seed)
    console.print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in report.items()))
    return 0


def run_command(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.spec)
    root = (args.model_root or args.spec.parent).resolve()
    return execute(spec, args.out, JobContext(root, args.spec.parent.resolve(),
                                              default_cache_dir(), args.device))


def demo_command(args: argparse.Namespace) -> int:
    spec = parse_job_spec(DEMO_SPEC, "demo")
    context = JobContext(Path.cwd(), Path.cwd(), default_cache_dir(), args.device)
    console = Console()
    if spec.task.builtin is not None:
        task = build_task(spec.task.builtin, {})
        with console.status("training the HEQ net (first run only, about a minute)"):
            task_default_net(task, context.cache_dir, spec.seed)
    return execute(spec, args.out, context)


def execute(spec: JobSpec, out: Path, context: JobContext) -> int:
    """Run with progress bars, print the handles, write result.json and report.html."""
    console = Console()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        bars: dict[tuple[Any, str], TaskID] = {}

        def on_event(event: EngineEvent) -> None:
            data = event.data
            if event.kind == "progress" and "level" in data:
                key = (data["level"], data["stage"])
                if key not in bars:
                    bars[key] = progress.add_task(f"level {data['level']} {data['stage']}",
                                                  total=data["total"], note="")
                progress.update(bars[key], completed=data["done"], total=data["total"])
            elif event.kind == "level_finished":
                note = ", ".join(f"{v}: {h['iia_test']:.3f}" for v, h in data["handles"].items())
                for (level, _), bar in bars.items():
                    if level == data["level"]:
                        progress.update(bar, note=note)

        result = run_job(spec, context, on_event=on_event)
    write_outputs(result, out)
    console.print(results_table(result))
    console.print(f"wrote {out / 'result.json'} and {out / 'report.html'} "
                  f"({result.timing['total_s']:.1f} s, {result.forward_passes:,} forward passes)")
    return 0


def write_outputs(result: JobResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "report.html").write_text(render_report(result))


def results_table(result: JobResult) -> Table:
    table = Table(title="PLOT handles")
    for column in ("variable", "level", "top site", "IIA cal", "IIA test", "sens.", "inv.",
                   "hard IIA"):
        table.add_column(column)
    for variable, h in result.handles.items():
        sites = h.sites[0] + (f" +{h.k - 1}" if h.k > 1 else "")
        table.add_row(variable, str(h.level), sites,
                      f"{h.iia_calibration:.3f}", f"{h.iia_test.overall:.3f}",
                      _fmt(h.iia_test.sensitivity), _fmt(h.iia_test.invariance),
                      f"{h.hard_iia_test.overall:.3f}")
    return table


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
