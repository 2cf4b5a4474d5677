"""Biomarkers as of a date: exposure (PK-like tests), shedding, T-cell subsets,
cytokines and immunogenicity from `lab_results`, by dose level. The Biomarkers
page, ``report`` and the tests use these functions.

Rules: docs/rules.md#biomarkers.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from smc.store.db import Database
from smc.store.study import Study

CATEGORIES = {"pk": "Exposure (PK-like)", "virology": "Virology and shedding", "t_cell": "T-cell subsets",
              "cytokine": "Cytokines", "immunogenicity": "Immunogenicity"}
HOURS_AXIS_MAX_H = 7 * 24  # a series sampled only within the first week is shown in hours
DECADES_FOR_LOG = 2  # values spanning 100-fold or more are drawn on a log axis
EXPOSURE_MEASURES = {"cmax": "Cmax", "auc": "AUClast"}


@dataclass(frozen=True)
class Biomarkers:
    study: Study
    as_of: dt.date
    results: pd.DataFrame  # one row per result of a dosed subject, with hours, plot_value, below_lloq
    doses: dict[int, float]  # level -> numeric dose of the agent
    dose_unit: str

    def series(self) -> pd.DataFrame:
        """What the study measured: one row per (category, test, specimen) in category order."""
        r = self.results
        table = (r.groupby(["category", "test", "specimen", "unit"], dropna=False, as_index=False)
                 .agg(n_subjects=("subject_id", "nunique"), n_results=("subject_id", "size"),
                      n_below_lloq=("below_lloq", "sum")))
        order = {c: i for i, c in enumerate(CATEGORIES)}
        return table.sort_values(["category", "test", "specimen"], key=lambda c: c.map(order) if c.name ==
                                 "category" else c).reset_index(drop=True)

    def results_of(self, test: str, specimen: str | None) -> pd.DataFrame:
        r = self.results
        same_specimen = r["specimen"].isna() if specimen is None or pd.isna(specimen) else r["specimen"] == specimen
        return r[(r["test"] == test) & same_specimen].reset_index(drop=True)


def load_biomarkers(db: Database, study: Study, as_of: dt.date) -> Biomarkers:
    r = dosed_results(db.query("lab_results", study_id=study.study_id, as_of=as_of, categories=list(CATEGORIES)),
                      study)
    r["hours"] = (r["collected_at"] - r["first_agent_dose_at"]).dt.total_seconds() / 3600
    r["day"] = r["hours"] / 24
    r["nominal_day"] = np.floor(r["day"] + 0.5).astype(int)  # half a day rounds up, never to even
    r["detected"] = r["value"].notna() & (r["value"] > 0)
    r = r.sort_values(["category", "test", "specimen", "subject_id", "collected_at"]).reset_index(drop=True)
    ladder = db.query("dose_levels")
    ladder = ladder[ladder["study_id"] == study.study_id]
    units = ladder["unit"].dropna()
    return Biomarkers(study, as_of, with_fold_change(r),
                      {int(lv): float(d) for lv, d in zip(ladder["level"], ladder["dose"]) if pd.notna(d)},
                      units.iloc[0] if len(units) else "")


def dosed_results(results: pd.DataFrame, study: Study) -> pd.DataFrame:
    """``lab_results`` rows of subjects dosed with the agent, with the level label, ``below_lloq`` and the
    ``plot_value`` (LLOQ/2 below the LLOQ); a row with neither value nor LLOQ says nothing and is left out."""
    r = results[results["first_agent_dose_at"].notna()].copy()
    r["label"] = study.labels(r["level"])
    r["below_lloq"] = r["value"].isna() & r["lloq"].notna()
    r["plot_value"] = r["value"].fillna(r["lloq"] / 2)
    return r[r["plot_value"].notna()]


def with_fold_change(results: pd.DataFrame) -> pd.DataFrame:
    """Add each result's fold change from the subject's baseline of the same test and specimen."""
    keys = ["subject_id", "test", "specimen"]
    pre = results[results["hours"] <= 0]
    baseline = pre.loc[pre.groupby(keys, dropna=False)["hours"].idxmax(), [*keys, "plot_value"]] \
        .rename(columns={"plot_value": "baseline_value"})
    out = results.merge(baseline, on=keys, how="left")
    out["fold_change"] = np.where((out["hours"] > 0) & (out["baseline_value"] > 0),
                                  out["plot_value"] / out["baseline_value"], np.nan)
    return out


def time_unit(results: pd.DataFrame) -> str:
    """'hours' when every sample falls within a week of the first dose (either side), else 'days'."""
    return "hours" if len(results) and results["hours"].abs().max() <= HOURS_AXIS_MAX_H else "days"


def spans_decades(values: pd.Series) -> bool:
    positive = values[values > 0]
    return len(positive) > 1 and positive.max() / positive.min() >= 10 ** DECADES_FOR_LOG


def level_summary(results: pd.DataFrame, unit: str, measure: str = "plot_value", geometric: bool = True
                  ) -> pd.DataFrame:
    """Per level and nominal time (whole hours or days): n, below-LLOQ count, and the geometric mean with
    ×/÷ geometric SD (or mean ± SD when ``geometric`` is False) of ``measure``."""
    r = results[results[measure].notna()]
    r = r.assign(time=np.floor((r["hours"] if unit == "hours" else r["day"]) + 0.5))
    rows = []
    for (level, label, time), group in r.groupby(["level", "label", "time"], sort=True):
        values = group[measure].to_numpy(dtype=float)
        if geometric:
            logs = np.log(values[values > 0])
            centre = math.exp(logs.mean()) if len(logs) else np.nan
            spread = math.exp(logs.std(ddof=1)) if len(logs) > 1 else np.nan
            low, high = centre / spread, centre * spread
        else:
            centre = values.mean()
            sd = values.std(ddof=1) if len(values) > 1 else np.nan
            low, high = centre - sd, centre + sd
        rows.append(dict(level=level, label=label, time=time, n=len(group),
                         n_below_lloq=int(group["below_lloq"].sum()), centre=centre, low=low, high=high))
    return pd.DataFrame(rows, columns=["level", "label", "time", "n", "n_below_lloq", "centre", "low", "high"])


def auc_linear_up_log_down(hours: np.ndarray, concentrations: np.ndarray) -> float:
    """Area under the curve: linear trapezoid where the concentration rises, stays level or either end
    is 0; logarithmic where it falls between two positive values."""
    area = 0.0
    for t1, t2, c1, c2 in zip(hours[:-1], hours[1:], concentrations[:-1], concentrations[1:]):
        width = t2 - t1
        if c2 >= c1 or c1 <= 0 or c2 <= 0:
            area += width * (c1 + c2) / 2
        else:
            area += width * (c1 - c2) / math.log(c1 / c2)
    return area


def _before_second_dose(results: pd.DataFrame) -> pd.Series:
    """Samples from time 0 up to the second agent dose: the first-dose profile."""
    return (results["hours"] >= 0) & (results["second_agent_dose_at"].isna()
                                      | (results["collected_at"] <= results["second_agent_dose_at"]))


def _profile(hours: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hours, concentration) from one subject's first-dose samples in time order: below-LLOQ (NaN) as 0
    before the first quantifiable sample, dropped after it; (0, 0) added when no sample is at 0."""
    quantified = values > 0  # a measured 0 is as unquantified as a result below the LLOQ (NaN > 0 is False)
    keep = quantified | (np.cumsum(quantified) == 0)
    hours, conc = hours[keep], np.nan_to_num(values[keep], nan=0.0)
    if not len(hours) or hours[0] > 0:
        hours, conc = np.insert(hours, 0, 0.0), np.insert(conc, 0, 0.0)
    return hours, conc


