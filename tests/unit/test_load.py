"""Tests for the contract CSV loader (smc.load) and the `python -m smc import` CLI.

Every failing-input case starts from one small valid CSV set (``valid_tables``)
with exactly one defect, and checks that
  (a) the message names the file, the spreadsheet row (header = row 1) and the column;
  (b) a database created beforehand from the valid set is byte-identical afterwards,
      and no temporary files are left beside it.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest

from smc import settings
from smc.demo.build import demo_tables
from smc.ingest import load
from smc.ingest.load import ImportFailed, import_csv_dir, read_csv_dir, validate
from smc.ingest.target import Target
from tests.helpers import ROOT

DB_NAME = "smc.duckdb"

# --------------------------------------------------------------------------- the valid set

# Column order is the order of the first row's keys; every row has every key.
_VALID = {
    "studies": [
        dict(study_id="S1", title="A first-in-human 3+3 study", design="3+3", agent="DRUG-X",
             dlt_window_days="28", target_dlt_rate="0.30", planned_enrollment="12",
             min_sd_days="42", indication="Advanced solid tumors", data_cut_date="2025-06-30"),
    ],
    "dose_levels": [
        dict(study_id="S1", level="1", label="1 mg/kg", dose="1", unit="mg/kg"),
        dict(study_id="S1", level="2", label="2 mg/kg", dose="2", unit="mg/kg"),
    ],
    "sites": [
        dict(site_id="SITE1", name="City Hospital", country="US"),
    ],
    "subjects": [
        dict(study_id="S1", subject_id="001", site_id="SITE1", sex="M", age="61",
             screening_date="2025-01-02", enrollment_date="2025-01-10", screen_fail_reason="",
             dose_level="1", phase="escalation", cohort="1", dlt_evaluable="Y",
             off_treatment_date="2025-03-31", off_treatment_reason="Completed treatment",
             off_study_date="", off_study_reason="", death_date="", death_cause="",
             last_contact_date="2025-06-01"),
        dict(study_id="S1", subject_id="002", site_id="SITE1", sex="F", age="54",
             screening_date="2025-01-06", enrollment_date="2025-01-15", screen_fail_reason="",
             dose_level="2", phase="escalation", cohort="2", dlt_evaluable="",
             off_treatment_date="", off_treatment_reason="",
             off_study_date="", off_study_reason="", death_date="", death_cause="",
             last_contact_date="2025-06-01"),
        # screen failure: empty enrollment_date and dose_level
        dict(study_id="S1", subject_id="003", site_id="SITE1", sex="F", age="70",
             screening_date="2025-01-07", enrollment_date="", screen_fail_reason="Inclusion criteria not met",
             dose_level="", phase="", cohort="", dlt_evaluable="",
             off_treatment_date="", off_treatment_reason="",
             off_study_date="2025-01-20", off_study_reason="Screen failure", death_date="",
             death_cause="", last_contact_date="2025-01-20"),
    ],
    "administrations": [
        dict(study_id="S1", subject_id="001", agent="DRUG-X", admin_date="2025-01-10",
             admin_time="09:30", end_date="", dose="1", unit="mg/kg", route="IV", cycle="1", day="1"),
        dict(study_id="S1", subject_id="001", agent="DRUG-X", admin_date="2025-01-31",
             admin_time="10:00", end_date="", dose="1", unit="mg/kg", route="IV", cycle="2", day="1"),
        dict(study_id="S1", subject_id="002", agent="DRUG-X", admin_date="2025-01-15",
             admin_time="08:00", end_date="2025-01-16", dose="2", unit="mg/kg", route="IV",
             cycle="1", day="1"),
    ],
    "adverse_events": [
        dict(study_id="S1", subject_id="001", ae_seq="1", term="Fatigue",
             soc="General disorders and administration site conditions",
             onset_date="2025-01-12", end_date="2025-01-20", grade="1", serious="N",
             related="Y", dlt="N", outcome="Recovered", action_taken="None"),
        dict(study_id="S1", subject_id="002", ae_seq="1", term="Cytokine release syndrome",
             soc="Immune system disorders", onset_date="2025-01-16", end_date="2025-01-18",
             grade="3", serious="Y", related="Y", dlt="Y", outcome="Recovered",
             action_taken="Dose delayed"),
    ],
    "tumor_assessments": [
        dict(study_id="S1", subject_id="001", assessment_date="2025-01-05", target_sum_mm="50",
             new_lesions="N", nontarget_response="NON-CR/NON-PD", overall_response=""),
        dict(study_id="S1", subject_id="001", assessment_date="2025-03-01", target_sum_mm="41.5",
             new_lesions="N", nontarget_response="NON-CR/NON-PD", overall_response="SD"),
    ],
    "lab_results": [
        dict(study_id="S1", subject_id="001", collected_at="2025-01-10T08:30:00",
             category="hematology", test="Neutrophils", specimen="whole blood", value="3.2",
             unit="10^9/L", lloq="", ref_low="1.5", ref_high="8.0", grade="0"),
        # below the limit of quantification: value empty, lloq given
        dict(study_id="S1", subject_id="001", collected_at="2025-01-17", category="virology",
             test="Viral DNA", specimen="serum", value="", unit="copies/mL", lloq="100",
             ref_low="", ref_high="", grade=""),
        dict(study_id="S1", subject_id="002", collected_at="2025-01-15T07:45:00",
             category="chemistry", test="ALT", specimen="serum", value="30", unit="U/L",
             lloq="", ref_low="0", ref_high="40", grade="0"),
    ],
}

ALL_TABLES = tuple(_VALID)


def valid_tables() -> dict[str, list[dict[str, str]]]:
    """A fresh, mutable copy of the valid contract set."""
    return copy.deepcopy(_VALID)


def write_csv_set(directory: Path, tables: dict[str, list[dict[str, str]]],
                  encoding: str = "utf-8", columns: dict[str, list[str]] | None = None) -> Path:
    """Write ``<table>.csv`` for every table given. Returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for table, rows in tables.items():
        header = (columns or {}).get(table) or list(rows[0].keys())
        with open(directory / f"{table}.csv", "w", newline="", encoding=encoding) as fh:
            writer = csv.DictWriter(fh, fieldnames=header, extrasaction="raise")
            writer.writeheader()
            for row in rows:
                writer.writerow(row)
    return directory


