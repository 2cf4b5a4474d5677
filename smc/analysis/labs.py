"""Safety labs (hematology, chemistry) as of a date: CTCAE grades, baseline-to-
worst shifts, the liver signal (eDISH) and cytopenia nadir and recovery.
The Safety labs page, ``report`` and the tests call these functions. One query
fetches a study's graded results (queries/safety_lab_results.sql, as Arrow);
the summaries are SQL over that fetch (queries/safety_lab_*.sql), so the page
never holds a large study's hundreds of thousands of results as a pandas frame.

Rules: docs/rules.md#safety-labs.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from smc.rules import ctcae
from smc.settings import too_many_subjects
from smc.store.db import Database, query_tables
from smc.store.study import Study

SAFETY_CATEGORIES = ("hematology", "chemistry")
CYTOPENIA_TESTS = ("Neutrophils", "Lymphocytes", "Platelets", "Hemoglobin")
LIVER_TESTS = ("ALT", "AST")
HY_LAW_ALT_XULN = 3.0
HY_LAW_BILI_XULN = 2.0
QUADRANTS = {(True, True): "Possible Hy's law", (False, True): "Hyperbilirubinemia",
             (True, False): "Temple's corollary", (False, False): "Normal range"}


@dataclass(frozen=True)
class SafetyLabs:
    study: Study
    as_of: dt.date
    graded: pa.Table  # one row per result, graded and flagged: queries/safety_lab_results.sql

    def query(self, name: str, **params) -> pd.DataFrame:
        """``queries/<name>.sql`` over the graded results (as the table ``graded``), with the level label."""
        frame = query_tables(name, {"graded": self.graded}, **params)
        if "level" in frame:
            frame.insert(frame.columns.get_loc("level") + 1, "label", self.study.labels(frame["level"]))
        return frame

    @property
    def results(self) -> pd.DataFrame:
        """Every graded result in subject, test and time order (for inspection; the summaries query SQL)."""
        return (self.graded.to_pandas().sort_values(["subject_id", "test", "collected_at"], kind="stable")
                .reset_index(drop=True).astype({"grade": "Int64"}))


def load_safety_labs(db: Database, study: Study, as_of: dt.date) -> SafetyLabs:
    graded = db.arrow("safety_lab_results", study_id=study.study_id, as_of=as_of,
                      categories=list(SAFETY_CATEGORIES), **ctcae.sql_rules())
    return SafetyLabs(study, as_of, graded)


@dataclass(frozen=True)
class LabSummary:
    """What the Safety labs page shows, computed once per data cut, study and date and small enough to
    cache: the page never holds the hundreds of thousands of results of a large study."""
    results: int
    derived: int  # results graded by the dashboard (no reported grade)
    graded_tests: list[str]
    shift: pd.DataFrame
    liver: pd.DataFrame
    listing: pd.DataFrame
    nadirs: dict[str, pd.DataFrame]  # per cytopenia test
    course: pd.DataFrame  # cytopenia results on the lab-course days


def course_days(dlt_window_days: int) -> tuple[int, int]:
    """Days drawn on the lab course: two weeks before the first dose to three DLT windows after it (months of
    weekly labs for thousands of subjects would be megabytes of marks that hide the window)."""
    return -14, 3 * dlt_window_days


COURSE_MIN_RESULTS = 10  # a level's quartiles are drawn on a day with at least this many results


def course_as_quartiles(course: pd.DataFrame, test: str) -> bool:
    """Whether the lab course of ``test`` has too many subjects to draw one line each."""
    return too_many_subjects(course[course["test"] == test])


def course_quartiles(course: pd.DataFrame, test: str) -> pd.DataFrame:
    """Per dose level and day from first dose: the number of results of ``test`` (n), their median and 25th
    and 75th percentiles (linear interpolation). Days with fewer than COURSE_MIN_RESULTS results at a level (the
    odd unscheduled sample) are left out: a quartile of three values would jag the line."""
    results = course[(course["test"] == test) & course["value"].notna()]
    by_day = results.groupby(["level", "agent_day"], sort=True)["value"]
    table = pd.DataFrame({"n": by_day.size(), "median": by_day.median(), "q1": by_day.quantile(0.25),
                          "q3": by_day.quantile(0.75)}).reset_index()
    return table[table["n"] >= COURSE_MIN_RESULTS].reset_index(drop=True)


def load_lab_summary(db: Database, study: Study, as_of: dt.date) -> LabSummary:
    labs = load_safety_labs(db, study, as_of)
    tests = labs.query("safety_lab_tests")
    first_day, last_day = course_days(study.dlt_window_days)
    return LabSummary(
        results=int(tests["results"].sum()), derived=int(tests["derived"].sum()),
        graded_tests=list(dict.fromkeys(tests.loc[tests["graded"] > 0, "test"])),
        shift=shift_table(labs), liver=liver_peaks(labs), listing=high_grade_listing(labs),
        nadirs=nadir_recoveries(labs),
        course=labs.query("safety_lab_course", tests=list(CYTOPENIA_TESTS), first_day=first_day, last_day=last_day))


def shift_table(labs: SafetyLabs) -> pd.DataFrame:
    """Subjects per test, level, baseline grade and worst post-baseline grade (subjects with a
    post-baseline graded result; baseline grade NA when there was none)."""
    return labs.query("safety_lab_shift").astype(
        {"level": "int64", "baseline_grade": "Int64", "worst_grade": "Int64", "n": "int64"})


def shift_matrix(shift: pd.DataFrame, test: str, study: Study) -> pd.DataFrame:
    """Display form of one test's shifts: a row per level and baseline grade, worst grade 0-4 across."""
    mine = shift[shift["test"] == test].astype({"baseline_grade": "float"}).fillna({"baseline_grade": -1})
    table = mine.pivot_table(index=["level", "baseline_grade"], columns="worst_grade", values="n", aggfunc="sum",
                             fill_value=0)
    table = table.reindex(columns=range(5), fill_value=0)
    table.columns = [f"Worst {g}" for g in range(5)]
    table["Subjects"] = table.sum(axis=1)
    table = table[table["Subjects"] > 0].reset_index()
    table.insert(0, "Dose level", study.labels(table.pop("level")))
    table["baseline_grade"] = table["baseline_grade"].map(lambda g: "missing" if g < 0 else str(int(g)))
    return table.rename(columns={"baseline_grade": "Baseline grade"})


