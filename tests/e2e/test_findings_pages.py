"""The report and the dashboard tell the finding at a glance, from 800 px to 1920 px: the
summary (verdict first), heatmaps with a scale, token labels, marked handle sites and cell
details on hover and keyboard, a glossary, the job log, result.json, names and tags, the
queue, compare per variable and per site; axe-core finds no serious or critical issue.

Results, jobs, logs and the queue are synthetic (answered to the browser by Playwright): no
job runs, so the module needs no trained net. The API side of names, tags, the queue and
the log is tested in tests/integration/test_job_names_queue_log.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from core.report import render_report
from core.result import JobResult
from tests.e2e.conftest import checked_page
from tests.e2e.synthetic import make_das, make_job, make_result
from tests.integration.conftest import Service

AXE = Path(os.environ.get("PLOT_AXE_JS") or Path(__file__).resolve().parents[2] / ".node"
           / "node_modules" / "axe-core" / "axe.min.js")
WIDTHS = (1366, 800)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        missing = f"axe-core is not installed at {AXE}: `bash deploy/install-local.sh` does it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing}; under CI=true the accessibility checks must run",
                        pytrace=False)
        pytest.skip(missing)
    return AXE.read_text()


@pytest.fixture
def wide(browser: Browser) -> Iterator[Page]:
    """A page that lets axe in (the dashboard's CSP allows no injected script)."""
    yield from checked_page(browser, bypass_csp=True)


def serious_violations(page: Page, axe_source: str) -> list[str]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source)
    found = page.evaluate("""async () => (await axe.run(document)).violations
        .filter(v => v.impact === 'serious' || v.impact === 'critical')
        .map(v => `${v.id}: ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | ')}`)""")
    return list(found)


def at_each_width(page: Page, name: str, screenshots: Path, axe_source: str) -> None:
    """Screenshots at 1366 and 800 px; at each, no sideways page scroll and no axe issue."""
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        assert page.evaluate("document.documentElement.scrollWidth") <= width, (name, width)
        page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
        assert serious_violations(page, axe_source) == [], (name, width)
    page.set_viewport_size({"width": 1366, "height": 768})


def cut_tables(page: Page, selector: str) -> list[str]:
    """Tables (in their ``selector`` frames) wider than their frame: columns cut off."""
    return list(page.locator(selector).evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".map(e => e.innerText.slice(0, 60))"))


def finding_result() -> dict[str, Any]:
    result = make_result(3, 40, das=make_das("guided", 30.0, 0.97))
    handles = result["levels"][0]["handles"]
    handles["var_00"] |= {"verdict": "localized", "verdict_reason": "beats every control"}
    handles["var_01"] |= {"verdict": "not_identifiable", "verdict_reason": "a flat row"}
    sites = result["levels"][0]["sites"]
    result["levels"][0]["site_labels"] = {
        site: f'{site.split("/")[1]} "tok{i}"' for i, site in enumerate(sites)}
    return result


LOG = {"job_id": "synthetic-named", "events": "ok", "lines": [
    {"ts": "2026-01-01T10:00:00Z", "source": "job", "kind": "submitted", "level": "info",
     "text": "submitted by alice (priority 0)"},
    {"ts": "2026-01-01T10:00:02Z", "source": "event", "kind": "level_finished", "level": "info",
     "text": "level 0 finished in 12.500 s: var_00: layer:0/neuron:0"}]}


def serve(page: Page, job: dict[str, Any], result: dict[str, Any] | None = None,
          log: dict[str, Any] | None = None) -> None:
    page.route(f"**/v1/jobs/{job['id']}", lambda route: route.fulfill(json=job))
    if result is not None:
        body = {"job_id": job["id"], "result": result}
        page.route(f"**/v1/jobs/{job['id']}/result", lambda route: route.fulfill(json=body))
    page.route(f"**/v1/jobs/{job['id']}/log", lambda route: route.fulfill(
        json=log or {"job_id": job["id"], "events": "ok", "lines": []}))


def sign_in(page: Page, service: Service) -> None:
    page.goto(service.url + "/")
    page.get_by_label("API key").fill(service.keys["alice"])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible(timeout=60_000)


