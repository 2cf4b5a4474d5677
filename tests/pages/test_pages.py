"""AppTest: every page runs for every demo study at several as-of dates, and the
numbers it shows agree with SQL on the contract tables."""
from __future__ import annotations

import datetime as dt

import pytest

from smc.ui import pages
from tests.helpers import (
    STUDIES,
    app_test,
    as_of_dates,
    enrolled_per_level,
    figures,
    in_window_dlt_subjects,
    run_app,
)

PAGES = (pages.script("overview"), pages.script("escalation"))


@pytest.mark.parametrize("study_id", STUDIES)
def test_overview_counts_match_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of)
        assert at.title[0].value == f"{study_id} · Overview"
        metrics = {m.label: m.value for m in at.metric}
        enrolled = sql("SELECT count(*) FROM subjects WHERE study_id = ? AND enrollment_date <= ?",
                       study_id, as_of)[0][0]
        planned = sql("SELECT planned_enrollment FROM studies WHERE study_id = ?", study_id)[0][0]
        assert metrics["Enrolled / planned"] == f"{enrolled} / {planned}"
        deaths = sql("SELECT count(*) FROM subjects WHERE study_id = ? AND death_date <= ?", study_id, as_of)[0][0]
        assert metrics["Deaths"] == str(deaths)
        ladder = at.dataframe[0].value  # the dose ladder
        esc = enrolled_per_level(sql, study_id, as_of, "escalation")
        exp = enrolled_per_level(sql, study_id, as_of, "expansion")
        dlts = in_window_dlt_subjects(sql, study_id, as_of)
        first_stage_dlts = next(c for c in ladder.columns if c.startswith("DLTs"))  # "DLTs (monotherapy)" if staged
        for row in ladder.to_dict("records"):
            assert row["Escalation"] == esc.get(row["Level"], 0)
            assert row["Expansion"] == exp.get(row["Level"], 0)
            assert row[first_stage_dlts] == dlts.get(row["Level"], 0)
        (figure,) = figures(at)
        assert figure["layout"]["title"]["text"] == "Subjects per dose level and phase"
        assert "Dose level" in figure["layout"]["xaxis"]["title"]["text"]


@pytest.mark.parametrize("study_id", STUDIES)
def test_escalation_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("escalation"))
        table = at.dataframe[0].value  # the level table
        esc = enrolled_per_level(sql, study_id, as_of, "escalation")
        dlts = in_window_dlt_subjects(sql, study_id, as_of)
        levels = [lv for (lv,) in sql("SELECT level FROM dose_levels WHERE study_id = ? ORDER BY level", study_id)]
        assert table["Level"].tolist() == levels  # numeric order, -1 before 1
        assert dict(zip(table["Level"], table["Enrolled"])) == {lv: esc.get(lv, 0) for lv in levels}
        assert dict(zip(table["Level"], table["DLT"])) == {lv: dlts.get(lv, 0) for lv in levels}
        enrolled = sum(enrolled_per_level(sql, study_id, as_of).values())
        charts = figures(at)
        if enrolled:
            swimlanes, history, *later_stages = charts  # a staged study has a history per stage
            assert len(swimlanes["layout"]["yaxis"]["ticktext"]) == enrolled  # one lane per subject
            assert swimlanes["layout"]["xaxis"]["title"]["text"] == "Days from first dose of the agent"
            assert history["layout"]["yaxis"]["title"]["text"] == "Dose level"
        else:
            assert any("No subject enrolled" in i.value for i in at.info)
            assert "`enroll`" in at.markdown[1].value


def test_data_cut_recommendations_are_shown(app_env, sql):
    expected = {"IDOV-SAFE": "declare_mtd", "BIOTTT001": "enroll", "IX001": "de-escalate"}
    for study_id, action in expected.items():
        cut = sql("SELECT data_cut_date FROM studies WHERE study_id = ?", study_id)[0][0]
        at = run_app(study_id, cut, pages.script("escalation"))
        assert any(f"`{action}`" in m.value for m in at.markdown)


