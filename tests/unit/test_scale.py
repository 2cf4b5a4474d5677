"""The portfolio-scale demo (build-demo --scale N), contract text conversion at scale, and a smoke run of
``python -m smc bench`` on the small demo so the benchmark does not rot.

Expected sizes are the generator's stated arithmetic worked by hand (scale 2: one portfolio study of
LARGEST_PER_SCALE × 2 = 40 enrolled subjects; scale 100: round(0.37 × 100) = 37 studies, the largest
2,000), and the bench's choice of studies is checked against SQL counts.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import runpy
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest
import streamlit as st

from smc.demo.build import build_demo, demo_tables
from smc.demo.portfolio import portfolio_specs
from smc.ingest import load
from smc.tools import bench
from smc.ui import pages
from tests.helpers import ROOT


def test_scale_100_asks_for_37_studies_and_one_of_2000_subjects():
    specs = portfolio_specs(100)
    assert len(specs) == 37
    enrolled = [sum(len(f) for f in s.script.values()) + s.expansion[1] for s in specs]
    assert enrolled[0] == 2000
    assert all(e == enrolled[1] for e in enrolled[1:])
    # 2,000 + 36 others make about 10,000 with the seed trials.
    assert 9_800 <= sum(enrolled) + 44 <= 10_200
    assert len({s.study["study_id"] for s in specs}) == 37
    assert portfolio_specs(1) == []


@pytest.fixture(scope="module")
def scale_2(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "scale2.duckdb"
    build_demo(path, scale=2)  # raises ImportFailed if the validator refuses anything
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def test_scale_2_adds_one_portfolio_study_of_40_enrolled_subjects(scale_2):
    rows = dict(scale_2.execute("SELECT study_id, count(enrollment_date) FROM subjects GROUP BY 1").fetchall())
    assert set(rows) == {"IDOV-SAFE", "BIOTTT001", "IX001", "IDOV-SAFE-P01"}
    assert rows["IDOV-SAFE-P01"] == 40
    # Its escalation ends in an MTD (level 5, as scripted) and the expansion enrolls there.
    by_phase = dict(scale_2.execute("""SELECT phase, count(*) FROM subjects WHERE study_id = 'IDOV-SAFE-P01'
                                       AND enrollment_date IS NOT NULL GROUP BY 1""").fetchall())
    assert by_phase == {"escalation": 13, "expansion": 27}
    assert scale_2.execute("""SELECT DISTINCT dose_level FROM subjects WHERE study_id = 'IDOV-SAFE-P01'
                              AND phase = 'expansion'""").fetchall() == [(5,)]


def test_portfolio_data_cuts_are_in_the_past_and_its_records_inside_them(scale_2):
    cut = scale_2.execute("SELECT data_cut_date FROM studies WHERE study_id = 'IDOV-SAFE-P01'").fetchone()[0]
    assert cut < dt.date(2026, 11, 21)
    later = scale_2.execute("""SELECT count(*) FROM lab_results WHERE study_id = 'IDOV-SAFE-P01'
                               AND collected_at::DATE > ?""", [cut]).fetchone()[0]
    assert later == 0


def test_portfolio_infusion_reactions_recur_with_each_course(scale_2):
    # A subject treated for several 21-day courses has pyrexia in more than one course.
    recurring = scale_2.execute("""
        SELECT count(*) FROM (
            SELECT subject_id FROM adverse_events WHERE study_id = 'IDOV-SAFE-P01' AND term = 'Pyrexia'
            GROUP BY subject_id HAVING count(*) > 1)""").fetchone()[0]
    assert recurring > 0
    # ...but never a grade ≥3 outside the scripted DLTs in the first course of the expansion.
    assert scale_2.execute("""SELECT count(*) FROM adverse_events a JOIN subjects s USING (study_id, subject_id)
                              WHERE a.study_id = 'IDOV-SAFE-P01' AND a.dlt = 'Y' AND s.phase = 'expansion'
                           """).fetchone()[0] == 0


def test_the_seed_trials_are_the_same_at_any_scale():
    plain, scaled = demo_tables(scale=1), demo_tables(scale=2)
    for table, frame in plain.items():
        if table == "sites":
            continue
        seeds = scaled[table][scaled[table]["study_id"].isin(frame["study_id"])].reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, seeds[frame.columns], check_dtype=False)


def _reference_text(value) -> str:
    """Contract text of one Python value, written from the contract's rules (empty, ISO dates, no '.0')."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.strftime("%Y-%m-%dT%H:%M:%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m-%d")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_as_text_gives_each_cell_its_contract_text():
    frame = pd.DataFrame({
        "text": ["a", None, "c"], "date": [dt.date(2024, 1, 2), None, dt.date(2024, 12, 31)],
        "stamp": pd.to_datetime(["2024-01-02 08:00:00", None, "2024-03-04 23:59:59"]),
        "number": [1.0, float("nan"), 0.25], "count": [3, 4, 5], "big": [3e10, 1e9, 7.5e8],
    })
    expected = frame.astype(object).map(_reference_text)
    expected["count"] = ["3", "4", "5"]
    assert load.as_text(frame).equals(expected)
    assert load.as_text(frame).loc[1].tolist() == ["", "", "", "", "4", "1000000000"]