def cell(tables, table: str, row: int, column: str, value: str) -> None:
    """Set one cell, addressed by spreadsheet row (first data row = 2)."""
    tables[table][row - 2][column] = value


def append_copy(tables, table: str, row: int, **changes) -> int:
    """Append a copy of a row with changes; return the new row's spreadsheet number."""
    new = dict(tables[table][row - 2], **changes)
    tables[table].append(new)
    return len(tables[table]) + 1


def drop_column(tables, table: str, column: str) -> None:
    for row in tables[table]:
        del row[column]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def counts(db_path: Path) -> dict[str, int]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ALL_TABLES + ("load_info",)}
    finally:
        con.close()


def query(db_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def expected_counts(tables) -> dict[str, int]:
    out = {t: len(tables.get(t, [])) for t in ALL_TABLES}
    out["load_info"] = 1
    return out


def find_problems(problems, table: str, row: int | None, column: str | None,
                  severity: str = load.ERROR, contains: str | None = None) -> list:
    """Problems whose text starts with ``<table>.csv row <row>:`` and names ``column``.

    ``row=None`` is a file- or header-level problem: no row, or row 1 (the header).
    """
    if row is None:
        prefix = re.compile(rf"^{re.escape(table)}\.csv( row 1)?: ")
    else:
        prefix = re.compile(rf"^{re.escape(table)}\.csv row {row}: ")
    found = []
    for p in problems:
        text = str(p)
        m = prefix.match(text)
        if not m or p.severity != severity:
            continue
        rest = text[m.end():]
        if column is not None and not re.search(rf"(?<![\w]){re.escape(column)}(?![\w])", rest):
            continue
        if contains is not None and contains not in rest:
            continue
        found.append(p)
    return found


def assert_problem(problems, table, row, column, severity=load.ERROR, contains=None):
    found = find_problems(problems, table, row, column, severity, contains)
    where = f"{table}.csv" + (f" row {row}" if row is not None else "")
    assert found, (f"expected a {severity} at {where} naming column {column!r}"
                   + (f" containing {contains!r}" if contains else "")
                   + "; got:\n  " + "\n  ".join(f"[{p.severity}] {p}" for p in problems))


def leftovers(db_dir: Path) -> list[str]:
    return sorted(p.name for p in db_dir.iterdir() if p.name != DB_NAME)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def baseline(tmp_path):
    """A database imported from the valid set; returns (db_path, sha256)."""
    src = write_csv_set(tmp_path / "valid_csv", valid_tables())
    db_dir = tmp_path / "db"
    db_dir.mkdir()
    db = db_dir / DB_NAME
    warnings = import_csv_dir(src, db)
    assert warnings == []
    assert db.exists()
    return db, sha256(db)


def import_must_fail(tmp_path, baseline, tables, **write_kwargs) -> list:
    """Import a defective set over the baseline; check nothing changed; return problems."""
    db, digest = baseline
    bad = write_csv_set(tmp_path / "bad_csv", tables, **write_kwargs)
    with pytest.raises(ImportFailed) as info:
        import_csv_dir(bad, db)
    assert sha256(db) == digest, "a failed import changed the existing database"
    assert leftovers(db.parent) == [], "a failed import left files beside the database"
    assert any(p.severity == load.ERROR for p in info.value.problems)
    return info.value.problems


# --------------------------------------------------------------------------- the valid set


def test_valid_set_validates_without_problems(tmp_path):
    src = write_csv_set(tmp_path / "csv", valid_tables())
    raw, read_problems = read_csv_dir(src)
    assert read_problems == []
    assert set(raw) == set(ALL_TABLES)
    result = validate(raw)
    assert result.errors == [], [str(p) for p in result.errors]
    assert result.warnings == [], [str(p) for p in result.warnings]
    for table in ALL_TABLES:
        assert len(result.tables[table]) == len(_VALID[table])


def test_valid_set_imports_cleanly_and_row_counts_match(tmp_path):
    tables = valid_tables()
    src = write_csv_set(tmp_path / "csv", tables)
    db = tmp_path / "out" / DB_NAME
    warnings = import_csv_dir(src, db)
    assert warnings == []
    assert counts(db) == expected_counts(tables)
    assert leftovers(db.parent) == []
    # the screen failure is stored with NULL enrollment_date and dose_level
    assert query(db, "SELECT enrollment_date, dose_level FROM subjects WHERE subject_id = '003'") \
        == [(None, None)]
    # below-LLOQ lab result keeps NULL value and its lloq
    assert query(db, "SELECT value, lloq FROM lab_results WHERE test = 'Viral DNA'") == [(None, 100.0)]


def test_utf8_with_bom_is_accepted(tmp_path):
    tables = valid_tables()
    src = write_csv_set(tmp_path / "csv", tables, encoding="utf-8-sig")
    db = tmp_path / DB_NAME
    assert import_csv_dir(src, db) == []
    assert counts(db) == expected_counts(tables)


def test_optional_files_may_be_absent(tmp_path):
    tables = valid_tables()
    for table in ("sites", "administrations", "adverse_events", "tumor_assessments", "lab_results"):
        del tables[table]
    for row in tables["subjects"]:
        row["site_id"] = ""
    src = write_csv_set(tmp_path / "csv", tables)
    db = tmp_path / DB_NAME
    import_csv_dir(src, db)
    assert counts(db) == expected_counts(tables)


# --------------------------------------------------------------------------- files and columns


@pytest.mark.parametrize("table", ["studies", "dose_levels", "subjects"])
def test_missing_required_file(tmp_path, baseline, table):
    tables = valid_tables()
    del tables[table]
    problems = import_must_fail(tmp_path, baseline, tables)
    assert_problem(problems, table, None, None)


@pytest.mark.parametrize("table,column", [
    ("studies", "design"),
    ("studies", "dlt_window_days"),
    ("dose_levels", "label"),
    ("subjects", "enrollment_date"),
    ("subjects", "dose_level"),
    ("administrations", "admin_date"),
    ("adverse_events", "grade"),
    ("adverse_events", "dlt"),
    ("tumor_assessments", "assessment_date"),
    ("lab_results", "value"),
])
def test_missing_required_column(tmp_path, baseline, table, column):
    tables = valid_tables()
    drop_column(tables, table, column)
    problems = import_must_fail(tmp_path, baseline, tables)
    assert_problem(problems, table, None, column)


def test_unknown_extra_column_is_only_a_warning(tmp_path, baseline):
    db, _ = baseline
    tables = valid_tables()
    for row in tables["subjects"]:
        row["favourite_colour"] = "blue"
    src = write_csv_set(tmp_path / "extra_csv", tables)
    warnings = import_csv_dir(src, db)
    assert all(p.severity == load.WARNING for p in warnings)
    assert_problem(warnings, "subjects", None, "favourite_colour", severity=load.WARNING)
    assert counts(db)["subjects"] == 3
    cols = [r[0] for r in query(db, "SELECT column_name FROM information_schema.columns "
                                    "WHERE table_name = 'subjects'")]
    assert "favourite_colour" not in cols
    assert leftovers(db.parent) == []


def test_non_utf8_file_is_reported(tmp_path, baseline):
    tables = valid_tables()
    cell(tables, "subjects", 4, "screen_fail_reason", "Créatinine trop élevée")
    problems = import_must_fail(tmp_path, baseline, tables, encoding="latin-1")
    matches = [p for p in problems if p.severity == load.ERROR
               and str(p).startswith("subjects.csv") and "utf-8" in str(p).lower()]
    assert matches, [str(p) for p in problems]


def test_directory_that_does_not_exist_is_reported(tmp_path, baseline):
    db, digest = baseline
    missing = tmp_path / "no_such_dir"
    with pytest.raises(ImportFailed) as info:
        import_csv_dir(missing, db)
    assert any(p.severity == load.ERROR and "no_such_dir" in str(p) for p in info.value.problems), \
        [str(p) for p in info.value.problems]
    assert sha256(db) == digest
    assert leftovers(db.parent) == []


# --------------------------------------------------------------------------- value rules

# (id, mutation, [(table, row, column, contains-or-None), ...])
VALUE_CASES = [
    # bad dates
    ("bad_date_subjects", lambda t: cell(t, "subjects", 3, "screening_date", "2025-02-30"),
     [("subjects", 3, "screening_date", "2025-02-30")]),
    ("bad_date_format", lambda t: cell(t, "adverse_events", 2, "end_date", "20/01/2025"),
     [("adverse_events", 2, "end_date", "20/01/2025")]),
    ("bad_date_studies", lambda t: cell(t, "studies", 2, "data_cut_date", "June 2025"),
     [("studies", 2, "data_cut_date", "June 2025")]),
    ("bad_timestamp_lab", lambda t: cell(t, "lab_results", 4, "collected_at", "yesterday"),
     [("lab_results", 4, "collected_at", "yesterday")]),
    # bad numbers
    ("bad_number_lab_value", lambda t: cell(t, "lab_results", 2, "value", "3,2"),
     [("lab_results", 2, "value", "3,2")]),
    ("bad_number_dose", lambda t: cell(t, "dose_levels", 3, "dose", "two"),
     [("dose_levels", 3, "dose", "two")]),
    ("bad_number_target_sum", lambda t: cell(t, "tumor_assessments", 3, "target_sum_mm", "n/a"),
     [("tumor_assessments", 3, "target_sum_mm", "n/a")]),
    # non-integers in integer columns
    ("non_integer_grade", lambda t: cell(t, "adverse_events", 3, "grade", "2.5"),
     [("adverse_events", 3, "grade", "2.5")]),
    ("non_integer_age", lambda t: cell(t, "subjects", 2, "age", "sixty"),
     [("subjects", 2, "age", "sixty")]),
    ("non_integer_dlt_window", lambda t: cell(t, "studies", 2, "dlt_window_days", "28.5"),
     [("studies", 2, "dlt_window_days", "28.5")]),
    ("non_integer_cycle", lambda t: cell(t, "administrations", 3, "cycle", "C2"),
     [("administrations", 3, "cycle", "C2")]),
    # bad flags
    ("bad_flag_dlt", lambda t: cell(t, "adverse_events", 2, "dlt", "maybe"),
     [("adverse_events", 2, "dlt", "maybe")]),
    ("bad_flag_dlt_evaluable", lambda t: cell(t, "subjects", 3, "dlt_evaluable", "2"),
     [("subjects", 3, "dlt_evaluable", "2")]),
    ("bad_flag_new_lesions", lambda t: cell(t, "tumor_assessments", 2, "new_lesions", "none"),
     [("tumor_assessments", 2, "new_lesions", "none")]),
    # grades and ranges
    ("lab_grade_5", lambda t: cell(t, "lab_results", 4, "grade", "5"),
     [("lab_results", 4, "grade", "5")]),
    ("ae_grade_0", lambda t: cell(t, "adverse_events", 2, "grade", "0"),
     [("adverse_events", 2, "grade", "0")]),
    # coded values
    ("bad_design", lambda t: cell(t, "studies", 2, "design", "4+4"),
     [("studies", 2, "design", "4+4")]),
    ("bad_sex", lambda t: cell(t, "subjects", 3, "sex", "X"),
     [("subjects", 3, "sex", "X")]),
    ("bad_sex_lowercase", lambda t: cell(t, "subjects", 2, "sex", "Male"),
     [("subjects", 2, "sex", "Male")]),
    ("bad_overall_response", lambda t: cell(t, "tumor_assessments", 3, "overall_response", "Stable"),
     [("tumor_assessments", 3, "overall_response", "Stable")]),
    ("bad_phase", lambda t: cell(t, "subjects", 2, "phase", "dose-escalation"),
     [("subjects", 2, "phase", "dose-escalation")]),
    ("bad_lab_category", lambda t: cell(t, "lab_results", 2, "category", "blood"),
     [("lab_results", 2, "category", "blood")]),
    ("bad_admin_time", lambda t: cell(t, "administrations", 2, "admin_time", "25:00"),
     [("administrations", 2, "admin_time", "25:00")]),
    # an empty value in a column that needs one
    ("empty_label", lambda t: cell(t, "dose_levels", 3, "label", ""),
     [("dose_levels", 3, "label", None)]),
    ("empty_ae_term", lambda t: cell(t, "adverse_events", 3, "term", ""),
     [("adverse_events", 3, "term", None)]),
    # lab value empty and no lloq
    ("lab_value_empty_no_lloq", lambda t: cell(t, "lab_results", 3, "lloq", ""),
     [("lab_results", 3, "value", None)]),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in VALUE_CASES],
                         ids=[c[0] for c in VALUE_CASES])
