"""What every page shares: the database, the sidebar (study and "as of"
date, kept in the URL), the data-cut banner, and error display.

Pages call :func:`context` and draw; they never compute a clinical figure.
"""
from __future__ import annotations

import datetime as dt
import html
import importlib
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from smc import settings
from smc.access import audit, permissions
from smc.access.identity import Identity, load_roles
from smc.access.scope import SubjectScope, subject_scope
from smc.decision_log import reviews
from smc.outputs.csv_export import safe_csv
from smc.store import cuts
from smc.store.cuts import Cut, Registry
from smc.store.db import Database
from smc.store.study import Study, default_as_of, load_study, study_ids
from smc.ui import sign_in
from smc.ui.pages import SUBJECT_PAGE
from smc.ui.text import md

log = logging.getLogger("smc")
EARLIEST_AS_OF = dt.date(2000, 1, 1)


@dataclass(frozen=True)
class PageContext:
    db: Database
    study: Study
    as_of: dt.date
    viewer: Identity
    scope: SubjectScope  # whose subject-level rows the viewer may see in this study
    access_log: Path
    cut: Cut | None = None  # the data cut shown (None only in tests that build a context by hand)
    since: Cut | None = None  # the cut "what changed" compares with: the last review's, else the previous one
    since_db: Database | None = None

    def may(self, action: str) -> bool:
        return permissions.may(self.viewer.role, action)


def database_path() -> Path:
    """The single file served (SMC_DB), else the registry's latest cut."""
    single = settings.single_db()
    if single:
        return single
    latest = open_registry().latest
    return Path(latest.path) if latest else settings.cuts_dir() / "none.duckdb"


def serving_registry() -> Path | None:
    """The registry folder the app serves, or None when it serves one file (SMC_DB)."""
    return None if settings.single_db() else settings.cuts_dir()


def access_log_path() -> Path:
    single = settings.single_db()
    return audit.log_path(single) if single else settings.cuts_dir() / cuts.ACCESS_FILE


def may_open(viewer: Identity, page_key: str) -> bool:
    return permissions.may_open(viewer.role, page_key)


def page_links(viewer: Identity, routed: dict[str, st.Page]) -> None:
    """The sidebar's page list: the pages this viewer's role may open, in the app's order."""
    with st.sidebar:
        for key, page in routed.items():
            if may_open(viewer, key) and key != "subject":  # the profile opens from a subject, not the list
                st.page_link(page)


def imports_dir() -> Path:
    """Where the Import page writes new databases: ``imports/`` beside the served one."""
    return settings.import_dir()


@st.cache_resource(show_spinner=False, max_entries=settings.CUT_CACHE_ENTRIES)
def _database(path: str) -> Database:
    return Database(path)


def database(cut: Cut) -> Database:
    """One cut's read-only database, shared by every session; at most ``cut_cache_entries`` are kept open."""
    return _database(cut.path)


# Loaded data kept per loader: entries (study × as-of date × data cut file) and seconds. Every session reads the
# same objects (an 18 MB swimlane result took 0.23 s to unpickle on each rerun as a copy): pages and summaries only
# read them, pandas copy-on-write (smc/__init__.py) keeps a frame derived from them from writing back, and
# tests/pages/test_shared_data.py checks that every page leaves them as loaded.


def _qualified_name(function) -> str:
    """A module-level function by name: what the caches key on, and :func:`_function` finds again."""
    return f"{function.__module__}.{function.__qualname__}"


def _function(qualified_name: str):
    module, name = qualified_name.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def _data_cut_key(db: Database) -> tuple:
    """A database by its path and file identity: a new data cut swapped in is a new key."""
    return str(db.path), db.file_identity()


@st.cache_resource(show_spinner=False, max_entries=settings.LOADER_CACHE_ENTRIES, ttl=settings.LOADER_CACHE_TTL_S,
                   hash_funcs={Database: _data_cut_key, Study: repr})
def _cached_call(loader: str, db: Database, args: tuple):
    return _function(loader)(db, *args)


def cached(loader, db: Database, *args):
    """``loader(db, *args)`` computed once per data cut and arguments across sessions and reruns, shared, not
    copied: callers only read it. ``loader`` is a module-level function of :mod:`smc`; ``args`` are a Study,
    dates, texts, numbers or frozen dataclasses of them (a filter choice)."""
    return _cached_call(_qualified_name(loader), db, args)


