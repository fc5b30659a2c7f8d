"""The studio in a real browser: Playwright driving Debian's chromium against a real local endpoint.

Chromium comes from the system (``apt-get install chromium``; ``scripts/test.sh`` installs it as root), never from
``playwright install``. Without it these tests FAIL (a CI without a browser must not pass by skipping them);
``ENDPOINTS_SKIP_BROWSER=1`` skips them on purpose, and says so. Screenshots of every page go to
``out/studio-screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from studio_helpers import ARTIFACTS, have_chromium, keys_of, make_inputs

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MASK = "•" * 32


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    # Module, not session: Playwright's sync API runs an event loop in this thread for as long as it is open, and
    # any later test of the worker that calls asyncio.run() would meet it ("cannot be called from a running loop").
    if os.environ.get("ENDPOINTS_SKIP_BROWSER") == "1":
        pytest.skip("ENDPOINTS_SKIP_BROWSER=1: the studio's browser tests were skipped on purpose")
    executable = have_chromium()
    if executable is None:
        pytest.fail("chromium is not installed: `apt-get install chromium` (scripts/test.sh does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: `pip install -e '.[dev]'` (scripts/bootstrap.sh does it)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, world):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(world.studio.url)
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def score(world, body: dict, deployment: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {keys_of(world.state)['primary']}"}
    if deployment:
        headers["azureml-model-deployment"] = deployment
    return httpx.post(world.endpoint["scoring_uri"], json=body, headers=headers, timeout=30)


def test_endpoints_list(page, world):
    row = page.locator('tr[data-endpoint="shop"]')
    row.locator('[data-state="Running"]').wait_for()
    assert row.locator("td").nth(1).inner_text() == "online"
    assert row.locator("td").nth(4).inner_text() == world.endpoint["scoring_uri"]
    assert row.locator("td").nth(5).inner_text() == "2"
    batch = page.locator('tr[data-endpoint="files-batch"]')
    assert batch.locator("td").nth(1).inner_text() == "batch"
    assert page.url.endswith("/")  # the token left the address bar
    assert world.studio.token not in page.url
    shot(page, "01-endpoints")


def _split(page) -> dict[str, str]:
    """Deployment -> the width its bar segment is drawn with (the style the browser applied, after the CSP)."""
    segments = page.locator("#traffic-bar [data-deployment]")
    return {s.get_attribute("data-deployment"): s.evaluate("e => e.style.width") for s in segments.all()}


def test_edit_traffic_changes_the_split(page, world, restore_endpoint_file):
    page.locator('a[href="#/online/shop"]').click()
    page.locator("#traffic-bar").wait_for()
    assert _split(page) == {"blue": "90%", "green": "10%"}
    assert page.locator('#deployments tr[data-deployment="green"] [data-state="Ready"]').count() == 1
    shot(page, "02-endpoint")
    page.locator("#traffic-edit").click()
    page.fill('input[name="traffic-blue"]', "50")
    page.fill('input[name="traffic-green"]', "20")
    assert page.locator("#traffic-sum").inner_text() == "live total 70 % (must be 0 or 100)"
    page.locator("#traffic-save").click()
    error = page.locator("#traffic-error")
    error.filter(has_text="live traffic must sum to 0 or 100").wait_for()
    assert (
        error.inner_text()
        == f"{world.project / 'endpoint.yml'}:4: traffic: got 50+20=70; live traffic must sum to 0 or 100"
    )
    page.fill('input[name="traffic-green"]', "50")
    shot(page, "03-traffic-form")
    page.locator("#traffic-save").click()
    page.locator('#traffic-bar [data-deployment="green"][data-percent="50"]').wait_for()
    assert _split(page) == {"blue": "50%", "green": "50%"}
    # The running router deals the new split: exact over 100 requests (fresh decks after the reload).
    answered = Counter(score(world, {"i": i}).headers["azureml-model-deployment"] for i in range(100))
    assert answered == {"blue": 50, "green": 50}


def test_test_tab_invokes_a_chosen_deployment(page, world, tmp_path: Path):
    page.goto(f"{world.studio.base}/#/online/shop/test")
    page.select_option("#test-deployment", "green")
    page.fill("#test-body", '{"hello": "studio"}')
    page.locator("#test-send").click()
    page.locator("#test-status").wait_for()
    assert page.locator("#test-status").inner_text() == "HTTP 200"
    assert page.locator("#test-answered-by").inner_text() == "green"
    assert re.fullmatch(r"\d+\.\d ms", page.locator("#test-latency").inner_text())
    assert '"hello": "studio"' in page.locator("#test-response").inner_text()
    shot(page, "04-test")
    body = tmp_path / "request.json"
    body.write_text('{"from": "a file"}')
    page.select_option("#test-deployment", "blue")
    page.set_input_files("#test-file", str(body))
    page.locator("#test-send").click()
    page.locator("#test-response").filter(has_text='"from": "a file"').wait_for()
    assert page.locator("#test-answered-by").inner_text() == "blue"


def test_consume_tab_masks_and_reveals_keys(page, world):
    keys = keys_of(world.state)
    page.goto(f"{world.studio.base}/#/online/shop/consume")
    page.locator("#key-primary").wait_for()
    assert page.locator("#key-primary").inner_text() == MASK
    assert page.locator("#consume-uri").inner_text() == world.endpoint["scoring_uri"]
    assert world.endpoint["scoring_uri"] in page.locator("#snippet-curl").inner_text()
    assert "OnlineEndpointClient" in page.locator("#snippet-python").inner_text()
    html = page.content()
    assert keys["primary"] not in html and keys["secondary"] not in html
    shot(page, "05-consume")
    page.locator("#key-primary-show").click()
    page.locator("#key-primary").filter(has_text=keys["primary"]).wait_for()
    assert page.locator("#key-secondary").inner_text() == MASK  # only the one asked for is shown
    page.locator("#key-primary-show").click()
    assert page.locator("#key-primary").inner_text() == MASK


def test_logs_tab_follows_a_deployment(page, world):
    page.goto(f"{world.studio.base}/#/online/shop/logs")
    page.select_option("#log-name", "green")
    # Read before the page loads the log: lines written later (health checks) cannot push it out of 200 lines.
    last = (world.state / "shop" / "logs" / "blue.log").read_text().splitlines()[-1]
    page.select_option("#log-name", "blue")
    page.locator("#log-text").filter(has_text=last).wait_for()
    page.check("#log-follow")
    page.locator("#log-state").filter(has_text="following").wait_for()
    assert score(world, {"marker": "followed-in-the-browser"}, deployment="blue").status_code == 200
    page.locator("#log-text").filter(has_text="followed-in-the-browser").wait_for()
    shot(page, "06-logs")


def test_metrics_tab_draws_charts(page, world):
    page.goto(f"{world.studio.base}/#/online/shop/metrics")
    for i in range(30):
        score(world, {"i": i}, deployment="blue")
    charts = page.locator("#charts .chart-panel")
    charts.first.wait_for()
    assert [c.get_attribute("data-title") for c in charts.all()] == [
        "Requests per second",
        "Latency p50 / p99",
        "Responses by status class",
    ]

    def drawn() -> bool:
        score(world, {"more": True}, deployment="blue")
        line = page.locator('#charts .chart-panel[data-title="Requests per second"] polyline[data-series="blue"]')
        return line.count() == 1 and int(line.get_attribute("data-points") or 0) >= 2

    from studio_helpers import wait_for

    wait_for(drawn, timeout=60, what="two points on the requests/s chart", poll_s=0.5)
    labels = page.locator('#charts .chart-panel[data-title="Requests per second"] svg.chart text').all_text_contents()
    assert labels[-3:] == ["-5 min", "-2.5 min", "now"]
    assert len(labels) == 8  # five grid values (the lowest 0), then three times
    assert float(labels[0]) == 0
    shot(page, "07-metrics")


def test_batch_page_runs_a_job_to_completed(page, world, tmp_path: Path):
    inputs = make_inputs(tmp_path / "in", 10, bad={3})
    page.locator('a[href="#/batch/files-batch"]').click()
    page.fill("#job-input", str(inputs))
    page.fill("#job-id", "browser-job")
    page.locator("#job-submit").click()
    row = page.locator('tr[data-job="browser-job"]')
    row.wait_for()
    seen = set()
    # Follow the row as a user watches it: it must pass through the job's statuses and end Completed.
    for _ in range(600):
        status = row.get_attribute("data-status")
        seen.add(status)
        if status == "Completed":
            break
        assert status in ("Queued", "Running"), status
        page.wait_for_timeout(200)
    assert row.get_attribute("data-status") == "Completed", seen
    assert "5/5 mini-batches · 8 rows" in row.inner_text()
    row.locator("button.link").click()
    failures = page.locator("#job-failures tbody tr")
    failures.first.wait_for()
    assert failures.first.inner_text().split("\t") == ["1", "2", "1", "ValueError: cannot read 00003-bad.txt"]
    page.locator('#job-logs pre[data-instance="instance-0"]').filter(has_text="summary: Completed").wait_for()
    with page.expect_download() as download:
        row.locator("text=Download output").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert sorted(lines) == sorted(f"{i:05d}-f.txt,{i}" for i in range(10) if i not in (2, 3))
    shot(page, "08-batch")