def liver_peaks(labs: SafetyLabs) -> pd.DataFrame:
    """Per dosed subject with liver tests: peak ALT, AST and bilirubin ×ULN after first dose, and the quadrant."""
    peaks = labs.query("safety_lab_liver")
    peaks["hys_law_quadrant"] = [hys_law_quadrant(a, b) for a, b in
                                 zip(peaks["peak_alt_xuln"], peaks["peak_bili_xuln"])]
    return peaks


def hys_law_quadrant(peak_transaminase_xuln: float, peak_bili_xuln: float) -> str:
    """eDISH quadrant: ALT (or AST) ≥ 3×ULN and total bilirubin ≥ 2×ULN is a possible Hy's law case."""
    return QUADRANTS[(peak_transaminase_xuln >= HY_LAW_ALT_XULN, peak_bili_xuln >= HY_LAW_BILI_XULN)]


def nadir_recoveries(labs: SafetyLabs, tests: tuple[str, ...] = CYTOPENIA_TESTS) -> dict[str, pd.DataFrame]:
    """Per test, per subject dosed with the agent: baseline, nadir (value, day, grade) on or after the
    agent's first dose, and the first later day at grade ≤ 1 (NaN: not recovered by the as-of date)."""
    found = labs.query("safety_lab_nadir", tests=list(tests)).astype(
        {"nadir_grade": "Int64", "recovery_day": "float"})
    return {test: found[found["test"] == test].drop(columns="test").reset_index(drop=True) for test in tests}


def high_grade_listing(labs: SafetyLabs, min_grade: int = 3) -> pd.DataFrame:
    """Results at grade ≥ ``min_grade``, by level, subject and time."""
    return labs.query("safety_lab_listing", min_grade=min_grade).astype({"grade": "Int64"})


def labs_json(labs: SafetyLabs) -> dict:
    """The ``labs`` section of ``report --json``."""
    return {
        "shift": [{"test": r.test, "level": int(r.level),
                   "baseline_grade": None if pd.isna(r.baseline_grade) else int(r.baseline_grade),
                   "worst_grade": int(r.worst_grade), "n": int(r.n)} for r in shift_table(labs).itertuples()],
        "liver": [{"subject_id": r.subject_id, "level": int(r.level), "peak_alt_xuln": round(float(r.peak_alt_xuln), 3),
                   "peak_bili_xuln": round(float(r.peak_bili_xuln), 3), "hys_law_quadrant": r.hys_law_quadrant}
                  for r in liver_peaks(labs).itertuples()],
    }
