"""What changed between data cuts, in Chromium, served from a registry of cuts (a copy of the demo's three): the
banner on every page and a count's link to its list, the Changes page with its listing, CSV and review status,
the Escalation page's line and swimlane rings, the Safety listing's "Since last review" marks, the profile's
review button, and a first cut that has nothing to compare with."""
from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from smc.tools.server import ERRORS
from tests.helpers import served_app, signed_in_state

pytestmark = pytest.mark.browser

STUDY = "IX001"  # the demo study whose latest cut has a new DLT, a grade change 2→3 and a death
SINCE_TITLE = "2025-01-31 · demo transfer 2"  # the compared cut of the latest one (the SMC's last decision's)
SHOTS = Path("/tmp/shots")
CHANGES_BANNER = '[data-testid="stAlertContentInfo"]:has-text("Since ")'
SWIMLANE_TRACE = "New or changed since the compared cut"
SCRIPT_DONE = """() => { const app = document.querySelector('[data-test-script-state]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => c.querySelector('.main-svg')); }"""
# A dataframe is drawn on a canvas; glide-data-grid keeps an accessible table of it (header row and the rows in
# view) with the grid's full row count, header included, in aria-rowcount.
GRIDS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')].map(frame => {
    const table = frame.querySelector('table');
    if (!table) return null;
    const rows = [...table.rows].map(r => [...r.cells].map(c => c.innerText.trim()));
    return {rowcount: Number(table.getAttribute('aria-rowcount')), header: rows[0] || [], rows: rows.slice(1)}; })"""
TRACES = """() => [...document.querySelectorAll('.js-plotly-plot')].map(plot => (plot.data || []).map((trace, i) => {
    // data holds the traces as sent (an array may come base64-packed); _fullData holds them decoded
    const x = ((plot._fullData || []).find(t => t.index === i) || {}).x || trace.x;
    return {name: trace.name, points: x && x.length !== undefined ? x.length : 0}; }))"""


# --------------------------------------------------------------------------- a server on a copy of the registry


@pytest.fixture(scope="module")
def registry_server(demo_cuts, identity_provider, tmp_path_factory):
    """The app serving a copy of the demo's registry (the review marks written here stay out of the session's)."""
    folder = tmp_path_factory.mktemp("changes") / "registry"
    shutil.copytree(demo_cuts, folder)
    with served_app(None, identity_provider, SMC_CUTS=str(folder)) as url:
        yield url


@pytest.fixture(scope="module")
def member_state(browser, registry_server) -> dict:
    """The SMC member signed in at this server's own origin (the session server's sign-in does not hold here)."""
    return signed_in_state(browser, registry_server, "member")


@pytest.fixture()
def member(browser, member_state):
    context = browser.new_context(storage_state=member_state, viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


def _settled(page) -> None:
    """The page's title is drawn, its script has run and its charts have their svg."""
    page.locator("h1").first.wait_for(timeout=90_000)
    page.wait_for_function(SCRIPT_DONE, timeout=120_000)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)


def _open(page, url: str) -> None:
    page.goto(url)
    _settled(page)


def _screenshot(page, name: str) -> None:
    """The whole page: Streamlit scrolls its main block, not the document, so the window is made as tall as the
    page's content first (then the charts are laid out again at that size)."""
    page.mouse.move(0, 0)
    height = page.evaluate("""() => Math.max(...[...document.querySelectorAll(
        '[data-testid="stMain"], [data-testid="stAppViewContainer"], [data-testid="stSidebarContent"]')]
        .map(e => e.scrollHeight))""")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": min(int(height) + 40, 16_000)})
    page.wait_for_timeout(1_000)
    page.wait_for_function(SCRIPT_DONE, timeout=60_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def _no_error(page, where: str) -> None:
    assert page.locator(ERRORS).count() == 0, (where, page.locator(ERRORS).all_inner_texts())


def _query(page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(page.url).query).items()}


def _grid(page, *header: str) -> dict:
    """The first dataframe whose header starts with ``header``, once drawn."""
    page.wait_for_function(f"""() => [...document.querySelectorAll('[data-testid="stDataFrame"] table')].some(t =>
        t.rows.length && [...t.rows[0].cells].map(c => c.innerText.trim()).join('|').startsWith(
            {"|".join(header)!r}))""", timeout=60_000)
    return next(g for g in page.evaluate(GRIDS) if g and g["header"][:len(header)] == list(header))


def _metrics(page) -> dict[str, int]:
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=60_000)
    return {m.locator('[data-testid="stMetricLabel"]').inner_text().strip():
            int(m.locator('[data-testid="stMetricValue"]').inner_text().strip())
            for m in page.locator('[data-testid="stMetric"]').all()}


def _changes_page(page, server: str) -> None:
    _open(page, f"{server}/changes?study={STUDY}")
    page.get_by_role("heading", name="Review status").wait_for(timeout=60_000)
    page.locator('[data-testid="stMetric"]').first.wait_for(timeout=60_000)


# --------------------------------------------------------------------------- the banner and its links