def test_value_rule(tmp_path, baseline, mutate, expected):
    tables = valid_tables()
    mutate(tables)
    problems = import_must_fail(tmp_path, baseline, tables)
    for table, row, column, contains in expected:
        assert_problem(problems, table, row, column, contains=contains)


def test_grade_6_exact_message(tmp_path, baseline):
    tables = valid_tables()
    cell(tables, "adverse_events", 3, "grade", "6")
    problems = import_must_fail(tmp_path, baseline, tables)
    texts = [str(p) for p in problems]
    assert 'adverse_events.csv row 3: grade "6" is not a CTCAE grade (1-5)' in texts, texts


def test_flag_words_any_case_are_accepted_and_stored_as_y_n(tmp_path):
    tables = valid_tables()
    cell(tables, "subjects", 2, "dlt_evaluable", "YES")
    cell(tables, "subjects", 3, "dlt_evaluable", "no")
    cell(tables, "subjects", 4, "dlt_evaluable", "True")
    cell(tables, "adverse_events", 2, "serious", "FALSE")
    cell(tables, "adverse_events", 2, "related", "1")
    cell(tables, "adverse_events", 2, "dlt", "0")
    cell(tables, "adverse_events", 3, "serious", "y")
    cell(tables, "adverse_events", 3, "related", "Yes")
    cell(tables, "adverse_events", 3, "dlt", "tRuE")
    cell(tables, "tumor_assessments", 2, "new_lesions", "n")
    cell(tables, "tumor_assessments", 3, "new_lesions", "No")
    src = write_csv_set(tmp_path / "csv", tables)
    db = tmp_path / DB_NAME
    assert import_csv_dir(src, db) == []
    assert query(db, "SELECT subject_id, dlt_evaluable FROM subjects ORDER BY subject_id") == [
        ("001", "Y"), ("002", "N"), ("003", "Y")]
    assert query(db, "SELECT subject_id, serious, related, dlt FROM adverse_events "
                     "ORDER BY subject_id") == [("001", "N", "Y", "N"), ("002", "Y", "Y", "Y")]
    assert query(db, "SELECT new_lesions FROM tumor_assessments ORDER BY assessment_date") == [
        ("N",), ("N",)]


