"""The dashboard in headless Chromium against the real service: sign-in, the job list,
submitting a job and watching it finish, its heatmaps, cancel, spec errors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from api import auth
from tests.e2e.synthetic import make_das, make_job, make_result
from tests.integration.conftest import TINY_SPEC, Service

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("heq_net")]  # HEQ jobs, net trained once
JOB_DONE_MS = 300_000  # a wait, not a bound: generous for a busy machine
# A job that runs for seconds on the session's trained net (three levels of 4-row
# micro-batches over 300 pairs, then its controls), so its page can watch the bar move;
# TINY_SPEC alone finishes in well under a second once the net is cached.
WATCHABLE_SPEC = {**TINY_SPEC, "max_rows": 4,
                  "pairs": {"fit": 300, "calibration": 300, "test": 300},
                  "levels": [{"granularity": "layer"}, {"granularity": "block", "block_size": 4},
                             {"granularity": "neuron"}]}


def sign_in(page: Page, service: Service, key: str) -> None:
    page.goto(service.url + "/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()


def signed_in(page: Page, service: Service, key: str) -> None:
    """Sign in and wait until the app has accepted the key: a navigation started before
    that (``page.goto``) would leave the sign-in check unanswered and the form on screen."""
    sign_in(page, service, key)
    expect(page.get_by_role("navigation", name="Main")).to_be_visible(timeout=60_000)


def job_row(page: Page, job_id: str) -> Any:
    return page.locator(f'tr[data-job-id="{job_id}"]')


def serve_job(page: Page, job: dict[str, Any], result: dict[str, Any]) -> None:
    """Answer the job's two GETs from the browser with a synthetic job and result."""
    body = {"job_id": job["id"], "result": result}
    page.route(f"**/v1/jobs/{job['id']}", lambda route: route.fulfill(json=job))
    page.route(f"**/v1/jobs/{job['id']}/result", lambda route: route.fulfill(json=body))


def test_a_wrong_key_is_refused_with_a_sign_in_error(page: Page, dashboard: Service) -> None:
    sign_in(page, dashboard, "plot_nosuchkey_secret")
    expect(page.get_by_role("alert")).to_contain_text("not accepted: unknown API key")
    expect(page.get_by_role("navigation", name="Main")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('plot.apiKey')") is None


def test_a_revoked_key_signs_out_without_showing_jobs(page: Page, dashboard: Service) -> None:
    token = dashboard.new_key("carol")
    with dashboard.client("") as client:
        client.headers["Authorization"] = f"Bearer {token}"
        job = client.post("/v1/jobs", json={**TINY_SPEC, "priority": -10}).json()
        client.post(f"/v1/jobs/{job['id']}/cancel")
    sign_in(page, dashboard, token)
    expect(job_row(page, job["id"])).to_be_visible()
    with dashboard.app.state.sessions() as session:
        auth.revoke_key(session, token.split("_")[1])
    # the next poll is refused: back to the sign-in form, with the reason
    expect(page.get_by_role("alert")).to_contain_text("revoked API key", timeout=10_000)
    expect(page.locator("table.jobs")).to_have_count(0)
    sign_in(page, dashboard, token)
    expect(page.get_by_role("alert")).to_contain_text("not accepted: revoked API key")


def test_the_list_shows_only_the_owners_jobs_and_an_admin_sees_all(
    page: Page, dashboard: Service
) -> None:
    with dashboard.client("bob") as bob:
        theirs = bob.post("/v1/jobs", json={**TINY_SPEC, "priority": -10}).json()
        bob.post(f"/v1/jobs/{theirs['id']}/cancel")
    with dashboard.client("alice") as alice:
        mine = alice.post("/v1/jobs", json={**TINY_SPEC, "priority": -10}).json()
        alice.post(f"/v1/jobs/{mine['id']}/cancel")
    sign_in(page, dashboard, dashboard.keys["alice"])
    expect(job_row(page, mine["id"])).to_be_visible()
    expect(job_row(page, theirs["id"])).to_have_count(0)
    expect(page.locator("table.jobs tbody td:nth-child(4)").first).to_have_text("alice")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, dashboard, dashboard.keys["admin"])
    expect(job_row(page, theirs["id"])).to_be_visible()
    expect(job_row(page, mine["id"])).to_be_visible()
    page.get_by_label("Status").select_option("cancelled")
    expect(page).to_have_url(re.compile(r"#/\?status=cancelled$"))
    expect(page.locator("table.jobs tbody .badge").first).to_have_text("cancelled")
    assert set(page.locator("table.jobs tbody .badge").all_inner_texts()) == {"cancelled"}


