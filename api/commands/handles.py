"""``plot export``: a result's handle as files usable without PLOT (a torch hook file, a
pyvene intervention), see ``core.export``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from api.commands.engine import default_cache_dir, write_line
from api.commands.user_module import load_factory_net
from core.errors import SpecError
from core.job import JobContext, dataset_path, resolve_net, resolve_task
from core.nets.base import InterventableNet
from core.notebook import export
from core.result import JobResult
from core.spec import parse_job_spec


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = commands.add_parser("export", help="write a handle for pyvene or plain torch")
    command.add_argument("result", type=Path, help="result.json of plot run")
    command.add_argument("--variable", required=True)
    command.add_argument("--format", choices=["torch", "pyvene"], default="torch")
    command.add_argument("--out", type=Path, default=None,
                         help="directory to write (default: handle-VARIABLE beside the result)")
    command.add_argument("--module", default=None, metavar="PKG.MOD:FACTORY",
                         help="the net the result was found in, built by your code")
    command.add_argument("--model-root", type=Path, default=None,
                         help="model.path resolves under it (default: the working directory)")
    command.add_argument("--data-root", type=Path, default=None,
                         help="task.dataset resolves under it (default: the working directory)")
    command.set_defaults(handler=export_command)


def read_result(path: Path) -> JobResult:
    """Raises: SpecError naming the file when it is not a result.json."""
    try:
        return JobResult.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as error:
        raise SpecError(f"not a readable result.json ({type(error).__name__})",
                        str(path)) from None


def export_command(args: argparse.Namespace) -> int:
    result = read_result(args.result)
    spec = parse_job_spec(result.spec, f"{args.result}:spec")
    if args.module is None and (spec.task.dataset or "").startswith("python:"):
        raise SpecError("this result came from Python objects (core.localize): export it from "
                        "Python with core.export", str(args.result))
    if args.module is None and result.net.get("config", {}).get("arch") == "module":
        raise SpecError("this result's net was built by user code: give the same "
                        "--module PKG.MOD:FACTORY", str(args.result))
    cwd = Path.cwd()
    context = JobContext((args.model_root or cwd).resolve(), (args.data_root or cwd).resolve(),
                         default_cache_dir(), "cpu")
    task = resolve_task(spec, context)
    net: InterventableNet
    if args.module is not None:
        net = load_factory_net(args.module)
    else:
        net, _ = resolve_net(spec, context, task)
    causal: Any = task if task is not None else dataset_path(spec, context.data_root)
    out = args.out or args.result.parent / f"handle-{args.variable}"
    directory = export(result, args.variable, out, net=net, causal=causal, format=args.format)
    files = "plot_handle.py" + (", plot_pyvene.py" if args.format == "pyvene" else "")
    write_line(f"wrote {directory} ({args.format}): handle.json, handle.safetensors, {files}")
    return 0
