"""The per-subject timeline behind the escalation swimlanes and subject detail."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from smc.db import Database
import datetime as dt

from smc.dose_decision import DoseDecision, dose_decision
from smc.study import Study


@dataclass(frozen=True)
class Swimlanes:
    lanes: pd.DataFrame  # one row per subject, in lane order, with state and window dates
    administrations: pd.DataFrame
    adverse_events: pd.DataFrame
    assessments: pd.DataFrame


def _days_from(frame: pd.DataFrame, column: str, first_dose: pd.Series) -> pd.Series:
    return (frame[column] - frame["subject_id"].map(first_dose)).dt.days


def load_swimlanes(db: Database, study: Study, as_of: dt.date) -> Swimlanes:
    """:func:`swimlanes` of the rule's decision on ``as_of`` (one call, so a page can cache it)."""
    return swimlanes(db, dose_decision(db, study, as_of))


def swimlanes(db: Database, decision: DoseDecision) -> Swimlanes:
    """Everything known on the decision's as-of date, with days from each subject's first dose."""
    params = dict(study_id=decision.study.study_id, as_of=decision.as_of)
    lanes = db.query("swimlane_subjects", **params)
    states = decision.assessment.states
    lanes["state"] = [states.get(s, "expansion") if p == "escalation" else "expansion"
                      for s, p in zip(lanes.subject_id, lanes.phase)]
    lanes["label"] = lanes["level"].map(decision.study.label)
    lanes["window_end"] = lanes["first_dose_date"] + pd.Timedelta(days=decision.study.dlt_window_days)
    lanes["followed_to"] = pd.concat(
        [lanes["off_study_date"], lanes["death_date"]], axis=1).min(axis=1).fillna(pd.Timestamp(decision.as_of))
    lanes["followed_days"] = (lanes["followed_to"] - lanes["first_dose_date"]).dt.days
    first_dose = lanes.set_index("subject_id")["first_dose_date"]

    doses = db.query("swimlane_administrations", subject_id=None, **params)
    doses["day"] = _days_from(doses, "admin_date", first_dose)
    doses["end_day"] = _days_from(doses, "end_date", first_dose)
    doses["is_agent"] = doses["agent"] == decision.study.agent
    aes = db.query("swimlane_adverse_events", **params)
    aes["day"] = _days_from(aes, "onset_date", first_dose)
    aes["end_day"] = _days_from(aes, "end_date", first_dose)
    scans = db.query("swimlane_assessments", subject_id=None, **params)
    scans["day"] = _days_from(scans, "assessment_date", first_dose)
    for frame in (doses, aes, scans):
        frame["label"] = frame["subject_id"].map(lanes.set_index("subject_id")["label"])
    return Swimlanes(lanes, doses, aes, scans)