# --------------------------------------------------------------------------- bench


class Navigated(Exception):
    """Raised by the stand-in st.navigation: app.py stops there, before it opens a database."""


def app_navigation(monkeypatch) -> list[str]:
    """The page scripts app.py hands st.navigation, in order (app.py run with st.Page, st.navigation and the
    sign-in gate stood in for, so no Streamlit runtime is needed)."""
    from smc.ui import sign_in

    handed: list[str] = []

    def navigation(entries, *args, **kwargs):
        handed.extend(entries)
        raise Navigated

    monkeypatch.setattr(st, "set_page_config", lambda *args, **kwargs: None)
    monkeypatch.setattr(st, "Page", lambda page, *args, **kwargs: page)
    monkeypatch.setattr(st, "navigation", navigation)
    monkeypatch.setattr(sign_in, "require_viewer", lambda log_file: None)
    with pytest.raises(Navigated):
        runpy.run_path(str(ROOT / "app.py"))
    return handed


def test_bench_pages_are_the_apps_pages(monkeypatch):
    """app.py's navigation and the bench (smc.tools.bench.PAGES) cover exactly the page registry's scripts
    (smc.ui.pages.PAGES), each once in the app: every page is benchmarked."""
    registry = [p.script for p in pages.PAGES]
    assert all((ROOT / script).is_file() for script in registry)
    assert app_navigation(monkeypatch) == registry
    assert {p.script for p in bench.PAGES} == set(registry)


def test_bench_picks_the_biggest_and_the_median_study(sql, demo_db):
    from smc.store.db import Database

    enrolled = dict(sql("SELECT study_id, count(enrollment_date) FROM subjects GROUP BY 1"))
    chosen = bench.bench_studies(Database(demo_db))
    ranked = sorted(enrolled, key=lambda s: (-enrolled[s], s))
    assert [(s.study_id, s.kind, s.enrolled) for s in chosen] == [
        (ranked[0], "biggest", enrolled[ranked[0]]), (ranked[2], "typical", enrolled[ranked[2]])]


# Charts each page draws for a study with enrolled subjects (as the browser tests expect).
CHARTS = {"overview": 1, "escalation": 2, "safety": 1, "labs": 2, "efficacy": 1, "efficacy-time": 2,
          "efficacy-markers": 2, "survival": 1, "enrollment": 3, "subject": 2}


def test_bench_smoke_on_the_small_demo(demo_db, sql):
    result = bench.run_bench(demo_db, runs=1)
    assert {(m.page, m.study_kind) for m in result.measurements} == {
        (p.name, kind) for p in bench.PAGES for kind in ("biggest", "typical")}
    for m in result.measurements:
        assert m.errors == [], (m.page, m.study_id, m.errors)
        assert m.cold_ms > 0 and m.warm_ms > 0 and m.sql_ms > 0, m
        assert m.chart_bytes >= m.largest_chart_bytes >= 0
        if m.page in CHARTS:
            assert m.charts >= CHARTS[m.page], (m.page, m.study_id, m.charts)
            assert m.largest_chart_bytes > 1000
    sizes = dict(sql("SELECT 'lab_results', count(*) FROM lab_results UNION ALL "
                     "SELECT 'subjects', count(*) FROM subjects"))
    assert result.sizes["lab_results"] == sizes["lab_results"] and result.sizes["subjects"] == sizes["subjects"]
    text = result.markdown()
    assert text.count("\n| overview |") == 2 and "duckdb" in text and "cores" in text


def test_bench_command_writes_json_and_markdown(demo_db, tmp_path):
    out = tmp_path / "bench.md"
    done = subprocess.run([sys.executable, "-m", "smc", "bench", "--db", str(demo_db), "--runs", "1",
                           "--pages", "overview,survival", "--json", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 4 and {r["page"] for r in rows} == {"overview", "survival"}
    for row in rows:
        assert {"page", "study_id", "cold_ms", "warm_ms", "sql_ms", "chart_bytes", "browser_ms"} <= set(row)
        assert row["browser_ms"] is None  # not asked for
    assert "| survival |" in out.read_text()


@pytest.mark.parametrize("args, message", [
    (["--db", "/nonexistent/x.duckdb"], "no database"),
    (["--pages", "overview,nosuchpage"], "no page named nosuchpage"),
    (["--runs", "0"], "at least 1"),
])
def test_bench_command_refuses_bad_arguments(demo_db, args, message):
    argv = [sys.executable, "-m", "smc", "bench", *(["--db", str(demo_db)] if "--db" not in args else []), *args]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode in (1, 2) and message in done.stderr


def test_subject_lines_break_between_subjects():
    from smc.charts.style import subject_lines

    points = pd.DataFrame({"subject_id": ["a", "a", "b", "c", "c"], "day": [0, 7, 0, 0, 14],
                           "value": [1.0, 2.0, 3.0, 4.0, 5.0]})
    lines = subject_lines(points)
    assert lines["subject_id"][[0, 1, 3, 5, 6]].tolist() == ["a", "a", "b", "c", "c"]
    assert lines["subject_id"][[2, 4, 7]].isna().all()
    assert np.isnan(lines["value"].to_numpy(float)[[2, 4, 7]]).all()
    assert lines["value"].dropna().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert len(lines) == 8
