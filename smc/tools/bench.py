"""``python -m smc bench``: how fast every page is for the biggest study and a typical one.

Per page and study, the median of ``runs`` runs of:
- cold_ms: the page script's first run after the database is opened (every Streamlit cache cleared),
  run by AppTest, as a new session would;
- warm_ms: a rerun of the same session (what a widget change costs);
- sql_ms: time inside DuckDB during the cold run (smc.store.db.QUERY_CLOCK);
- chart_bytes: bytes of plotly JSON the page sends (all its charts; largest_chart_bytes the biggest);
- browser_ms (``--browser``): from navigation in Chromium to every chart drawn.
With ``--browser``, also the server's resident memory after 5 sessions have each opened every page.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import urlencode

from smc import settings
from smc.access import permissions
from smc.access.identity import load_roles
from smc.store.db import QUERY_CLOCK, Database
from smc.ui import pages

CHART = '[data-testid="stPlotlyChart"]'
BUDGETS = {"warm_ms": 300, "cold_ms": 1500, "browser_ms": 3000, "largest_chart_bytes": 2_000_000,
           "page_to_sql": 1.5, "server_mb": 600}
VERSIONS = ("streamlit", "duckdb", "pandas", "numpy", "plotly", "orjson", "lifelines", "scipy", "pyarrow", "playwright")


@dataclass(frozen=True)
class Page:
    name: str
    script: str  # as app.py's st.Page has it
    url_path: str  # "" for the default page
    # (query parameter, tab label) of another view of a page; None: the default. A study without that view
    # (no T-cell data, say) is shown the default one.
    view: tuple[str, str] | None = None

    @property
    def view_query(self) -> dict[str, str]:
        """The link parameter that opens this view: {} for the default."""
        return dict([self.view]) if self.view else {}


# Tabs timed as rows of their own, after their page: (row name, page, query parameter, tab label).
VIEWS = [("efficacy-time", "efficacy", "efficacy_view", "Over time"),
         ("efficacy-markers", "efficacy", "efficacy_view", "Tumor markers"),
         ("biomarkers-tcells", "biomarkers", "biomarkers_view", "T-cell subsets"),
         ("biomarkers-exposure", "biomarkers", "biomarkers_view", "Exposure"),
         ("biomarkers-shedding", "biomarkers", "biomarkers_view", "Shedding")]
PAGES = [row for p in pages.PAGES for row in [Page(p.key, p.script, p.url_path)] + [
    Page(name, p.script, p.url_path, (param, label)) for name, key, param, label in VIEWS if key == p.key]]


@dataclass
class Measurement:
    page: str
    study_id: str
    study_kind: str  # "biggest" or "typical"
    enrolled: int
    cold_ms: float
    warm_ms: float
    sql_ms: float
    chart_bytes: int
    largest_chart_bytes: int
    charts: int
    browser_ms: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def page_to_sql(self) -> float | None:
        """Cold page time over its SQL time (the rest of the code should not dominate)."""
        return round(self.cold_ms / self.sql_ms, 2) if self.sql_ms else None


@dataclass(frozen=True)
class BenchStudy:
    study_id: str
    kind: str
    enrolled: int
    first_subject: str | None


def bench_studies(db: Database) -> list[BenchStudy]:
    """The study with the most enrolled subjects and the one with the median number (a typical one)."""
    rows = db.rows("bench_studies")
    if not rows:
        raise ValueError(f"{db.path} holds no study")
    biggest = rows[0]
    others = rows[1:] or rows
    typical = others[len(others) // 2]
    chosen = [BenchStudy(biggest["study_id"], "biggest", biggest["enrolled"], biggest["first_subject"])]
    if typical["study_id"] != biggest["study_id"]:
        chosen.append(BenchStudy(typical["study_id"], "typical", typical["enrolled"], typical["first_subject"]))
    return chosen


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def _query(page: Page, study: BenchStudy) -> dict[str, str]:
    """The link's parameters: the study, for the profile page an enrolled subject, and the view (tab)."""
    subject = {"subject": study.first_subject} if page.name == "subject" and study.first_subject else {}
    return {"study": study.study_id, **subject, **page.view_query}


@functools.cache
def _components():
    """The registry of installed Streamlit components, scanned once as a server does at start."""
    from streamlit.components.v2.component_manager import BidiComponentManager

    components = BidiComponentManager()
    components.discover_and_register_components(start_file_watching=False)
    return components


