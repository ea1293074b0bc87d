"""``plot train``, ``plot run`` and ``plot demo``: the engine from the command line, in-process."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from api.commands.progress_lines import ProgressLines, StepRate, describe_training, stage_name
from core.admission import DEFAULT_LIMITS, admit, describe_job
from core.causal.registry import build_task
from core.control import JobControl
from core.errors import ModelLoadError, SpecError
from core.events import EngineEvent, EventSink
from core.job import JobContext, dataset_path, run_job, train_default_net
from core.memory import budget_from
from core.nets.io import resolve_net_dir
from core.report import render_report
from core.result import HandleResult, JobResult
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
    train.add_argument("task", choices=["hierarchical_equality", "binary_addition", "mcqa"])
    train.add_argument("--out", type=Path, required=True, help="net directory to write")
    train.add_argument("--seed", type=int, default=0)
    _add_plain(train)
    train.set_defaults(handler=train_command)

    run = commands.add_parser("run", help="run one job spec in-process")
    run.add_argument("spec", type=Path, help="YAML job spec")
    run.add_argument("--out", type=Path, required=True, help="writes result.json, report.html")
    run.add_argument("--device", default="auto", help="cpu, cuda or auto")
    run.add_argument("--model-root", type=Path, default=None,
                     help="model.path resolves under it (default: the spec's folder)")
    run.add_argument("--no-limits", action="store_true",
                     help="skip admission control (the service's default budgets: pairs, "
                     "sites, forward passes, trace memory, DAS trainings) on your own machine")
    run.add_argument("--module", default=None, metavar="PKG.MOD:FACTORY",
                     help="the net is built by your code: factory() returns a net (e.g. "
                     "core.ModuleNet(model, site_paths, input_shape)); importable from the "
                     "working directory; the spec then gives no model (the service never "
                     "imports user code); admission limits are skipped")
    _add_plain(run)
    run.set_defaults(handler=run_command)

    demo = commands.add_parser("demo", help="train (or reuse) the HEQ net and localize WX, YZ")
    demo.add_argument("--out", type=Path, default=Path("plot-demo"))
    demo.add_argument("--device", default="auto")
    _add_plain(demo)
    demo.set_defaults(handler=demo_command)


def _add_plain(command: argparse.ArgumentParser) -> None:
    command.add_argument("--plain", action="store_true",
                         help="plain progress lines instead of bars (the default when stdout "
                         "is not a terminal)")


def is_plain(args: argparse.Namespace) -> bool:
    """Plain lines when asked for or when stdout is not a terminal (a log, a pipe, CI)."""
    return bool(getattr(args, "plain", False)) or not sys.stdout.isatty()


PLAIN_WIDTH = 160  # columns of plain output that is not a terminal


def make_console(plain: bool) -> Console:
    """The console of results and warnings: without any styling for plain output."""
    if not plain:
        return Console()
    # a log file or a pipe has no width: wide enough that no table cell is cut to "loca…"
    width = None if sys.stdout.isatty() else PLAIN_WIDTH
    return Console(color_system=None, highlight=False, soft_wrap=True, width=width)


def write_line(line: str) -> None:
    """Write one progress line to stdout and flush it, so a log shows it at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def train_command(args: argparse.Namespace) -> int:
    plain = is_plain(args)
    console = make_console(plain)
    task = build_task(args.task, {})
    with progress_sink(console, plain) as sink:
        report = train_default_net(task, args.out, args.seed, JobControl(sink))
    console.print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in report.items()))
    warning = training_warning(args.out)
    if warning is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    return 0


def run_command(args: argparse.Namespace) -> int:
    spec = load_job_spec(args.spec)
    if args.module is not None:
        return run_module_command(args, spec)
    root = (args.model_root or args.spec.parent).resolve()
    if not args.no_limits:
        admit(spec, DEFAULT_LIMITS, describe_job(spec, read_net_config(spec, root)))
    return execute(spec, args.out, JobContext(root, args.spec.parent.resolve(),
                                              default_cache_dir(), args.device,
                                              budget_from(os.environ)),
                   is_plain(args))


def run_module_command(args: argparse.Namespace, spec: JobSpec) -> int:
    """``plot run --module``: the net from the user's factory, the causal side from the spec
    (a built-in task, or a dataset under the spec's folder), run by ``core.localize``."""
    from api.commands.user_module import load_factory_net
    from core.notebook import localize

    if spec.model.path is not None or spec.model.id is not None:
        raise SpecError("--module builds the net: the spec must not name a model",
                        f"{args.spec}:model")
    net = load_factory_net(args.module)
    data_root = args.spec.parent.resolve()
    causal: Any = spec.task.builtin
    if causal is None:
        causal = dataset_path(spec, data_root)  # the spec's folder is the data root
    document = spec.model_dump(mode="json", exclude={"model"})
    return execute(spec, args.out, None, is_plain(args),
                   lambda control: localize(net, causal, spec=document, control=control))