def test_calendar_axis_draws_the_as_of_line(app_env, sql):
    cut = sql("SELECT data_cut_date FROM studies WHERE study_id = 'IX001'")[0][0]
    at = run_app("IX001", cut, pages.script("escalation"))
    at.get("button_group")[0].set_value("Calendar date").run()
    swimlanes = figures(at)[0]
    assert swimlanes["layout"]["xaxis"]["title"]["text"] == "Calendar date"
    assert any(a.get("text") == f"as of {cut:%Y-%m-%d}" for a in swimlanes["layout"]["annotations"])


def test_link_opens_study_and_date_and_stays_in_sync(app_env, sql):
    at = run_app("IX001", dt.date(2024, 12, 1))
    assert at.selectbox(key="study").value == "IX001"
    assert at.sidebar.date_input[0].label == "As of" and at.sidebar.date_input[0].value == dt.date(2024, 12, 1)
    at.selectbox(key="study").set_value("IDOV-SAFE").run()
    cut = sql("SELECT data_cut_date FROM studies WHERE study_id = 'IDOV-SAFE'")[0][0]
    assert at.query_params["study"] == ["IDOV-SAFE"] or at.query_params["study"] == "IDOV-SAFE"
    assert at.title[0].value == "IDOV-SAFE · Overview"
    assert str(cut) in str(at.query_params["as_of"])


def test_bad_link_values_give_a_message_not_an_error(app_env):
    at = app_test()
    at.query_params["study"] = "NO-SUCH-STUDY"
    at.run()
    assert not at.exception
    assert any("NO-SUCH-STUDY" in w.value for w in at.sidebar.warning)
    at = app_test()
    at.query_params["study"] = "IX001"
    at.query_params["as_of"] = "2025-13-40"
    at.run()
    assert not at.exception
    assert any("2025-13-40" in w.value for w in at.sidebar.warning)


@pytest.mark.parametrize("link_date", ["1999-12-31", "0001-01-01"])
def test_a_link_date_before_any_trial_is_clamped_with_a_message(app_env, link_date):
    """The date picker refuses a value under its minimum with an exception: the link's date is raised to the
    earliest date the app shows (2000-01-01), and the sidebar says so."""
    at = app_test()
    at.query_params["study"] = "IX001"
    at.query_params["as_of"] = link_date
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert any(link_date in w.value and "2000-01-01" in w.value for w in at.sidebar.warning)
    assert at.sidebar.date_input[0].value == dt.date(2000, 1, 1)


def test_missing_database_named_by_smc_db_is_a_message(monkeypatch, tmp_path):
    monkeypatch.setenv("SMC_DB", str(tmp_path / "absent.duckdb"))
    at = app_test().run()
    assert not at.exception
    assert "absent.duckdb" in at.error[0].value


def test_subject_detail_shows_that_subjects_adverse_events(app_env, sql):
    cut = sql("SELECT data_cut_date FROM studies WHERE study_id = 'IDOV-SAFE'")[0][0]
    # The first subject with an adjudicated DLT, picked as a user would.
    (subject,) = sql("SELECT min(subject_id) FROM adverse_events WHERE study_id = 'IDOV-SAFE' AND dlt = 'Y'")[0]
    at = run_app("IDOV-SAFE", cut, pages.script("escalation"))
    at.selectbox(key="escalation_subject").set_value(subject).run()
    assert not at.exception
    assert any(f"**{subject}**" in m.value and "DLT state **dlt**" in m.value for m in at.markdown)
    shown = at.dataframe[1].value  # the subject's AE table
    expected = sql("SELECT term, grade, dlt FROM adverse_events WHERE study_id = 'IDOV-SAFE' AND subject_id = ? "
                   "AND onset_date <= ? ORDER BY onset_date, ae_seq", subject, cut)
    assert list(zip(shown["term"], shown["grade"], shown["dlt"])) == expected
