"""Shared fixtures: one demo database per test session, and helpers to run the app."""
from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest

from smc.db import READ_ONLY_CONFIG
from smc.demo import build_demo

ROOT = Path(__file__).resolve().parent.parent
STUDIES = ("IDOV-SAFE", "BIOTTT001", "IX001")


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo(path, seed=2024)
    return path


@pytest.fixture(scope="session")
def sql(demo_db):
    """Run SQL on the demo database (an independent path to the numbers pages show)."""
    # Same configuration as the app: DuckDB refuses two configurations for one file in a process.
    con = duckdb.connect(str(demo_db), read_only=True, config=READ_ONLY_CONFIG)

    def run(text: str, *params):
        return con.execute(text, list(params)).fetchall()

    yield run
    con.close()


@pytest.fixture()
def app_env(demo_db, monkeypatch):
    monkeypatch.setenv("SMC_DB", str(demo_db))
    return demo_db


def data_cut(sql, study_id: str):
    return sql("SELECT data_cut_date FROM studies WHERE study_id = ?", study_id)[0][0]


def as_of_dates(sql, study_id: str) -> list:
    """The data cut, a date mid-escalation, and a date before anyone was enrolled."""
    first, cut = sql("SELECT min(enrollment_date), any_value(st.data_cut_date) FROM subjects s "
                     "JOIN studies st USING (study_id) WHERE study_id = ?", study_id)[0]
    return [cut, first + (cut - first) / 2, first - (cut - first) / 20]


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    return path if Path(path).exists() else None