def read_net_config(spec: JobSpec, root: Path) -> dict[str, Any] | None:
    """The ``config.json`` of the spec's ``model.path`` (a Hugging Face one included), or
    None for a built-in task's default net.

    Raises:
        ModelLoadError: the directory leaves ``root``, or its config is not a JSON object.
    """
    if spec.model.path is None:
        return None
    path = resolve_net_dir(spec.model.path, root) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ModelLoadError("missing or not JSON", f"{spec.model.path}/config.json") from None
    if not isinstance(config, dict):
        raise ModelLoadError("must be a JSON object", f"{spec.model.path}/config.json")
    return config


def demo_command(args: argparse.Namespace) -> int:
    """The demo job; its default net is trained on the first run, inside the job, so its
    training shows in the same progress as the levels."""
    spec = parse_job_spec(DEMO_SPEC, "demo")
    context = JobContext(Path.cwd(), Path.cwd(), default_cache_dir(), args.device,
                         budget_from(os.environ))
    return execute(spec, args.out, context, is_plain(args))


@dataclass
class RichBars:
    """An ``EventSink`` drawing a rich bar per stage; the default net's training bar notes
    held-out accuracy and loss and an ETA, a level's bars its handles' test IIA."""

    progress: Progress
    bars: dict[tuple[str, str], TaskID] = field(default_factory=dict)
    rate: StepRate = field(default_factory=lambda: StepRate(time.monotonic))

    def __call__(self, event: EngineEvent) -> None:
        data = event.data
        if event.kind in ("progress", "control") and "level" in data:
            prefix = "random net " if event.kind == "control" else ""
            self._update((f"{prefix}{data['level']}", data["stage"]), stage_name(event.kind, data),
                         data)
        elif event.kind == "progress" and data.get("stage") == "training":
            seconds_left = self.rate.seconds_left(data["done"], data["total"])
            self._update(("", "training"), "training the net", data,
                         describe_training(data, seconds_left, compact=True))
        elif event.kind == "level_finished":
            note = ", ".join(f"{v}: {h['iia_test']:.3f}" for v, h in data["handles"].items())
            for (level, _), bar in self.bars.items():
                if level == str(data["level"]):
                    self.progress.update(bar, note=note)

    def _update(self, key: tuple[str, str], description: str, data: dict[str, Any],
                note: str | None = None) -> None:
        if key not in self.bars:
            self.bars[key] = self.progress.add_task(description, total=data["total"], note="")
        self.progress.update(self.bars[key], completed=data["done"], total=data["total"])
        if note is not None:
            self.progress.update(self.bars[key], note=note)


@contextmanager
def progress_sink(console: Console, plain: bool) -> Iterator[EventSink]:
    """The job's event sink: plain lines on stdout, or rich bars on ``console``."""
    if plain:
        yield ProgressLines(write_line, time.monotonic)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        yield RichBars(progress)


def training_warning(directory: Path) -> str | None:
    """A warning when the net's ``train.json`` says it did not reach its training target,
    naming the file and its figures; None when it did, or there is no readable record."""
    path = directory / "train.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("reached_target") is not False:
        return None
    labels = {"accuracy": "held-out accuracy", "held_out_loss": "held-out loss", "steps": "steps"}
    targets = {"accuracy": "target_accuracy", "held_out_loss": "target_loss",
               "steps": "max_steps"}
    figures = []
    for name, label in labels.items():
        if isinstance(record.get(name), int | float):
            target = record.get(targets[name])
            bound = "of" if name == "steps" else "target"
            held = (f" ({bound} {_fmt_figure(target)})" if isinstance(target, int | float)
                    else "")
            figures.append(f"{label} {_fmt_figure(record[name])}{held}")
    return (f"{path} says reached_target: false ({', '.join(figures)}): the net stopped "
            "short of its training target, so its handles may be weaker than a fully "
            "trained net's")


