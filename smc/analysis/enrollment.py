"""Enrollment as of a date, for the sponsor: screened and enrolled over time
against the plan, the projected date of reaching it, sites, levels, timing and
each subject's status; and one row per study for the portfolio. The Enrollment
page, ``report`` and the tests use these functions.

Rules: docs/rules.md#enrollment.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import chi2

from smc.analysis.dose_decision import decide, load_subject_facts_by_study
from smc.store.db import Database
from smc.store.study import Study, default_as_of, load_studies

RECENT_DAYS = 90
STATUSES = ("In screening", "Screen failure", "Enrolled, not yet dosed", "On treatment", "In follow-up",
            "Off study", "Dead")


def subject_statuses(subjects: pd.DataFrame) -> list[str]:
    """Where each subject stands on the as-of date (the first that applies, from death back to screening)."""
    known = {column: subjects[column].notna() for column in (
        "enrollment_date", "death_date", "off_study_date", "off_treatment_date", "first_dose_date")}
    return list(np.select(
        [subjects["screen_failed"].astype(bool), ~known["enrollment_date"], known["death_date"],
         known["off_study_date"], known["off_treatment_date"], known["first_dose_date"]],
        ["Screen failure", "In screening", "Dead", "Off study", "In follow-up", "On treatment"],
        default="Enrolled, not yet dosed"))


@dataclass(frozen=True)
class Enrollment:
    study: Study
    as_of: dt.date
    subjects: pd.DataFrame  # enrollment_subjects.sql plus label and status

    @property
    def enrolled_subjects(self) -> pd.DataFrame:
        return self.subjects[self.subjects["enrollment_date"].notna()]

    @property
    def screened(self) -> int:
        return len(self.subjects)

    @property
    def screen_failures(self) -> int:
        return int(self.subjects["screen_failed"].sum())

    @property
    def enrolled(self) -> int:
        return len(self.enrolled_subjects)

    @property
    def dosed(self) -> int:
        return int(self.enrolled_subjects["first_dose_date"].notna().sum())

    @property
    def planned(self) -> int | None:
        return self.study.planned_enrollment


def load_enrollment(db: Database, study: Study, as_of: dt.date) -> Enrollment:
    subjects = db.query("enrollment_subjects", study_id=study.study_id, as_of=as_of)
    subjects["label"] = [None if pd.isna(lv) else study.label(int(lv)) for lv in subjects["level"]]
    subjects["status"] = subject_statuses(subjects)
    return Enrollment(study, as_of, subjects)


def cumulative(data: Enrollment) -> pd.DataFrame:
    """date, screened, enrolled: running totals on every date something changed, ending on the as-of date."""
    events = pd.concat([
        pd.DataFrame({"date": data.subjects["screened_on"], "screened": 1, "enrolled": 0}),
        pd.DataFrame({"date": data.enrolled_subjects["enrollment_date"], "screened": 0, "enrolled": 1})])
    if events.empty:
        return pd.DataFrame(columns=["date", "screened", "enrolled"])
    events["date"] = pd.to_datetime(events["date"])
    daily = events.groupby("date")[["screened", "enrolled"]].sum().cumsum()
    end = pd.Timestamp(data.as_of)
    if daily.index[-1] < end:
        daily.loc[end] = daily.iloc[-1]
    return daily.rename_axis("date").reset_index()


def plan_line(data: Enrollment) -> pd.DataFrame | None:
    """date, planned: from the first enrollment (0) to the target (planned) when the study has a target date."""
    if not data.planned or data.study.enrollment_target_date is None or data.enrolled == 0:
        return None
    start = pd.Timestamp(data.enrolled_subjects["enrollment_date"].min())
    return pd.DataFrame({"date": [start, pd.Timestamp(data.study.enrollment_target_date)],
                         "planned": [0, data.planned]})


@dataclass(frozen=True)
class Projection:
    planned: int
    enrolled: int
    window_days: int  # the days the recent rate is measured over
    recent_enrolled: int
    rate_per_day: float
    rate_low: float
    rate_high: float
    reached_on: dt.date | None  # when the plan was already reached
    projected: dt.date | None
    earliest: dt.date | None
    latest: dt.date | None  # None: the rate's lower bound is 0


def poisson_rate_ci(events: int, days: float) -> tuple[float, float]:
    """Exact (Garwood) 95% CI of a Poisson rate per day."""
    low = 0.0 if events == 0 else chi2.ppf(0.025, 2 * events) / 2
    return low / days, chi2.ppf(0.975, 2 * events + 2) / 2 / days


def projection(data: Enrollment, window_days: int = RECENT_DAYS) -> Projection | None:
    """When the plan will be reached at the recent rate; None without a planned number or any enrollment."""
    if not data.planned or data.enrolled == 0:
        return None
    dates = pd.to_datetime(data.enrolled_subjects["enrollment_date"]).dt.date.sort_values().tolist()
    window = min(window_days, (data.as_of - dates[0]).days + 1)
    recent = sum(1 for d in dates if (data.as_of - d).days < window)
    rate = recent / window
    low, high = poisson_rate_ci(recent, window)
    remaining = data.planned - data.enrolled
    if remaining <= 0:
        return Projection(data.planned, data.enrolled, window, recent, rate, low, high, dates[data.planned - 1],
                          None, None, None)

    def after(days: float | None) -> dt.date | None:  # rounded first: 11 / (33 / 90) is 30.000000000000004
        return None if days is None else data.as_of + dt.timedelta(days=math.ceil(round(days, 9)))

    return Projection(data.planned, data.enrolled, window, recent, rate, low, high, None,
                      after(remaining * window / recent if recent else None), after(remaining / high),
                      after(remaining / low if low > 0 else None))


def _counted(values: pd.Series) -> str:
    """'reason (n); …', most frequent first."""
    return "; ".join(f"{value} ({n})" for value, n in values.value_counts().items())


def by_site(data: Enrollment) -> pd.DataFrame:
    """Per site: screened, screen failures (with reasons), enrolled, dosed."""
    rows = []
    for (site_id, name), group in data.subjects.groupby(["site_id", "site_name"], dropna=False, sort=True):
        failed = group[group["screen_failed"]]
        enrolled = group[group["enrollment_date"].notna()]
        rows.append(dict(site_id=site_id, site_name=name, screened=len(group), screen_failures=len(failed),
                         reasons=_counted(failed["screen_fail_reason"]), enrolled=len(enrolled),
                         dosed=int(enrolled["first_dose_date"].notna().sum())))
    return pd.DataFrame(rows, columns=["site_id", "site_name", "screened", "screen_failures", "reasons", "enrolled",
                                       "dosed"])


def by_level(data: Enrollment) -> pd.DataFrame:
    """Enrolled per dose level (dose order) and phase, and dosed."""
    enrolled = data.enrolled_subjects
    rows = []
    for level in data.study.level_order:
        mine = enrolled[enrolled["level"] == level]
        rows.append(dict(level=level, label=data.study.label(level),
                         escalation=int((mine["phase"] == "escalation").sum()),
                         expansion=int((mine["phase"] == "expansion").sum()), enrolled=len(mine),
                         dosed=int(mine["first_dose_date"].notna().sum())))
    return pd.DataFrame(rows)


def screen_fail_reasons(data: Enrollment) -> pd.DataFrame:
    failed = data.subjects[data.subjects["screen_failed"]]
    counts = failed["screen_fail_reason"].value_counts()
    return pd.DataFrame({"reason": counts.index, "n": counts.to_numpy()})


def timing(data: Enrollment) -> pd.DataFrame:
    """Days from screening to enrollment and from enrollment to first dose: n, median, min, max (subjects
    without a recorded screening date or first dose are left out of that interval)."""
    enrolled = data.enrolled_subjects
    intervals = {
        "Screening → enrollment": (pd.to_datetime(enrolled["enrollment_date"])
                                   - pd.to_datetime(enrolled["screening_date"])).dt.days.dropna(),
        "Enrollment → first dose": (pd.to_datetime(enrolled["first_dose_date"])
                                    - pd.to_datetime(enrolled["enrollment_date"])).dt.days.dropna(),
    }
    return pd.DataFrame([dict(interval=name, n=len(days), median=days.median() if len(days) else None,
                              min=days.min() if len(days) else None, max=days.max() if len(days) else None)
                         for name, days in intervals.items()])


def status_counts(data: Enrollment) -> pd.DataFrame:
    """Subjects per status (in STATUSES order, zeros kept), with the off-study reasons."""
    rows = []
    for status in STATUSES:
        mine = data.subjects[data.subjects["status"] == status]
        rows.append(dict(status=status, n=len(mine),
                         reasons=_counted(mine["off_study_reason"]) if status == "Off study" else ""))
    return pd.DataFrame(rows)


def load_portfolio(db: Database) -> pd.DataFrame:
    """One row per study at its own data cut (today without one): design, levels opened, enrolled /
    planned, DLTs, the protocol rule's recommendation. Three queries however many studies (the studies,
    their ladders, every study's subject facts at its cut): a sponsor's database holds dozens."""
    studies = load_studies(db)
    cuts = {study_id: default_as_of(study) for study_id, study in studies.items()}
    facts = load_subject_facts_by_study(db, cuts)
    rows = []
    for study_id, study in studies.items():
        # The rule's facts are exactly the subjects enrolled by the cut (screening is never after
        # enrollment: the loader checks it), so they give the enrolled count and the levels opened too.
        enrolled = facts[study_id]
        decision = decide(study, cuts[study_id], enrolled)
        rec = decision.assessment.recommendation
        target = rec.mtd_level if rec.action == "declare_mtd" else rec.to_level
        opened = len({s.level for s in enrolled if s.level is not None})
        rows.append(dict(study_id=study_id, title=study.title, design=study.design, agent=study.agent,
                         levels_opened=f"{opened} of {len(study.levels)}", enrolled=len(enrolled),
                         planned=study.planned_enrollment, dlts=sum(r.n_dlt for r in decision.rows),
                         recommendation=rec.action + (f" → {study.label(target)}" if target is not None else ""),
                         data_cut_date=study.data_cut_date))
    return pd.DataFrame(rows, columns=["study_id", "title", "design", "agent", "levels_opened", "enrolled",
                                       "planned", "dlts", "recommendation", "data_cut_date"])


def enrollment_json(data: Enrollment) -> dict:
    """The ``enrollment`` section of ``report --json``."""
    return {
        "screened": data.screened, "screen_failures": data.screen_failures, "enrolled": data.enrolled,
        "dosed": data.dosed, "planned": data.planned,
        "by_site": [{"site_id": None if pd.isna(r.site_id) else r.site_id, "screened": r.screened,
                     "enrolled": r.enrolled} for r in by_site(data).itertuples()],
    }
