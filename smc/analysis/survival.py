"""Time-to-event endpoints as of a date: overall survival, progression-free
survival and duration of response, estimated by Kaplan–Meier (lifelines). The
Survival page, ``report`` and the tests use these functions.

Rules: docs/rules.md#survival.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times

from smc.analysis.efficacy import Efficacy, load_efficacy
from smc.store.db import Database, as_date
from smc.store.study import Study

DAYS_PER_MONTH = 30.4375
LANDMARK_MONTHS = (6, 12)
ENDPOINTS = {"os": "Overall survival", "pfs": "Progression-free survival", "dor": "Duration of response"}
DEFINITIONS = {
    "os": "OS: first dose to death from any cause; otherwise censored on the last date known alive (the last "
          "contact date, else the latest dated record).",
    "pfs": "PFS: first dose to the first time-point response of PD (radiological or clinical, as the investigator "
           "recorded it) or death, whichever is first; otherwise censored at the last tumor assessment (day 0 if "
           "none after the first dose).",
    "dor": "DOR: confirmed responders (BOR CR or PR) only, from the first CR/PR to PD or death; otherwise censored "
           "at the last tumor assessment.",
}
Y_TITLES = {"os": "Overall survival", "pfs": "Progression-free", "dor": "Response ongoing"}
ENDPOINT_SHORT = {"os": "OS", "pfs": "PFS", "dor": "DOR"}
GROUPINGS = {"level": "Dose level", "phase": "Phase", "all": "Pooled"}
PHASES = ("escalation", "expansion")
ALL = "all"
TIME_COLUMNS = ["endpoint", "subject_id", "level", "label", "phase", "start_date", "end_date", "days", "event",
                "reason"]


@dataclass(frozen=True)
class Survival:
    study: Study
    as_of: dt.date
    times: pd.DataFrame  # one row per subject and endpoint (TIME_COLUMNS)

    def endpoint(self, name: str) -> pd.DataFrame:
        if name not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {name!r}; expected one of {', '.join(ENDPOINTS)}")
        return self.times[self.times["endpoint"] == name].reset_index(drop=True)


@dataclass(frozen=True)
class Group:
    key: int | str  # the level integer, the phase, or "all"
    label: str
    times: pd.DataFrame  # that group's rows of one endpoint


def _progression_or_death(subject) -> tuple[dt.date, str] | None:
    """The earlier of the first PD time point and death, with which it was."""
    dated = [(d, why) for d, why in ((as_date(subject.progression_date), "progression"),
                                     (as_date(subject.death_date), "death")) if d is not None]
    return min(dated, default=None, key=lambda pair: pair[0])


def _overall_survival(subject, contact: dt.date | None, record: dt.date | None) -> tuple:
    if as_date(subject.death_date):
        return subject.death_date, True, "death"
    if contact:
        return contact, False, "censored: last contact"
    return record or subject.first_dose_date, False, "censored: last dated record (no contact date by then)"


def _progression_free(subject) -> tuple:
    ended = _progression_or_death(subject)
    if ended:
        return ended[0], True, ended[1]
    last_scan = as_date(subject.last_assessment_date)
    if last_scan and last_scan > subject.first_dose_date:
        return last_scan, False, "censored: last tumor assessment"
    # only a baseline (on or before day 0), or no scan: no time at risk observed
    return subject.first_dose_date, False, "censored at first dose: no tumor assessment after it"


def _duration_of_response(subject) -> tuple:
    """Efficacy's duration of response (one rule for the responders table and the curve), and why it ended."""
    end = subject.response_date + dt.timedelta(days=int(subject.dor_days))
    if not subject.dor_event:
        return end, False, "censored: last tumor assessment"
    return end, True, "progression" if as_date(subject.progression_date) == end else "death"


def event_times(efficacy: Efficacy, alive: dict[str, dict]) -> pd.DataFrame:
    """Each dosed subject's OS, PFS and (responders) DOR time, event flag and the reason for its end date.
    ``alive`` maps a subject to its last_contact_date and last_record_date (``last_known_alive.sql``)."""
    rows = []
    for s in efficacy.subjects.itertuples():
        known = alive.get(s.subject_id, {})
        ends = [("os", s.first_dose_date, _overall_survival(s, as_date(known.get("last_contact_date")),
                                                            as_date(known.get("last_record_date")))),
                ("pfs", s.first_dose_date, _progression_free(s))]
        if as_date(s.response_date):
            ends.append(("dor", s.response_date, _duration_of_response(s)))
        rows += [dict(endpoint=endpoint, subject_id=s.subject_id, level=s.level, label=s.label, phase=s.phase,
                      start_date=start, end_date=end, days=(end - start).days, event=event, reason=reason)
                 for endpoint, start, (end, event, reason) in ends]
    times = pd.DataFrame(rows, columns=TIME_COLUMNS)
    return times.astype({"days": int, "event": bool}) if len(times) else times