def test_the_banner_links_a_count_to_its_list_on_the_changes_page(registry_server, member):
    _open(member, f"{registry_server}/?study={STUDY}")
    member.get_by_role("heading", name=f"{STUDY} · Overview").wait_for(timeout=60_000)
    banner = member.locator(CHANGES_BANNER)
    banner.wait_for(timeout=60_000)
    text = banner.inner_text()
    assert f"Since {SINCE_TITLE}:" in text, text
    assert re.search(r"\b1 grade change 2→3\b", text) and re.search(r"\b1 death\b", text), text
    _no_error(member, "overview")

    link = banner.get_by_role("link", name=re.compile(r"^\d+ new DLTs?$"))
    assert link.count() == 1, banner.get_by_role("link").all_inner_texts()
    n = int(link.inner_text().split()[0])
    href = link.get_attribute("href")
    assert urlsplit(href).path.endswith("changes") and parse_qs(urlsplit(href).query)["show"] == ["new_dlt"], href

    # Streamlit opens a markdown link in a new tab: follow it there (or here, should it ever open in place).
    pages_before = len(member.context.pages)
    link.click()
    member.wait_for_timeout(1_000)
    changes = member.context.pages[-1] if len(member.context.pages) > pages_before else member
    changes.wait_for_function("location.pathname.endsWith('/changes')", timeout=60_000)
    _settled(changes)
    changes.get_by_role("heading", name=f"{STUDY} · Changes").wait_for(timeout=60_000)
    query = _query(changes)
    assert query["show"] == "new_dlt" and query["study"] == STUDY and re.fullmatch(r"[0-9a-f]{12}", query["cut"])
    assert changes.get_by_role("combobox", name="Show").input_value() == "new DLTs"
    changes.get_by_role("heading", name=f"{n} record(s): new DLTs").wait_for(timeout=60_000)
    listing = _grid(changes, "Table", "Change")
    assert listing["header"] == ["Table", "Change", "Subject", "Record", "What changed (old → new)"], listing
    assert listing["rowcount"] - 1 == n == len(listing["rows"]), listing
    assert all("DLT" in row[3] or "dlt" in row[4] for row in listing["rows"]), listing["rows"]
    _no_error(changes, "changes?show=new_dlt")


# --------------------------------------------------------------------------- the Changes page


def test_the_changes_page_draws_its_listing_its_review_status_and_the_csv(registry_server, member):
    _changes_page(member, registry_server)
    member.get_by_role("heading", name=f"{STUDY} · Changes").wait_for(timeout=60_000)
    assert member.get_by_text(f"From {SINCE_TITLE} to ").count() >= 1
    assert member.get_by_role("combobox", name="Show").input_value() == "every change"
    heading = member.get_by_role("heading", name=re.compile(r"^\d+ record\(s\)$"))
    heading.wait_for(timeout=60_000)
    n = int(heading.inner_text().split()[0])
    assert n > 0

    listing = _grid(member, "Table", "Change")
    assert listing["header"] == ["Table", "Change", "Subject", "Record", "What changed (old → new)"], listing
    assert listing["rowcount"] - 1 == n and listing["rows"], listing
    assert {row[1] for row in listing["rows"]} <= {"added", "removed", "changed"}, listing["rows"]
    status = _grid(member, "Subject", "Status")
    assert status["rows"] and {row[1] for row in status["rows"]} <= {"reviewed", "needs re-review", "never reviewed"}

    metrics = _metrics(member)
    assert set(metrics) == {"Reviewed", "Needs re-review", "Never reviewed"}, metrics
    assert sum(metrics.values()) == status["rowcount"] - 1, (metrics, status)
    assert member.get_by_text("Subjects reviewed on this cut").count() == 1
    assert member.get_by_role("button", name="Mark as reviewed").count() == 1

    button = member.get_by_role("button", name="Download every changed field (CSV)")
    assert button.count() == 1
    with member.expect_download(timeout=60_000) as download:
        button.click()
    assert download.value.suggested_filename.startswith(f"{STUDY}_changes_")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8-sig"))))
    assert rows and "subject_id" in rows[0], rows[:1]
    _no_error(member, "changes")

    _screenshot(member, "changes.png")


def test_a_study_level_change_links_to_no_subject(registry_server, member):
    """The studies table's record (the data cut date moved) belongs to no subject: its Subject cell is empty, not
    a link to the profile of a subject called "None"."""
    _changes_page(member, registry_server)
    listing = _grid(member, "Table", "Change")
    study_level = [row for row in listing["rows"] if row[0] in ("study", "dose level")]
    assert study_level, listing["rows"][:3]
    assert [row[2] for row in study_level if row[2]] == [], study_level


# --------------------------------------------------------------------------- Escalation and Safety