def first_dose_profile(results: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One subject's (hours, concentration) for NCA (see :func:`_profile`)."""
    r = results[_before_second_dose(results)].sort_values("hours")
    return _profile(r["hours"].to_numpy(dtype=float), r["value"].to_numpy(dtype=float))


def _nca(hours: np.ndarray, conc: np.ndarray) -> dict:
    if not (conc > 0).any():
        return dict(cmax=np.nan, tmax_h=np.nan, auc=np.nan, tlast_h=np.nan, n_samples=len(hours))
    peak = int(np.argmax(conc))  # the first occurrence of the maximum
    last = int(np.flatnonzero(conc > 0)[-1])
    return dict(cmax=float(conc[peak]), tmax_h=float(hours[peak]),
                auc=auc_linear_up_log_down(hours[:last + 1], conc[:last + 1]), tlast_h=float(hours[last]),
                n_samples=len(hours))


def nca(results: pd.DataFrame) -> dict:
    """Cmax, Tmax (h) and AUClast of one subject's first-dose profile (NaN when nothing was quantified)."""
    return _nca(*first_dose_profile(results))


def exposure(bm: Biomarkers) -> pd.DataFrame:
    """NCA per subject for every PK-like series (category ``pk``), with the subject's dose."""
    keys = ["test", "specimen", "unit", "level", "label", "subject_id"]
    pk = bm.results[bm.results["category"] == "pk"]
    series = pk.groupby(keys, dropna=False, sort=True).ngroup().rename("series")
    # Sorted once by series and time, each subject's samples are one slice of plain arrays.
    pk = pk.assign(series=series).sort_values(["series", "hours"], kind="stable")
    first_rows = pk.drop_duplicates("series")[keys]
    used = pk[_before_second_dose(pk)]  # a series may have none: its slice is then empty
    bounds = np.searchsorted(used["series"].to_numpy(), np.arange(len(first_rows) + 1))
    hours, values = used["hours"].to_numpy(dtype=float), used["value"].to_numpy(dtype=float)
    rows = []
    for row, start, stop in zip(first_rows.itertuples(), bounds[:-1], bounds[1:]):
        rows.append(dict(subject_id=row.subject_id, level=row.level, label=row.label, test=row.test,
                         specimen=row.specimen, unit=row.unit, dose=bm.doses.get(int(row.level), np.nan),
                         **_nca(*_profile(hours[start:stop], values[start:stop]))))
    return pd.DataFrame(rows, columns=["subject_id", "level", "label", "test", "specimen", "unit", "dose", "cmax",
                                       "tmax_h", "auc", "tlast_h", "n_samples"])


@dataclass(frozen=True)
class PowerFit:
    slope: float
    slope_lo: float
    slope_hi: float
    intercept: float
    n: int

    def predict(self, dose: np.ndarray) -> np.ndarray:
        return np.exp(self.intercept) * np.power(dose, self.slope)


def power_model(dose: pd.Series, exposure_value: pd.Series, confidence: float = 0.95) -> PowerFit | None:
    """Fit ln(exposure) = a + b·ln(dose); None with fewer than 3 subjects or fewer than 2 doses."""
    ok = (dose > 0) & (exposure_value > 0)
    x, y = np.log(dose[ok].to_numpy(dtype=float)), np.log(exposure_value[ok].to_numpy(dtype=float))
    if len(x) < 3 or len(np.unique(x)) < 2:
        return None
    fit = stats.linregress(x, y)
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 2) * fit.stderr
    return PowerFit(fit.slope, fit.slope - half, fit.slope + half, fit.intercept, len(x))