def load_survival(db: Database, study: Study, as_of: dt.date, efficacy: Efficacy | None = None) -> Survival:
    efficacy = efficacy or load_efficacy(db, study, as_of)
    alive = {r["subject_id"]: r for r in db.rows("last_known_alive", study_id=study.study_id, as_of=as_of)}
    return Survival(study, as_of, event_times(efficacy, alive))


def groups(data: Survival, endpoint: str, by: str, keep_empty: bool = False) -> list[Group]:
    """The endpoint's subjects split by dose level (dose order), phase, or pooled ("all")."""
    times = data.endpoint(endpoint)
    if by == "level":
        split = [Group(level, data.study.label(level), times[times["level"] == level])
                 for level in data.study.level_order]
    elif by == "phase":
        split = [Group(phase, phase.capitalize(), times[times["phase"] == phase]) for phase in PHASES]
    elif by == ALL:
        split = [Group(ALL, "All subjects", times)]
    else:
        raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
    return [g for g in split if keep_empty or len(g.times)]


def fit(times: pd.DataFrame) -> KaplanMeierFitter:
    return KaplanMeierFitter(alpha=0.05).fit(times["days"], times["event"])


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _at(kmf: KaplanMeierFitter, frame: pd.DataFrame, day: float) -> list[float | None]:
    """The step function's values at ``day``; None beyond the longest follow-up."""
    if day > kmf.timeline.max():
        return [None] * frame.shape[1]
    return [_finite(v) for v in frame.loc[:day].iloc[-1]]


def summarize(times: pd.DataFrame) -> dict:
    """n, events, the median with its 95% CI, and landmark rates with 95% CIs, for one group (days)."""
    row = dict(n=len(times), events=int(times["event"].sum()), median=None, median_lo=None, median_hi=None)
    for months in LANDMARK_MONTHS:
        row.update({f"s{months}m": None, f"s{months}m_lo": None, f"s{months}m_hi": None})
    if times.empty:
        return row
    kmf = fit(times)
    median_ci = median_survival_times(kmf.confidence_interval_).iloc[0]
    row.update(median=_finite(kmf.median_survival_time_), median_lo=_finite(median_ci.iloc[0]),
               median_hi=_finite(median_ci.iloc[1]))
    for months in LANDMARK_MONTHS:
        day = months * DAYS_PER_MONTH
        (rate,), (low, high) = _at(kmf, kmf.survival_function_, day), _at(kmf, kmf.confidence_interval_, day)
        row.update({f"s{months}m": rate, f"s{months}m_lo": low, f"s{months}m_hi": high})
    return row


def survival_table(data: Survival, endpoint: str, by: str) -> pd.DataFrame:
    """One row per group with subjects: ``summarize`` plus group key and label."""
    rows = [dict(group=g.key, label=g.label, **summarize(g.times)) for g in groups(data, endpoint, by)]
    return pd.DataFrame(rows, columns=["group", "label", *summarize(data.times.iloc[0:0])])


def _duration_text(days: float | None, unit: str) -> str:
    if days is None or pd.isna(days):
        return "NR"
    return f"{days / DAYS_PER_MONTH:.1f}" if unit == "months" else f"{days:.0f}"


def _rate_text(rate, low, high) -> str:
    if rate is None or pd.isna(rate):
        return "—"
    band = "" if low is None or pd.isna(low) else f" [{low:.0%}–{high:.0%}]"
    return f"{rate:.0%}{band}"


