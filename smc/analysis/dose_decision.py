"""Everything the SMC reads before a dose decision, as of a date: per-level
counts and status, the protocol's recommendation, exact DLT-rate intervals,
BOIN's advice and the replayed history. Page, report and tests call this.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pandas as pd

from smc.rules import boin
from smc.rules.escalation import (
    DLT,
    Assessment,
    LevelSummary,
    SubjectFacts,
    assess,
    dlt_onset_in_window,
    history,
    recommended_level,
)
from smc.rules.stats import exact_ci
from smc.store.db import Database
from smc.store.study import Study


@dataclass(frozen=True)
class LevelRow(LevelSummary):
    """A level's rule summary with its DLT rate, exact CI and BOIN's call."""

    dlt_rate: float | None
    ci_low: float | None
    ci_high: float | None
    boin_call: str  # escalate / stay / de-escalate / eliminated, for this level's data


@dataclass(frozen=True)
class DoseDecision:
    study: Study
    as_of: dt.date
    assessment: Assessment
    rows: tuple[LevelRow, ...]
    boin: boin.BoinAdvice
    subjects: tuple[SubjectFacts, ...]


def load_subject_facts_by_study(db: Database, cuts: dict[str, dt.date]) -> dict[str, list[SubjectFacts]]:
    """Every subject enrolled by its study's as-of date (both phases), with what was known then, for each
    study in ``cuts`` (study id -> as-of date): one query for a page or for the whole portfolio."""
    facts: dict[str, list[SubjectFacts]] = {study_id: [] for study_id in cuts}
    if not cuts:
        return facts
    rows = db.rows("escalation_subjects",
                   cuts=[{"study_id": study_id, "as_of": as_of} for study_id, as_of in cuts.items()])
    for r in rows:
        facts[r["study_id"]].append(SubjectFacts(
            subject_id=r["subject_id"], level=r["level"], enrollment_date=r["enrollment_date"],
            first_dose_date=r["first_dose_date"], dlt_onsets=tuple(r["dlt_onsets"]),
            off_study_date=r["off_study_date"], dlt_evaluable=r["dlt_evaluable"], phase=r["phase"]))
    return facts


def load_subject_facts(db: Database, study_id: str, as_of: dt.date) -> list[SubjectFacts]:
    """Every subject of one study enrolled by ``as_of`` (both phases), with what was known then."""
    return load_subject_facts_by_study(db, {study_id: as_of})[study_id]


def current_level(subjects: list[SubjectFacts], as_of: dt.date) -> int | None:
    """The level of the most recently enrolled escalation subject."""
    enrolled = [s for s in subjects if s.phase == "escalation" and s.enrollment_date and s.enrollment_date <= as_of]
    return max(enrolled, key=lambda s: (s.enrollment_date, s.subject_id)).level if enrolled else None


def load_dose_decision(db: Database, study: Study, as_of: dt.date) -> DoseDecision:
    return decide(study, as_of, load_subject_facts(db, study.study_id, as_of))


def decide(study: Study, as_of: dt.date, subjects: list[SubjectFacts]) -> DoseDecision:
    """The decision from the study's subject facts as of ``as_of`` (:func:`subject_facts`)."""
    result = assess(study.design, study.dlt_window_days, list(study.levels), subjects, as_of)
    n = [s.n_evaluable for s in result.levels]
    n_dlt = [s.n_dlt for s in result.levels]
    first_out = boin.first_eliminated(n, n_dlt, study.target_dlt_rate)
    rows = []
    for i, s in enumerate(result.levels):
        low, high = exact_ci(s.n_dlt, s.n_evaluable)
        rows.append(LevelRow(
            **asdict(s), dlt_rate=s.n_dlt / s.n_evaluable if s.n_evaluable else None, ci_low=low, ci_high=high,
            boin_call="eliminated" if i >= first_out else boin.call(s.n_dlt, s.n_evaluable, study.target_dlt_rate) or "—"))
    advice = boin.advise([s.level for s in result.levels], [s.label for s in result.levels], n, n_dlt,
                         current_level(subjects, as_of), study.target_dlt_rate)
    return DoseDecision(study, as_of, result, tuple(rows), advice, tuple(subjects))