def test_escalation_says_what_changed_and_rings_the_changed_aes(registry_server, member):
    _open(member, f"{registry_server}/escalation?study={STUDY}")
    member.wait_for_function("document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2", timeout=60_000)
    member.get_by_role("heading", name=f"{STUDY} · Escalation").wait_for(timeout=60_000)
    _no_error(member, "escalation")

    traces = member.evaluate(TRACES)
    assert len(traces) >= 2, traces
    swimlanes = next((chart for chart in traces if any(t["name"] == "DLT window (28 d)" for t in chart)), None)
    assert swimlanes is not None, traces
    ringed = [t for t in swimlanes if t["name"] == SWIMLANE_TRACE]
    assert len(ringed) == 1 and ringed[0]["points"] >= 1, swimlanes
    assert member.locator(".legendtext", has_text=SWIMLANE_TRACE).count() >= 1

    line = member.locator('[data-testid="stCaptionContainer"], [data-testid="stAlertContentWarning"]',
                          has_text=f"Since {SINCE_TITLE}:")
    line.first.wait_for(timeout=60_000)
    text = line.first.inner_text()
    assert "Unchanged since the compared cut:" in text or "Changed since the compared cut:" in text, text

    _screenshot(member, "escalation.png")


def test_the_safety_listings_mark_new_records_since_the_last_review(registry_server, member):
    _open(member, f"{registry_server}/safety?study={STUDY}")
    member.get_by_role("heading", name="Listings").wait_for(timeout=60_000)
    _no_error(member, "safety")
    seen: dict[str, list[str]] = {}
    tabs = member.get_by_role("tab").filter(has_text=re.compile(r"\(\d+\)$"))
    assert tabs.count() >= 1
    for i in range(tabs.count()):
        tab = tabs.nth(i)
        name = tab.inner_text().strip()
        tab.click()
        member.wait_for_timeout(500)
        grids = [g for g in member.evaluate(GRIDS) if g and g["header"][:1] == ["Since last review"]]
        visible = [g for g in grids if g["rows"]]
        if re.search(r"\(0\)$", name) or not visible:
            continue
        # Only the open tab's grid is laid out; hidden tabs' accessible tables have no rows.
        seen[name] = [row[0] for g in visible for row in g["rows"]]
    assert seen, "no listing with a 'Since last review' column"
    marks = {mark for column in seen.values() for mark in column}
    assert marks <= {"", "new", "changed"}, seen
    assert "new" in marks, f"no listing row is marked new since {SINCE_TITLE}: {seen}"


# --------------------------------------------------------------------------- review marks


def test_the_profile_marks_a_subject_reviewed_and_the_changes_page_counts_it(registry_server, member):
    _changes_page(member, registry_server)
    before = _metrics(member)
    status = _grid(member, "Subject", "Status")
    subject = next(row[0] for row in status["rows"] if row[1] != "reviewed").rsplit("subject=", 1)[-1]
    assert re.fullmatch(rf"{STUDY}-\d+", subject), subject

    _open(member, f"{registry_server}/subject?study={STUDY}&subject={subject}")
    member.get_by_role("heading", name="Review").wait_for(timeout=60_000)
    member.get_by_role("button", name=f"Mark {subject} as reviewed on this cut").click()
    success = member.locator('[data-testid="stAlertContentSuccess"]')
    success.wait_for(timeout=60_000)
    assert re.fullmatch(r"Marked 1 as reviewed on 2025-02-28 · demo transfer 3, by Dr Ben Member\.",
                        success.inner_text().strip()), success.inner_text()
    _no_error(member, "subject")

    _changes_page(member, registry_server)
    after = _metrics(member)
    assert after["Reviewed"] == before["Reviewed"] + 1, (before, after)
    assert sum(after.values()) == sum(before.values()), (before, after)


# --------------------------------------------------------------------------- the first cut


def test_picking_the_first_cut_removes_the_banner(registry_server, member):
    _open(member, f"{registry_server}/?study={STUDY}")
    member.locator(CHANGES_BANNER).wait_for(timeout=60_000)
    latest = _query(member)["cut"]
    picker = member.get_by_role("combobox", name="Data cut")
    assert picker.input_value() == "2025-02-28 · demo transfer 3"
    picker.click()
    options = member.get_by_role("option")
    options.first.wait_for(timeout=30_000)
    assert options.all_inner_texts() == ["2025-02-28 · demo transfer 3", "2025-01-31 · demo transfer 2",
                                         "2025-01-03 · demo transfer 1"]  # newest first
    member.get_by_role("option", name="demo transfer 1").click()
    member.wait_for_function(f"!location.search.includes('cut={latest}')", timeout=60_000)
    _settled(member)
    assert picker.input_value() == "2025-01-03 · demo transfer 1"
    cut = _query(member)["cut"]
    assert re.fullmatch(r"[0-9a-f]{12}", cut) and cut != latest
    member.get_by_role("heading", name=f"{STUDY} · Overview").wait_for(timeout=60_000)
    assert member.locator(CHANGES_BANNER).count() == 0
    assert member.get_by_text(re.compile(r"^Since ")).count() == 0
    assert member.get_by_role("combobox", name="Changes since").count() == 0  # nothing earlier to compare with
    _no_error(member, "overview, first cut")
