"""AppTest: BioTTT001's two stages (monotherapy, then the combination with toripalimab) on the Escalation,
Overview and Safety pages and in the decision form, checked against SQL on the contract tables written here
independently of the code under test."""
from __future__ import annotations

import shutil
import sqlite3

import pytest

from smc.ui import pages
from tests.helpers import as_of_dates, data_cut, figures, run_app

STUDY = "BIOTTT001"
ESCALATION = pages.script("escalation")

# Escalation-phase subjects in the combination by the as-of date, per level there, and those with an adjudicated
# DLT inside [first toripalimab on or after entry, + 28 days).
COMBINATION_SQL = """
WITH entry AS (
    SELECT ss.subject_id, ss.dose_level, ss.start_date
    FROM subject_stages ss JOIN subjects s ON s.study_id = ss.study_id AND s.subject_id = ss.subject_id
    WHERE ss.study_id = $1 AND ss.stage = 'combination' AND s.phase = 'escalation' AND ss.start_date <= $2),
window_start AS (
    SELECT e.subject_id, min(a.admin_date) AS first_dose
    FROM entry e JOIN administrations a ON a.study_id = $1 AND a.subject_id = e.subject_id
         AND a.agent = 'toripalimab' AND a.admin_date >= e.start_date AND a.admin_date <= $2
    GROUP BY 1)
SELECT e.dose_level, count(DISTINCT e.subject_id),
       count(DISTINCT CASE WHEN ae.onset_date >= w.first_dose AND ae.onset_date < w.first_dose + 28
                           AND ae.onset_date <= $2 THEN e.subject_id END)
FROM entry e
LEFT JOIN window_start w ON w.subject_id = e.subject_id
LEFT JOIN adverse_events ae ON ae.study_id = $1 AND ae.subject_id = e.subject_id AND ae.dlt = 'Y'
GROUP BY 1
"""


def combination_per_level(sql, as_of) -> tuple[dict[int, int], dict[int, int]]:
    rows = sql(COMBINATION_SQL, STUDY, as_of)
    return {lv: n for lv, n, _ in rows}, {lv: d for lv, _, d in rows}


def level_table(at, stage: int):
    """The level table of a stage (1, 2): the page draws one per stage tab, in stage order."""
    return [d.value for d in at.dataframe if {"Needed", "Status"} <= set(d.value.columns)][stage - 1]


def test_the_escalation_page_has_a_level_table_and_a_rule_per_stage(app_env, sql):
    for as_of in as_of_dates(sql, STUDY):
        at = run_app(STUDY, as_of, ESCALATION)
        assert [t.label for t in at.tabs][:2] == ["Stage 1 · monotherapy", "Stage 2 · combination"]
        combination = level_table(at, 2)
        enrolled, dlts = combination_per_level(sql, as_of)
        assert dict(zip(combination["Level"], combination["Enrolled"])) == {
            lv: enrolled.get(lv, 0) for lv in combination["Level"]}
        assert dict(zip(combination["Level"], combination["DLT"])) == {lv: dlts.get(lv, 0) for lv in combination["Level"]}
        anyone = sql("SELECT count(*) FROM subjects WHERE study_id = ? AND enrollment_date <= ?", STUDY, as_of)[0][0]
        assert len(figures(at)) == 2 + (anyone > 0)  # a history per stage, and the swimlanes once someone is in


