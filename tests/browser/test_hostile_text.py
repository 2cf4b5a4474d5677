"""Hostile text: a data cut whose every free-text value of the contract carries script, HTML, link, image,
Markdown and plotly-template payloads, loaded by the real importer and served by the real app. On every page,
every tab and the profile of a hostile subject id: no element a payload asked for exists, no request leaves for
a payload's host, no dialog opens, no error shows, and the text reads as it was written.

The same data cut through AppTest (no browser needed): every Markdown string a page sends parses, in an
independent CommonMark parser and under Streamlit's own text rules, to text only, and every figure string holds
only the markup the chart builders write themselves. And md() itself, rendered by Streamlit in Chromium, shows
every payload as literal text in every kind of element that renders Markdown.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import http.server
import json
import re
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit

import duckdb
import pandas as pd
import pytest
from markdown_it import MarkdownIt  # CommonMark, independent of Streamlit's renderer (installed with rich)

from smc import settings
from smc.access.identity import Identity
from smc.access.permissions import SMC_CHAIR
from smc.analysis.dose_decision import decision_history, load_dose_decision
from smc.decision_log import ledger
from smc.demo.build import demo_tables
from smc.ingest.load import as_text, import_tables
from smc.outputs.packet import build_packet
from smc.rules.escalation import recommended_level
from smc.store.db import READ_ONLY_CONFIG, Database
from smc.store.study import load_study, study_ids
from smc.tools.server import ERRORS
from smc.ui import pages
from smc.ui.text import WORD_JOINER
from tests.helpers import ROOT, app_test, figures, served_app, signed_in_state

HOST = "127.0.0.1:9"  # port 9 (discard): nothing listens, so a request that leaks is refused, and logged here
PAYLOADS = (
    '<script>alert("script")</script>',
    f'<img src=http://{HOST}/img onerror=alert("img")>',
    '<iframe srcdoc="<script>alert(&quot;iframe&quot;)</script>"></iframe>',
    '<a href=javascript:alert("a")>js link</a>',
    f'<a href="http://{HOST}/a" popup=\'x");alert("popup");("\'>plotly popup</a>',  # plotly pastes popup into onclick
    f"[md link](http://{HOST}/md)",
    f"![md image](http://{HOST}/md-img)",
    '[md js](javascript:alert("md"))',
    ":red[red] :material/warning: :streamlit: :smile: :blue-badge[b]",
    "$x^2$ and $$y$$",
    f'<b>bold</b> <span style="background-image:url(http://{HOST}/css)">css</span>',
    f"http://{HOST}/bare www.example.org x@example.org",
    "%{x} %{customdata[0]} &lt;b&gt;not bold&lt;/b&gt; &#60;i&#62;",
    '<svg onload=alert("svg")><circle r=5></circle></svg>',
    r"**strong** _em_ `code` ~~del~~ \ | a | b |",
    f"<img src=\"http://{HOST}/quoted\" onerror=\"alert('q')\">",
    "'\"><script>alert('attribute')</script>",
    f'<style>@import "http://{HOST}/style";</style>',
    f"<object data=http://{HOST}/object></object><embed src=http://{HOST}/embed>",
    "# heading",
    "- list item",
    "1. ordered",
    "> quote",
    "a -> b <- c -- d >= e",
    f"<http://{HOST}/angle>",
    f'<video src=http://{HOST}/video></video><audio src=http://{HOST}/audio></audio>',
    f"[ref]: http://{HOST}/ref",
    "<br>line<br/>break",
)

# Free-text columns of the contract (docs/data-contract.md), table by table. Ids (study, subject, site) and agent
# names are mapped the same way in every table that names them; coded columns (design, sex, phase, category,
# responses, flags) keep their codes, and so do the safety-lab test names the CTCAE rules grade.
TEXT_COLUMNS = {
    "studies": ("title", "indication"),
    "dose_levels": ("label", "unit"),
    "sites": ("name", "country"),
    "subjects": ("screen_fail_reason", "off_treatment_reason", "off_study_reason", "death_cause"),
    "administrations": ("unit", "route"),
    "adverse_events": ("term", "soc", "outcome", "action_taken"),
    "lab_results": ("test", "specimen", "unit"),
}
GRADED_CATEGORIES = ("hematology", "chemistry")


def hostile(text: str, n: int) -> str:
    """``text`` with the n-th payload before it (even n: a value that starts with markup) or after it."""
    payload = PAYLOADS[n % len(PAYLOADS)]
    return f"{payload} {text}" if n % 2 == 0 else f"{text} {payload}"


def _mapped(values: pd.Series, start: int = 0) -> dict:
    """Each distinct text its own hostile version (so groups stay groups), payloads taken in turn."""
    distinct = [v for v in dict.fromkeys(values) if isinstance(v, str) and v]
    return {v: hostile(v, start + i) for i, v in enumerate(distinct)}


def hostile_tables() -> dict[str, pd.DataFrame]:
    """The demo's tables with every free-text value, id and agent name made hostile."""
    tables = {name: frame.copy() for name, frame in demo_tables().items()}
    studies = _mapped(tables["studies"]["study_id"])
    sites = _mapped(tables["sites"]["site_id"], 5)
    agents = _mapped(pd.concat([tables["studies"]["agent"], tables["administrations"]["agent"]]), 9)
    subjects = {key: hostile(key[1], i + 3) for i, key in enumerate(
        dict.fromkeys(zip(tables["subjects"]["study_id"], tables["subjects"]["subject_id"])))}
    for name, frame in tables.items():
        if "subject_id" in frame:
            frame["subject_id"] = [subjects[key] for key in zip(frame["study_id"], frame["subject_id"])]
        if "study_id" in frame:
            frame["study_id"] = frame["study_id"].map(studies)
        if "site_id" in frame:
            frame["site_id"] = frame["site_id"].map(lambda s: sites.get(s, s))
        if "agent" in frame:
            frame["agent"] = frame["agent"].map(agents)
        for offset, column in enumerate(TEXT_COLUMNS.get(name, ())):
            mapped = frame[column].map(_mapped(frame[column], 7 * offset)).fillna(frame[column])
            keep = frame["category"].isin(GRADED_CATEGORIES) if column == "test" else pd.Series(False, frame.index)
            frame[column] = frame[column].where(keep, mapped)
    return tables