# --------------------------------------------------------------------------- keys and references


def _dup_subject(t):
    assert append_copy(t, "subjects", 3) == 5


def _dup_dose_level(t):
    assert append_copy(t, "dose_levels", 2, label="1 mg/kg again") == 4


def _dup_study(t):
    assert append_copy(t, "studies", 2, title="same id again") == 3


def _dup_site(t):
    assert append_copy(t, "sites", 2, name="Other") == 3


def _unknown_study_dose_level(t):
    assert append_copy(t, "dose_levels", 2, study_id="S9") == 4


def _unknown_subject(table):
    def mutate(t):
        assert append_copy(t, table, 2, subject_id="999") == len(_VALID[table]) + 2
    return mutate


REFERENCE_CASES = [
    ("duplicate_subject", _dup_subject, [("subjects", 5, "subject_id", None)]),
    ("duplicate_dose_level", _dup_dose_level, [("dose_levels", 4, "level", None)]),
    ("duplicate_study", _dup_study, [("studies", 3, "study_id", None)]),
    ("duplicate_site", _dup_site, [("sites", 3, "site_id", None)]),
    ("unknown_study_dose_levels", _unknown_study_dose_level, [("dose_levels", 4, "study_id", "S9")]),
    ("unknown_study_subjects", lambda t: cell(t, "subjects", 4, "study_id", "S9"),
     [("subjects", 4, "study_id", "S9")]),
    ("unknown_study_studies_ref_in_admin",
     lambda t: cell(t, "administrations", 4, "study_id", "S9"),
     [("administrations", 4, "study_id", "S9")]),
    ("unknown_subject_administrations", _unknown_subject("administrations"),
     [("administrations", 5, "subject_id", "999")]),
    ("unknown_subject_adverse_events", _unknown_subject("adverse_events"),
     [("adverse_events", 4, "subject_id", "999")]),
    ("unknown_subject_tumor_assessments", _unknown_subject("tumor_assessments"),
     [("tumor_assessments", 4, "subject_id", "999")]),
    ("unknown_subject_lab_results", _unknown_subject("lab_results"),
     [("lab_results", 5, "subject_id", "999")]),
    ("unknown_dose_level", lambda t: cell(t, "subjects", 2, "dose_level", "7"),
     [("subjects", 2, "dose_level", "7")]),
    ("unknown_site", lambda t: cell(t, "subjects", 3, "site_id", "SITE9"),
     [("subjects", 3, "site_id", "SITE9")]),
    ("enrolled_without_dose_level", lambda t: cell(t, "subjects", 2, "dose_level", ""),
     [("subjects", 2, "dose_level", None)]),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in REFERENCE_CASES],
                         ids=[c[0] for c in REFERENCE_CASES])
