"""The per-subject timeline behind the escalation swimlanes and subject detail."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.analysis.dose_decision import DoseDecision, counted_dlts, decision_history, rule_steps
from smc.store.db import Database
from smc.store.study import Study


@dataclass(frozen=True)
class Swimlanes:
    lanes: pd.DataFrame  # one row per subject, in lane order, with state and window dates
    administrations: pd.DataFrame
    adverse_events: pd.DataFrame
    assessments: pd.DataFrame


def _days_from(frame: pd.DataFrame, column: str, first_dose: pd.Series) -> pd.Series:
    return (frame[column] - frame["subject_id"].map(first_dose)).dt.days


def load_swimlanes(db: Database, study: Study, as_of: dt.date, states: dict[str, str]) -> Swimlanes:
    """Everything known on ``as_of``, with days from each subject's first dose; ``states`` are the escalation
    subjects' DLT states of the rule's decision on that date (``DoseDecision.assessment.states``)."""
    params = dict(study_id=study.study_id, as_of=as_of)
    lanes = db.query("enrolled_subjects", **params)
    lanes["state"] = [states.get(s, "expansion") if p == "escalation" else "expansion"
                      for s, p in zip(lanes.subject_id, lanes.phase)]
    lanes["label"] = study.labels(lanes["level"])
    lanes["window_end"] = lanes["first_dose_date"] + pd.Timedelta(days=study.dlt_window_days)
    lanes["followed_to"] = pd.concat(
        [lanes["off_study_date"], lanes["death_date"]], axis=1).min(axis=1).fillna(pd.Timestamp(as_of))
    lanes["followed_days"] = (lanes["followed_to"] - lanes["first_dose_date"]).dt.days
    first_dose = lanes.set_index("subject_id")["first_dose_date"]

    doses = db.query("administrations_as_of", subject_id=None, **params)
    doses["day"] = _days_from(doses, "admin_date", first_dose)
    doses["end_day"] = _days_from(doses, "end_date", first_dose)
    doses["is_agent"] = doses["agent"] == study.agent
    aes = db.query("adverse_events_as_of", **params)
    aes["day"] = _days_from(aes, "onset_date", first_dose)
    aes["end_day"] = _days_from(aes, "end_date", first_dose)
    scans = db.query("tumor_assessments_as_of", subject_id=None, **params)
    scans["day"] = _days_from(scans, "assessment_date", first_dose)
    for frame in (doses, aes, scans):
        frame["label"] = frame["subject_id"].map(lanes.set_index("subject_id")["label"])
    return Swimlanes(lanes, doses, aes, scans)


def stage_windows(decision: DoseDecision) -> pd.DataFrame:
    """The DLT windows of a staged regimen's later stages, one row per subject dosed in the stage: subject_id, stage,
    label (the subject's dose there), start (its first dose of the stage's agent), dlt_window_days and state (its
    DLT state in the stage). Empty for a study with one stage."""
    rows = [dict(subject_id=f.subject_id, stage=part.stage.title(), label=decision.study.label(f.level),
                 start=pd.Timestamp(f.first_dose_date), dlt_window_days=part.stage.dlt_window_days,
                 state=part.assessment.states.get(f.subject_id, "expansion"))
            for part in decision.stages[1:] for f in part.subjects
            if f.first_dose_date is not None and f.first_dose_date <= decision.as_of]
    return pd.DataFrame(rows, columns=["subject_id", "stage", "label", "start", "dlt_window_days", "state"])


def stage_entries(decision: DoseDecision, stage: str | None) -> pd.DataFrame:
    """The subjects of one stage as the escalation history draws them: subject_id, level and label there, phase,
    enrollment_date (the day they entered the stage) and state (their DLT state in it)."""
    part = decision.of_stage(stage)
    rows = [dict(subject_id=f.subject_id, level=f.level, label=decision.study.label(f.level), phase=f.phase,
                 enrollment_date=pd.Timestamp(f.enrollment_date),
                 state=part.assessment.states.get(f.subject_id, "expansion"))
            for f in part.subjects if f.enrollment_date is not None and f.enrollment_date <= decision.as_of]
    return pd.DataFrame(rows, columns=["subject_id", "level", "label", "phase", "enrollment_date", "state"])


@dataclass(frozen=True)
class StageHistory:
    """What the escalation history chart of one stage draws, for the page and the packet alike."""
    steps: pd.DataFrame  # the rule's calls over time (rule_steps)
    entries: pd.DataFrame  # the subjects as they entered the stage (the first stage: the enrolled lanes)
    dlts: pd.DataFrame  # the DLTs the stage's rule counts (counted_dlts)
    entry: str  # how the chart names an entry


def stage_history(decision: DoseDecision, stage: str | None, lanes: pd.DataFrame) -> StageHistory:
    """One stage's history; ``lanes`` are the swimlanes' subjects, which are the first stage's entries."""
    first = decision.of_stage(stage).stage.order == 1
    return StageHistory(rule_steps(decision_history(decision, stage)), lanes if first else stage_entries(decision, stage),
                        counted_dlts(decision, stage), "enrolled" if first else "entered the stage")


def lane_stage_options(decision: DoseDecision) -> dict:
    """The swimlane chart's stage arguments: later stages' windows and the first stage's name, for a staged study."""
    if not decision.study.staged:
        return dict(stage_windows=None, first_stage=None)
    return dict(stage_windows=stage_windows(decision), first_stage=decision.study.regimen[0].name)