RATIONALE = "\n".join(PAYLOADS[::3])  # a deviation's rationale: many payloads, several lines
ATTENDEES = " · ".join(PAYLOADS[1::4])
RECORDED_BY = PAYLOADS[4]


def record_hostile_decisions(db_path) -> int:
    """Each study's first decisive rule calls as decisions, the last recorded as a deviation ("other"), with
    hostile rationale, attendees and names."""
    db, log, recorded = Database(db_path), ledger.log_path(db_path), 0
    for study_id in study_ids(db):
        study = load_study(db, study_id)
        calls = [p for p in decision_history(load_dose_decision(db, study, study.data_cut_date))
                 if recommended_level(p) is not None and p.recommendation.action not in ("enroll", "wait")][:3]
        for i, point in enumerate(calls):
            deviation = i == len(calls) - 1
            draft = ledger.Draft(
                study_id=study_id, meeting_date=point.as_of + dt.timedelta(days=3), data_cut_date=point.as_of,
                level=recommended_level(point), decision="other" if deviation else point.recommendation.action,
                rationale=RATIONALE, attendees=ATTENDEES, follows_recommendation=not deviation,
                stage=study.stages[0].name if study.staged else None,
                signer=Identity(issuer=hostile("https://idp.example", 1), subject=hostile("sub", 2), name=RECORDED_BY,
                                email=hostile("chair@example", 3), role=SMC_CHAIR, sites=frozenset(),
                                auth_time=dt.datetime.now(dt.UTC)))
            ledger.append(log, draft, load_dose_decision(db, study, point.as_of), ledger.data_source(db))
            recorded += 1
    return recorded


@pytest.fixture(scope="session")
def hostile_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.duckdb"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SMC_DB", str(path))  # the decision log's key goes where the served app looks for it
        import_tables({name: as_text(frame) for name, frame in hostile_tables().items()}, path,
                      hostile("demo:seed=2024", 0))  # the load's source is shown in the sidebar
        assert record_hostile_decisions(path) >= 3
    return path


@pytest.fixture(scope="session")
def hostile_studies(hostile_db) -> dict[str, dict]:
    """Per hostile study id: its subject with the most adverse events, and the tabs each tabbed page has."""
    con = duckdb.connect(str(hostile_db), read_only=True, config=READ_ONLY_CONFIG)
    try:
        busiest = dict(con.execute(
            "SELECT study_id, arg_max(subject_id, n) FROM (SELECT study_id, subject_id, count(*) AS n "
            "FROM adverse_events GROUP BY ALL) GROUP BY ALL").fetchall())
    finally:
        con.close()
    return {study: {"subject": subject} for study, subject in busiest.items()}


