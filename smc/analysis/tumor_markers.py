"""Tumor markers (CA19-9, CEA, CA125, any `tumor_marker` test) as of a date:
values and % change from baseline per subject, per-level medians over time and
each subject's best change. The Efficacy page and the tests use these.

Rules: docs/rules.md#tumor-markers.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from smc.analysis.biomarkers import dosed_results
from smc.store.db import Database
from smc.store.study import Study

CATEGORY = "tumor_marker"
USUAL_MARKERS = ("CA19-9", "CEA", "CA125")  # shown first, in this order
MIN_SUBJECTS_FOR_MEDIAN = 2  # one subject's value is already its own line


def load_tumor_markers(db: Database, study: Study, as_of: dt.date) -> pd.DataFrame:
    """One row per marker result of a dosed subject, with day, plotted value, baseline flag and % change."""
    r = dosed_results(db.query("lab_results", study_id=study.study_id, as_of=as_of, categories=[CATEGORY]), study)
    r = r.sort_values(["subject_id", "test", "collected_at"]).reset_index(drop=True)
    # first_agent_dose_date comes as datetime64 already; pd.to_datetime on it walked every value (50 ms)
    r["day"] = (r["collected_at"] - r["first_agent_dose_date"]).dt.total_seconds() / 86400
    eligible = r[r["collected_at"].dt.normalize() <= r["first_agent_dose_date"]]
    baseline_rows = eligible.groupby(["subject_id", "test"])["collected_at"].idxmax()
    r["baseline"] = r.index.isin(baseline_rows)
    base = r[r["baseline"]].set_index(["subject_id", "test"])
    keys = pd.MultiIndex.from_frame(r[["subject_id", "test"]])
    r["baseline_value"] = base["plot_value"].reindex(keys).to_numpy()
    baseline_at = base["collected_at"].reindex(keys).to_numpy()
    post = r["collected_at"].to_numpy() > baseline_at  # NaT compares False: no baseline, no change
    r["pct_change"] = np.where(post & (r["baseline_value"] > 0),
                               (r["plot_value"] - r["baseline_value"]) / r["baseline_value"] * 100, np.nan)
    return r


def marker_tests(markers: pd.DataFrame) -> list[str]:
    present = set(markers["test"])
    return [t for t in USUAL_MARKERS if t in present] + sorted(present - set(USUAL_MARKERS))


def measured(markers: pd.DataFrame, test: str, measure: str) -> pd.DataFrame:
    """The results of ``test`` that have ``measure`` ('plot_value' or 'pct_change'): what the trend chart draws
    and its medians summarise."""
    return markers[(markers["test"] == test) & markers[measure].notna()]


def level_medians(markers: pd.DataFrame, test: str, measure: str) -> pd.DataFrame:
    """Median and 25th and 75th percentiles (linear interpolation) of ``measure`` ('plot_value' or
    'pct_change') per level and week from first dose (baselines at week 0, later results at week 1 or after),
    with n subjects; only weeks with at least two subjects."""
    r = measured(markers, test, measure)
    r = r.assign(week=np.where(r["baseline"], 0, np.maximum(1, (r["day"] / 7).round())).astype(int))
    by_week = r.groupby(["level", "label", "week"])
    values = by_week[measure]
    medians = pd.DataFrame({"median": values.median(), "q1": values.quantile(0.25), "q3": values.quantile(0.75),
                            "n": by_week["subject_id"].nunique()}).reset_index().assign(day=lambda m: m["week"] * 7)
    return medians[medians["n"] >= MIN_SUBJECTS_FOR_MEDIAN].reset_index(drop=True)


def best_change(markers: pd.DataFrame, test: str) -> pd.DataFrame:
    """Per subject with a post-baseline result: the largest decrease (most negative % change) of ``test``."""
    r = measured(markers, test, "pct_change")
    best = r.loc[r.groupby("subject_id")["pct_change"].idxmin()]
    return best[["subject_id", "level", "label", "baseline_value", "plot_value", "pct_change", "day", "unit"]] \
        .rename(columns={"plot_value": "value", "pct_change": "best_pct_change"}) \
        .sort_values("best_pct_change", ascending=False).reset_index(drop=True)