def _frame_identity(frame: pd.DataFrame | pd.Series) -> tuple:
    """A frame by all of its values. Streamlit's own hash samples 10,000 rows of a frame past 50,000, so two
    data cuts differing elsewhere could share a chart; this reads every row (about 1 ms per 10,000)."""
    columns = (frame.name,) if isinstance(frame, pd.Series) else tuple(frame.columns)
    dtypes = (str(frame.dtype),) if isinstance(frame, pd.Series) else tuple(map(str, frame.dtypes))
    try:
        values = pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes()
    except TypeError:  # cells pandas cannot hash (lists): the pickled frame, every row still
        values = pickle.dumps(frame, protocol=pickle.HIGHEST_PROTOCOL)
    return columns, dtypes, values


# Results kept of pure functions of loaded data (all functions together): charts and summaries. A 2,000-subject
# figure holds a few MB, so a few dozen stay well inside the server's memory budget.


@st.cache_resource(show_spinner=False, max_entries=settings.SHARED_CACHE_ENTRIES, ttl=settings.LOADER_CACHE_TTL_S,
                   hash_funcs={pd.DataFrame: _frame_identity, pd.Series: _frame_identity, Study: repr})
def _shared_result(function: str, args: tuple, kwargs: tuple):
    return _function(function)(*args, **dict(kwargs))


def shared(function, *args, **kwargs):
    """``function(*args, **kwargs)``, a pure module-level function of already-loaded data (a summary table, a
    test statistic), computed once per distinct input across sessions and reruns. The result itself is shared,
    not copied: callers only read it."""
    return _shared_result(_qualified_name(function), args, tuple(sorted(kwargs.items())))


def figure(builder, *args, **kwargs) -> go.Figure:
    """``builder(*args, **kwargs)``, a pure chart builder of :mod:`smc.charts`, built once per distinct input
    (:func:`shared`): building a 2,000-subject chart takes longer than the rest of a rerun. st.plotly_chart only
    reads the figure."""
    return shared(builder, *args, **kwargs)


def open_registry() -> Registry:
    """The cuts the app serves: the one file SMC_DB names, else the registry folder (the demo's three cuts are
    built first if the default folder has none)."""
    single = settings.single_db()
    if single:
        if not single.is_file():
            st.error(f"No database at {md(single)} (set by SMC_DB). Build one with "
                     "`python -m smc import --csv DIR --db` and that path.")
            st.stop()
        return Registry.of_file(single)
    folder = settings.cuts_dir()
    registry = Registry.of_folder(folder)
    if not registry.cuts:
        if folder.resolve() != settings.DEMO_CUTS.resolve():
            st.error(f"No data cut in {md(folder)} (set by SMC_CUTS). Add one with "
                     "`python -m smc import --csv DIR --cuts` and that folder.")
            st.stop()
        from smc.demo.build import build_demo_cuts
        with st.spinner("Building the demo's data cuts (first start only)…"):
            build_demo_cuts(folder)
        registry = Registry.of_folder(folder)
    return registry