def test_the_job_page_leads_with_the_finding(wide: Page, dashboard: Service, screenshots: Path,
                                             axe_source: str) -> None:
    page = wide
    job = {**make_job("synthetic-named"), "name": "HEQ baseline", "tags": ["heq", "v2"]}
    result = finding_result()
    serve(page, job, result, LOG)
    sign_in(page, dashboard)
    page.goto(f"{dashboard.url}/#/jobs/synthetic-named")
    expect(page.get_by_role("heading", name="HEQ baseline")).to_be_visible()
    summary = page.locator("section.summary li")
    expect(summary).to_have_count(3)
    # a localized handle is the headline, with the method that found it
    expect(summary.nth(0)).to_contain_text("localized var_00 lives in a 4-dimensional subspace "
                                           "of layer 0; test IIA 0.97")
    expect(summary.nth(0)).to_contain_text("found by guided DAS")
    # a handle that is not localized is not: the verdict is, the handle a candidate
    expect(summary.nth(1).locator("strong")).to_have_text("var_01")
    expect(summary.nth(1).locator(".candidate")).to_contain_text(
        "Best candidate, not a finding: var_01 lives in 2 neurons of layer 0")
    # heatmap: legend, token labels, handle sites outlined, details on hover and keys
    figure = page.locator("figure.heatmap").first
    expect(figure.locator("svg.hm-legend")).to_be_visible()
    expect(figure.locator("svg.hm-cells text").first).to_have_text('neuron:0 "tok0"')
    expect(figure.locator("rect.hm-handle")).to_have_count(6)  # 3 variables × 2 sites
    figure.locator("svg.hm-cells rect[data-v='1'][data-j='7']").hover()
    detail = figure.locator(".hm-detail")
    expect(detail).to_contain_text('var_01 → neuron:7 "tok7": weight')
    expect(detail).to_contain_text("a handle site")
    scroller = figure.locator(".hm-scroll")
    scroller.focus()
    page.keyboard.press("Home")
    page.keyboard.press("ArrowDown")
    expect(detail).to_contain_text('var_02 → neuron:0 "tok0"')
    # the glossary beside the diagnostics, the log, result.json
    glossary = page.get_by_role("complementary", name="Glossary").first
    expect(glossary).to_contain_text("mass margin")
    diagnostics = page.get_by_role("table", name="Level 0 coupling diagnostics")
    g_box, d_box = glossary.bounding_box(), diagnostics.locator("..").bounding_box()
    assert g_box and d_box and g_box["x"] > d_box["x"] + d_box["width"] - 1  # beside it
    assert diagnostics.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
    log = page.get_by_role("region", name="Job log")
    expect(log).to_contain_text("level 0 finished in 12.500 s")
    with page.expect_download() as download:
        page.get_by_role("link", name="result.json").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["result"]["levels"][0]["sites"] == result["levels"][0]["sites"]
    at_each_width(page, "job", screenshots, axe_source)
    # at 800 px site ids do not break inside a token
    page.set_viewport_size({"width": 800, "height": 900})
    lines = page.locator("table code").evaluate_all(
        "els => els.map(e => e.textContent.split(', ').length >= e.getClientRects().length)")
    assert all(lines)
    assert cut_tables(page, ".table-wrap") == []


def test_an_own_cancel_reads_cancelled_not_an_error(wide: Page, dashboard: Service) -> None:
    job = {**make_job("synthetic-cancelled", status="cancelled"),
           "error": {"type": "JobCancelled", "message": "cancel requested", "where": None}}
    serve(wide, job)
    sign_in(wide, dashboard)
    wide.goto(f"{dashboard.url}/#/jobs/synthetic-cancelled")
    expect(wide.locator(".status-card .cancelled-note")).to_contain_text("Cancelled")
    expect(wide.locator(".status-card").get_by_role("alert")).to_have_count(0)
    expect(wide.locator(".status-card")).not_to_contain_text("JobCancelled")