def shedding(bm: Biomarkers) -> pd.DataFrame:
    """Per virology specimen, level and nominal day after dosing: subjects tested and with detectable virus."""
    v = _post_dose_virology(bm)
    return (v.groupby(["test", "specimen", "level", "label", "nominal_day"], as_index=False, dropna=False)
            .agg(n_tested=("subject_id", "nunique"), n_detected=("detected_subject", "nunique")))


def _post_dose_virology(bm: Biomarkers) -> pd.DataFrame:
    v = bm.results[(bm.results["category"] == "virology") & (bm.results["hours"] > 0)]
    return v.assign(detected_subject=v["subject_id"].where(v["detected"]),
                    detected_day=v["nominal_day"].where(v["detected"]))


def shedding_by_level(bm: Biomarkers) -> pd.DataFrame:
    """Per virology specimen and level: subjects with a post-dose sample, subjects ever detected, and the last
    day virus was detected in anyone."""
    v = _post_dose_virology(bm)
    return v.groupby(["test", "specimen", "level", "label"], as_index=False, dropna=False).agg(
        n_tested=("subject_id", "nunique"), n_detected=("detected_subject", "nunique"),
        last_day_detected=("detected_day", "max")).astype({"last_day_detected": "Int64"})


def last_day_detected(bm: Biomarkers) -> pd.DataFrame:
    """Per subject and virology specimen: the last nominal day with detectable virus (NA: never)."""
    v = _post_dose_virology(bm)
    return v.groupby(["subject_id", "level", "label", "test", "specimen"], as_index=False, dropna=False).agg(
        n_samples=("hours", "size"), last_sample_day=("nominal_day", "max"),
        last_day_detected=("detected_day", "max")).astype({"last_day_detected": "Int64"})