def _bench_viewer() -> dict:
    """The bench's signed-in identity: the admin's role (the one that opens every page, every subject), by the
    roles file. (The Escalation page then draws the decision log without its form.)"""
    roles = load_roles(settings.roles_file())
    group = next(g for g, role in roles.groups.items() if role == permissions.ADMIN)
    return {"is_logged_in": True, "iss": "urn:smc:bench", "sub": "bench", "name": "Bench", "email": "",
            "groups": [group], "auth_time": int(time.time())}


def _app(page: Page, study: BenchStudy):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(settings.APP_SCRIPT), default_timeout=600)
    at.user = _bench_viewer()
    # A new AppTest scans every installed package's metadata for components on its first run (0.2 s on this
    # machine). A server does that once at start, not per session, so it is no part of a page's cold time.
    at._bidi_component_manager = _components()
    at.query_params.update(_query(page, study))
    at.switch_page(page.script)
    return at


def time_page(page: Page, study: BenchStudy, runs: int) -> Measurement:
    """AppTest timings of one page for one study (SMC_DB must name the database)."""
    import streamlit as st

    cold, warm, sql = [], [], []
    for _ in range(runs):
        st.cache_resource.clear()  # the database handle too: the next run opens the file afresh
        at = _app(page, study)
        clock, started = QUERY_CLOCK.seconds, time.perf_counter()
        at.run()
        if page.url_path and any(t.value.endswith("· Overview") for t in at.title):
            # AppTest opened the default page instead (it does for the Import page): switch and time that.
            clock, started = QUERY_CLOCK.seconds, time.perf_counter()
            at.switch_page(page.script).run()
        cold.append((time.perf_counter() - started) * 1000)
        sql.append((QUERY_CLOCK.seconds - clock) * 1000)
        started = time.perf_counter()
        at.run()
        warm.append((time.perf_counter() - started) * 1000)
    sizes = [len(chart.proto.spec) for chart in at.get("plotly_chart")]
    errors = [e.message for e in at.exception] + [e.value for e in at.error]
    return Measurement(page.name, study.study_id, study.kind, study.enrolled, _median(cold), _median(warm),
                       _median(sql), sum(sizes), max(sizes, default=0), len(sizes), errors=errors)


def _page_url(base: str, page: Page, study: BenchStudy) -> str:
    return f"{base}/{page.url_path}?{urlencode(_query(page, study))}"


def _open(tab, url: str, charts: int, timeout_ms: float) -> float:
    """Milliseconds from navigation to ``charts`` charts drawn (or, with none, the page's title shown)."""
    started = time.perf_counter()
    tab.goto(url)
    if charts:
        tab.wait_for_function(
            f"[...document.querySelectorAll('{CHART}')].filter(c => c.querySelector('.main-svg')).length >= {charts}",
            timeout=timeout_ms)
    else:
        tab.wait_for_selector('[data-testid="stMain"] h1', timeout=timeout_ms)
    return (time.perf_counter() - started) * 1000


