"""Real browser: Debian's Chromium opens every page of the running app for every
demo study, finds its charts drawn and no error box."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, STUDIES, chromium_path

pytestmark = pytest.mark.browser

# Page path -> number of charts it draws for a study with enrolled subjects.
PAGES = {"": 1, "escalation": 2, "safety": 1, "labs": 2, "efficacy": 5, "biomarkers": 3, "survival": 1, "enrollment": 3,
         "subject": 2}
CHART = '[data-testid="stPlotlyChart"] .main-svg'
ERRORS = '[data-testid="stException"], [data-testid="stAlertContentError"]'


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    path = chromium_path()
    if path is None:
        if os.environ.get("SMC_REQUIRE_BROWSER"):
            pytest.fail("SMC_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); browser tests skipped")
    # Playwright cannot download its own browser here; the background-networking flags stop
    # Chromium from calling hosts this machine cannot reach.
    return {**browser_type_launch_args, "executable_path": path,
            "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run"]}


@pytest.fixture(scope="session")
def server(demo_db):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SMC_DB=str(demo_db))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail(f"streamlit did not start: {proc.stdout.read().decode(errors='replace')[-2000:]}")
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.parametrize("study_id", STUDIES)
@pytest.mark.parametrize("path", PAGES)
def test_page_draws_its_charts_without_error(server, page, study_id, path):
    page.goto(f"{server}/{path}?study={study_id}")
    page.wait_for_selector(CHART, timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= {PAGES[path]}", timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.locator(ERRORS).count() == 0
    assert page.get_by_role("heading", name=f"{study_id} ·").first.is_visible()
    # The URL keeps the study and the as-of date so the view can be shared.
    assert f"study={study_id}" in page.url and "as_of=" in page.url


def test_switching_pages_keeps_study_and_date(server, page):
    page.goto(f"{server}/?study=IX001&as_of=2024-12-01")
    page.wait_for_selector(CHART, timeout=60_000)
    page.get_by_role("link", name="Escalation").click()
    page.wait_for_selector(CHART, timeout=60_000)
    page.wait_for_function("location.pathname.endsWith('/escalation')")
    page.wait_for_function("location.search.includes('study=IX001') && location.search.includes('as_of=2024-12-01')")
    assert page.get_by_role("heading", name="IX001 · Escalation").is_visible()


def test_shared_link_opens_that_subjects_profile(server, page):
    page.goto(f"{server}/subject?study=IX001&subject=IX001-005")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    assert page.get_by_role("heading", name="IX001-005 ·").is_visible()
    assert page.locator(ERRORS).count() == 0
    assert "subject=IX001-005" in page.url


def test_escalation_link_opens_the_picked_subjects_profile(server, page):
    page.goto(f"{server}/escalation?study=BIOTTT001")
    page.wait_for_selector(CHART, timeout=60_000)
    link = page.get_by_role("link", name="Open the profile of")
    subject = link.inner_text().rsplit(" ", 1)[1]
    link.click()
    page.wait_for_function("location.pathname.endsWith('/subject')")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    assert page.get_by_role("heading", name=f"{subject} ·").is_visible()
    assert f"subject={subject}" in page.url and page.locator(ERRORS).count() == 0


def test_clicking_a_waterfall_bar_opens_that_subjects_profile(server, page):
    page.goto(f"{server}/efficacy?study=IDOV-SAFE")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 5", timeout=60_000)
    waterfall = page.locator('[data-testid="stPlotlyChart"]').first
    waterfall.scroll_into_view_if_needed()
    boxes = [b for b in (bar.bounding_box() for bar in waterfall.locator("g.trace.bars path").all()) if b]
    tallest = max(boxes, key=lambda b: b["height"])  # the deepest shrinkage
    # Plotly's drag layer takes the pointer events and hit-tests them, so click where the bar is drawn.
    page.mouse.click(tallest["x"] + tallest["width"] / 2, tallest["y"] + tallest["height"] / 2)
    page.wait_for_function("location.pathname.endsWith('/subject')", timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    assert "study=IDOV-SAFE" in page.url and "subject=IDOV-SAFE-" in page.url
    assert page.locator(ERRORS).count() == 0


def test_explore_console_runs_a_query_and_draws_its_chart(server, page):
    page.goto(f"{server}/explore?study=BIOTTT001")
    page.wait_for_selector(CHART, timeout=60_000)  # the pivot's chart
    box = page.get_by_role("textbox", name="SQL")
    box.fill("SELECT dose_level, count(*) AS n FROM subjects GROUP BY ALL ORDER BY 1")
    box.press("Control+Enter")  # commits the text before the click
    page.get_by_role("button", name="Run").click()
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    page.get_by_text(re.compile(r"\d+ rows? in [\d,]+ ms")).first.wait_for(state="visible", timeout=30_000)
    assert page.locator(ERRORS).count() == 0
    box.fill("DROP TABLE subjects")
    box.press("Control+Enter")
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector('[data-testid="stAlertContentError"]', timeout=30_000)
    assert "Only one SELECT" in page.locator('[data-testid="stAlertContentError"]').inner_text()


def test_import_page_imports_uploaded_sdtm_files(server, page, tmp_path):
    from smc.sdtm import synthetic

    synthetic.write(tmp_path, 12, seed=3, fmt="xpt")
    page.goto(f"{server}/import")
    page.get_by_role("heading", name="Import SDTM").wait_for(timeout=60_000)
    uploaders = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
    uploaders.first.set_input_files(sorted(str(p) for p in tmp_path.glob("*.xpt")))
    page.get_by_text("suppae.xpt").wait_for(timeout=30_000)  # every upload has reached the server
    uploaders.nth(1).set_input_files(str(tmp_path / "mapping.toml"))
    page.get_by_text("mapping.toml").wait_for(timeout=30_000)
    name = page.get_by_role("textbox", name="New database name")
    name.fill("browser_import")
    name.press("Enter")
    page.wait_for_timeout(500)  # the rerun that commits the name
    page.get_by_role("button", name="Import").click()
    outcome = page.locator('[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentError"]')
    outcome.first.wait_for(timeout=60_000)
    assert "browser_import.duckdb" in outcome.first.inner_text()
    assert page.locator('[data-testid="stAlertContentSuccess"]').count() == 1
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)  # the table of row counts
    assert page.locator(ERRORS).count() == 0