def test_key_and_reference_rule(tmp_path, baseline, mutate, expected):
    tables = valid_tables()
    mutate(tables)
    problems = import_must_fail(tmp_path, baseline, tables)
    for table, row, column, contains in expected:
        assert_problem(problems, table, row, column, contains=contains)


# --------------------------------------------------------------------------- date order


def _ae_after_death(t):
    cell(t, "subjects", 2, "death_date", "2025-03-10")
    cell(t, "subjects", 2, "last_contact_date", "2025-03-10")
    cell(t, "adverse_events", 2, "onset_date", "2025-03-12")
    cell(t, "adverse_events", 2, "end_date", "")


def _dosed_and_assessed_after_death(t):
    cell(t, "subjects", 2, "death_date", "2025-01-20")
    cell(t, "subjects", 2, "off_treatment_date", "")
    cell(t, "subjects", 2, "last_contact_date", "2025-01-20")


def _screen_failure_dosed(t):
    assert append_copy(t, "administrations", 2, subject_id="003", admin_date="2025-01-08") == 5


DATE_CASES = [
    ("ae_onset_before_consent", lambda t: cell(t, "adverse_events", 2, "onset_date", "2024-12-30"),
     [("adverse_events", 2, "onset_date", "2024-12-30")]),
    ("ae_end_before_onset", lambda t: cell(t, "adverse_events", 2, "end_date", "2025-01-11"),
     [("adverse_events", 2, "end_date", "2025-01-11")]),
    ("admin_end_before_start", lambda t: cell(t, "administrations", 4, "end_date", "2025-01-14"),
     [("administrations", 4, "end_date", "2025-01-14")]),
    ("enrollment_before_screening", lambda t: cell(t, "subjects", 2, "enrollment_date", "2025-01-01"),
     [("subjects", 2, "enrollment_date", "2025-01-01")]),
    ("admin_before_enrollment", lambda t: cell(t, "administrations", 2, "admin_date", "2025-01-09"),
     [("administrations", 2, "admin_date", "2025-01-09")]),
    ("ae_after_death", _ae_after_death, [("adverse_events", 2, "onset_date", "2025-03-12")]),
    ("admin_and_assessment_after_death", _dosed_and_assessed_after_death,
     [("administrations", 3, "admin_date", "2025-01-31"),
      ("tumor_assessments", 3, "assessment_date", "2025-03-01")]),
    ("off_treatment_before_enrollment",
     lambda t: cell(t, "subjects", 2, "off_treatment_date", "2025-01-05"),
     [("subjects", 2, "off_treatment_date", "2025-01-05")]),
    ("screen_failure_dosed", _screen_failure_dosed, [("administrations", 5, "subject_id", "003")]),
]


@pytest.mark.parametrize("mutate,expected", [c[1:] for c in DATE_CASES],
                         ids=[c[0] for c in DATE_CASES])
def test_date_order_rule(tmp_path, baseline, mutate, expected):
    tables = valid_tables()
    mutate(tables)
    problems = import_must_fail(tmp_path, baseline, tables)
    for table, row, column, contains in expected:
        assert_problem(problems, table, row, column, contains=contains)


def test_ae_before_first_dose_imports_without_warning(tmp_path, baseline):
    """AEs are collected from consent: a pre-dose AE is ordinary data (a baseline event on the Safety page)."""
    db, digest = baseline
    tables = valid_tables()
    cell(tables, "adverse_events", 2, "onset_date", "2025-01-05")  # after consent, before dose
    src = write_csv_set(tmp_path / "baseline_csv", tables)
    assert import_csv_dir(src, db) == []
    assert counts(db) == expected_counts(tables)
    assert query(db, "SELECT onset_date::VARCHAR FROM adverse_events WHERE subject_id = '001'") == [
        ("2025-01-05",)]
    assert leftovers(db.parent) == []


# --------------------------------------------------------------------------- many at once


def _several_defects(t):
    cell(t, "studies", 2, "design", "4+4")                      # coded value
    cell(t, "dose_levels", 3, "label", "")                       # empty required value
    cell(t, "subjects", 3, "sex", "X")                           # coded value
    cell(t, "adverse_events", 3, "grade", "6")                   # range
    cell(t, "tumor_assessments", 3, "overall_response", "Stable")  # coded value
    cell(t, "lab_results", 2, "collected_at", "not-a-date")      # bad timestamp