def test_the_hostile_data_cut_is_hostile_everywhere(hostile_db):
    """Every value of every mapped text column carries a payload in the loaded database (the tests below see
    hostile text, not a validator's clean-up), and so do the load's source and the decision log's texts."""
    con = duckdb.connect(str(hostile_db), read_only=True, config=READ_ONLY_CONFIG)
    ids = {"studies": ("study_id", "agent"), "subjects": ("subject_id", "site_id"), "sites": ("site_id",),
           "administrations": ("agent",)}
    try:
        for table in {*TEXT_COLUMNS, *ids}:
            for column in (*TEXT_COLUMNS.get(table, ()), *ids.get(table, ())):
                where = "category NOT IN ('hematology', 'chemistry')" if column == "test" else "true"
                values = [v for (v,) in con.execute(f'SELECT DISTINCT "{column}" FROM {table} WHERE {where}')
                          .fetchall() if v is not None]
                clean = [v for v in values if not any(p in v for p in PAYLOADS)]
                assert values and not clean, (table, column, clean)
        (source,) = con.execute("SELECT source FROM load_info").fetchone()
        assert PAYLOADS[0] in source
    finally:
        con.close()
    records = [r for study in study_ids(Database(hostile_db)) for r in ledger.study_log(
        ledger.log_path(hostile_db), study)[0]]
    assert records and all(r.rationale == RATIONALE and r.recorded_by == RECORDED_BY for r in records)


# --------------------------------------------------------------------------- AppTest: what the pages send

# Streamlit 1.67's own rules for Markdown (frontend StreamlitMarkdown), applied to the text after parsing: what a
# backslash cannot escape. md() must leave none of them to find.
AFTER_PARSING = {
    "material icon": re.compile(r":material[_/]\w+:"),
    "Streamlit logo": re.compile(r":streamlit:"),
    "emoji shortcode": re.compile(r":(?!material/|streamlit:)[\w+-][\w_+-]*:"),
    "directive": re.compile(r":(?!small\[)[a-z][a-z0-9-]*[\[{]"),  # :small[...] is the Subject page's own
    "bare URL (GFM)": re.compile(r"(?i)(https?://|www(?=\.))[-.\w]+"),
    "e-mail (GFM)": re.compile(r"[-.\w+]+@[-\w]+(\.[-\w]+)+"),
    "arrow or dash": re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)"),
}
# Streamlit's test for math (remark-math is loaded only when it passes): code spans and escapes blanked first.
MATH_BLANKED = re.compile(r"(?:^|(?<=\n)) {0,3}(`{3,}|~{3,})[\s\S]*?(?:\n[ \t]*\1|$)|(?<!`)(`+)[^`\n]+\2(?!`)|\\[\\$`]")
MATH = (re.compile(r"(?<!\$)\$\$+(?!\$)[\s\S]*?\$\$"), re.compile(r"(?<!\$)\$(?![\s$])[^$\n]*?[^\s$]\$(?!\d)"))
COMMONMARK = MarkdownIt("commonmark").enable(["table", "strikethrough"])
# Markup the pages write themselves: strong, emphasis, headings, lists and paragraphs; code spans of rule actions;
# the Overview's link to the Escalation page.
OWN_CODE = re.compile(r"^[a-z_-]+$")
OWN_LINK = re.compile(r"^/escalation\?study=[^&]*&as_of=\d{4}-\d{2}-\d{2}$")


def markdown_problems(source: str) -> list[str]:
    """What in ``source`` Streamlit would render as something other than text (our own markup aside)."""
    problems = []
    if any(m.search(MATH_BLANKED.sub("_", source)) for m in MATH):
        problems.append("math")
    for block in COMMONMARK.parse(source):
        if block.type in ("html_block", "code_block", "fence", "hr", "blockquote_open", "table_open"):
            problems.append(block.type)
        for token in block.children or ():
            if token.type in ("html_inline", "image"):
                problems.append(f"{token.type} {token.content!r}")
            elif token.type == "link_open" and not OWN_LINK.match(token.attrGet("href") or ""):
                problems.append(f"link {token.attrGet('href')!r}")
            elif token.type == "code_inline" and not OWN_CODE.match(token.content):
                problems.append(f"code {token.content!r}")
            elif token.type in ("text", "code_inline"):
                text = token.content.replace(WORD_JOINER, "\0")  # a joiner splits what the renderer looks for
                problems += [f"{name} in {token.content!r}" for name, rule in AFTER_PARSING.items()
                             if rule.search(text)]
    return problems


