"""Tumor response as of a date: each dosed subject's RECIST 1.1 best overall
response, the response table with exact CIs, duration of and time to response,
and the investigator's time points that disagree with the measurements. The
Efficacy page, ``report`` and the tests use these functions.

Rules: docs/rules.md#tumor-response.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.rules import recist
from smc.rules.stats import exact_ci
from smc.store.db import Database, as_date
from smc.store.study import Study

SUBJECT_COLUMNS = ["subject_id", "level", "label", "phase", "first_dose_date", "baseline_date", "baseline_sum_mm",
                   "n_post_baseline", "bor", "bor_reason", "best_pct_change", "response_date", "confirmed_on",
                   "progression_date", "ttr_days", "dor_days", "dor_event", "last_assessment_date",
                   "off_treatment_date", "off_study_date", "death_date", "followed_days", "ongoing"]

TIME_POINT_COLUMNS = ["subject_id", "assessment_date", "target_sum_mm", "new_lesions", "nontarget_response",
                      "overall_response", "baseline", "pct_change", "nadir_mm", "change_from_nadir_mm",
                      "change_from_nadir_pct", "data_issue", "level", "label", "phase", "bor", "day"]


@dataclass(frozen=True)
class Efficacy:
    study: Study
    as_of: dt.date
    subjects: pd.DataFrame  # one row per dosed subject (SUBJECT_COLUMNS)
    time_points: pd.DataFrame  # assessments from baseline on, with day, % change, nadir and data_issue

    @property
    def evaluable(self) -> pd.DataFrame:
        """Subjects with a baseline assessment: the ORR/DCR denominator."""
        return self.subjects[self.subjects["baseline_date"].notna()]

    def for_phase(self, phase: str) -> Efficacy:
        if phase == "all":
            return self
        keep = self.subjects[self.subjects["phase"] == phase]
        return Efficacy(self.study, self.as_of, keep.reset_index(drop=True),
                        self.time_points[self.time_points["subject_id"].isin(keep["subject_id"])]
                        .reset_index(drop=True))


def _subject(lane, study: Study, as_of: dt.date, measured: dict | None, unbaselined: dict | None) -> dict:
    """One dosed subject's row: BOR from its post-baseline time points (``measured``), or NE with the PD
    and last scan after the first dose (``unbaselined``) when there is no baseline assessment."""
    first_dose = lane.first_dose_date.date()
    row = dict(subject_id=lane.subject_id, level=lane.level, label=study.label(lane.level), phase=lane.phase,
               first_dose_date=first_dose, off_treatment_date=as_date(lane.off_treatment_date),
               off_study_date=as_date(lane.off_study_date), death_date=as_date(lane.death_date))
    end = min(d for d in (row["off_study_date"], row["death_date"], as_of) if d)
    row.update(followed_days=(end - first_dose).days, ongoing=row["off_study_date"] is None and
               row["death_date"] is None)
    if measured is None:
        # Not evaluable for response, but a PD and the last scan still count for PFS.
        after = unbaselined or {}
        row.update(bor="NE", bor_reason="no baseline assessment", n_post_baseline=0,
                   progression_date=after.get("progression_date"), last_assessment_date=after.get("last_date"))
        return row
    post = measured["post"]
    best = recist.best_overall_response(post, first_dose, study.min_sd_days)
    row.update(baseline_date=measured["baseline_date"], baseline_sum_mm=measured["baseline_sum_mm"],
               n_post_baseline=len(post), bor=best.bor, bor_reason=best.reason,
               best_pct_change=measured["best_pct_change"], response_date=best.response_date,
               confirmed_on=best.confirmed_on, progression_date=best.progression_date,
               last_assessment_date=measured["last_date"])
    if best.response_date:
        stop = min((d for d in (best.progression_date, row["death_date"]) if d), default=None)
        row.update(ttr_days=(best.response_date - first_dose).days, dor_event=stop is not None,
                   dor_days=((stop or row["last_assessment_date"]) - best.response_date).days)
    return row


def _measured(points: pd.DataFrame) -> dict[str, dict]:
    """Per subject with a baseline: baseline date and sum, post-baseline time points, best % change, last scan."""
    found = {}
    # Plain values, not itertuples: a Timestamp per cell was most of this loop's time at 2,000 subjects.
    for subject_id, baseline, date, target_sum_mm, response, pct_change in zip(
            points["subject_id"], points["baseline"], points["assessment_date"].dt.date, points["target_sum_mm"],
            points["overall_response"], points["pct_change"]):
        if baseline:
            found[subject_id] = dict(baseline_date=date, baseline_sum_mm=target_sum_mm, post=[],
                                     best_pct_change=float("nan"), last_date=date)
            continue
        subject = found[subject_id]
        subject["post"].append(recist.TimePoint(date, response))
        subject["last_date"] = date
        if pd.notna(pct_change) and not pct_change >= subject["best_pct_change"]:
            subject["best_pct_change"] = pct_change
    return found


def load_efficacy(db: Database, study: Study, as_of: dt.date) -> Efficacy:
    params = dict(study_id=study.study_id, as_of=as_of)
    lanes = db.query("enrolled_subjects", **params)
    lanes = lanes[lanes["first_dose_date"].notna()].reset_index(drop=True)
    scans = db.query("tumor_assessments_as_of", subject_id=None, **params).merge(
        lanes[["subject_id", "first_dose_date"]], on="subject_id")
    on_or_before = scans["assessment_date"].dt.normalize() <= scans["first_dose_date"].dt.normalize()
    baseline = scans[on_or_before].groupby("subject_id")["assessment_date"].max().rename("baseline_date")
    points = recist.changes_from_baseline(scans.merge(baseline.reset_index(), on="subject_id"))
    after = scans[~on_or_before & ~scans["subject_id"].isin(baseline.index)]
    unbaselined = {sid: dict(progression_date=as_date(group.loc[group["overall_response"] == "PD",
                                                                "assessment_date"].min()),
                             last_date=as_date(group["assessment_date"].max()))
                   for sid, group in after.groupby("subject_id")}
    measured = _measured(points)
    rows = [_subject(lane, study, as_of, measured.get(lane.subject_id), unbaselined.get(lane.subject_id))
            for lane in lanes.itertuples()]
    subjects = pd.DataFrame(rows, columns=SUBJECT_COLUMNS).astype(
        {"ttr_days": "Int64", "dor_days": "Int64", "ongoing": bool, "best_pct_change": float})
    # Time points in the lanes' order (level, enrollment), each subject's by date.
    lane_info = lanes[["subject_id", "level", "phase", "first_dose_date"]].assign(
        lane=lanes.index, label=study.labels(lanes["level"]).to_numpy(),
        bor=subjects["bor"].to_numpy())
    time_points = points.drop(columns=["first_dose_date", "baseline_date"]) \
        .merge(lane_info, on="subject_id").sort_values(["lane", "assessment_date"], kind="stable")
    time_points["day"] = (time_points["assessment_date"] - time_points["first_dose_date"]).dt.days
    time_points = time_points[TIME_POINT_COLUMNS].reset_index(drop=True)
    return Efficacy(study, as_of, subjects, time_points)


def _rates(group: pd.DataFrame) -> dict:
    n = len(group)
    counts = {r.lower(): int((group["bor"] == r).sum()) for r in recist.RESPONSES}
    responders, controlled = counts["cr"] + counts["pr"], counts["cr"] + counts["pr"] + counts["sd"]
    orr_lo, orr_hi = exact_ci(responders, n)
    dcr_lo, dcr_hi = exact_ci(controlled, n)
    return dict(n=n, **counts, responders=responders, orr=responders / n if n else None, orr_lo=orr_lo,
                orr_hi=orr_hi, disease_controlled=controlled, dcr=controlled / n if n else None, dcr_lo=dcr_lo,
                dcr_hi=dcr_hi)


def response_table(data: Efficacy) -> pd.DataFrame:
    """BOR counts, ORR and DCR with exact 95% CIs per level with evaluable subjects (dose order), then the
    total (``level`` NA). Proportions are fractions."""
    evaluable = data.evaluable
    rows = [dict(level=level, label=data.study.label(level), **_rates(evaluable[evaluable["level"] == level]))
            for level in data.study.level_order if (evaluable["level"] == level).any()]
    rows.append(dict(level=None, label="Total", **_rates(evaluable)))
    return pd.DataFrame(rows).astype({"level": "Int64"})


def _rate_text(k: int, n: int, low: float | None, high: float | None) -> str:
    if not n:
        return "—"
    return f"{k}/{n} ({k / n:.0%}) [{low:.1%}–{high:.1%}]"


def response_table_display(table: pd.DataFrame) -> pd.DataFrame:
    """The page and CSV form: counts, and ORR / DCR as 'k/n (%) [95% CI]'."""
    out = table[["label", "n", "cr", "pr", "sd", "pd", "ne"]].rename(columns={
        "label": "Dose level", "n": "Evaluable", "cr": "CR", "pr": "PR", "sd": "SD", "pd": "PD", "ne": "NE"})
    out["ORR [95% CI]"] = [_rate_text(r.responders, r.n, r.orr_lo, r.orr_hi) for r in table.itertuples()]
    out["DCR [95% CI]"] = [_rate_text(r.disease_controlled, r.n, r.dcr_lo, r.dcr_hi) for r in table.itertuples()]
    return out


def responders(data: Efficacy) -> pd.DataFrame:
    """Confirmed responders with time to response and duration of response."""
    columns = ["subject_id", "level", "label", "phase", "bor", "response_date", "confirmed_on", "ttr_days",
               "dor_days", "dor_event", "progression_date", "death_date"]
    listed = data.subjects[data.subjects["bor"].isin(["CR", "PR"])][columns].reset_index(drop=True)
    dates = ["response_date", "confirmed_on", "progression_date", "death_date"]
    return listed.assign(**{d: pd.to_datetime(listed[d]) for d in dates})


def data_issues(data: Efficacy) -> pd.DataFrame:
    """Time points whose investigator response disagrees with the measurements."""
    columns = ["subject_id", "level", "label", "assessment_date", "day", "overall_response", "data_issue",
               "target_sum_mm", "pct_change", "nadir_mm", "change_from_nadir_mm", "new_lesions", "nontarget_response"]
    flagged = data.time_points[data.time_points["data_issue"] != ""]
    return flagged[columns].reset_index(drop=True)


def _number(value, digits: int = 4):
    return None if value is None or pd.isna(value) else round(float(value), digits)


def efficacy_json(data: Efficacy) -> dict:
    """The ``efficacy`` section of ``report --json``."""
    by_level = [{"level": None if pd.isna(r.level) else int(r.level), "n": r.n, "cr": r.cr, "pr": r.pr, "sd": r.sd,
                 "pd": r.pd, "ne": r.ne, "orr": _number(r.orr), "orr_lo": _number(r.orr_lo),
                 "orr_hi": _number(r.orr_hi), "dcr": _number(r.dcr), "dcr_lo": _number(r.dcr_lo),
                 "dcr_hi": _number(r.dcr_hi)} for r in response_table(data).itertuples()]
    return {
        "rule": recist.rule_text(data.study.min_sd_days),
        "subjects": [{"subject_id": r.subject_id, "level": int(r.level), "bor": r.bor,
                      "best_pct_change": _number(r.best_pct_change, 2), "evaluable": pd.notna(r.baseline_date)}
                     for r in data.subjects.itertuples()],
        "by_level": by_level,  # the levels in dose order, then the total (level null)
        "total": by_level[-1],
        "data_issues": [{"subject_id": r.subject_id, "assessment_date": r.assessment_date.date().isoformat(),
                         "overall_response": r.overall_response, "issue": r.data_issue}
                        for r in data_issues(data).itertuples()],
    }