SEVERAL_EXPECTED = [
    ("studies", 2, "design", "4+4"),
    ("dose_levels", 3, "label", None),
    ("subjects", 3, "sex", "X"),
    ("adverse_events", 3, "grade", "6"),
    ("tumor_assessments", 3, "overall_response", "Stable"),
    ("lab_results", 2, "collected_at", "not-a-date"),
]


def test_several_defects_are_all_reported_in_one_failure(tmp_path, baseline):
    tables = valid_tables()
    _several_defects(tables)
    problems = import_must_fail(tmp_path, baseline, tables)
    errors = [p for p in problems if p.severity == load.ERROR]
    assert len(errors) == len(SEVERAL_EXPECTED), [str(p) for p in errors]
    for table, row, column, contains in SEVERAL_EXPECTED:
        assert_problem(problems, table, row, column, contains=contains)
    assert 'adverse_events.csv row 3: grade "6" is not a CTCAE grade (1-5)' in [str(p) for p in errors]


# --------------------------------------------------------------------------- replacing


def test_successful_reimport_replaces_old_contents(tmp_path, baseline):
    db, digest = baseline
    tables = valid_tables()
    for table in ("subjects", "administrations", "adverse_events", "tumor_assessments",
                  "lab_results"):
        tables[table] = [r for r in tables[table] if r["subject_id"] != "002"]
    tables["dose_levels"] = tables["dose_levels"][:1]
    src = write_csv_set(tmp_path / "fewer_csv", tables)
    assert import_csv_dir(src, db) == []
    assert sha256(db) != digest
    assert counts(db) == expected_counts(tables)
    assert query(db, "SELECT subject_id FROM subjects ORDER BY subject_id") == [("001",), ("003",)]
    for table in ("administrations", "adverse_events", "lab_results"):
        assert query(db, f"SELECT DISTINCT subject_id FROM {table}") == [("001",)]
    assert query(db, "SELECT level FROM dose_levels") == [(1,)]
    assert leftovers(db.parent) == []


# --------------------------------------------------------------------------- the CLI


