"""Safety labs (hematology, chemistry) as of a date: CTCAE grades, baseline-to-
worst shifts, the liver signal (eDISH) and cytopenia nadir and recovery.
The Safety labs page, ``report`` and the tests call these functions.

Rules
- Baseline: the subject's last result of the test collected on or before the
  day of the first dose of any study treatment. Post-baseline: later results
  collected on or after that day.
- Grade: the reported ``grade``; where empty, derived from value and reference
  range by the CTCAE v5 rules in :mod:`smc.ctcae` (``grade_source`` says which).
- eDISH peaks: the highest ALT, AST and total bilirubin ×ULN on or after the
  first dose (not necessarily on the same day, as in the FDA's eDISH).
- Nadir: the lowest value on or after the first dose of the study's agent;
  recovery: the first later result at grade ≤ 1.
- Days on this page count from the first dose of the study's agent, so the DLT
  window is [0, dlt_window_days) for everyone.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from smc import ctcae
from smc.db import Database
from smc.study import Study

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
    results: pd.DataFrame  # one row per result with grade, grade_source, xuln, day, baseline/post flags

    def graded_tests(self) -> list[str]:
        graded = self.results[self.results["grade"].notna()]
        return list(dict.fromkeys(graded.sort_values(["category", "test"])["test"]))


def derive_grades(results: pd.DataFrame) -> pd.DataFrame:
    """Fill empty grades from value and reference range (CTCAE v5) and say where each grade came from."""
    derived = [ctcae.grade(t, v, lo, hi, u) if pd.isna(g) else g for t, v, lo, hi, u, g in zip(
        results["test"], results["value"].astype(object).where(results["value"].notna(), None),
        results["ref_low"].astype(object).where(results["ref_low"].notna(), None),
        results["ref_high"].astype(object).where(results["ref_high"].notna(), None),
        results["unit"], results["grade"])]
    source = np.where(results["grade"].notna(), "reported",
                      np.where(pd.Series(derived, index=results.index).notna(), "CTCAE v5 from value", ""))
    return results.assign(grade=pd.array(derived, dtype="Int64"), grade_source=source)


def mark_baseline(results: pd.DataFrame) -> pd.DataFrame:
    """Flag each subject's baseline result per test and the post-baseline results."""
    results = results.sort_values(["subject_id", "test", "collected_at"]).reset_index(drop=True)
    collected_day = results["collected_at"].dt.normalize()
    first_dose = pd.to_datetime(results["first_dose_date"])
    eligible = collected_day <= first_dose
    baseline_rows = results[eligible].groupby(["subject_id", "test"])["collected_at"].idxmax()
    baseline = pd.Series(results.index.isin(baseline_rows), index=results.index)
    baseline_at = (results["collected_at"].where(baseline).groupby([results["subject_id"], results["test"]])
                   .transform("max").fillna(pd.Timestamp.min))
    post = (collected_day >= first_dose) & (results["collected_at"] > baseline_at)
    return results.assign(baseline=baseline, post_baseline=post)


def load_safety_labs(db: Database, study: Study, as_of: dt.date) -> SafetyLabs:
    results = db.query("lab_results", study_id=study.study_id, as_of=as_of, categories=list(SAFETY_CATEGORIES))
    results["label"] = results["level"].map(study.label)
    results["xuln"] = results["value"] / results["ref_high"]
    return SafetyLabs(study, as_of, mark_baseline(derive_grades(results)))


def shift_table(labs: SafetyLabs) -> pd.DataFrame:
    """Subjects per test, level, baseline grade and worst post-baseline grade (subjects with a
    post-baseline graded result; baseline grade NA when there was none)."""
    graded = labs.results[labs.results["grade"].notna()]
    base = graded[graded["baseline"]].set_index(["subject_id", "test"])["grade"].rename("baseline_grade")
    worst = (graded[graded["post_baseline"]].groupby(["subject_id", "test", "level"])["grade"].max()
             .rename("worst_grade").reset_index())
    worst = worst.join(base, on=["subject_id", "test"])
    counts = (worst.groupby(["test", "level", "baseline_grade", "worst_grade"], dropna=False)
              .size().rename("n").reset_index())
    return counts.astype({"baseline_grade": "Int64", "worst_grade": "Int64"})


def shift_matrix(shift: pd.DataFrame, test: str, study: Study) -> pd.DataFrame:
    """Display form of one test's shifts: a row per level and baseline grade, worst grade 0-4 across."""
    mine = shift[shift["test"] == test].astype({"baseline_grade": "float"}).fillna({"baseline_grade": -1})
    table = mine.pivot_table(index=["level", "baseline_grade"], columns="worst_grade", values="n", aggfunc="sum",
                             fill_value=0)
    table = table.reindex(columns=range(5), fill_value=0)
    table.columns = [f"Worst {g}" for g in range(5)]
    table["Subjects"] = table.sum(axis=1)
    table = table[table["Subjects"] > 0].reset_index()
    table.insert(0, "Dose level", table.pop("level").map(study.label))
    table["baseline_grade"] = table["baseline_grade"].map(lambda g: "missing" if g < 0 else str(int(g)))
    return table.rename(columns={"baseline_grade": "Baseline grade"})


