"""One subject's course as known on a date: who, which dose, what was given,
what happened (AEs, DLT state, responses, labs) and how it ended."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.analysis.dose_decision import load_subject_facts
from smc.analysis.safety import load_subject_adverse_events
from smc.rules.escalation import subject_state, window_end
from smc.store.db import Database
from smc.store.study import Study


@dataclass(frozen=True)
class SubjectProfile:
    study: Study
    as_of: dt.date
    subject: dict  # one row of queries/subject_profile.sql
    status: str
    dlt_state: str | None  # the escalation rule's state; None for expansion subjects
    dlt_window: tuple[dt.date, dt.date] | None  # [first dose of the agent, window end)
    administrations: pd.DataFrame  # with day / end_day from the first dose of any treatment
    adverse_events: pd.DataFrame  # with day / end_day and treatment_emergent
    assessments: pd.DataFrame  # RECIST time points with day
    labs: pd.DataFrame  # every lab, marker and biomarker result with (fractional) day

    @property
    def subject_id(self) -> str:
        return self.subject["subject_id"]

    @property
    def label(self) -> str:
        return self.study.label(self.subject["level"])

    def day(self, date: dt.date | None) -> int | None:
        """Days from the first dose of any study treatment (0 = that day)."""
        first = self.subject["first_dose_date"]
        return None if date is None or first is None else (date - first).days


def load_enrolled_subjects(db: Database, study: Study, as_of: dt.date) -> list[str]:
    return db.query("enrolled_treatment_starts", study_id=study.study_id, as_of=as_of)["subject_id"].tolist()


def subject_status(subject: dict) -> str:
    """Where the subject stands, latest fact first."""
    if subject["death_date"]:
        return f"Died {subject['death_date']:%Y-%m-%d}"
    if subject["off_study_date"]:
        return f"Off study {subject['off_study_date']:%Y-%m-%d}"
    if subject["off_treatment_date"]:
        return "In follow-up (off treatment)"
    if subject["first_dose_date"]:
        return "On treatment"
    return "Enrolled, not yet dosed"


def _days(frame: pd.DataFrame, columns: dict[str, str], first_dose: dt.date | None) -> pd.DataFrame:
    for date_column, day_column in columns.items():
        frame[day_column] = ((pd.to_datetime(frame[date_column]) - pd.Timestamp(first_dose)).dt.days
                             if first_dose else pd.NA)
    return frame


def load_subject_profile(db: Database, study: Study, as_of: dt.date, subject_id: str) -> SubjectProfile | None:
    """The profile, or None when the subject is not in the study or not enrolled by ``as_of``."""
    params = dict(study_id=study.study_id, as_of=as_of, subject_id=subject_id)
    rows = db.rows("subject_profile", **params)
    if not rows:
        return None
    subject = rows[0]
    first_dose = subject["first_dose_date"]

    dlt_state = window = None
    if subject["phase"] == "escalation":
        facts = next(f for f in load_subject_facts(db, study.study_id, as_of) if f.subject_id == subject_id)
        dlt_state = subject_state(facts, as_of, study.dlt_window_days)
    if subject["first_agent_dose_date"]:
        start = subject["first_agent_dose_date"]
        window = (start, window_end(start, study.dlt_window_days))

    doses = _days(db.query("administrations_as_of", **params), {"admin_date": "day", "end_date": "end_day"},
                  first_dose)
    aes = _days(load_subject_adverse_events(db, study, as_of, subject_id), {"end_date": "end_day"}, first_dose)
    scans = _days(db.query("tumor_assessments_as_of", **params), {"assessment_date": "day"}, first_dose)
    return SubjectProfile(study, as_of, subject, subject_status(subject), dlt_state, window,
                          doses, aes, scans, db.query("subject_labs", **params))