def run_cli(csv_dir: Path, db: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "smc", "import", "--csv", str(csv_dir), "--db", str(db)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_import_success(tmp_path):
    tables = valid_tables()
    src = write_csv_set(tmp_path / "csv", tables)
    db = tmp_path / "db" / DB_NAME
    db.parent.mkdir()
    proc = run_cli(src, db)
    assert proc.returncode == 0, proc.stderr
    assert counts(db) == expected_counts(tables)
    assert leftovers(db.parent) == []


def test_cli_validation_errors_exit_2_every_message_on_stderr(tmp_path, baseline):
    db, digest = baseline
    tables = valid_tables()
    _several_defects(tables)
    bad = write_csv_set(tmp_path / "bad_csv", tables)
    raw, read_problems = read_csv_dir(bad)
    expected = [str(p) for p in read_problems + validate(raw).errors]
    assert len(expected) == len(SEVERAL_EXPECTED)

    proc = run_cli(bad, db)
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = [line.strip() for line in proc.stderr.splitlines()]
    for message in expected:
        assert any(message in line for line in lines), (message, proc.stderr)
    assert any('adverse_events.csv row 3: grade "6" is not a CTCAE grade (1-5)' in line
               for line in lines), proc.stderr
    assert sha256(db) == digest
    assert leftovers(db.parent) == []


def test_cli_missing_directory_fails_and_keeps_database(tmp_path, baseline):
    db, digest = baseline
    proc = run_cli(tmp_path / "no_such_dir", db)
    assert proc.returncode != 0
    assert "no_such_dir" in proc.stderr
    assert sha256(db) == digest
    assert leftovers(db.parent) == []


# --------------------------------------------------------------------------- limits, checked before parsing


def errors_of(info) -> list[str]:
    return [str(p) for p in info.value.problems if p.severity == load.ERROR]


def wide_line(n: int, cell: str = "c") -> str:
    return ",".join(f"{cell}{i}" for i in range(n))


@pytest.mark.parametrize("table", ["studies", "lab_results"])
@pytest.mark.parametrize("prefix", ["", "\n\n  \n", "\r,\n"], ids=["plain", "blank-lines", "lone-cr-comma"])
def test_a_200000_column_csv_is_refused_in_under_2_s_naming_the_file_and_the_limit(tmp_path, baseline, table,
                                                                                   prefix):
    db, digest = baseline
    src = write_csv_set(tmp_path / "wide", valid_tables())
    # "\r,\n" is one more blank line to pandas (it swallows a comma after a lone CR): the wide line is still first
    (src / f"{table}.csv").write_text(prefix + wide_line(200_000) + "\n" + wide_line(200_000, "") + "\n")
    started = time.perf_counter()
    with pytest.raises(ImportFailed) as info:
        import_csv_dir(src, db)
    assert time.perf_counter() - started < 2
    (error,) = errors_of(info)  # the file is refused, not also reported missing
    assert error.startswith(f"{table}.csv: ") and "import_max_columns" in error
    assert f"{settings.IMPORT_MAX_COLUMNS:,}" in error
    assert sha256(db) == digest and leftovers(db.parent) == []


def test_columns_at_the_limit_are_read_and_one_more_is_refused(tmp_path, baseline, monkeypatch):
    tables = valid_tables()
    n_columns = len(tables["subjects"][0])
    src = write_csv_set(tmp_path / "csv", tables)
    monkeypatch.setattr(settings, "IMPORT_MAX_COLUMNS", n_columns)
    assert import_csv_dir(src, tmp_path / "at_limit.duckdb") == []
    monkeypatch.setattr(settings, "IMPORT_MAX_COLUMNS", n_columns - 1)
    problems = import_must_fail(tmp_path, baseline, tables)
    assert_problem(problems, "subjects", None, None, contains="import_max_columns")


def test_commas_and_line_breaks_inside_quoted_names_are_not_columns(tmp_path, monkeypatch):
    tables = valid_tables()
    limit = max(len(rows[0]) for rows in tables.values())
    extra = [f"a, b,\nc, d{i}" for i in range(limit - len(tables["sites"][0]))]  # sites as wide as the widest
    src = write_csv_set(tmp_path / "csv", tables)
    rows = (src / "sites.csv").read_text().splitlines()
    header = rows[0] + "".join(f',"{name}"' for name in extra)
    (src / "sites.csv").write_text("\n".join([header] + [r + ",x" * len(extra) for r in rows[1:]]) + "\n")
    monkeypatch.setattr(settings, "IMPORT_MAX_COLUMNS", limit)
    warnings = import_csv_dir(src, tmp_path / "quoted.duckdb")
    assert [p.column for p in warnings] == extra  # each one column, named as written


def test_a_data_row_longer_than_the_header_is_a_problem_not_a_traceback(tmp_path, baseline):
    tables = valid_tables()
    bad = write_csv_set(tmp_path / "bad_csv", tables)
    with open(bad / "sites.csv", "a") as fh:
        fh.write("SITE2,Other,FR," + wide_line(5_000, "") + "\n")
    db, digest = baseline
    with pytest.raises(ImportFailed) as info:
        import_csv_dir(bad, db)
    assert any(e.startswith("sites.csv: is not a readable CSV file") for e in errors_of(info)), errors_of(info)
    assert sha256(db) == digest and leftovers(db.parent) == []


@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_rows_at_the_limit_are_read_and_one_more_is_refused(tmp_path, baseline, monkeypatch, newline):
    tables = valid_tables()
    cell(tables, "lab_results", 2, "test_name", "a value\non two lines")  # one row, whatever its line breaks
    n_rows = len(tables["lab_results"])
    src = tmp_path / "csv"
    write_csv_set(src, tables)
    for path in src.iterdir():
        path.write_bytes(path.read_bytes().replace(b"\r\n", newline.encode()))
    monkeypatch.setattr(settings, "IMPORT_MAX_ROWS", n_rows)
    import_csv_dir(src, tmp_path / "at_limit.duckdb")
    assert counts(tmp_path / "at_limit.duckdb")["lab_results"] == n_rows
    append_copy(tables, "lab_results", 2, test_name="ALT")
    problems = import_must_fail(tmp_path, baseline, tables)
    (error,) = [p for p in problems if p.severity == load.ERROR]
    assert str(error).startswith("lab_results.csv: ") and "import_max_rows" in str(error)


def test_a_set_of_files_past_the_byte_limit_is_refused_before_reading_naming_the_largest(tmp_path, baseline,
                                                                                        monkeypatch):
    tables = valid_tables()
    cell(tables, "adverse_events", 2, "outcome", "x" * 700_000)
    cell(tables, "lab_results", 2, "test_name", "y" * 500_000)
    bad = write_csv_set(tmp_path / "bad_csv", tables)
    sizes = {p.name: p.stat().st_size for p in bad.iterdir()}
    assert 1024 * 1024 < sum(sizes.values()) and max(sizes, key=sizes.get) == "adverse_events.csv"
    monkeypatch.setattr(settings, "IMPORT_MAX_MB", 1)
    problems = import_must_fail(tmp_path, baseline, tables)
    (error,) = [str(p) for p in problems if p.severity == load.ERROR]
    assert "import_max_mb" in error and "adverse_events.csv" in error and str(bad) in error


@pytest.mark.parametrize("where", ["header", "value"])
def test_a_nul_byte_is_refused_naming_the_file_not_silently_cut(tmp_path, baseline, where):
    tables = valid_tables()
    if where == "value":
        cell(tables, "adverse_events", 3, "term", "Rash\x00 grade 3")
    else:
        for row in tables["sites"]:
            row["coun\x00try"] = row.pop("country")
    problems = import_must_fail(tmp_path, baseline, tables)
    table = "adverse_events" if where == "value" else "sites"
    assert_problem(problems, table, None, None, contains="NUL")


def test_a_column_named_twice_is_an_error_naming_it(tmp_path, baseline):
    tables = valid_tables()
    header = list(tables["subjects"][0]) + ["sex"]
    bad = write_csv_set(tmp_path / "bad_csv", {t: r for t, r in tables.items() if t != "subjects"})
    with open(bad / "subjects.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in tables["subjects"]:
            writer.writerow(list(row.values()) + ["F"])
    db, digest = baseline
    with pytest.raises(ImportFailed) as info:
        import_csv_dir(bad, db)
    assert "subjects.csv: has the column(s) sex more than once" in errors_of(info)
    assert sha256(db) == digest and leftovers(db.parent) == []


# --------------------------------------------------------------------------- one import per target at a time


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory) -> Path:
    """The demo at portfolio scale as contract CSVs (27 MB; an import takes seconds, its write most of one)."""
    folder = tmp_path_factory.mktemp("big_csv")
    for table, frame in demo_tables(seed=7, scale=10).items():
        load.as_text(frame).to_csv(folder / f"{table}.csv", index=False)
    return folder


def wait_for(condition, timeout: float = 120.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


BUSY = "another import is writing"


def test_two_imports_to_one_target_in_threads_one_is_refused_the_other_succeeds(tmp_path, big_csv, baseline):
    served, served_digest = baseline
    target = served.parent / "cut.duckdb"
    outcomes: dict[str, object] = {}

    def run(name: str) -> None:
        try:
            outcomes[name] = import_csv_dir(big_csv, target)
        except ImportFailed as failed:
            outcomes[name] = failed
        except BaseException as exc:  # noqa: BLE001 - recorded, then the test fails on it
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first",))
    first.start()
    wait_for(lambda: target.with_name("cut.duckdb.lock").exists() or "first" in outcomes, what="the first import")
    run("second")
    first.join()
    refused = [o for o in outcomes.values() if isinstance(o, ImportFailed)]
    done = [o for o in outcomes.values() if isinstance(o, list)]
    assert len(refused) == 1 and len(done) == 1, outcomes
    (message,) = [str(p) for p in refused[0].problems]
    assert BUSY in message and str(target) in message
    assert counts(target)["lab_results"] == sum(1 for _ in open(big_csv / "lab_results.csv")) - 1
    assert sha256(served) == served_digest
    assert leftovers(served.parent) == ["cut.duckdb"]


def test_two_imports_to_one_target_in_processes_one_is_refused_the_other_succeeds(tmp_path, big_csv, baseline):
    served, served_digest = baseline
    target = served.parent / "cut.duckdb"
    command = [sys.executable, "-m", "smc", "import", "--csv", str(big_csv), "--db", str(target)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: target.with_name("cut.duckdb.lock").exists() or first.poll() is not None,
             what="the first import to lock its target")
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    first_err = first.communicate(timeout=300)[1]
    results = sorted([(first.returncode, first_err), (second.returncode, second.stderr)])
    assert [code for code, _ in results] == [0, 2], results
    assert BUSY in results[1][1] and "was not changed" in results[1][1]
    assert all("Traceback" not in err for _, err in results)
    assert counts(target)["subjects"] == sum(1 for _ in open(big_csv / "subjects.csv")) - 1
    assert sha256(served) == served_digest
    assert leftovers(served.parent) == ["cut.duckdb"]


def test_imports_to_two_targets_of_one_folder_run_side_by_side(tmp_path):
    tables = valid_tables()
    src = write_csv_set(tmp_path / "csv", tables)
    folder = tmp_path / "db"
    errors = []

    def run(name):
        try:
            import_csv_dir(src, folder / name)
        except BaseException as exc:  # noqa: BLE001 - recorded, then the test fails on it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"cut{i}.duckdb",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in folder.iterdir()) == [f"cut{i}.duckdb" for i in range(4)]
    assert all(counts(folder / f"cut{i}.duckdb") == expected_counts(tables) for i in range(4))


def test_a_held_target_is_refused_at_once_and_free_again_after_any_ending(tmp_path, baseline):
    db, digest = baseline
    src = write_csv_set(tmp_path / "csv", valid_tables())
    with Target(db):
        started = time.perf_counter()
        with pytest.raises(ImportFailed) as info:
            import_csv_dir(src, db)
        assert time.perf_counter() - started < 1 and BUSY in errors_of(info)[0]
        assert sha256(db) == digest
    broken = valid_tables()
    drop_column(broken, "subjects", "subject_id")
    import_must_fail(tmp_path, baseline, broken)  # refused by validation: the lock goes with it
    assert import_csv_dir(src, db) == []
    assert leftovers(db.parent) == []


def test_a_folder_made_for_a_refused_import_is_removed(tmp_path):
    target = tmp_path / "new" / "deeper" / "cut.duckdb"
    with pytest.raises(ImportFailed):
        import_csv_dir(tmp_path / "no_such_dir", target)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- what a killed import leaves


def test_kill_9_mid_write_keeps_the_target_and_the_next_import_sweeps_the_leftovers(tmp_path, big_csv, baseline):
    db, digest = baseline
    served = db.parent / "served.duckdb"
    served.write_bytes(db.read_bytes())
    proc = subprocess.Popen([sys.executable, "-m", "smc", "import", "--csv", str(big_csv), "--db", str(db)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def writing() -> bool:
        return any((work / "cut.duckdb").exists() for work in db.parent.glob(f".{DB_NAME}.*.import"))

    wait_for(lambda: writing() or proc.poll() is not None, what="the import to start writing")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the import ended before it could be killed mid-write"
    left = leftovers(db.parent)
    assert f"{DB_NAME}.lock" in left and any(name.endswith(".import") for name in left), left
    assert sha256(db) == digest

    # Killed by an older version: .<name>.<pid>.tmp and its WAL, of a process that no longer runs.
    for name in (f".{DB_NAME}.4999999.tmp", f".{DB_NAME}.4999999.tmp.wal", ".other.duckdb.4999999.tmp"):
        (db.parent / name).write_bytes(b"half a database")
    alive = db.parent / f".other.duckdb.{os.getpid()}.tmp"  # a running process's file is kept
    alive.write_bytes(b"being written")
    proc = run_cli(write_csv_set(tmp_path / "csv", valid_tables()), db)
    assert proc.returncode == 0, proc.stderr
    assert counts(db) == expected_counts(valid_tables())
    assert leftovers(db.parent) == [alive.name, "served.duckdb"]
    assert sha256(served) == digest


def test_the_sweep_keeps_what_a_running_import_of_another_target_owns(tmp_path, baseline):
    db, _ = baseline
    src = write_csv_set(tmp_path / "csv", valid_tables())
    dead = db.parent / ".dead.duckdb.abc123.import"
    dead.mkdir()
    (dead / "cut.duckdb").write_bytes(b"half")
    (db.parent / "dead.duckdb.lock").touch()
    (db.parent / "notes.lock").touch()  # not a database's lock: not ours to sweep
    with Target(db.parent / "live.duckdb") as live, live.work_folder() as work:
        (work / "cut.duckdb").write_bytes(b"being written")
        assert import_csv_dir(src, db) == []
        assert leftovers(db.parent) == sorted([work.name, "live.duckdb.lock", "notes.lock"])
    assert leftovers(db.parent) == ["notes.lock"]
