"""The dashboard end to end: the real app as ``plot serve`` runs it (uvicorn on 127.0.0.1,
SQLite in a temp dir, in-process bus and runner, the real engine) and Debian's Chromium
driven headless by Playwright's Python API."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from api.settings import Settings
from tests.integration.conftest import Service, free_port, serve

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1366, "height": 768}  # a laptop screen
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def dashboard(engine_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded default: SQLite file, in-process bus, in-process runner, on a free port."""
    data_dir = tmp_path_factory.mktemp("dashboard-data")
    settings = Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'plot.db'}",
                        cache_dir=engine_cache, port=free_port(), poll_s=0.1)
    yield from serve(settings)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


def find_chromium() -> Path | None:
    """Debian's chromium at its usual path, else the first on PATH; None when absent."""
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Headless chromium. Without one the browser tests skip on a workstation, and fail
    under CI (``CI=true``), where a skip would hide that the dashboard went untested."""
    chromium = find_chromium()
    if chromium is None:
        missing = ("Debian's chromium is not installed: `bash deploy/install-local.sh` as "
                   "root installs it (or apt-get install -y chromium)")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; under CI=true the browser tests must run", pytrace=False)
        pytest.skip(missing)
    browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS,
                                         headless=True)
    yield browser
    browser.close()


def checked_page(browser: Browser, **context_options: Any) -> Iterator[Page]:
    """A page in a fresh context (so a fresh sessionStorage) at 1366×768; the test fails
    on an error the page left uncaught."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True, **context_options)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page per test."""
    yield from checked_page(browser)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
