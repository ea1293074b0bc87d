"""The ``plot`` CLI on the base install: the engine's commands run and every other command
registers, then names the extra it needs instead of failing with a traceback.

One subprocess stands in for a base install: a ``sys.meta_path`` finder there makes every
package of the extras missing, as pip would leave them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from api.commands import EXTRA_OF_COMMAND, find_missing_extra

ROOT = Path(__file__).resolve().parents[3]

# the service extra's packages and some of theirs that api/ imports (anyio), and the hf extra's
EXTRA_MODULES = ("fastapi", "starlette", "anyio", "sqlalchemy", "httpx", "redis", "ray", "uvicorn",
                 "alembic", "psycopg", "pydantic_settings", "prometheus_client",
                 "transformers", "tokenizers")

BASE_INSTALL = """
import contextlib, importlib, importlib.abc, io, json, pkgutil, sys, traceback

BLOCKED = set(sys.argv[1].split(","))

class ExtrasMissing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, ExtrasMissing())

from api.cli import main

def call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
        except Exception:
            code, _ = None, err.write(traceback.format_exc())
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}

calls = {" ".join(argv): call(argv) for argv in json.loads(sys.argv[2])}
import core
for module in pkgutil.walk_packages(core.__path__, "core."):
    importlib.import_module(module.name)
loaded = sorted({name.partition(".")[0] for name in sys.modules} & BLOCKED)
print(json.dumps({"calls": calls, "loaded": loaded}))
"""

ENGINE_COMMANDS = ("demo", "export", "run", "train")
SERVICE_COMMANDS = {
    "serve": ["serve"],
    "submit": ["submit", "spec.yaml", "--key", "k"],
    "keys": ["keys", "list"],
    "db": ["db", "upgrade"],
    "admin": ["admin", "requeue", "job-1"],
    "scheduler": ["scheduler"],
    "worker": ["worker"],
}


@pytest.fixture(scope="module")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each command's exit code and output, and the extras' modules the engine loaded."""
    argvs = [["--help"], *([name, "--help"] for name in ENGINE_COMMANDS),
             *SERVICE_COMMANDS.values()]
    folder = tmp_path_factory.mktemp("base-install")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(folder), "PLOT_DATA_DIR": str(folder / "data"),
           "PLOT_CACHE_DIR": str(folder / "cache")}
    result = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, ",".join(EXTRA_MODULES), json.dumps(argvs)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_plot_help_lists_every_command(base_install: dict[str, Any]) -> None:
    call = base_install["calls"]["--help"]
    assert call["code"] == 0, call["stderr"]
    listed = set(re.findall(r"^ {4}(\w+)", call["stdout"], flags=re.MULTILINE))
    assert listed == set(EXTRA_OF_COMMAND)


@pytest.mark.parametrize("command", ENGINE_COMMANDS)
def test_engine_command_parses_without_the_extras(base_install: dict[str, Any],
                                                  command: str) -> None:
    call = base_install["calls"][f"{command} --help"]
    assert call["code"] == 0, call["stderr"]
    assert call["stdout"].startswith(f"usage: plot {command}")


@pytest.mark.parametrize("command", sorted(SERVICE_COMMANDS))
def test_service_command_without_its_extra_names_the_extra(base_install: dict[str, Any],
                                                           command: str) -> None:
    call = base_install["calls"][" ".join(SERVICE_COMMANDS[command])]
    assert call["code"] == 2
    assert call["stderr"] == (f"plot {command} needs the service extra: "
                              "pip install 'plot-service[service]'\n")
    assert call["stdout"] == ""


def test_engine_and_core_import_no_extra_module(base_install: dict[str, Any]) -> None:
    assert base_install["loaded"] == []


def test_only_the_engine_commands_need_no_extra() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert "service" in extras
    expected = {**dict.fromkeys(ENGINE_COMMANDS), **dict.fromkeys(SERVICE_COMMANDS, "service")}
    assert expected == EXTRA_OF_COMMAND


def test_a_missing_module_of_plot_itself_is_not_blamed_on_an_extra() -> None:
    assert find_missing_extra("serve", ModuleNotFoundError(name="anyio")) == "service"
    assert find_missing_extra("serve", ModuleNotFoundError(name="api.gone")) is None
    assert find_missing_extra("demo", ModuleNotFoundError(name="httpx")) is None