def decision_history(decision: DoseDecision) -> list[Assessment]:
    """The rule replayed at every enrollment, dose, DLT, drop-out and window end up to as-of."""
    study = decision.study
    return history(study.design, study.dlt_window_days, list(study.levels), list(decision.subjects), decision.as_of)


def rule_steps(history: list[Assessment]) -> pd.DataFrame:
    """The rule's call at each replayed date that points to a level (its target, else the MTD, else the
    highest level started): date, level, action, reason. A small frame for the history chart, whose cache
    key would otherwise hash every assessment's per-subject states."""
    rows = [dict(date=a.as_of, level=recommended_level(a), action=a.recommendation.action,
                 reason=a.recommendation.reason) for a in history]
    steps = pd.DataFrame(rows, columns=["date", "level", "action", "reason"])
    return steps[steps["level"].notna()].astype({"level": int}).reset_index(drop=True)


def counted_dlts(decision: DoseDecision) -> pd.DataFrame:
    """The DLTs the rule counts on the as-of date: first in-window DLT of each escalation subject."""
    window, as_of = decision.study.dlt_window_days, decision.as_of
    rows = [dict(subject_id=s.subject_id, level=s.level, label=decision.study.label(s.level),
                 onset_date=pd.Timestamp(dlt_onset_in_window(s, as_of, window)))
            for s in decision.subjects if decision.assessment.states.get(s.subject_id) == DLT]
    return pd.DataFrame(rows, columns=["subject_id", "level", "label", "onset_date"])


def level_table(decision: DoseDecision) -> pd.DataFrame:
    """The per-level table the Escalation page and the meeting packet show."""
    return pd.DataFrame([{
        "Level": r.level, "Dose": r.label, "Enrolled": r.n_enrolled, "Evaluable": r.n_evaluable, "DLT": r.n_dlt,
        "Pending": r.n_pending, "Not evaluable": r.n_nonevaluable, "Needed": r.needed, "Status": r.status,
        "DLT rate": "—" if r.dlt_rate is None else f"{r.dlt_rate:.0%}",
        "95% CI (exact)": "—" if r.ci_low is None else f"{r.ci_low:.0%}–{r.ci_high:.0%}",
        "BOIN": r.boin_call} for r in decision.rows])


LEVEL_TABLE_NOTE = ("Evaluable includes subjects with a DLT. Pending: enrolled and not yet dosed, or inside the DLT "
                    "window. Not evaluable: left the study inside the window without a DLT, or marked not evaluable "
                    "(to be replaced). 95% CI: Clopper–Pearson.")


def escalation_json(decision: DoseDecision) -> dict:
    rec, advice = decision.assessment.recommendation, decision.boin
    return {
        "design": decision.study.design,
        "dlt_window_days": decision.study.dlt_window_days,
        "levels": [{
            "level": r.level, "label": r.label, "n_enrolled": r.n_enrolled, "n_evaluable": r.n_evaluable,
            "n_dlt": r.n_dlt, "n_pending": r.n_pending, "n_nonevaluable": r.n_nonevaluable,
            "needed": r.needed, "status": r.status, "dlt_rate": r.dlt_rate,
            "dlt_rate_ci95": [r.ci_low, r.ci_high], "boin_call": r.boin_call,
        } for r in decision.rows],
        "recommendation": {"action": rec.action, "to_level": rec.to_level, "mtd_level": rec.mtd_level,
                           "reason": rec.reason},
        "boin": {"target": advice.target, "lambda_e": round(advice.lambda_e, 4),
                 "lambda_d": round(advice.lambda_d, 4), "current_level": advice.current_level,
                 "advice": advice.advice, "to_level": advice.to_level, "mtd_estimate": advice.mtd_estimate,
                 "reason": advice.reason},
    }
