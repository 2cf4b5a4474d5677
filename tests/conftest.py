"""Shared fixtures: one demo database per test session, and helpers to run the app."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from smc.demo.build import build_demo
from smc.store.db import READ_ONLY_CONFIG

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


def one_study_db(path: Path, **tables: list[dict]):
    """A database of study S1 (3+3, agent VIRUS, 28-day DLT window, levels 1-3, cut 2025-03-15)
    plus the given tables as lists of row dicts (``studies`` or ``dose_levels`` replace the defaults);
    returns (Database, Study of S1)."""
    import pandas as pd

    from smc.ingest.load import as_text, import_tables
    from smc.store.db import Database
    from smc.store.study import load_study
    tables = dict(
        studies=[dict(study_id="S1", design="3+3", agent="VIRUS", dlt_window_days=28, data_cut_date="2025-03-15")],
        dose_levels=[dict(study_id="S1", level=lv, label=f"1e{7 + lv} PFU") for lv in (1, 2, 3)]) | tables
    import_tables({name: as_text(pd.DataFrame(rows)) for name, rows in tables.items()}, path, "test")
    db = Database(path)
    return db, load_study(db, "S1")