# Proto fields Streamlit renders as Markdown, and the elements whose text is drawn as plain text.
MARKDOWN_FIELDS = ("body", "label", "help", "content")
PLAIN_ELEMENTS = ("text", "code", "json", "plotly_chart", "arrow_data_frame", "dataframe", "selectbox",
                  "multiselect", "text_area", "text_input", "date_input")


def markdown_sources(node) -> list[str]:
    """Every Markdown string of the element tree under ``node``."""
    out = []
    proto, kind = getattr(node, "proto", None), getattr(node, "type", None)
    if proto is not None and hasattr(proto, "ListFields") and kind not in PLAIN_ELEMENTS:
        out += _proto_markdown(proto)
    for child in getattr(node, "children", {}).values():
        out += markdown_sources(child)
    return out


def _proto_markdown(proto) -> list[str]:
    out = []
    for field, value in proto.ListFields():
        values = value if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) else [value]
        for item in values:
            if isinstance(item, str) and field.name in MARKDOWN_FIELDS:
                out.append(item)
            elif hasattr(item, "ListFields"):
                out += _proto_markdown(item)
    return out


TAG = re.compile(r"<\s*(/?)\s*([a-zA-Z][\w-]*)([^<>]*)>")
OWN_TAGS = {"b": "", "br": "", "extra": "", "span": r"style='color:(#[0-9a-fA-F]{6}|rgb\([\d, .]+\))'"}
TEMPLATE = re.compile(r"%\{([^\s%{}:|]*)")
TEMPLATE_KEYS = ("hovertemplate", "texttemplate")
TEMPLATE_VARIABLES = re.compile(r"^(x|y|z|text|customdata(\[\d+\])?)$")


def figure_problems(spec, path: str = "") -> list[str]:
    """Markup in a figure that no builder wrote: a tag but <b>, <br>, <extra>, a coloured <span>; a template
    variable outside a hover or text template, or one no builder uses."""
    if isinstance(spec, dict):
        return [p for key, value in spec.items() for p in figure_problems(value, f"{path}.{key}")]
    if isinstance(spec, list):
        return [p for i, value in enumerate(spec) for p in figure_problems(value, f"{path}[{i}]")]
    if not isinstance(spec, str):
        return []
    if path.endswith(".legendgroup"):  # an identifier plotly never draws
        return []
    problems = [f"{path}: <{end}{tag}{attributes}>" for end, tag, attributes in TAG.findall(spec)
                if tag.lower() not in OWN_TAGS
                or not re.fullmatch(r"\s*" if end else rf"\s*({OWN_TAGS[tag.lower()]})?\s*/?", attributes)]
    in_template = path.rsplit(".", 1)[-1].split("[")[0] in TEMPLATE_KEYS
    problems += [f"{path}: %{{{name}}}" for name in TEMPLATE.findall(spec)
                 if not in_template or not TEMPLATE_VARIABLES.match(name)]
    return problems


def page_runs(hostile_studies):
    """(study, page script, query) for every page and every tab of the tabbed pages."""
    tabs = {"efficacy": ["Best response", "Over time", "Tumor markers"],
            "biomarkers": ["Over time", "T-cell subsets", "Exposure", "Shedding", "Immunogenicity"]}
    for study, facts in hostile_studies.items():
        for spec in pages.PAGES:
            if spec.key in tabs:
                for tab in tabs[spec.key]:
                    yield study, spec.script, {f"{spec.key}_view": tab}
            elif spec.key == "subject":
                yield study, spec.script, {"subject": facts["subject"]}
            else:
                yield study, spec.script, {}


