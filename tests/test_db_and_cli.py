"""The read-only database adapter and the command line."""
from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import pytest

from smc.db import Database
from smc.demo import build_demo
from tests.conftest import ROOT, STUDIES


def smc_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smc", *args], cwd=ROOT, capture_output=True, text=True)


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
