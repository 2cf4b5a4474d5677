"""The meeting packet: every section, plotly embedded once, nothing fetched, and its numbers equal to SQL."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import sqlite3
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from plotly.offline import get_plotlyjs

from smc.analysis.dose_decision import load_dose_decision
from smc.decision_log import ledger
from smc.outputs.packet import SECTIONS, build_packet
from smc.store.db import Database
from smc.store.study import load_study
from tests.helpers import ROOT, STUDIES, as_of_dates, enrolled_per_level, in_window_dlt_subjects, signer


class PacketTables(HTMLParser):
    """Section ids in order, and each section's tables as rows of cell texts (stdlib parser, not ours)."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.tables: dict[str, list[list[list[str]]]] = {}
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections.append(dict(attrs)["id"])
            self.tables[self.sections[-1]] = []
        elif tag == "table" and self.sections:
            self.tables[self.sections[-1]].append([])
        elif tag == "tr" and self.sections and self.tables[self.sections[-1]]:
            self.tables[self.sections[-1]][-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self.sections and self.tables[self.sections[-1]]:
            self.tables[self.sections[-1]][-1][-1].append("".join(self._cell).strip())
            self._cell = None


def records(table: list[list[str]]) -> list[dict[str, str]]:
    header, *rows = table
    return [dict(zip(header, row)) for row in rows]


@pytest.fixture()
def cut_db(demo_db, tmp_path):
    path = tmp_path / "cut.duckdb"
    shutil.copy(demo_db, path)
    return path


@pytest.mark.parametrize("study_id", STUDIES)
def test_packet_has_every_section_and_plotly_once(demo_db, study_id):
    text = build_packet(Database(demo_db), study_id)
    parsed = PacketTables(text)
    assert parsed.sections == list(SECTIONS)
    assert text.count(get_plotlyjs()) == 1
    figures = text.count('class="plotly-graph-div"')
    assert figures >= 8 and text.count("Plotly.newPlot(") == figures
    # Self-contained: no script, stylesheet or image is loaded from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)


@pytest.mark.parametrize("study_id", STUDIES)
def test_packet_numbers_equal_sql(demo_db, sql, study_id):
    for as_of in as_of_dates(sql, study_id)[:2]:
        parsed = PacketTables(build_packet(Database(demo_db), study_id, as_of))
        levels = records(parsed.tables["levels"][0])
        enrolled = enrolled_per_level(sql, study_id, as_of, "escalation")
        dlts = in_window_dlt_subjects(sql, study_id, as_of)
        assert {int(r["Level"]): int(r["Enrolled"]) for r in levels} == {
            lv: enrolled.get(lv, 0) for (lv,) in sql("SELECT level FROM dose_levels WHERE study_id = ?", study_id)}
        assert {int(r["Level"]): int(r["DLT"]) for r in levels if int(r["DLT"])} == dlts

        header = {row[0]: row[1] for row in parsed.tables["study"][0]}
        total = sql("SELECT count(*) FROM subjects WHERE study_id = ? AND enrollment_date <= ?", study_id, as_of)[0][0]
        planned = sql("SELECT planned_enrollment FROM studies WHERE study_id = ?", study_id)[0][0]
        assert header["Enrolled / planned"] == f"{total} / {planned}"
        assert header["As of (data shown)"] == as_of.isoformat()

        dosed = dict(sql("""
            SELECT d.label, count(DISTINCT s.subject_id) FROM subjects s
            JOIN dose_levels d ON d.study_id = s.study_id AND d.level = s.dose_level
            WHERE s.study_id = $1 AND s.subject_id IN (
                SELECT a.subject_id FROM administrations a JOIN studies t USING (study_id)
                WHERE a.study_id = $1 AND a.agent = t.agent AND a.admin_date <= $2)
            GROUP BY 1""", study_id, as_of))
        os_tables = parsed.tables["survival"]
        if dosed:  # the first survival table is OS by dose level: N = subjects dosed with the agent
            assert {r["Group"]: int(r["N"]) for r in records(os_tables[0])} == dosed


def test_packet_before_any_enrollment_still_builds(demo_db, sql):
    early = as_of_dates(sql, "IX001")[2]
    text = build_packet(Database(demo_db), "IX001", early)
    assert "No subject enrolled by this date." in text and PacketTables(text).sections == list(SECTIONS)


def test_packet_decision_log_is_escaped_and_shows_a_broken_chain(cut_db):
    db = Database(cut_db)
    study = load_study(db, "IX001")
    dose = load_dose_decision(db, study, study.data_cut_date)
    log = ledger.log_path(cut_db)
    for rationale in ("<script>alert('x')</script> kept as text", "second"):
        ledger.append(log, ledger.Draft("IX001", study.data_cut_date, study.data_cut_date, 2, "other",
                                              rationale=rationale, signer=signer()), dose, "test")
    text = build_packet(db, "IX001", now=dt.datetime(2025, 3, 1, tzinfo=dt.UTC))
    assert "<script>alert" not in text and "&lt;script&gt;alert('x')&lt;/script&gt; kept as text" in text
    head = sqlite3.connect(log).execute("SELECT hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert f"chain verified. Chain head: {head}" in text
    log_rows = records(PacketTables(text).tables["decisions"][0])
    assert [r["Record"] for r in log_rows] == ["2", "1"] and log_rows[0]["Follows the rule"] == "no (deviation)"
    assert [(r["Signed by"], r["Role"], r["Meaning"]) for r in log_rows] == [
        ("Dr Ada Chair", "SMC chair", "approved as SMC chair")] * 2

    con = sqlite3.connect(log)
    con.executescript("DROP TRIGGER decisions_no_delete; DELETE FROM decisions WHERE id = 1;")
    con.close()
    text = build_packet(db, "IX001")
    assert "altered outside the dashboard" in text and "record #1: is missing" in text


def test_report_html_writes_the_packet_and_names_a_bad_path(demo_db, tmp_path):
    out = tmp_path / "packet.html"
    cut = "2025-01-15"
    done = subprocess.run([sys.executable, "-m", "smc", "report", "--db", str(demo_db), "--study", "BIOTTT001",
                           "--as-of", cut, "--html", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"BIOTTT001 SMC meeting packet, as of {cut}" in out.read_text(encoding="utf-8")
    bad = tmp_path / "missing-folder" / "packet.html"
    failed = subprocess.run([sys.executable, "-m", "smc", "report", "--db", str(demo_db), "--study", "BIOTTT001",
                             "--html", str(bad)], cwd=ROOT, capture_output=True, text=True)
    assert failed.returncode == 1 and str(bad) in failed.stderr and not bad.exists()


def test_packet_shows_a_deleted_only_record_of_the_study(cut_db):
    """Deleting a study's only record leaves it no records, but the gap in the ids is still shown."""
    db = Database(cut_db)
    log = ledger.log_path(cut_db)
    for study_id in ("IX001", "BIOTTT001"):
        study = load_study(db, study_id)
        dose = load_dose_decision(db, study, study.data_cut_date)
        ledger.append(log, ledger.Draft(study_id, study.data_cut_date, study.data_cut_date,
                                              study.level_order[0], "other", rationale="r", signer=signer(),
                                              stage=study.regimen[0].name if study.staged else None),
                         dose, "test")
    con = sqlite3.connect(log)
    con.executescript("DROP TRIGGER decisions_no_delete; DELETE FROM decisions WHERE study_id = 'IX001';")
    con.close()
    text = build_packet(db, "IX001")
    assert "record #1: is missing" in text and "No decision recorded for this study" in text