def _parse_date(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _pick_cut(registry: Registry) -> Cut:
    """The sidebar's data cut (the latest unless the link names another), in sync with ``?cut=``."""
    if len(registry.cuts) == 1:
        return registry.cuts[0]
    by_id = {c.short_id: c for c in registry.cuts}
    if "cut" not in st.session_state:
        wanted = st.query_params.get("cut")
        found = registry.find(wanted)
        if wanted and found is None:
            st.sidebar.warning(f'Data cut "{md(wanted)}" from the link is not in the registry; showing the latest.')
        st.session_state["cut"] = (found or registry.latest).short_id
    ids = list(reversed(by_id))  # newest first
    short = st.sidebar.selectbox("Data cut", ids, key="cut", format_func=lambda i: by_id[i].title,
                                 help="Each transfer of the data is a cut of its own, kept as it was; the latest "
                                      "is shown unless you pick another.")
    return by_id[short]


def _pick_since(registry: Registry, cut: Cut, study_id: str) -> Cut | None:
    """The cut "what changed" compares with (``?since=``): by default the one the last SMC decision before this
    cut was taken on, else the previous cut."""
    earlier = registry.earlier_with(cut, study_id)
    if not earlier:
        return None
    reviewed = reviews.last_review_cut(registry, cut, study_id)
    default = reviewed or earlier[-1]
    by_id = {c.short_id: c for c in earlier}
    key = f"since::{study_id}::{cut.short_id}"
    if key not in st.session_state:
        wanted = registry.find(st.query_params.get("since"))
        st.session_state[key] = (wanted if wanted in earlier else default).short_id
    short = st.sidebar.selectbox(
        "Changes since", list(reversed(by_id)), key=key, format_func=lambda i: by_id[i].title,
        help="New and changed records are marked against this cut: by default the one the SMC last decided on.")
    if reviewed is not None and reviewed.short_id == short:
        st.sidebar.caption("The cut of the SMC's last decision on this study.")
    return by_id[short]


def sidebar(registry: Registry, viewer: Identity, access_log: Path) -> PageContext:
    """Data cut, study picker (the studies the viewer's role may see), as-of date and the cut changes are
    compared with, in sync with ``?cut=…&study=…&as_of=…&since=…``."""
    cut = _pick_cut(registry)
    db = database(cut)
    every = study_ids(db)
    roles = load_roles(settings.roles_file())
    ids = [s for s in every if roles.may_see_study(viewer.role, s)]
    if not ids:
        sign_in.no_access(access_log, viewer, "studies", f"the {viewer.role_title} role may see none of the studies "
                          f"in {db.path.name}.")
    params = st.query_params
    wanted = params.get("study")
    if wanted in every and wanted not in ids:
        sign_in.no_access(access_log, viewer, f"study {wanted}", f"the {viewer.role_title} role may not see study "
                          f"{wanted}.")
    if st.session_state.get("study") not in ids:
        if wanted and wanted not in ids:
            st.sidebar.warning(f'Study "{md(wanted)}" from the link is not in this data cut; showing {md(ids[0])}.')
        st.session_state["study"] = wanted if wanted in ids else ids[0]
    study_id = st.sidebar.selectbox("Study", ids, key="study")
    study = load_study(db, study_id)
    cut_date = default_as_of(study)

    key = f"as_of::{study_id}::{cut.short_id}"
    if key not in st.session_state:
        # The link's date, unless it was the date of another study or cut (one picked in the sidebar since).
        same = params.get("study", study_id) == study_id and params.get("cut", cut.short_id) in (
            cut.short_id, cut.sha256)
        link_date = params.get("as_of") if same else None
        asked = _parse_date(link_date)
        if link_date and asked is None:
            st.sidebar.warning(f'"{md(params.get("as_of"))}" in the link is not a date (YYYY-MM-DD); '
                               f"showing the data cut {cut_date}.")
        elif asked and asked > cut_date:
            st.sidebar.warning(f"{asked} is after the data cut; showing the data cut {cut_date}.")
        elif asked and asked < EARLIEST_AS_OF:
            st.sidebar.warning(f"{asked} is before {EARLIEST_AS_OF}, the earliest date the app shows; showing "
                               f"{EARLIEST_AS_OF}.")
        st.session_state[key] = min(max(asked, EARLIEST_AS_OF), cut_date) if asked else cut_date
    as_of = st.sidebar.date_input(
        "As of", key=key, min_value=EARLIEST_AS_OF, max_value=cut_date, format="YYYY-MM-DD",
        help="Everything shown is what had happened by this date. It cannot pass the data cut: "
             "nothing after the cut has been collected.")
    since = _pick_since(registry, cut, study_id)
    link = {"study": study_id, "as_of": as_of.isoformat()}
    if len(registry.cuts) > 1:
        link["cut"] = cut.short_id
        if since is not None:
            link["since"] = since.short_id
    if since is None:
        st.query_params.pop("since", None)
    st.query_params.update(link)
    st.sidebar.caption(f"Data cut {cut_date:%Y-%m-%d} · loaded {md(db.loaded_at)} · sha256 {cut.sha256[:12]}…")
    scope = subject_scope(db, study_id, viewer)
    return PageContext(db, study, as_of, viewer, scope, access_log, cut, since,
                       database(since) if since is not None else None)


def banner(ctx: PageContext) -> None:
    cut = default_as_of(ctx.study)
    if ctx.as_of < cut:
        st.info(f"Viewing **{md(ctx.study.study_id)}** as of **{ctx.as_of:%Y-%m-%d}**, before the data cut "
                f"{cut:%Y-%m-%d}: later events are hidden.", icon="🕰️")


def subject_rows(ctx: PageContext, frame: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame:
    """The rows of a subject-level view the viewer may see, with a caption when some were left out."""
    shown = ctx.scope.rows(frame, column)
    if len(shown) < len(frame):
        total = frame[column].nunique()
        st.caption(f":material/visibility_off: Subject-level rows: {md(ctx.scope.description)} "
                   f"({shown[column].nunique()} of {total} subject{'s' if total != 1 else ''}).")
    return shown


def subject_view(ctx: PageContext, frame: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame | None:
    """One subject-level section's rows for this viewer (:func:`subject_rows`, with its caption), or None when the
    section draws nothing: an info line when the scope admits nobody, the caption alone when every row was left
    out."""
    if ctx.scope.nothing:
        if permissions.subject_scope(ctx.viewer.role) == permissions.NO_SUBJECTS:
            text = f"Subject-level data are not shown for the {md(ctx.viewer.role_title)} role."
        else:
            text = (f"Subject-level data are not shown: no subject of {md(ctx.study.study_id)} is one you may see "
                    f"({md(ctx.scope.description)}).")
        st.info(text, icon=":material/visibility_off:")
        return None
    shown = subject_rows(ctx, frame, column)
    return None if shown.empty and not frame.empty else shown


def refuse(ctx: PageContext, what: str, why: str) -> None:
    """A plain, logged "no access" for something this viewer may not see (a subject of another site from a link),
    and stop: nothing of it is drawn or sent."""
    sign_in.no_access(ctx.access_log, ctx.viewer, f"{ctx.study.study_id}: {what}", why)


def set_context(ctx: PageContext) -> None:
    st.session_state["_context"] = ctx


def context() -> PageContext:
    return st.session_state["_context"]


def run_page(page) -> None:
    """Run a page; an unexpected error becomes a message, never a traceback."""
    try:
        page.run()
    except Exception as exc:  # noqa: BLE001 - the UI must keep serving
        log.exception("page %s failed", getattr(page, "title", page))
        st.error(f"This page could not be drawn: {type(exc).__name__}: {md(exc)}. "
                 "The error was logged; other pages still work.")




def subject_url(ctx: PageContext, subject_id: str) -> str:
    """A shareable link to a subject's profile (relative, so it works under any host or base path). The path
    is ours and every value is percent-encoded, so no id can give the link a scheme (``javascript:``), a host or
    another parameter."""
    query = urlencode({"study": ctx.study.study_id, "as_of": ctx.as_of.isoformat(), "subject": subject_id})
    return f"{SUBJECT_PAGE}?{query}"


def open_clicked_subject(event, ctx: PageContext) -> None:
    """Open the profile of the subject whose chart point was clicked (customdata[0], or customdata itself: the
    id as plotly text, which charts.style.plain escaped and html.unescape gives back)."""
    points = (event or {}).get("selection", {}).get("points", [])
    clicked = next((p["customdata"][0] if isinstance(p["customdata"], list) else p["customdata"]
                    for p in points if p.get("customdata")), None)
    if clicked:
        st.switch_page("views/subject.py", query_params={"study": ctx.study.study_id, "as_of": ctx.as_of.isoformat(),
                                                          "subject": html.unescape(str(clicked))})


def with_subject_links(frame: pd.DataFrame, ctx: PageContext, column: str = "subject_id") -> pd.DataFrame:
    """The subject column as links to each subject's profile (once per subject, not per row); a row of no subject
    (a study-level record) stays empty."""
    links = {subject: None if pd.isna(subject) else subject_url(ctx, subject) for subject in frame[column].unique()}
    return frame.assign(**{column: frame[column].map(links)})


def subject_link_column(label: str = "Subject") -> st.column_config.LinkColumn:
    """A column of :func:`subject_url` links showing the subject id as the link encodes it (an id with
    characters a URL escapes shows them percent-encoded: the grid draws text, never markup)."""
    return st.column_config.LinkColumn(label, display_text=r"[?&]subject=([^&]*)$", help="Opens the subject profile")


def lazy_tabs(views: dict[str, Callable[[], None]], key: str) -> None:
    """A tab per view of which only the open one runs and is drawn, the open one kept in the link as
    ``?<key>=<label>``: the four or five charts of a 2,000-subject study's Efficacy or Biomarkers page took
    3.6-4.7 s to draw together in the browser."""
    for tab, draw in zip(st.tabs(list(views), key=key, on_change="rerun", bind="query-params"), views.values()):
        with tab:
            if tab.open:
                draw()


def paged(frame: pd.DataFrame, key: str, noun: str = "subjects", size: int = settings.CHART_PAGE_LANES) -> pd.DataFrame:
    """One page of ``size`` rows, with a picker when there are more."""
    if len(frame) <= size:
        return frame
    starts = range(0, len(frame), size)
    labels = [f"{noun.capitalize()} {start + 1}–{min(start + size, len(frame))} of {len(frame)}" for start in starts]
    page = st.selectbox("Show", range(len(labels)), format_func=labels.__getitem__, key=key)
    return frame.iloc[page * size:(page + 1) * size]


def download_csv(frame: pd.DataFrame, file_name: str, key: str, label: str = "Download CSV") -> None:
    """A CSV download written only when clicked (a 60,000-row listing would otherwise cost every rerun), with
    text a spreadsheet could run as a formula neutralised (``csv_export.safe_csv``)."""
    st.download_button(label, lambda: safe_csv(frame), file_name=file_name,
                       mime="text/csv", key=key, icon=":material/download:", on_click="ignore")