def test_every_page_sends_markdown_that_renders_as_text_and_figures_without_foreign_markup(
        hostile_db, hostile_studies, monkeypatch):
    monkeypatch.setenv("SMC_DB", str(hostile_db))
    problems, escaped_seen = [], 0
    for study, script, query in page_runs(hostile_studies):
        at = app_test("admin", timeout=120)  # the role that opens every page
        at.query_params.update({"study": study, **query})
        at.run()
        at.switch_page(script).run()
        where = f"{script} {query} of {study[:20]!r}"
        assert not at.exception, (where, [e.message for e in at.exception])
        assert not at.error, (where, [e.value for e in at.error])
        problems += [(where, source[:120], p) for source in markdown_sources(at._tree)
                     for p in markdown_problems(source)]
        for spec in figures(at):
            problems += [(where, p) for p in figure_problems(spec)]
            escaped_seen += "&lt;script&gt;" in json.dumps(spec)
    assert problems == []
    assert escaped_seen >= 10  # the payloads did reach the figures, as text


def test_hostile_link_parameters_are_shown_as_text(hostile_db, hostile_studies, monkeypatch):
    """A link's study, date and subject that are not in the data are named in a message, as text."""
    monkeypatch.setenv("SMC_DB", str(hostile_db))
    study = next(iter(hostile_studies))
    for query in ({"study": PAYLOADS[5] + PAYLOADS[1]}, {"study": study, "as_of": PAYLOADS[6] + PAYLOADS[8]},
                  {"study": study, "subject": PAYLOADS[2] + PAYLOADS[11]}):
        at = app_test("admin", timeout=120)  # the role that opens every page
        at.query_params.update(query)
        at.run()
        if "subject" in query:
            at.switch_page(pages.script("subject")).run()
        assert not at.exception
        warnings = [w.value for w in at.warning]
        assert warnings, query
        assert [p for w in warnings for p in markdown_problems(w)] == []


# --------------------------------------------------------------------------- Chromium: the served app

FOUND_INJECTED = """() => {
    const origin = location.origin, found = [];
    const say = (why, e) => found.push(why + ': ' + e.outerHTML.slice(0, 200));
    const foreign = url => url && !url.startsWith(origin + '/') && !url.startsWith('data:') && !url.startsWith('blob:');
    document.querySelectorAll('iframe, frame, object, embed, applet, video, audio, portal, base, form[action]')
        .forEach(e => say('element', e));
    document.body.querySelectorAll('script, style, link, meta').forEach(e => say('in body', e));
    document.querySelectorAll('img, image, source, input[type=image]').forEach(e => {
        const src = e.currentSrc || e.getAttribute('src') || e.getAttribute('href') || e.getAttribute('xlink:href');
        if (foreign(new URL(src || '', location.href).href)) say('foreign image', e); });
    document.querySelectorAll('[data-testid="stMarkdownContainer"] img, [data-testid="stMarkdownContainer"] '
        + 'span[role=img], .katex, .stMarkdownColoredText, .stMarkdownColoredBackground, .stMarkdownBadge, '
        + '[data-testid="stMarkdownContainer"] a[href^="http"], [data-testid="stMarkdownContainer"] a[href^="mailto"]')
        .forEach(e => say('markdown made', e));
    document.querySelectorAll('a').forEach(e => {
        if (e.closest('.modebar')) return;  // plotly's own logo link
        const raw = e.getAttribute('href') ?? e.getAttribute('xlink:href') ?? '';
        const href = new URL(raw, location.href).href;
        if (/^\\s*javascript:/i.test(raw) || foreign(href) || href.includes('HOST')) say('link', e); });
    document.querySelectorAll('.js-plotly-plot svg a, .js-plotly-plot [onclick]').forEach(e => say('plotly link', e));
    document.querySelectorAll('*').forEach(e => { for (const a of e.attributes) {
        if (/^on/i.test(a.name)) say('handler ' + a.name, e);
        // plotly fills its colour bars with a url() of this page; one to anywhere else a payload asked for
        if (a.name === 'style') for (const m of a.value.matchAll(/url\\(\\s*['"]?([^'")]*)/g))
            if (foreign(new URL(m[1], location.href).href) || m[1].includes('HOST')) say('style', e); } });
    return found;
}""".replace("HOST", HOST)
SCRIPT_DONE = """() => { const app = document.querySelector('[data-test-script-state]');
    return app && app.getAttribute('data-test-script-state') === 'notRunning'
        && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => c.querySelector('.main-svg')); }"""
MARKS = ".scatterlayer .point, .barlayer .bars path, .heatmaplayer image, .scatterlayer .trace text"


