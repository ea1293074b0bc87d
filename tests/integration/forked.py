"""Many short ``python -m api.cli …`` / ``python -c …`` processes for the price of one import.

Every such process spends seconds importing torch (``api.cli`` imports ``core``), then the
service's libraries, before it reaches the few milliseconds a start-up check takes. A forker
process imports ``api.cli`` and the service's modules once, with no ``PLOT_*`` variable set,
and forks one child per run; each child takes the run's environment, working directory and
arguments, then runs the module as ``__main__`` (or the code) as the interpreter would after
its imports: an uncaught exception prints its traceback and exits 1, ``SystemExit`` gives the
exit status, the atexit functions run. Nothing is read from the environment at import time in
core, workers or api (the settings and the command-line defaults are read when ``main``
runs), and the runs differ from the forker only in ``PLOT_*`` variables, so a child sees what
a fresh interpreter would. The children of one batch start together, as processes started
side by side do.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]

FORKER = r"""
import atexit, json, os, runpy, sys, traceback

# what `python -m api.cli` imports before main() runs, and what its service commands and
# the migrations import when they run (no thread is started, Ray is not imported)
import api.cli, api.app, api.db.migrate, psycopg, uvicorn


def child(run):
    for fd, path in ((1, run["stdout"]), (2, run["stderr"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.environ.clear()
    os.environ.update(run["env"])
    os.chdir(run["cwd"])
    code = 0
    try:
        if "module" in run:
            # as under `python -m`: the package imported, the module itself not yet
            package, _, name = run["module"].rpartition(".")
            sys.modules.pop(run["module"], None)
            if package and hasattr(sys.modules[package], name):
                delattr(sys.modules[package], name)
            sys.argv = [run["module"], *run["args"]]
            runpy.run_module(run["module"], run_name="__main__", alter_sys=True)
        else:
            sys.argv = ["-c", *run["args"]]
            exec(compile(run["code"], "<string>", "exec"), {"__name__": "__main__"})
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    runs = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pids = []
    for run in runs:
        pid = os.fork()
        if pid == 0:
            try:
                child(run)
            finally:
                os._exit(1)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    print(json.dumps(codes), flush=True)
os._exit(0)  # nothing to tear down: skip the interpreter's (seconds with torch loaded)
"""


@dataclass
class ForkedRun:
    """One process: ``python -m module args`` (or ``python -c code args``) in ``env``."""

    args: list[str]
    env: dict[str, str]
    module: str | None = "api.cli"
    code: str | None = None


class Forker:
    """A forker process (see the module's doc); ``run`` forks a batch and waits for it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PLOT_")}
        self.process: subprocess.Popen[str] = subprocess.Popen(
            [sys.executable, "-c", FORKER], cwd=ROOT, env=clean, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def run(self, runs: list[ForkedRun], timeout_s: float = 180
            ) -> list[subprocess.CompletedProcess[str]]:
        """Start every run at once, wait for all; their exit status, stdout and stderr."""
        batch: list[dict[str, Any]] = []
        for run in runs:
            self.count += 1
            out = self.directory / f"run-{self.count}"
            batch.append({"args": run.args, "env": run.env, "cwd": str(ROOT),
                          "stdout": f"{out}.out", "stderr": f"{out}.err",
                          **({"module": run.module} if run.code is None
                             else {"code": run.code})})
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(batch) + "\n")
        self.process.stdin.flush()
        codes = self._answer(timeout_s)
        return [subprocess.CompletedProcess(run.args, code, Path(b["stdout"]).read_text(),
                                            Path(b["stderr"]).read_text())
                for run, code, b in zip(runs, codes, batch, strict=True)]

    def _answer(self, timeout_s: float) -> list[int]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                raise AssertionError(f"the forked runs did not end within {timeout_s} s")
        line = stdout.readline()
        assert line, f"the forker exited ({self.process.poll()})"
        codes: list[int] = json.loads(line)
        return codes

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def forker() -> Iterator[Forker]:
    """A Forker for a fixture: closed when the fixture ends."""
    with tempfile.TemporaryDirectory(prefix="plot-forked-") as directory:
        running = Forker(Path(directory))
        try:
            yield running
        finally:
            running.close()
