"""Real browser: Debian's Chromium opens every page of the running app for every
demo study, finds its charts drawn and no error box."""
from __future__ import annotations

import contextlib
import re

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from smc.outputs.packet import SECTIONS, build_packet
from smc.store.db import Database
from smc.tools.server import ERRORS
from tests.helpers import STUDIES, sign_in

pytestmark = pytest.mark.browser

# Page path (with the view of a page with tabs) -> number of charts it draws for a study with enrolled subjects.
PAGES = {"": 1, "escalation": 2, "safety": 1, "labs": 2, "efficacy": 1, "efficacy?efficacy_view=Over+time": 2,
         "efficacy?efficacy_view=Tumor+markers": 2, "biomarkers": 1, "biomarkers?biomarkers_view=Exposure": 1,
         "survival": 1, "enrollment": 3, "subject": 2}
CHART = '[data-testid="stPlotlyChart"] .main-svg'


@pytest.mark.parametrize("study_id", STUDIES)
@pytest.mark.parametrize("path", PAGES)
def test_page_draws_its_charts_without_error(server, page, study_id, path):
    page.goto(f"{server}/{path}{'&' if '?' in path else '?'}study={study_id}")
    page.wait_for_selector(CHART, timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= {PAGES[path]}", timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.locator(ERRORS).count() == 0
    assert page.get_by_role("heading", name=f"{study_id} ·").first.is_visible()
    # The URL keeps the study and the as-of date so the view can be shared.
    assert f"study={study_id}" in page.url and "as_of=" in page.url


# Views whose charts set their margins instead of plotly's automargin (style.fixed_margins).
SET_MARGINS = {"escalation": 2, "labs": 2, "efficacy?efficacy_view=Over+time": 2, "survival": 1, "subject": 2}
OUTSIDE_ITS_CHART = """() => [...document.querySelectorAll('[data-testid="stPlotlyChart"] .svg-container')].flatMap(chart => {
    const box = chart.getBoundingClientRect();
    return [...chart.querySelectorAll('.ytick text, .xtick text, .g-ytitle text, .g-xtitle text')]
        .filter(label => { const r = label.getBoundingClientRect();
                           return r.width && (r.left < box.left - 0.5 || r.bottom > box.bottom + 0.5); })
        .map(label => label.textContent); })"""


@pytest.mark.parametrize("study_id", STUDIES)
@pytest.mark.parametrize("path", SET_MARGINS)
def test_set_margins_leave_room_for_every_axis_label(server, page, study_id, path):
    """No tick label or axis title is cut off at a chart's left or bottom edge (subject ids in lanes, dose
    labels, AE terms, at-risk groups, numbers), in the fonts Chromium draws them with."""
    page.goto(f"{server}/{path}{'&' if '?' in path else '?'}study={study_id}")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= {SET_MARGINS[path]}", timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.evaluate(OUTSIDE_ITS_CHART) == []


OVERLAPPING_NOTES = """() => {
    const timeline = document.querySelector('[data-testid="stPlotlyChart"] .svg-container');
    const notes = [...timeline.querySelectorAll('.annotation-text')].map(t => [t.textContent, t.getBoundingClientRect()]);
    const titles = notes.filter(([text]) => ['Treatment', 'Adverse events', 'Target lesions'].some(t => text.startsWith(t)));
    const milestones = notes.filter(([text]) => /Off treatment|Off study|Death/.test(text));
    const overlap = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
    return [milestones.length, milestones.flatMap(([m, r]) => titles.filter(([, t]) => overlap(r, t)).map(([t]) => `${m} / ${t}`))];
}"""


@pytest.mark.parametrize("subject", ["IDOV-SAFE-004", "IX001-005"])
def test_subject_milestone_notes_clear_the_panel_titles(server, page, subject):
    """Off treatment, off study and death notes run down a panel tall enough for them, not across the titles
    of the panels below (subjects who went off study and died)."""
    page.goto(f"{server}/subject?study={subject.rsplit('-', 1)[0]}&subject={subject}")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    page.wait_for_load_state("networkidle")
    # Plotly draws the annotations after the traces: on a loaded machine, after the network is idle.
    page.wait_for_function(f"({OVERLAPPING_NOTES})()[0] >= 1", timeout=30_000)
    milestones, overlaps = page.evaluate(OVERLAPPING_NOTES)
    assert milestones >= 1 and overlaps == []


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
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 1", timeout=60_000)
    waterfall = page.locator(CHART).first
    for _ in range(3):  # under load a click can land while the page still lays out: measure again, retry
        waterfall.scroll_into_view_if_needed()
        boxes = [b for b in (bar.bounding_box() for bar in waterfall.locator("g.trace.bars path").all()) if b]
        tallest = max(boxes, key=lambda b: b["height"])  # the deepest shrinkage
        # Plotly's drag layer takes the pointer events and hit-tests them, so click where the bar is drawn.
        page.mouse.click(tallest["x"] + tallest["width"] / 2, tallest["y"] + tallest["height"] / 2)
        with contextlib.suppress(PlaywrightTimeout):
            page.wait_for_function("location.pathname.endsWith('/subject')", timeout=20_000)
            break
    assert page.url.split("?")[0].endswith("/subject"), page.url
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    assert "study=IDOV-SAFE" in page.url and "subject=IDOV-SAFE-" in page.url
    assert page.locator(ERRORS).count() == 0


def test_efficacy_tabs_draw_one_view_at_a_time_and_keep_it_in_the_link(server, page):
    page.goto(f"{server}/efficacy?study=IDOV-SAFE")
    page.wait_for_selector(CHART, timeout=60_000)
    assert page.get_by_role("heading", name="Waterfall").is_visible()
    page.get_by_role("tab", name="Tumor markers").click()
    page.wait_for_function("location.search.includes('efficacy_view=Tumor')", timeout=30_000)
    page.get_by_role("heading", name="Tumor markers").wait_for(timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    assert page.get_by_role("heading", name="Waterfall").count() == 0  # the closed view is not drawn
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


def test_import_page_imports_uploaded_sdtm_files(server, page_as, tmp_path):
    from smc.ingest.sdtm import synthetic

    page = page_as("datamanager")  # imports are for data managers and admins
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


def test_decision_form_refuses_a_deviation_without_rationale_then_records_it(decision_server, browser, tmp_path):
    url, folder = decision_server
    page = browser.new_context().new_page()
    sign_in(page, url, "member")  # just now: a signature needs a fresh sign-in
    page.goto(f"{url}/escalation?study=IX001")
    page.wait_for_function(f"document.querySelectorAll('{CHART}').length >= 2", timeout=60_000)
    decision = page.get_by_role("combobox", name="Decision")
    decision.click()
    decision.fill("stay")  # typing filters the options
    page.get_by_role("option", name="stay", exact=True).wait_for(timeout=10_000)
    decision.press("Enter")
    page.wait_for_function("!document.querySelector('input[type=checkbox]').checked", timeout=30_000)
    page.get_by_role("button", name="Sign and record the decision").click()
    error = page.locator('[data-testid="stAlertContentError"]')
    error.first.wait_for(timeout=30_000)
    assert "needs one" in error.first.inner_text()
    assert not (folder / "cut.decisions.sqlite").exists()

    rationale = page.get_by_role("textbox", name="Rationale")
    rationale.fill("Both DLTs resolved within 72 h; the SMC holds the dose for three more subjects.")
    rationale.press("Control+Enter")
    page.wait_for_timeout(500)
    page.get_by_role("button", name="Sign and record the decision").click()
    page.get_by_text(re.compile(r"Recorded as #1 at .* \(UTC\): stay .* signed by Dr Ben Member \(recorded as SMC "
                                r"member\)")).wait_for(timeout=30_000)
    assert page.locator(ERRORS).count() == 0
    # The deviation's diamond is drawn on the escalation history chart.
    page.wait_for_function("[...document.querySelectorAll('.legendtext')].some(t => t.textContent.includes("
                           "'SMC decision (deviation)'))", timeout=30_000)

    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Meeting packet (HTML)").click()
    packet = download.value.path().read_text(encoding="utf-8")
    assert "Both DLTs resolved within 72 h" in packet and all(f'<section id="{key}">' in packet for key in SECTIONS)


def test_packet_opens_offline_with_every_section(demo_db, browser, tmp_path):
    out = tmp_path / "packet.html"
    out.write_text(build_packet(Database(demo_db), "IDOV-SAFE"), encoding="utf-8")
    figures = out.read_text(encoding="utf-8").count('class="plotly-graph-div"')
    context = browser.new_context(offline=True)
    page = context.new_page()
    fetched, errors = [], []
    page.on("request", lambda request: fetched.append(request.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(out.as_uri())
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {figures}",
                           timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == figures
    for key, title in SECTIONS.items():
        assert page.locator(f"section#{key} h2").inner_text() == title
    assert page.locator("section#levels table").count() == 1 and page.locator("section#survival table").count() >= 1
    assert errors == [] and [u for u in fetched if not u.startswith("file:")] == []
    context.close()
