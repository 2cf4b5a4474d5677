"""The read-only database adapter and the command line."""
from __future__ import annotations

import json

import duckdb
import pytest

from smc.demo.build import build_demo
from smc.store.db import Database
from tests.helpers import STUDIES, smc_cli


def test_a_replaced_data_cut_is_seen_without_restart(tmp_path):
    path = tmp_path / "cut.duckdb"
    build_demo(path, seed=1)
    db = Database(path)
    first = db.sql("SELECT sum(value) AS s FROM lab_results").s[0]
    build_demo(path, seed=2)  # a new cut replaces the file atomically
    second = db.sql("SELECT sum(value) AS s FROM lab_results").s[0]
    assert first != second


@pytest.mark.parametrize("statement", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY studies TO '/tmp/leak.csv'",
    "ATTACH ':memory:' AS other",
    "SET threads = 1",
    "INSERT INTO sites VALUES ('X', 'x', 'x')",
    "DROP TABLE studies",
])
def test_the_app_connection_refuses_files_writes_and_settings(demo_db, statement):
    with pytest.raises(duckdb.Error):
        Database(demo_db).sql(statement)


def test_build_demo_then_report_prints_json_for_each_study(tmp_path):
    db = tmp_path / "x.duckdb"
    built = smc_cli("build-demo", "--db", str(db))
    assert built.returncode == 0, built.stderr
    for study_id in STUDIES:
        out = smc_cli("report", "--db", str(db), "--study", study_id, "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)
        assert report["study_id"] == study_id
        overview = report["overview"]
        assert overview["enrolled"] == sum(lv["n_enrolled"] for lv in overview["subjects_per_level"])
        assert overview["screened"] == overview["enrolled"] + overview["screen_failures"]
        escalation = report["escalation"]
        assert escalation["recommendation"]["action"] in (
            "enroll", "wait", "escalate", "de-escalate", "declare_mtd", "max_dose_cleared", "stop")
        assert {lv["status"] for lv in escalation["levels"]} <= {
            "not_started", "exceeded", "cleared", "pending", "enrolling"}
        assert escalation["boin"]["lambda_e"] == 0.2365 and escalation["boin"]["lambda_d"] == 0.3585


def test_report_as_of_before_enrollment_recommends_starting_at_level_1(tmp_path, demo_db):
    out = smc_cli("report", "--db", str(demo_db), "--study", "IX001", "--as-of", "2020-01-01", "--json")
    report = json.loads(out.stdout)
    assert report["overview"]["enrolled"] == 0
    assert report["escalation"]["recommendation"]["action"] == "enroll"
    assert report["escalation"]["recommendation"]["to_level"] == 1  # level 1, not the -1 below it


def test_report_names_an_unknown_study_and_a_bad_date(demo_db):
    out = smc_cli("report", "--db", str(demo_db), "--study", "NOPE", "--json")
    assert out.returncode != 0 and "NOPE" in out.stderr and "IX001" in out.stderr
    out = smc_cli("report", "--db", str(demo_db), "--study", "IX001", "--as-of", "2024-02-30")
    assert out.returncode != 0 and "2024-02-30" in out.stderr
    out = smc_cli("report", "--db", str(demo_db.parent / "none.duckdb"), "--study", "IX001")
    assert out.returncode != 0 and "none.duckdb" in out.stderr


def test_report_safety_section_matches_sql(demo_db, sql):
    for study_id in STUDIES:
        cut = sql("SELECT data_cut_date FROM studies WHERE study_id = ?", study_id)[0][0]
        out = smc_cli("report", "--db", str(demo_db), "--study", study_id, "--json")
        safety = json.loads(out.stdout)["safety"]
        dosed = dict(sql("""SELECT s.dose_level, count(*) FROM subjects s WHERE s.study_id = $1
                            AND s.subject_id IN (SELECT subject_id FROM administrations
                                                 WHERE study_id = $1 AND admin_date <= $2) GROUP BY 1""",
                         study_id, cut))
        assert {lv["level"]: lv["n_dosed"] for lv in safety["n_dosed"]} == {
            lv: dosed.get(lv, 0) for (lv,) in sql("SELECT level FROM dose_levels WHERE study_id = ?", study_id)}
        # TEAE: onset on/after the first dose of any treatment; a subject once per term at the worst grade.
        expected = sql("""
            WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                        WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
            SELECT ae.term, s.dose_level, count(DISTINCT ae.subject_id), max(ae.grade), bool_or(ae.dlt = 'Y')
            FROM adverse_events ae JOIN subjects s USING (study_id, subject_id) JOIN fd USING (subject_id)
            WHERE ae.study_id = $1 AND ae.onset_date BETWEEN fd.d AND $2 GROUP BY 1, 2""", study_id, cut)
        assert {(r["term"], r["level"]): (r["n_subjects"], r["worst_grade"]) for r in safety["teae"]} == {
            (term, level): (n, worst) for term, level, n, worst, _ in expected}
        dlts = sql("""SELECT ae.term, s.dose_level, count(DISTINCT ae.subject_id) FROM adverse_events ae
                      JOIN subjects s USING (study_id, subject_id)
                      WHERE ae.study_id = $1 AND ae.dlt = 'Y' AND ae.onset_date <= $2 GROUP BY 1, 2""",
                   study_id, cut)
        assert {(r["term"], r["level"]): r["n_subjects"] for r in safety["dlt"]} == {
            (term, level): n for term, level, n in dlts}


def test_report_labs_section_matches_sql(demo_db, sql):
    for study_id in STUDIES:
        cut = sql("SELECT data_cut_date FROM studies WHERE study_id = ?", study_id)[0][0]
        labs = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--json").stdout)["labs"]
        # Peak ALT and bilirubin ×ULN on or after the day of the first dose of any treatment.
        peaks = sql("""
            WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                        WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
            SELECT l.subject_id, max(l.value / l.ref_high) FILTER (WHERE test = 'ALT'),
                   max(l.value / l.ref_high) FILTER (WHERE test = 'Bilirubin')
            FROM lab_results l JOIN fd USING (subject_id)
            WHERE l.study_id = $1 AND l.collected_at::DATE BETWEEN fd.d AND $2 GROUP BY 1""", study_id, cut)
        expected = {s: (round(alt, 3), round(bili, 3)) for s, alt, bili in peaks if alt is not None and bili is not None}
        assert {r["subject_id"]: (r["peak_alt_xuln"], r["peak_bili_xuln"]) for r in labs["liver"]} == expected
        for r in labs["liver"]:
            hy = r["peak_alt_xuln"] >= 3 and r["peak_bili_xuln"] >= 2
            assert (r["hys_law_quadrant"] == "Possible Hy's law") == hy
        # Every subject with a post-baseline ALT appears once in the ALT shift rows.
        n_alt = sql("""
            WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                        WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
            SELECT count(DISTINCT l.subject_id) FROM lab_results l JOIN fd USING (subject_id)
            JOIN subjects s USING (study_id, subject_id)
            WHERE l.study_id = $1 AND l.test = 'ALT' AND l.collected_at::DATE BETWEEN fd.d AND $2
              AND s.enrollment_date <= $2""", study_id, cut)[0][0]
        assert sum(r["n"] for r in labs["shift"] if r["test"] == "ALT") == n_alt