def test_a_submitted_job_progresses_to_done_and_shows_its_heatmaps(
    page: Page, dashboard: Service, screenshots: Path
) -> None:
    sign_in(page, dashboard, dashboard.keys["alice"])
    page.get_by_role("link", name="Submit a job").first.click()
    page.get_by_label("Job spec (JSON or YAML)").fill(json.dumps(WATCHABLE_SPEC, indent=2))
    page.get_by_role("button", name="Submit job").click()
    expect(page).to_have_url(re.compile(r"#/jobs/[\w-]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    # record every value the bar shows on its way to 100
    page.evaluate("""() => {
        window.seenProgress = [];
        new MutationObserver(() => {
            const bar = document.querySelector('.status-card [role=progressbar]');
            if (bar) window.seenProgress.push(Number(bar.getAttribute('aria-valuenow')));
        }).observe(document.getElementById('main'), {subtree: true, childList: true,
                                                    attributes: true});
    }""")
    bar = page.locator(".status-card").get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=JOB_DONE_MS)
    expect(page.locator(".status-card .badge")).to_have_text("succeeded")
    seen = page.evaluate("window.seenProgress")
    assert any(value < 100 for value in seen), seen  # it was watched, not only found done
    assert seen == sorted(seen)  # and never moved back

    heatmap = page.locator("figure.heatmap").first
    expect(heatmap).to_be_visible()
    with dashboard.client("alice") as alice:
        result = alice.get(f"/v1/jobs/{job_id}/result").json()["result"]
    level = result["levels"][0]
    cells = heatmap.locator("svg.hm-cells rect[fill]")
    expect(cells).to_have_count(len(level["variables"]) * len(level["sites"]))
    expect(heatmap.locator("svg.hm-cells text").first).to_have_text(level["sites"][0])
    expect(heatmap.locator("svg.hm-names text").first).to_have_text(level["variables"][0])
    handles = page.get_by_role("table", name="Best handle per variable")
    variable = next(iter(result["handles"]))
    expect(handles).to_contain_text(variable)
    expect(handles).to_contain_text(f"{result['handles'][variable]['iia_test']['overall']:.3f}")
    controls = page.get_by_role("table", name="Handles against their controls")
    control = result["controls"]["random_net"]["handles"][variable]["iia_test"]["overall"]
    expect(controls).to_contain_text(f"{control:.3f}")
    diagnostics = page.get_by_role("table", name="Level 0 coupling diagnostics")
    expect(diagnostics).to_contain_text(result["levels"][0]["diagnostics"]["variables"][
        variable]["best_site"])
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    page.screenshot(path=str(screenshots / "job-page.png"), full_page=False)
    heatmap.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "job-heatmap.png"), full_page=False)

    with page.expect_download() as download:
        page.get_by_role("button", name="Download result.json").click()
    saved = json.loads(Path(download.value.path()).read_text())
    assert saved["result"]["levels"][0]["sites"] == level["sites"]

    page.get_by_role("link", name="Jobs", exact=True).click()
    row = job_row(page, job_id)
    expect(row.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(row.locator(".badge")).to_have_text("succeeded")
    page.screenshot(path=str(screenshots / "job-list.png"), full_page=False)


def test_a_running_job_can_be_cancelled_from_its_page(
        page: Page, dashboard: Service, screenshots: Path) -> None:
    # long enough to be caught running: the levels finish in well under a second on a cached
    # net, so full DAS (3 layers × 16 k × 2 variables, ≥ 20 epochs each: tens of seconds)
    # follows them; a cancel is taken between trainings
    big = {**TINY_SPEC, "pairs": {"fit": 2000, "calibration": 2000, "test": 2000},
           "das": {"mode": "full", "dims": list(range(1, 17)), "min_epochs": 20}}
    with dashboard.client("alice") as alice:
        job = alice.post("/v1/jobs", json=big).json()
    signed_in(page, dashboard, dashboard.keys["alice"])
    page.goto(f"{dashboard.url}/#/jobs/{job['id']}")
    # the in-process runner shares the server's process: while it trains a default net (a
    # Python-bound loop) the page can take a while to load on a busy machine
    try:
        page.get_by_role("button", name="Cancel job").click(timeout=60_000)
    except PlaywrightTimeout as missing:
        page.screenshot(path=str(screenshots / "cancel-missing.png"))
        with dashboard.client("alice") as alice:
            state = alice.get(f"/v1/jobs/{job['id']}").json()
        raise AssertionError(f"no Cancel button; the job is {state}; the page says "
                             f"{page.locator('main').inner_text()[:600]!r}") from missing
    expect(page.locator(".status-card .badge")).to_have_text("cancelled", timeout=60_000)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
    with dashboard.client("alice") as alice:
        assert alice.get(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"


def test_a_bad_spec_shows_the_field_error_next_to_it(
    page: Page, dashboard: Service, screenshots: Path
) -> None:
    signed_in(page, dashboard, dashboard.keys["alice"])
    page.goto(f"{dashboard.url}/#/submit")
    spec = page.get_by_label("Job spec (JSON or YAML)")
    spec.fill(json.dumps({**TINY_SPEC, "coupling": {"epsilons": [-1.0]}}, indent=2))
    page.get_by_role("button", name="Submit job").click()
    error = page.locator(".spec-errors .field-error").first
    expect(error).to_contain_text("coupling")
    expect(error).to_contain_text("epsilons must be a non-empty list of positive numbers")
    line = error.get_by_role("button", name=re.compile(r"^line \d+$"))
    line.click()  # selects that line of the spec
    number = int(line.inner_text().split()[1])
    selected = spec.evaluate("el => el.value.slice(el.selectionStart, el.selectionEnd)")
    assert selected == spec.input_value().split("\n")[number - 1]
    assert '"coupling"' in selected
    expect(spec).to_have_attribute("aria-invalid", "true")
    # beside the spec, not below the fold
    spec_box, error_box = spec.bounding_box(), error.bounding_box()
    assert spec_box and error_box and error_box["x"] > spec_box["x"] + spec_box["width"] - 1
    page.screenshot(path=str(screenshots / "submit-errors.png"), full_page=False)

    spec.fill("task:\n  builtin: hierarchical_equality\npairs:\n  fit: 1\n")
    page.get_by_role("button", name="Submit job").click()
    error = page.locator(".spec-errors .field-error").first
    expect(error).to_contain_text("pairs.fit")
    expect(error.get_by_role("button", name="line 4")).to_be_visible()

    spec.fill("task: [unclosed\n")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator(".spec-errors")).to_contain_text("not valid YAML")
    expect(page).to_have_url(re.compile(r"#/submit$"))


def test_a_50_by_500_heatmap_scrolls_inside_the_page(
    page: Page, dashboard: Service, screenshots: Path
) -> None:
    serve_job(page, make_job("synthetic-large"), make_result(variables=50, sites=500))
    signed_in(page, dashboard, dashboard.keys["alice"])
    page.goto(f"{dashboard.url}/#/jobs/synthetic-large")
    heatmap = page.locator("figure.heatmap")
    expect(heatmap.locator("svg.hm-cells rect[fill]")).to_have_count(50 * 500)
    scroller = heatmap.locator(".hm-scroll")
    widths = scroller.evaluate("el => [el.scrollWidth, el.clientWidth]")
    assert widths[0] > 500 * 18 > widths[1]  # the cells scroll, the page does not
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    scroller.focus()
    page.keyboard.press("End")  # keyboard users move along a row, and it scrolls
    page.wait_for_function("el => el.scrollLeft > 0", arg=scroller.element_handle())
    scroller.evaluate("el => { el.scrollLeft = 0; }")
    heatmap.scroll_into_view_if_needed()
    page.screenshot(path=str(screenshots / "large-heatmap.png"), full_page=False)


def test_compare_plots_plot_and_full_das_side_by_side(
    page: Page, dashboard: Service, screenshots: Path
) -> None:
    results = {"cmp-plot": make_result(3, 12, plot_iia=0.93),
               "cmp-das": make_result(3, 12, das=make_das("full", 900.0, 0.97), plot_iia=0.9)}
    for job_id, result in results.items():
        serve_job(page, make_job(job_id), result)
    signed_in(page, dashboard, dashboard.keys["alice"])
    page.goto(f"{dashboard.url}/#/compare?ids=cmp-plot,cmp-das")
    chart = page.get_by_role("img", name=re.compile("IIA against wall time"))
    expect(chart).to_be_visible()
    points = page.get_by_role("table", name="Points").locator("tbody tr")
    expect(points).to_have_count(3)
    expect(points.filter(has_text="DAS (full)")).to_contain_text("900.00")
    expect(chart.locator("text", has_text="DAS (full)")).to_have_count(1)
    page.screenshot(path=str(screenshots / "compare.png"), full_page=False)


def test_a_failed_job_explains_its_error_in_plain_words(page: Page, dashboard: Service) -> None:
    job = {**make_job("synthetic-failed", status="failed"),
           "error": {"type": "ModelLoadError", "message": "config.json has no arch",
                     "where": "model.id"}}
    serve_job(page, job, make_result(1, 1))
    signed_in(page, dashboard, dashboard.keys["alice"])
    page.goto(f"{dashboard.url}/#/jobs/synthetic-failed")
    error = page.locator(".status-card").get_by_role("alert")
    expect(error).to_contain_text("The net could not be loaded (at model.id).")
    expect(error).to_contain_text("config.json has no arch")
    expect(page.get_by_role("button", name="Download result.json")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel job")).to_have_count(0)