def test_list_queue_compare_submit_and_report_at_800_and_1366(
        wide: Page, dashboard: Service, screenshots: Path, axe_source: str) -> None:
    page = wide
    named = {**make_job("a" * 32), "name": "HEQ baseline with a long name", "tags": ["heq"]}
    other = {**make_job("b" * 32, status="queued"), "queue_position": 3, "finished_at": None}
    asked: list[str] = []

    def jobs_page(route: Any) -> None:
        asked.append(route.request.url)
        route.fulfill(json={"items": [named, other], "total": 2, "limit": 50, "offset": 0})

    page.route("**/v1/jobs?*", jobs_page)
    page.route("**/v1/jobs/queue", lambda route: route.fulfill(json={
        "queued": 2, "owners": [{"owner": "alice", "queued": 1, "running": 0},
                                {"owner": "bob", "queued": 1, "running": 2}],
        "entries": [{"position": 0, "owner": "bob", "mine": False, "job_id": None, "name": None},
                    {"position": 1, "owner": "alice", "mine": True, "job_id": "b" * 32,
                     "name": "mine"}]}))
    sign_in(page, dashboard)
    row = page.locator(f'tr[data-job-id="{"a" * 32}"]')
    expect(row).to_contain_text("HEQ baseline with a long name")
    expect(row.locator(".tag")).to_have_text("heq")
    page.get_by_role("searchbox", name="Tag").fill("heq")
    page.get_by_role("searchbox", name="Tag").press("Enter")
    expect(page).to_have_url(f"{dashboard.url}/#/?tag=heq")
    page.wait_for_function("() => document.querySelector('#tag-filter')?.value === 'heq'")
    assert any("tag=heq" in url for url in asked[-3:]), asked[-3:]
    at_each_width(page, "job-list", screenshots, axe_source)
    page.set_viewport_size({"width": 800, "height": 900})
    right = page.locator("table.jobs thead th").evaluate_all(
        "els => Math.max(...els.map(e => e.getBoundingClientRect().right))")
    assert right <= 800  # no cut columns
    page.set_viewport_size({"width": 1366, "height": 768})

    page.get_by_role("link", name="Queue").click()
    places = page.get_by_role("table", name="Queued jobs in claim order")
    expect(places.locator("tbody tr")).to_have_count(2)
    expect(places.locator("tbody tr").first).to_contain_text("another owner's job")
    expect(page.get_by_role("table", name="Jobs per owner")).to_contain_text("bob")
    at_each_width(page, "queue", screenshots, axe_source)

    for job_id, das in (("cmp-plot", None), ("cmp-das", make_das("full", 900.0, 0.97))):
        serve(page, make_job(job_id), make_result(3, 12, das=das))
    page.goto(f"{dashboard.url}/#/compare?ids=cmp-plot,cmp-das")
    per_variable = page.get_by_role("table", name="Per variable: each job's best handle")
    expect(per_variable.locator("tbody tr")).to_have_count(6)
    expect(per_variable.locator("tbody tr", has_text="full DAS")).to_contain_text("layer:0/das:4")
    per_site = page.get_by_role("table", name="Per site: the variables whose handle uses it")
    expect(per_site).to_contain_text("var_00 (0.60)")
    at_each_width(page, "compare", screenshots, axe_source)

    page.goto(f"{dashboard.url}/#/submit")
    expect(page.get_by_label("Job spec (JSON or YAML)")).to_be_visible()
    at_each_width(page, "submit", screenshots, axe_source)

    report = render_report(JobResult.model_validate(finding_result()), "HEQ report")
    page.set_content(report)
    expect(page.locator("section.summary li").first).to_contain_text("found by guided DAS")
    at_each_width(page, "report", screenshots, axe_source)
    page.set_viewport_size({"width": 800, "height": 900})
    assert cut_tables(page, ".wrap") == []  # every column on screen at 800 px


def test_the_sign_in_page_and_its_error_at_800_and_1366(
        wide: Page, dashboard: Service, screenshots: Path, axe_source: str) -> None:
    wide.goto(dashboard.url + "/")
    expect(wide.get_by_label("API key")).to_be_visible()
    at_each_width(wide, "sign-in", screenshots, axe_source)
    wide.get_by_label("API key").fill("plot_not_a_key")
    wide.get_by_role("button", name="Sign in").click()
    expect(wide.get_by_role("alert")).to_be_visible()
    at_each_width(wide, "sign-in-error", screenshots, axe_source)
