"""AppTest: the Enrollment and Explore pages for every demo study and several
as-of dates, with counts recomputed by SQL on the contract tables (the report's
enrollment section against the same SQL: tests/unit/test_report.py)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from smc import settings
from smc.analysis import console
from smc.store.db import Database
from smc.ui import pages
from tests.helpers import COUNTS_SQL, STUDIES, array, as_of_dates, figures, run_app

SITES_SQL = """
SELECT coalesce(t.name, s.site_id), count(*), count(*) FILTER (WHERE enrollment_date <= $2)
FROM subjects s LEFT JOIN sites t USING (site_id)
WHERE study_id = $1 AND coalesce(screening_date, enrollment_date) <= $2 GROUP BY ALL
"""


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.parametrize("study_id", STUDIES)
def test_enrollment_page_matches_sql(app_env, sql, study_id):
    planned = sql("SELECT planned_enrollment FROM studies WHERE study_id = ?", study_id)[0][0]
    for as_of in as_of_dates(sql, study_id):
        screened, failures, enrolled, dosed = sql(COUNTS_SQL, study_id, as_of)[0]
        at = run_app(study_id, as_of, pages.script("enrollment"))
        assert (metric(at, "Screened"), metric(at, "Screen failures"), metric(at, "Dosed")) == (
            str(screened), str(failures), str(dosed))
        assert metric(at, "Enrolled / planned") == f"{enrolled} / {planned}"
        if not screened:
            assert any("Nobody screened" in i.value for i in at.info)
            continue
        charts = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
                  for c in at.get("plotly_chart")}
        cumulative = charts["Screened and enrolled over time, against the plan"]
        lines = {t["name"]: t for t in cumulative["data"]}
        assert array(lines["Screened"]["y"])[-1] == screened and array(lines["Enrolled"]["y"])[-1] == enrolled
        sites = {name: (n, e) for name, n, e in sql(SITES_SQL, study_id, as_of)}
        bars = {t["name"]: dict(zip(t["y"], array(t["x"]))) for t in charts["Subjects per site"]["data"]}
        assert {site: (bars["Screened"][site], bars["Enrolled"][site]) for site in sites} == sites
        status = charts[f"Subjects by status on {as_of:%Y-%m-%d}"]["data"][0]
        assert array(status["x"]).sum() == screened


def test_enrollment_page_projection_is_stated(app_env, sql):
    cut = as_of_dates(sql, "IDOV-SAFE")[0]
    at = run_app("IDOV-SAFE", cut, pages.script("enrollment"))
    recent = sql("SELECT count(*) FROM subjects WHERE study_id = 'IDOV-SAFE' AND enrollment_date <= ? "
                 "AND enrollment_date > ? - INTERVAL 90 DAY", cut, cut)[0][0]
    text = " ".join(c.value for c in at.caption)
    assert f"{recent} enrolled in the last 90 days" in text
    portfolio = next(df.value for df in at.dataframe if "levels_opened" in df.value.columns)
    assert sorted(portfolio["study_id"]) == sorted(STUDIES)


def run_sql(at, text: str):
    at.text_area(key="sql").set_value(text)
    at.button(key="run_sql").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.parametrize("study_id", STUDIES)
def test_explore_console_runs_a_select_and_charts_it(app_env, sql, study_id):
    cut = as_of_dates(sql, study_id)[0]
    at = run_app(study_id, cut, pages.script("explore"))
    run_sql(at, f"SELECT dose_level, count(*) AS n FROM subjects WHERE study_id = '{study_id}' "
                "AND enrollment_date IS NOT NULL GROUP BY ALL ORDER BY 1")
    expected = sql("SELECT dose_level, count(*) FROM subjects WHERE study_id = ? AND enrollment_date IS NOT NULL "
                   "GROUP BY ALL ORDER BY 1", study_id)
    result = next(df.value for df in at.dataframe if list(df.value.columns) == ["dose_level", "n"])
    assert list(zip(result["dose_level"], result["n"])) == expected
    assert any(f"{len(expected)} row" in c.value for c in at.caption)
    at.selectbox(key="chart_y").set_value("n").run()
    chart = next(f for f in figures(at) if f["layout"]["title"]["text"] == "n by dose_level")
    assert array(chart["data"][0]["y"]).sum() == sum(n for _, n in expected)


@pytest.mark.parametrize("text, words", [
    ("DROP TABLE subjects", "Only one SELECT"),
    ("SELECT 1; DELETE FROM subjects", "2 statements"),
    ("COPY subjects TO '/tmp/leak.csv'", "Only one SELECT"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Reading files is not allowed"),
    ("SELECT * FROM '/etc/passwd'", "does not exist"),
    ("SELEKT 1", "Syntax error"),
    ("", "empty"),
])
def test_explore_console_refuses_with_a_message(app_env, sql, text, words):
    at = run_app("IX001", as_of_dates(sql, "IX001")[0], pages.script("explore"))
    run_sql(at, text)
    assert any(words in e.value for e in at.error), [e.value for e in at.error]
    run_sql(at, "SELECT count(*) AS n FROM subjects")
    assert not at.error
    assert next(df.value for df in at.dataframe if list(df.value.columns) == ["n"])["n"][0] == sql(
        "SELECT count(*) FROM subjects")[0][0]


def test_explore_console_asks_to_wait_while_every_slot_is_taken(app_env, sql):
    """A whole meeting running queries at once: past console_concurrent_queries the next is told to wait (a
    warning, not an error), and runs once a slot is free."""
    cap = settings.CONSOLE_CONCURRENT_QUERIES
    running = [threading.Thread(target=console.run_console, args=(Database(app_env), "SELECT sleep_ms(3000) AS s"),
                                kwargs={"time_limit": 10}) for _ in range(cap)]
    for thread in running:
        thread.start()
    deadline = time.monotonic() + 10
    while console.SLOTS.running < cap and time.monotonic() < deadline:
        time.sleep(0.01)
    at = run_app("IX001", as_of_dates(sql, "IX001")[0], pages.script("explore"))
    run_sql(at, "SELECT count(*) AS n FROM subjects")
    assert not at.error
    assert any("wait" in w.value.lower() for w in at.warning), [w.value for w in at.warning]
    assert not any(list(df.value.columns) == ["n"] for df in at.dataframe)
    for thread in running:
        thread.join(timeout=30)
    run_sql(at, "SELECT count(*) AS n FROM subjects")
    assert next(df.value for df in at.dataframe if list(df.value.columns) == ["n"])["n"][0] == sql(
        "SELECT count(*) FROM subjects")[0][0]


def test_explore_example_fills_the_box(app_env, sql):
    at = run_app("IDOV-SAFE", as_of_dates(sql, "IDOV-SAFE")[0], pages.script("explore"))
    at.button(key="example_dlts_by_level").click().run()
    assert "dlt = 'Y'" in at.text_area(key="sql").value
    at.button(key="run_sql").click().run()
    result = next(df.value for df in at.dataframe if "subjects_with_dlt" in df.value.columns)
    expected = sql("SELECT s.study_id, s.dose_level, count(DISTINCT a.subject_id) FROM adverse_events a "
                   "JOIN subjects s USING (study_id, subject_id) WHERE a.dlt = 'Y' GROUP BY ALL ORDER BY 1, 2")
    assert list(zip(result["study_id"], result["level"], result["subjects_with_dlt"])) == expected


@pytest.mark.parametrize("study_id", STUDIES)
def test_explore_pivot_counts_subjects_by_level_and_phase(app_env, sql, study_id):
    at = run_app(study_id, as_of_dates(sql, study_id)[0], pages.script("explore"))
    wide = next(df.value for df in at.dataframe if "dose_level" in df.value.columns and "n" not in df.value.columns)
    expected = sql("SELECT coalesce(CAST(dose_level AS VARCHAR), '(empty)'), phase, count(*) FROM subjects "
                   "WHERE study_id = ? GROUP BY ALL", study_id)
    got = {(str(r["dose_level"]), phase): r[phase] for _, r in wide.iterrows() for phase in wide.columns[1:]
           if r[phase] == r[phase]}
    assert got == {(level, phase): n for level, phase, n in expected}
    at.selectbox(key="pivot_table").set_value("adverse_events").run()
    at.selectbox(key="pivot_rows_adverse_events").set_value("grade").run()
    at.selectbox(key="pivot_columns_adverse_events").set_value("(none)").run()
    at.selectbox(key="pivot_aggregate").set_value("subjects").run()
    wide = next(df.value for df in at.dataframe if "Subjects (distinct)" in df.value.columns)
    assert list(zip(wide["grade"], wide["Subjects (distinct)"])) == sql(
        "SELECT grade, count(DISTINCT subject_id) FROM adverse_events WHERE study_id = ? GROUP BY 1 ORDER BY 1",
        study_id)
    assert not at.error