def time_browser(db_path: Path, measurements: list[Measurement], studies: list[BenchStudy], runs: int,
                 timeout_ms: float = 120_000) -> float:
    """Fill in browser_ms; return the server's resident MB after settings.BENCH_SESSIONS sessions opened every page."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    from smc.tools.demo_sign_in import demo_provider, sign_in
    from smc.tools.server import CHROMIUM_ARGS, ERRORS, chromium_path, resident_mb, serve

    by_name = {p.name: p for p in PAGES}
    by_id = {s.study_id: s for s in studies}
    with demo_provider() as issuer, serve(db_path, issuer=issuer) as (url, server), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        # Signed in once, through the demo provider's form, as the admin (every page); the other sessions share it.
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        tab = context.new_page()
        sign_in(tab, url, "admin")
        for m in measurements:
            target = _page_url(url, by_name[m.page], by_id[m.study_id])
            try:
                _open(tab, target, m.charts, timeout_ms)  # first visit loads the app's JavaScript; not counted
                m.browser_ms = _median([_open(tab, target, m.charts, timeout_ms) for _ in range(runs)])
            except PlaywrightTimeout:
                drawn = tab.locator(f"{CHART} .main-svg").count()
                m.errors.append(f"browser: {m.charts} charts not drawn in {timeout_ms / 1000:.0f} s ({drawn} svg)")
            if tab.locator(ERRORS).count():
                m.errors.append(f"browser: {tab.locator(ERRORS).first.inner_text()[:200]}")
        tab.close()
        # Server memory: settings.BENCH_SESSIONS sessions held open at once, each having drawn every page.
        state = context.storage_state()
        sessions = [browser.new_page(viewport={"width": 1440, "height": 1000}, storage_state=state)
                    for _ in range(settings.BENCH_SESSIONS)]
        for tab in sessions:
            for m in measurements:
                if m.browser_ms is not None:
                    _open(tab, _page_url(url, by_name[m.page], by_id[m.study_id]), m.charts, timeout_ms)
        memory = resident_mb(server.pid)
        browser.close()
    return round(memory, 1)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, str]:
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal:")), "0") if Path("/proc/meminfo").exists() else "0"
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return {"os": platform.platform(), "cpu": cpu, "cores": str(os.cpu_count()),
            "memory_gb": f"{int(memory) / 1024 / 1024:.1f}"}


@dataclass
class BenchResult:
    database: str
    sizes: dict[str, int]
    runs: int
    measurements: list[Measurement]
    server_mb: float | None
    machine: dict[str, str]
    versions: dict[str, str]
    when: str

    def over_budget(self) -> list[str]:
        """Each budget a measurement of the biggest study breaks, in words."""
        broken = []
        for m in self.measurements:
            if m.study_kind != "biggest":
                continue
            for key in ("warm_ms", "cold_ms", "browser_ms", "largest_chart_bytes", "page_to_sql"):
                value = getattr(m, key)
                if value is not None and value > BUDGETS[key]:
                    broken.append(f"{m.page}: {key} {value:,} > {BUDGETS[key]:,}")
        if self.server_mb is not None and self.server_mb > BUDGETS["server_mb"]:
            broken.append(f"server memory {self.server_mb:,} MB > {BUDGETS['server_mb']} MB")
        return broken

    def json_rows(self) -> list[dict]:
        return [dict(asdict(m), page_to_sql=m.page_to_sql) for m in self.measurements]

    def table(self) -> str:
        """The measurements as a markdown table."""
        head = ("| page | study | enrolled | cold ms | warm ms | SQL ms | page/SQL | charts | chart KB "
                "| largest chart KB | browser ms | errors |")
        lines = [head, "|" + "---|" * 12]
        for m in self.measurements:
            browser = "" if m.browser_ms is None else f"{m.browser_ms:,.0f}"
            ratio = "" if m.page_to_sql is None else f"{m.page_to_sql:.2f}"
            lines.append(f"| {m.page} | {m.study_id} ({m.study_kind}) | {m.enrolled:,} | {m.cold_ms:,.0f} "
                         f"| {m.warm_ms:,.0f} | {m.sql_ms:,.0f} | {ratio} | {m.charts} | {m.chart_bytes / 1000:,.0f} "
                         f"| {m.largest_chart_bytes / 1000:,.0f} | {browser} | {'; '.join(m.errors)[:120]} |")
        return "\n".join(lines)

    def markdown(self) -> str:
        sizes = ", ".join(f"{table} {n:,}" for table, n in self.sizes.items())
        memory = "not measured (run with --browser)" if self.server_mb is None else f"{self.server_mb:,} MB"
        machine_rows = "\n".join(f"| {k} | {v} |" for k, v in {**self.machine, **self.versions}.items())
        broken = self.over_budget()
        verdict = "All budgets hold for the biggest study." if not broken else \
            "Over budget (biggest study):\n" + "\n".join(f"- {b}" for b in broken)
        return (f"Measured {self.when} on `{self.database}` ({sizes}); median of {self.runs} runs.\n\n"
                f"{self.table()}\n\nServer memory after {settings.BENCH_SESSIONS} sessions opened every page: {memory}.\n\n"
                f"{verdict}\n\n| machine / package | |\n|---|---|\n{machine_rows}\n")


def run_bench(db_path: str | Path, runs: int = 5, browser: bool = False, pages: list[str] | None = None,
              progress=None) -> BenchResult:
    """Measure every page (or those named) for the biggest and a typical study of the database."""
    db_path = Path(db_path).resolve()
    os.environ["SMC_DB"] = str(db_path)  # the app under AppTest opens this file
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "no runtime" notes from clearing caches in bare mode
    db = Database(db_path)
    studies = bench_studies(db)
    sizes = {row["table_name"]: row["rows"] for row in db.rows("table_sizes")}
    chosen = [p for p in PAGES if pages is None or p.name in pages]
    measurements = []
    for study in studies:
        for page in chosen:
            measurements.append(time_page(page, study, runs))
            if progress:
                progress(measurements[-1])
    server_mb = time_browser(db_path, measurements, studies, runs) if browser else None
    return BenchResult(str(db_path), sizes, runs, measurements, server_mb, machine(), versions(),
                       dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"))


def write_json(result: BenchResult) -> str:
    return json.dumps(result.json_rows(), indent=1)