def test_at_the_cut_the_combination_level_needs_six_while_monotherapy_cleared_it(app_env, sql):
    cut = data_cut(sql, STUDY)
    at = run_app(STUDY, cut, ESCALATION)
    mono, combination = level_table(at, 1), level_table(at, 2)
    by_level = {row["Level"]: row for row in combination.to_dict("records")}
    # The demo's script: the combination opened at 5×10^7 VP (three then two more subjects, no DLT); the first
    # escalation subject at 5×10^8 VP had an immune-mediated hepatitis DLT; 5×10^9 VP and up are not cleared in
    # monotherapy (its first 3 there had a DLT).
    assert (by_level[1]["Status"], by_level[1]["DLT"]) == ("cleared", 0)
    assert (by_level[2]["DLT"], by_level[2]["Needed"], by_level[2]["Status"]) == (1, 6, "enrolling")
    assert by_level[3]["Status"] == by_level[4]["Status"] == "above_ceiling"
    assert dict(zip(mono["Level"], mono["Status"]))[2] == "cleared"
    assert any("`enroll` 5×10^8 VP" in m.value for m in at.markdown)
    (swimlanes, *_) = figures(at)
    names = {t.get("name") for t in swimlanes["data"]}
    assert {"DLT window, monotherapy (28 d)", "DLT window, combination (28 d)"} <= names
    hatched = next(t for t in swimlanes["data"] if t.get("name") == "DLT window, combination (28 d)")
    entered = sql("SELECT count(*) FROM subject_stages WHERE study_id = ? AND start_date <= ?", STUDY, cut)[0][0]
    assert len(hatched["y"]) == entered  # every subject in the combination by the cut got its first toripalimab


def test_the_overview_counts_dlts_per_stage(app_env, sql):
    cut = data_cut(sql, STUDY)
    at = run_app(STUDY, cut)
    ladder = next(d.value for d in at.dataframe if "Escalation" in d.value.columns)
    _, dlts = combination_per_level(sql, cut)
    assert dict(zip(ladder["Level"], ladder["DLTs (combination)"])) == {lv: dlts.get(lv, 0) for lv in ladder["Level"]}
    texts = " ".join(m.value for m in at.markdown)
    assert "Protocol rule (monotherapy)" in texts and "Protocol rule (combination)" in texts


def test_the_safety_listing_names_the_stage_each_dlt_counts_in(app_env, sql):
    cut = data_cut(sql, STUDY)
    at = run_app(STUDY, cut, pages.script("safety"))
    listing = next(d.value for d in at.dataframe if "window_stage" in d.value.columns)  # the DLTs tab, first
    stage_of = dict(zip(listing["term"], listing["window_stage"]))
    assert stage_of["Immune-mediated hepatitis"] == "combination"
    monotherapy_terms = [t for (t,) in sql(
        "SELECT term FROM adverse_events e JOIN subjects s USING (study_id, subject_id) WHERE e.study_id = ? "
        "AND e.dlt = 'Y' AND e.onset_date <= ? AND NOT EXISTS (SELECT 1 FROM subject_stages ss WHERE "
        "ss.study_id = e.study_id AND ss.subject_id = e.subject_id)", STUDY, cut)]
    assert monotherapy_terms and all(stage_of[t] == "monotherapy" for t in monotherapy_terms)


@pytest.fixture()
def fresh_db(demo_db, tmp_path, monkeypatch):
    path = tmp_path / "cut.duckdb"
    shutil.copy(demo_db, path)
    monkeypatch.setenv("SMC_DB", str(path))
    return path


def test_the_decision_form_records_the_stage_chosen_with_its_recommendation(fresh_db, sql):
    cut = data_cut(sql, STUDY)
    at = run_app(STUDY, cut, ESCALATION)
    assert at.radio(key="decision_stage").value == "monotherapy"
    assert at.selectbox(key="decision_word").value == "enroll" and at.selectbox(key="decision_level").value == 3
    at.radio(key="decision_stage").set_value("combination").run()
    # the combination's rule: enroll at 5×10^8 VP (level 2)
    assert at.selectbox(key="decision_word").value == "enroll" and at.selectbox(key="decision_level").value == 2
    assert at.checkbox(key="decision_follows").value
    at.text_input(key="decision_attendees").input("A, B")
    at.button(key="decision_record").click().run()
    assert not at.exception and not at.error and at.success
    con = sqlite3.connect(fresh_db.with_name("cut.decisions.sqlite"))
    try:
        rows = con.execute("SELECT stage, decision, level, follows_recommendation, recommended_action, "
                           "recommended_level FROM decisions").fetchall()
    finally:
        con.close()
    assert rows == [("combination", "enroll", 2, 1, "enroll", 2)]
    history = next(d.value for d in at.dataframe if "Stage" in d.value.columns and "Record" in d.value.columns)
    assert history["Stage"].tolist() == ["combination"]
