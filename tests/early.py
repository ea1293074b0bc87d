"""Long check processes (``mypy`` over the packages) started as soon
as the session has collected its tests, so that they run beside the other tests (on a second
core) instead of in their own turn; the test that owns one waits for it and asserts on its
result.

A test asks for this with ``@pytest.mark.early_process(*command)`` (run from the repository
root) and reads the finished process through the ``early_process`` fixture. A test that is
not collected (``-k``, a file argument) starts nothing."""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Early:
    command: tuple[str, ...]
    process: subprocess.Popen[str]
    stdout: IO[str]  # temporary files: no pipe to fill up
    stderr: IO[str]


STARTED = pytest.StashKey[dict[str, Early]]()


def start_all(session: pytest.Session) -> None:
    """Start the process of every collected test marked ``early_process``."""
    started = session.config.stash.setdefault(STARTED, {})
    for item in session.items:
        marker = item.get_closest_marker("early_process")
        if marker is None or item.nodeid in started:
            continue
        command = tuple(str(part) for part in marker.args)
        # the files outlive this function: stop_all closes them
        stdout = tempfile.TemporaryFile("w+")  # noqa: SIM115
        stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr,
                                   stdin=subprocess.DEVNULL, text=True)
        started[item.nodeid] = Early(command, process, stdout, stderr)


def result(item: pytest.Item, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """The finished process of ``item`` (waits for it; runs it now if it was not started)."""
    early = item.config.stash.setdefault(STARTED, {}).get(item.nodeid)
    if early is None:
        marker = item.get_closest_marker("early_process")
        assert marker is not None, f"{item.nodeid} has no early_process mark"
        return subprocess.run([str(part) for part in marker.args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    code = early.process.wait(timeout_s)
    early.stdout.seek(0)
    early.stderr.seek(0)
    return subprocess.CompletedProcess(early.command, code, early.stdout.read(),
                                       early.stderr.read())


def stop_all(config: pytest.Config) -> None:
    """Stop what is still running (an interrupted session) and close the output files."""
    for early in config.stash.get(STARTED, {}).values():
        if early.process.poll() is None:
            early.process.kill()
            early.process.wait()
        early.stdout.close()
        early.stderr.close()