def execute(spec: JobSpec, out: Path, context: JobContext | None, plain: bool = False,
            runner: Callable[[JobControl], JobResult] | None = None) -> int:
    """Run with progress bars (or plain lines), warn about a net short of its training
    target, print the handles, write result.json and report.html.

    Args:
        runner: runs the job instead of ``run_job(spec, context)`` (``--module``).
    """
    console = make_console(plain)
    with progress_sink(console, plain) as sink:
        if runner is not None:
            result = runner(JobControl(sink))
        else:
            assert context is not None  # run_job's jobs always have one
            result = run_job(spec, context, JobControl(sink))
    path = result.net.get("path")
    warning = training_warning(Path(path)) if path is not None else None
    if warning is not None:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    write_outputs(result, out)
    console.print(results_table(result))
    for line in verdict_lines(result):
        console.print(line, highlight=False)
    controls = controls_table(result)
    if controls is not None:
        console.print(controls)
    for warning in result_warnings(result):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(f"wrote {out / 'result.json'} and {out / 'report.html'} "
                  f"({result.timing['total_s']:.1f} s, {result.forward_passes:,} forward passes)")
    return 0


def write_outputs(result: JobResult, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(result.to_json(), indent=1))
    (out / "report.html").write_text(render_report(result))


def results_table(result: JobResult) -> Table:
    """The job's handles, localized ones first, each led by its verdict. Test IIA stands
    beside its sensitivity (pairs where the output must change); a handle that is not
    localized shows its figures in parentheses, never as a headline."""
    table = Table(title="PLOT handles", caption="IIA in parentheses: not localized (see the "
                  "verdict's reason below); sens.: pairs where the output must change, inv.: "
                  "pairs where it must not")
    for column in ("verdict", "variable", "level", "top site", "cost", "IIA test", "sens.",
                   "inv.", "IIA cal", "hard IIA"):
        table.add_column(column)
    for variable, h in ordered_handles(result):
        sites = site_label(result, h.level, h.sites[0]) + (f" +{h.k - 1}" if h.k > 1 else "")
        shown = _fmt if h.verdict == "localized" else _aside
        table.add_row(h.verdict or "not judged", variable, str(h.level), sites,
                      h.cost_kind or "–", shown(h.iia_test.overall),
                      shown(h.iia_test.sensitivity), shown(h.iia_test.invariance),
                      shown(h.iia_calibration), shown(h.hard_iia_test.overall))
    return table


def ordered_handles(result: JobResult) -> list[tuple[str, HandleResult]]:
    """The job's handles, localized first, otherwise in job order."""
    return sorted(result.handles.items(), key=lambda item: item[1].verdict != "localized")


def verdict_lines(result: JobResult) -> list[str]:
    """Why each handle that is not localized is not, one line per variable."""
    return [f"{variable}: {h.verdict or 'not judged'}: {h.verdict_reason}"
            for variable, h in ordered_handles(result)
            if h.verdict != "localized" and h.verdict_reason]


def site_label(result: JobResult, level: int, site: str) -> str:
    """A site as the tables show it: with the token at its position (``resid:3/pos:7
    "Paris"``) where its level labelled it, else its id."""
    levels = [lv for lv in result.levels if lv.index == level]
    return levels[0].site_labels.get(site, site) if levels else site


def controls_table(result: JobResult) -> Table | None:
    """Each handle's test IIA beside its controls: the random net's, the kept-site mass of
    the real coupling against permuted labels and a uniform row, and the full-vector
    interchange at the last location (None when the controls were off)."""
    controls = result.controls
    if controls is None:
        return None
    table = Table(title="Controls", caption="random net: its handles' test IIA; kept mass: "
                  "the real row's on its kept sites, beside permuted labels' and a uniform "
                  "row's; last loc.: the full-vector interchange at the last location")
    for column in ("verdict", "variable", "IIA test", "random net", "kept mass",
                   "perm. labels", "uniform", "last loc."):
        table.add_column(column)
    random_net = controls.random_net
    for variable, h in ordered_handles(result):
        control = random_net.handles.get(variable) if random_net is not None else None
        mass = controls.label_permutation.get(variable)
        depth = controls.depth.get(variable)
        shown = _fmt if h.verdict == "localized" else _aside
        table.add_row(h.verdict or "not judged", variable, shown(h.iia_test.overall),
                      _fmt(control.iia_test.overall if control is not None else None),
                      _fmt(mass.real_mass if mass is not None else None),
                      _fmt(mass.control_mass if mass is not None else None),
                      _fmt(mass.uniform_mass if mass is not None else None),
                      _fmt(depth[-1].iia_test if depth else None))
    return table


def result_warnings(result: JobResult) -> list[str]:
    """Every level's coupling warnings (named by level) and the controls' warnings."""
    out = [f"level {level.index}: {w}" for level in result.levels for w in level.warnings]
    return out + (list(result.controls.warnings) if result.controls is not None else [])


def _fmt_figure(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _aside(value: float | None) -> str:
    """A figure that is not a headline: in parentheses."""
    return "–" if value is None else f"({value:.3f})"
