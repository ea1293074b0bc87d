"""The wheel: built from the checkout, it carries the Alembic migrations, and the installed
package migrates a database with the source tree out of reach."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parents[1]
PACKAGED = ("pyproject.toml", "README.md", "core", "workers", "api", "migrations")

pytestmark = pytest.mark.slow  # builds and installs a wheel (pip, seconds each)

MIGRATE_INSTALLED = """
import json, sqlite3, sys

target, database = sys.argv[1], sys.argv[2]
sys.path.insert(0, target)
from api.db.migrate import migrations_dir, upgrade_database

upgrade_database(f"sqlite:///{database}")
with sqlite3.connect(database) as connection:
    revision = connection.execute("SELECT version_num FROM alembic_version").fetchone()[0]
sources = sorted({module.__file__ for name, module in sys.modules.items()
                  if name.partition(".")[0] in {"api", "core", "workers", "migrations"}
                  and getattr(module, "__file__", None)})
print(json.dumps({"dir": str(migrations_dir()), "revision": revision, "sources": sources}))
"""


def _pip(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", *args, "--no-index", "--quiet",
                             "--disable-pip-version-check"],
                            capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a copy of the checkout (the build leaves build/ and egg-info)."""
    source = tmp_path_factory.mktemp("source")
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(out), str(source))
    (built,) = out.glob("plot_service-*.whl")
    return built


def test_wheel_carries_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    versions = {f"migrations/versions/{path.name}"
                for path in (ROOT / "migrations" / "versions").glob("*.py")}
    assert versions
    assert {"migrations/__init__.py", "migrations/env.py", "migrations/script.py.mako",
            *versions} <= names


def test_wheel_carries_the_handle_loaders_that_plot_export_copies(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"core/export_loaders/plot_handle.py", "core/export_loaders/plot_pyvene.py"} <= names


def test_installed_wheel_migrates_a_database_to_head(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--target", str(target), str(wheel))
    # -I: neither the working directory nor PYTHONPATH goes on sys.path, only the target
    result = subprocess.run(
        [sys.executable, "-I", "-c", MIGRATE_INSTALLED, str(target), str(tmp_path / "plot.db")],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dir"] == str(target / "migrations")
    assert report["revision"] == ScriptDirectory(str(ROOT / "migrations")).get_current_head()
    assert report["sources"]
    assert all(source.startswith(f"{target}/") for source in report["sources"])
