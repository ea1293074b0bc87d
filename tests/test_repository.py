"""Repository-wide checks: ruff is clean on the whole tree, ``mypy --strict`` passes on core,
workers and api, and the core <- workers <- api layering holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)


def test_ruff_is_clean() -> None:
    result = _run(str(BIN / "ruff"), "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layers_core_workers_api_hold() -> None:
    result = _run(str(BIN / "lint-imports"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_imports_no_service_packages() -> None:
    forbidden = ("sqlalchemy", "redis", "ray", "fastapi", "os.environ")
    offenders = [
        f"{path.relative_to(ROOT)}: {word}"
        for path in (ROOT / "core").rglob("*.py")
        for word in forbidden
        if f"import {word}" in (text := path.read_text()) or f"from {word}" in text
        or (word == "os.environ" and word in text)
    ]
    assert offenders == []


# strict = true in pyproject.toml; one run, so the packages are checked against each other.
# The longest check here (about a minute from a cold cache): started as soon as the tests are
# collected, so it runs beside them (tests/early.py)
@pytest.mark.early_process(str(BIN / "mypy"), "core", "workers", "api")
def test_core_workers_and_api_type_check_strictly(
        early_process: subprocess.CompletedProcess[str]) -> None:
    assert early_process.returncode == 0, early_process.stdout + early_process.stderr
    assert "Success: no issues found" in early_process.stdout