def liver_peaks(labs: SafetyLabs) -> pd.DataFrame:
    """Per dosed subject with liver tests: peak ALT, AST and bilirubin ×ULN after first dose, and the quadrant."""
    r = labs.results
    post = r[(r["collected_at"].dt.normalize() >= pd.to_datetime(r["first_dose_date"])) & r["xuln"].notna()
             & r["test"].isin([*LIVER_TESTS, "Bilirubin"])]
    peaks = post.pivot_table(index=["subject_id", "level", "label", "phase"], columns="test", values="xuln",
                             aggfunc="max").reset_index()
    for test in (*LIVER_TESTS, "Bilirubin"):
        if test not in peaks:
            peaks[test] = np.nan
    peaks = peaks.rename(columns={"ALT": "peak_alt_xuln", "AST": "peak_ast_xuln", "Bilirubin": "peak_bili_xuln"})
    peaks.columns.name = None
    peaks = peaks[peaks["peak_alt_xuln"].notna() & peaks["peak_bili_xuln"].notna()].reset_index(drop=True)
    peaks["hys_law_quadrant"] = [hys_law_quadrant(a, b) for a, b in
                                 zip(peaks["peak_alt_xuln"], peaks["peak_bili_xuln"])]
    return peaks


def hys_law_quadrant(peak_transaminase_xuln: float, peak_bili_xuln: float) -> str:
    """eDISH quadrant: ALT (or AST) ≥ 3×ULN and total bilirubin ≥ 2×ULN is a possible Hy's law case."""
    return QUADRANTS[(peak_transaminase_xuln >= HY_LAW_ALT_XULN, peak_bili_xuln >= HY_LAW_BILI_XULN)]


def nadir_recovery(labs: SafetyLabs, test: str) -> pd.DataFrame:
    """Per subject dosed with the agent: baseline, nadir (value, day, grade) on or after the agent's
    first dose, and the first later day at grade ≤ 1 (NaN: not recovered by the as-of date)."""
    keys = ["subject_id", "level", "label", "phase"]
    columns = [*keys, "unit", "baseline_value", "nadir_value", "nadir_day", "nadir_grade", "recovery_day", "recovery"]
    r = labs.results[(labs.results["test"] == test) & labs.results["value"].notna()]
    after = r[r["agent_day"] >= 0]
    if after.empty:
        return pd.DataFrame(columns=columns).astype({"nadir_grade": "Int64"})
    # Each subject's lowest value on or after the first dose (its first occurrence: rows are in time order).
    nadirs = after.loc[after.groupby(keys)["value"].idxmin().to_numpy()]
    baseline = r[r["baseline"]].groupby(keys)["value"].first().rename("baseline_value")
    later = after.merge(nadirs[[*keys, "collected_at"]], on=keys, suffixes=("", "_nadir"))
    recovered = later[(later["collected_at"] > later["collected_at_nadir"]) & later["grade"].notna()
                      & (later["grade"] <= 1)]
    first_recovery = recovered.groupby(keys)["agent_day"].first().rename("first_recovery_day")
    out = nadirs.join(baseline, on=keys).join(first_recovery, on=keys).reset_index(drop=True)
    needs_recovery = out["grade"].notna() & (out["grade"] >= 2)
    out = out.assign(nadir_value=out["value"], nadir_day=out["agent_day"], nadir_grade=out["grade"],
                     recovery_day=out["first_recovery_day"].where(needs_recovery))
    out["recovery"] = ["no grade ≥2" if not needs else "not recovered" if pd.isna(day) else f"day {day:.0f}"
                       for needs, day in zip(needs_recovery, out["first_recovery_day"])]
    return out.sort_values(keys, kind="stable")[columns].reset_index(drop=True).astype({"nadir_grade": "Int64"})


def high_grade_listing(labs: SafetyLabs, min_grade: int = 3) -> pd.DataFrame:
    """Results at grade ≥ ``min_grade``, by level, subject and time."""
    r = labs.results
    listed = r[r["grade"].notna() & (r["grade"] >= min_grade)]
    return listed[["subject_id", "level", "label", "phase", "test", "collected_at", "agent_day", "value", "unit",
                   "xuln", "grade", "grade_source"]].sort_values(["level", "subject_id", "collected_at"]) \
        .reset_index(drop=True)


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