def immunogenicity(bm: Biomarkers) -> pd.DataFrame:
    """Per immunogenicity test, level and nominal day (pre-dose = day 0): subjects tested, positive, and the
    geometric mean titer of the positives."""
    r = bm.results[bm.results["category"] == "immunogenicity"]
    r = r.assign(nominal_day=r["nominal_day"].clip(lower=0))
    rows = []
    for (test, level, label, day), group in r.groupby(["test", "level", "label", "nominal_day"], sort=True):
        positive = group[group["detected"]]
        rows.append(dict(test=test, level=level, label=label, nominal_day=day, n_tested=group["subject_id"].nunique(),
                         n_positive=positive["subject_id"].nunique(),
                         gmt=float(np.exp(np.log(positive["value"]).mean())) if len(positive) else np.nan))
    table = pd.DataFrame(rows, columns=["test", "level", "label", "nominal_day", "n_tested", "n_positive", "gmt"])
    table["pct_positive"] = table["n_positive"] / table["n_tested"] * 100
    return table


def t_cell_fold_changes(bm: Biomarkers) -> pd.DataFrame:
    """Per T-cell subset, level and nominal day after dosing: n and geometric mean fold change from baseline."""
    t = bm.results[(bm.results["category"] == "t_cell") & bm.results["fold_change"].notna()]
    return (t.groupby(["test", "level", "label", "nominal_day"], as_index=False)
            .agg(n=("subject_id", "nunique"), gmean_fold_change=("fold_change", lambda f: float(np.exp(np.log(f)
                                                                                                    .mean())))))


@dataclass(frozen=True)
class BiomarkerView:
    """What the Biomarkers page shows for one data cut, study and date, computed once and cached: a rerun
    (another measurement picked) never repeats the per-subject NCA or the shedding and titer tallies."""
    data: Biomarkers
    series: pd.DataFrame
    t_cell_fold_changes: pd.DataFrame
    exposure: pd.DataFrame
    shedding: pd.DataFrame
    shedding_by_level: pd.DataFrame
    last_day_detected: pd.DataFrame
    immunogenicity: pd.DataFrame


def load_biomarker_view(db: Database, study: Study, as_of: dt.date) -> BiomarkerView:
    data = load_biomarkers(db, study, as_of)
    return BiomarkerView(data, data.series(), t_cell_fold_changes(data), exposure(data), shedding(data),
                         shedding_by_level(data), last_day_detected(data), immunogenicity(data))


def _number(value, digits: int = 6):
    return None if value is None or pd.isna(value) else float(f"{float(value):.{digits}g}")


def _text(value) -> str | None:
    return None if value is None or pd.isna(value) else value


def biomarkers_json(bm: Biomarkers) -> dict:
    """The ``biomarkers`` section of ``report --json``."""
    return {
        "exposure": [{"subject_id": r.subject_id, "level": int(r.level), "test": r.test, "specimen": _text(r.specimen),
                      "cmax": _number(r.cmax), "tmax_h": _number(r.tmax_h), "auc": _number(r.auc)}
                     for r in exposure(bm).itertuples()],
        "shedding": [{"test": r.test, "specimen": _text(r.specimen), "level": int(r.level), "n_tested": int(r.n_tested),
                      "n_detected": int(r.n_detected)} for r in shedding_by_level(bm).itertuples()],
    }