def survival_table_display(table: pd.DataFrame, unit: str) -> pd.DataFrame:
    """The page and CSV form: n, events, median [95% CI] in the chosen unit ("NR": not reached), landmark rates."""
    out = pd.DataFrame({"Group": table["label"], "N": table["n"], "Events": table["events"]})
    out[f"Median, {unit} [95% CI]"] = [
        f"{_duration_text(r.median, unit)} [{_duration_text(r.median_lo, unit)}–{_duration_text(r.median_hi, unit)}]"
        for r in table.itertuples()]
    for months in LANDMARK_MONTHS:
        out[f"{months}-month rate [95% CI]"] = [
            _rate_text(getattr(r, f"s{months}m"), getattr(r, f"s{months}m_lo"), getattr(r, f"s{months}m_hi"))
            for r in table.itertuples()]
    return out


def curve(times: pd.DataFrame) -> pd.DataFrame:
    """The Kaplan–Meier step function of one group: at time 0 and every distinct time, the survival, its 95% CI,
    and the event table (at risk just before, events, censored)."""
    kmf = fit(times)
    steps = pd.concat([kmf.survival_function_, kmf.confidence_interval_], axis=1)
    steps.columns = ["survival", "lower", "upper"]
    table = kmf.event_table[["at_risk", "observed", "censored"]].rename(columns={"observed": "events"})
    return steps.join(table).rename_axis("days").reset_index()


def censorings(times: pd.DataFrame, steps: pd.DataFrame) -> pd.DataFrame:
    """Censored subjects with the curve's value at their time (where the tick goes on the plot)."""
    censored = times[~times["event"]].sort_values(["days", "subject_id"])
    survival = steps.set_index("days")["survival"]
    return censored.assign(survival=survival.reindex(censored["days"].astype(float)).to_numpy())


def number_at_risk(times: pd.DataFrame, days: list[float]) -> list[int]:
    """Subjects still followed (time ≥ t) at each of ``days``."""
    values = times["days"].to_numpy()
    return [int((values >= t).sum()) for t in days]


def time_ticks(max_days: float, unit: str) -> list[float]:
    """Evenly spaced ticks in days covering 0..max_days: whole months (1, 2, 3, 6 or 12 apart) or days
    (7, 14, 28, 56, 91, 182 or 364 apart), at most about ten."""
    per_unit, steps = (DAYS_PER_MONTH, (1, 2, 3, 6, 12)) if unit == "months" else (1, (7, 14, 28, 56, 91, 182, 364))
    span = max(max_days, 1) / per_unit
    step = next((s for s in steps if span / s <= 10), steps[-1])
    return [i * step * per_unit for i in range(math.ceil(span / step - 1e-9) + 1)]


@dataclass(frozen=True)
class GroupCurve:
    key: int | str
    label: str
    steps: pd.DataFrame  # ``curve``
    censored: pd.DataFrame  # ``censorings``
    at_risk: list[int]  # ``number_at_risk`` at the ticks


def group_curves(data: Survival, endpoint: str, by: str, ticks: list[float]) -> list[GroupCurve]:
    """What the Kaplan–Meier plot draws for each group with subjects."""
    curves = []
    for g in groups(data, endpoint, by):
        steps = curve(g.times)
        curves.append(GroupCurve(g.key, g.label, steps, censorings(g.times, steps), number_at_risk(g.times, ticks)))
    return curves


@dataclass(frozen=True)
class LogRank:
    statistic: float
    degrees_of_freedom: int
    p_value: float
    groups: int


def logrank(data: Survival, endpoint: str, by: str) -> LogRank | None:
    """Log-rank test across the groups with subjects, when at least two of them have events."""
    shown = groups(data, endpoint, by)
    if sum(g.times["event"].any() for g in shown) < 2:
        return None
    times = pd.concat([g.times.assign(group=str(g.key)) for g in shown])
    result = multivariate_logrank_test(times["days"], times["group"], times["event"])
    return LogRank(float(result.test_statistic), int(result.degrees_of_freedom), float(result.p_value), len(shown))


def _json_number(value):
    return None if value is None or pd.isna(value) else round(float(value), 2)


def survival_json(data: Survival) -> dict:
    """The ``survival`` section of ``report --json``: per endpoint, every dose level (dose order) and "all"."""
    out = {}
    for endpoint in ENDPOINTS:
        rows = []
        for g in groups(data, endpoint, "level", keep_empty=True) + groups(data, endpoint, ALL, keep_empty=True):
            summary = summarize(g.times)
            rows.append({"group": g.key if g.key == ALL else int(g.key), "n": summary["n"],
                         "events": summary["events"],
                         **{k: _json_number(summary[k]) for k in ("median", "median_lo", "median_hi")}})
        out[endpoint] = rows
    return out