# Streamlit draws the Material icons the app names (page and button icons) from Google's icon CDN; those are the
# only requests allowed to leave the app's origin.
OWN_ICONS = {name for path in [ROOT / "app.py", *ROOT.glob("views/*.py"), *ROOT.glob("smc/**/*.py")]
             for name in re.findall(r":material/(\w+):", path.read_text())}
ICON_URL = re.compile(r"^https://fonts\.gstatic\.com/s/i/short-term/release/materialsymbolsrounded/(\w+)/")


def _watch(page):
    """The requests that leave for another origin (but the app's own icons), and the dialogs opened, as they
    happen."""
    left, dialogs = [], []
    origin = None

    def on_request(request):
        nonlocal origin
        origin = origin or f"{urlsplit(request.url).scheme}://{urlsplit(request.url).netloc}"
        icon = ICON_URL.match(request.url)
        if not request.url.startswith(origin + "/") and not (icon and icon.group(1) in OWN_ICONS):
            left.append(request.url)

    page.on("request", on_request)
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    return left, dialogs


def _open(page, url: str) -> None:
    page.goto(url)
    page.locator("h1").first.wait_for(timeout=90_000)
    page.wait_for_function(SCRIPT_DONE, timeout=120_000)
    page.wait_for_load_state("networkidle")


def _hover_marks(page, per_chart: int = 8) -> list[str]:
    """Hover up to ``per_chart`` marks of every chart, those in closed tabs too (a staged study's Escalation page
    draws every stage, one tab each); what each hover label holds that a payload made."""
    charts = page.locator('[data-testid="stPlotlyChart"]')
    found = _hover_visible_marks(page, charts, per_chart)
    if charts.count() > charts.filter(visible=True).count():
        tabs = page.get_by_role("tab")
        for nth in range(1, tabs.count()):
            tabs.nth(nth).click()
            found += _hover_visible_marks(page, charts, per_chart)
        tabs.first.click()
    return found


