"""The data contract: which tables and columns exist, which are required, and
the value rules the loader checks.

Column names and types come from ``data/schema.sql`` (one source of truth);
this module adds what SQL cannot say well: required CSV columns, the allowed
words of each coded column, and the human wording of each rule.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import duckdb

from smc import settings
from smc.rules.escalation import DESIGNS

# Load order: a table only references tables before it.
TABLES = (
    "studies",
    "dose_levels",
    "stages",
    "sites",
    "subjects",
    "subject_stages",
    "administrations",
    "adverse_events",
    "tumor_assessments",
    "lab_results",
)
REQUIRED_FILES = ("studies", "dose_levels", "subjects")

REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "studies": ("study_id", "design", "agent", "dlt_window_days"),
    "dose_levels": ("study_id", "level", "label"),
    "stages": ("study_id", "stage", "stage_order", "agent", "dlt_window_days"),
    "sites": ("site_id",),
    "subjects": ("study_id", "subject_id", "enrollment_date", "dose_level"),
    "subject_stages": ("study_id", "subject_id", "stage", "dose_level"),
    "administrations": ("study_id", "subject_id", "agent", "admin_date"),
    "adverse_events": ("study_id", "subject_id", "term", "onset_date", "grade", "dlt"),
    "tumor_assessments": ("study_id", "subject_id", "assessment_date"),
    "lab_results": ("study_id", "subject_id", "collected_at", "test", "value"),
}

# Columns that must hold a value in every row (a required column may be empty:
# a screen failure has no enrollment_date).
NOT_EMPTY: dict[str, tuple[str, ...]] = {
    "studies": ("study_id", "design", "agent", "dlt_window_days"),
    "dose_levels": ("study_id", "level", "label"),
    "stages": ("study_id", "stage", "stage_order", "agent", "dlt_window_days"),
    "sites": ("site_id",),
    "subjects": ("study_id", "subject_id"),
    "subject_stages": ("study_id", "subject_id", "stage", "dose_level"),
    "administrations": ("study_id", "subject_id", "agent", "admin_date"),
    "adverse_events": ("study_id", "subject_id", "term", "onset_date", "grade", "dlt"),
    "tumor_assessments": ("study_id", "subject_id", "assessment_date"),
    "lab_results": ("study_id", "subject_id", "collected_at", "test"),
}

PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "studies": ("study_id",),
    "dose_levels": ("study_id", "level"),
    "stages": ("study_id", "stage"),
    "sites": ("site_id",),
    "subjects": ("study_id", "subject_id"),
    "subject_stages": ("study_id", "subject_id", "stage"),
    # ae_seq is optional; when given it identifies the AE within the subject.
    "adverse_events": ("study_id", "subject_id", "ae_seq"),
}

# What matches a record of one data cut to the same record in another (docs/data-contract.md#record-keys). A table
# listed with two keys uses the first where every record of the study has it in both cuts, else the second: an
# AE's sponsor identifier survives a renumbered AESEQ. Lab results and tumor assessments are matched on what was
# measured when; an empty part of a key (no admin_time) matches an empty part.
RECORD_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "studies": (("study_id",),),
    "dose_levels": (("study_id", "level"),),
    "stages": (("study_id", "stage"),),
    "subjects": (("study_id", "subject_id"),),
    "subject_stages": (("study_id", "subject_id", "stage"),),
    "administrations": (("study_id", "subject_id", "agent", "admin_date", "admin_time"),),
    "adverse_events": (("study_id", "subject_id", "ae_spid"), ("study_id", "subject_id", "ae_seq")),
    "tumor_assessments": (("study_id", "subject_id", "assessment_date"),),
    "lab_results": (("study_id", "subject_id", "test", "specimen", "collected_at"),),
}

FLAG_COLUMNS: dict[str, tuple[str, ...]] = {
    "subjects": ("dlt_evaluable",),
    "adverse_events": ("serious", "related", "dlt"),
    "tumor_assessments": ("new_lesions",),
}
FLAG_WORDS = {
    "y": "Y", "yes": "Y", "true": "Y", "1": "Y",
    "n": "N", "no": "N", "false": "N", "0": "N",
}


@dataclass(frozen=True)
class Coded:
    """A column whose values come from a fixed list."""

    words: tuple[str, ...]
    what: str  # how the message names the list, e.g. "a design"


CODED: dict[tuple[str, str], Coded] = {
    ("studies", "design"): Coded(DESIGNS, "a known design"),
    ("subjects", "sex"): Coded(("M", "F"), "a sex code"),
    ("subjects", "phase"): Coded(("escalation", "expansion"), "a phase"),
    ("tumor_assessments", "nontarget_response"): Coded(
        ("CR", "NON-CR/NON-PD", "PD", "NE"), "a RECIST non-target response"),
    ("tumor_assessments", "overall_response"): Coded(
        ("CR", "PR", "SD", "PD", "NE"), "a RECIST time-point response"),
    ("lab_results", "category"): Coded(
        ("hematology", "chemistry", "tumor_marker", "t_cell", "virology", "pk",
         "cytokine", "immunogenicity", "other"), "a lab category"),
}


@dataclass(frozen=True)
class Bounds:
    low: float | None
    high: float | None
    what: str


# Integer and numeric ranges, with the words a message uses.
BOUNDS: dict[tuple[str, str], Bounds] = {
    ("adverse_events", "grade"): Bounds(1, 5, "is not a CTCAE grade (1-5)"),
    ("lab_results", "grade"): Bounds(0, 4, "is not a CTCAE lab grade (0-4)"),
    ("studies", "dlt_window_days"): Bounds(1, None, "is not a positive number of days"),
    ("stages", "dlt_window_days"): Bounds(1, None, "is not a positive number of days"),
    ("stages", "stage_order"): Bounds(1, None, "is not a stage order (1, 2, …)"),
    ("studies", "target_dlt_rate"): Bounds(0.01, 0.99, "is not a rate between 0 and 1"),
    ("studies", "planned_enrollment"): Bounds(0, None, "is not a count"),
    ("studies", "min_sd_days"): Bounds(0, None, "is not a number of days"),
    ("subjects", "age"): Bounds(0, 129, "is not an age in years"),
    ("tumor_assessments", "target_sum_mm"): Bounds(0, None, "is not a length in mm"),
    ("dose_levels", "dose"): Bounds(0, None, "is not a dose"),
}


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # VARCHAR, INTEGER, DOUBLE, DATE, TIMESTAMP


@functools.cache
def columns() -> dict[str, tuple[Column, ...]]:
    """Every contract table's columns in schema order, read from schema.sql."""
    con = duckdb.connect()
    try:
        con.execute(settings.SCHEMA_SQL.read_text())
        rows = con.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "ORDER BY table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[Column]] = {t: [] for t in TABLES}
    for table, name, sql_type in rows:
        if table in out:
            out[table].append(Column(name, sql_type))
    return {t: tuple(cols) for t, cols in out.items()}


def column_names(table: str) -> tuple[str, ...]:
    return tuple(c.name for c in columns()[table])