def _hover_visible_marks(page, charts, per_chart: int) -> list[str]:
    found = []
    for chart in charts.filter(visible=True).all():
        chart.scroll_into_view_if_needed()
        marks = chart.locator(MARKS).all()
        for mark in marks[:: max(1, len(marks) // per_chart)][:per_chart]:
            box = mark.bounding_box()
            if not box or not box["width"]:
                continue
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_timeout(60)
            found += page.evaluate("""() => [...document.querySelectorAll('.hoverlayer a, .hoverlayer [onclick], '
                + '.hoverlayer [style*="url("]')].map(e => e.outerHTML.slice(0, 200))""")
        page.mouse.move(0, 0)
    return found


def _views(study: str, subject: str):
    """Every page, every tab, and the profile of the study's busiest (hostile) subject."""
    for spec in pages.PAGES:
        query = {"study": study}
        if spec.key == "efficacy":
            yield from ((spec.url_path, {**query, "efficacy_view": v}) for v in ("Best response", "Over time",
                                                                                 "Tumor markers"))
        elif spec.key == "biomarkers":
            yield from ((spec.url_path, {**query, "biomarkers_view": v}) for v in (
                "Over time", "T-cell subsets", "Exposure", "Shedding", "Immunogenicity"))
        elif spec.key == "subject":
            yield spec.url_path, {**query, "subject": subject}
        else:
            yield spec.url_path, query


@pytest.fixture(scope="module")
def hostile_server(hostile_db, identity_provider):
    with served_app(hostile_db, identity_provider) as url:
        yield url


@pytest.fixture(scope="module")
def hostile_sign_in(browser, hostile_server) -> dict:
    """The admin (the one role that opens every page, Import among them) signed in at this server: Streamlit ties
    its sign-in cookie to the server's origin, so the session server's sign-in does not hold here."""
    return signed_in_state(browser, hostile_server, "admin")


@pytest.fixture()
def page(browser, hostile_sign_in):
    context = browser.new_context(storage_state=hostile_sign_in)
    yield context.new_page()
    context.close()


@pytest.mark.browser
@pytest.mark.parametrize("nth_study", [0, 1, 2])
def test_no_payload_runs_on_any_page_of_a_hostile_study(hostile_server, hostile_studies, page, nth_study):
    study, facts = list(hostile_studies.items())[nth_study]
    left, dialogs = _watch(page)
    seen = {}
    for path, query in _views(study, facts["subject"]):
        where = f"/{path}?{urlencode(query)}"
        _open(page, hostile_server + where)
        assert page.locator(ERRORS).count() == 0, (where, page.locator(ERRORS).first.inner_text())
        seen[where] = page.evaluate(FOUND_INJECTED) + _hover_marks(page) + page.evaluate(FOUND_INJECTED)
    assert {where: found for where, found in seen.items() if found} == {}
    assert left == [] and dialogs == []


@pytest.mark.browser
def test_hostile_text_reads_as_written(hostile_server, hostile_db, hostile_studies, page):
    """The subject's heading, the page title and the dose labels under the Overview's bars show the hostile text
    itself, character for character: escaping changed how it is sent, not what it says."""
    study, facts = next(iter(hostile_studies.items()))
    con = duckdb.connect(str(hostile_db), read_only=True, config=READ_ONLY_CONFIG)
    try:
        labels = [label for (label,) in con.execute(
            "SELECT label FROM dose_levels WHERE study_id = ? ORDER BY level", [study]).fetchall()]
    finally:
        con.close()
    left, dialogs = _watch(page)
    _open(page, f"{hostile_server}/subject?{urlencode({'study': study, 'subject': facts['subject']})}")
    heading = page.locator("h2").first.inner_text().replace(WORD_JOINER, "")
    assert heading.startswith(f"{facts['subject']} · "), heading
    _open(page, f"{hostile_server}/?{urlencode({'study': study})}")
    assert page.locator("h1").first.inner_text().replace(WORD_JOINER, "") == f"{study} · Overview"
    tick = page.locator('[data-testid="stPlotlyChart"] .xtick text')
    tick.first.wait_for(timeout=30_000)  # plotly draws its axes after the chart's svg
    ticks = tick.all_text_contents()
    assert ticks == labels
    assert left == [] and dialogs == []


@pytest.mark.browser
def test_explore_results_and_errors_quote_hostile_values_as_text(hostile_server, hostile_studies, page):
    """A console result of hostile text draws its quick chart without the payloads; an error that quotes a
    hostile value (a failed cast) shows it as text."""
    study = next(iter(hostile_studies))
    left, dialogs = _watch(page)
    _open(page, f"{hostile_server}/explore?{urlencode({'study': study})}")
    box = page.get_by_role("textbox", name="SQL")
    for sql, outcome in (("SELECT term, soc, count(*) AS n FROM adverse_events GROUP BY ALL ORDER BY 3 DESC",
                          '[data-testid="stPlotlyChart"] >> nth=1'),
                         ("SELECT CAST(term AS INTEGER) FROM adverse_events", '[data-testid="stAlertContentError"]')):
        box.fill(sql)
        box.press("Control+Enter")
        page.get_by_role("button", name="Run").click()
        page.locator(outcome).wait_for(timeout=60_000)
        page.wait_for_function(SCRIPT_DONE, timeout=120_000)
        assert page.evaluate(FOUND_INJECTED) + _hover_marks(page) == []
    error = page.locator('[data-testid="stAlertContentError"]').inner_text().replace(WORD_JOINER, "")
    assert "<" in error and "Could not convert" in error, error
    assert left == [] and dialogs == []


@contextlib.contextmanager
def _served_folder(folder):
    """``folder`` over HTTP on a free port (a page opened from file:// has no origin to hold requests to)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()


@pytest.mark.browser
def test_the_meeting_packet_of_a_hostile_study_runs_no_payload(hostile_db, hostile_studies, page, tmp_path):
    """The packet is a file the committee opens on its own machines: its tables, texts and embedded charts carry
    every payload as text, with nothing injected, no request out and no dialog, and the dose labels read as
    written."""
    db = Database(hostile_db)
    for study in hostile_studies:
        (tmp_path / f"{len(list(tmp_path.iterdir()))}.html").write_text(build_packet(db, study))
    left, dialogs = _watch(page)
    with _served_folder(tmp_path) as url:
        for packet, study in zip(sorted(tmp_path.iterdir()), hostile_studies):
            page.goto(f"{url}/{packet.name}")
            page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].length > 2 && "
                                   "[...document.querySelectorAll('.js-plotly-plot')].every(c => c.querySelector("
                                   "'.main-svg'))", timeout=60_000)
            found = page.evaluate(FOUND_INJECTED) + _hover_marks(page, per_chart=4)
            charts = page.locator(".js-plotly-plot").count()
            own = [f for f in found if f.startswith("in body: <script") and "Plotly.newPlot(" in f]
            assert len(own) == charts, study  # the packet's own: one script per chart, which draws it
            assert [f for f in found if f not in own] == [], study
            body = page.locator("body").inner_text()
            assert PAYLOADS[0] in body and PAYLOADS[2] in body, study  # shown, as the text it is
            assert left == [] and dialogs == [], study


# --------------------------------------------------------------------------- Chromium: md() itself

MD_PROBE = '''
import json, sys
import streamlit as st
sys.path.insert(0, {root!r})
from smc.ui.text import md

payloads = json.loads({payloads!r})
for i, p in enumerate(payloads):
    st.markdown(f"M{{i}}: " + md(p))
    st.markdown(md(p) + f" :M{{i}}")
    st.caption(f"C{{i}}: " + md(p))
for i, p in enumerate(payloads):
    st.title(f"T{{i}}: " + md(p))
    st.info(f"I{{i}}: " + md(p))
    st.metric(f"L{{i}}: " + md(p), f"V{{i}}: " + md(p))
    with st.expander(f"E{{i}}: " + md(p)):
        st.write("x")
st.tabs([f"Tab{{i}}: " + md(p) for i, p in enumerate(payloads)])
st.pills("pills", payloads, format_func=md)
st.segmented_control("segments", payloads, format_func=md)
st.markdown("END")
'''


@contextlib.contextmanager
def _served_script(script, timeout_s: float = 60):
    """``streamlit run script`` on a free port (the app's own server helper runs app.py only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--browser.gatherUsageStats", "false"], cwd=settings.ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + timeout_s
    try:
        while True:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            if time.monotonic() > deadline:
                pytest.fail("the md() probe app did not start")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


MD_VARIANTS = (*PAYLOADS, "IX001-004", "3×10^8 PFU (cohort 2)", "2025-03-14 08:30", "reason: text", "a@b",
               "mailto:x@example.org", ":rainbow[r]", "{#id .cls}", "\\(a\\) \\[b\\]", "+ plus", "===", "---",
               "***", "2) second", "<->", "~= ≈", "WWW.EXAMPLE.ORG", "https://example.org/x_y*z*", "__init__",
               "a\nb\n# c", "  indented", "trailing\\", "&amp; &copy; &#x3C;", "| x |\n|---|", "[^1]", "\t\ttab")
RENDERED = """() => [...document.querySelectorAll(
    '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"]')].map(e => e.textContent)"""


@pytest.mark.browser
def test_md_renders_every_payload_as_its_literal_text(page, tmp_path):
    """Each value through md() in st.markdown (alone and after text), captions, titles, alerts, metric labels
    and values, expander and tab labels, pills and segments reads as the value itself, and nothing else is
    made: no image, link, icon, coloured text, formula or request."""
    script = tmp_path / "md_probe.py"
    script.write_text(textwrap.dedent(MD_PROBE.format(root=str(ROOT), payloads=json.dumps(MD_VARIANTS))))
    with _served_script(script) as url:
        left, dialogs = _watch(page)
        page.goto(url)
        page.get_by_text("END", exact=True).wait_for(timeout=90_000)
        page.wait_for_function(SCRIPT_DONE, timeout=90_000)
        page.wait_for_load_state("networkidle")
        expected = []
        for i, value in enumerate(MD_VARIANTS):
            text = " ".join(value.split())  # lines join and HTML folds white space; nothing else may change
            expected += [f"M{i}: {text}", f"{text} :M{i}", f"C{i}: {text}", f"T{i}: {text}", f"I{i}: {text}",
                         f"L{i}: {text}", f"V{i}: {text}", f"E{i}: {text}", f"Tab{i}: {text}", text]
        deadline = time.monotonic() + 60
        while True:  # several hundred elements: the last are drawn a moment after the script is done
            shown = {" ".join(t.replace(WORD_JOINER, "").split()) for t in page.evaluate(RENDERED)}
            missing = [e for e in expected if e not in shown]
            if not missing or time.monotonic() > deadline:
                break
            page.wait_for_timeout(1_000)
        assert missing == []
        assert page.evaluate(FOUND_INJECTED) == []
        assert left == [] and dialogs == []
