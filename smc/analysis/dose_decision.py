"""Everything the SMC reads before a dose decision, as of a date: per-level
counts and status, the protocol's recommendation, exact DLT-rate intervals,
BOIN's advice and the replayed history. Page, report and tests call this.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace

import pandas as pd

from smc.rules import boin
from smc.rules.escalation import (
    ABOVE_CEILING,
    DLT,
    Assessment,
    Ceiling,
    LevelSummary,
    SubjectFacts,
    assess,
    decision_dates,
    dlt_onset_in_window,
    highest_cleared,
    recommended_level,
    starting_level,
    window_end,
)
from smc.rules.stats import exact_ci
from smc.store.db import Database
from smc.store.study import Stage, Study


@dataclass(frozen=True)
class LevelRow(LevelSummary):
    """A level's rule summary with its DLT rate, exact CI and BOIN's call."""

    dlt_rate: float | None
    ci_low: float | None
    ci_high: float | None
    boin_call: str  # escalate / stay / de-escalate / eliminated, for this level's data


@dataclass(frozen=True)
class StageDecision:
    """The rule, its level rows and BOIN's advice for one stage (a study without stages has one)."""

    stage: Stage
    assessment: Assessment
    rows: tuple[LevelRow, ...]
    boin: boin.BoinAdvice
    subjects: tuple[SubjectFacts, ...]  # the stage's facts: its level, entry and window start for each subject


@dataclass(frozen=True)
class DoseDecision:
    study: Study
    as_of: dt.date
    stages: tuple[StageDecision, ...]  # in stage order; the first is the study's own escalation

    # The first stage's decision, as every one-stage page, the report's top level and the decision log read it.
    @property
    def assessment(self) -> Assessment:
        return self.stages[0].assessment

    @property
    def rows(self) -> tuple[LevelRow, ...]:
        return self.stages[0].rows

    def of_stage(self, name: str | None) -> StageDecision:
        """The named stage's decision; None: the first (a one-stage study's only) stage."""
        return self.stages[0] if name is None else next(s for s in self.stages if s.stage.name == name)


def stage_heading(stage: Stage) -> str:
    """How a page names a stage: "Stage 2 · combination"."""
    return f"Stage {stage.order} · {stage.title()}"


def stage_description(stage: Stage) -> str:
    """The stage's window and cap in words, for captions: "DLT window 28 days from the first dose of toripalimab in
    the stage; capped by monotherapy: only levels cleared there"."""
    where = " in the stage" if stage.order > 1 else ""
    cap = f"; capped by {stage.ceiling_stage}: only levels cleared there" if stage.ceiling_stage else ""
    opens = f"; opens at level {stage.start_level}" if stage.start_level is not None else ""
    return f"DLT window {stage.dlt_window_days} days from the first dose of {stage.agent}{where}{cap}{opens}"


def _stage_entries(db: Database, cuts: dict[str, dt.date]) -> list[dict]:
    return db.rows_since_contract_had("stage_subjects", cuts=[{"study_id": s, "as_of": a} for s, a in cuts.items()])


def load_subject_facts_by_study(db: Database, cuts: dict[str, dt.date]) -> dict[str, list[SubjectFacts]]:
    """Every subject enrolled by its study's as-of date (both phases), with what was known then, for each
    study in ``cuts`` (study id -> as-of date): one query for a page or for the whole portfolio, and one for the
    later stages of staged studies. A subject has facts for the first stage, and for each later stage it has a
    ``subject_stages`` row for; a DLT counts in the stage whose window holds its onset, so each stage keeps the
    onsets from its entry to the subject's entry into the next stage."""
    facts: dict[str, list[SubjectFacts]] = {study_id: [] for study_id in cuts}
    if not cuts:
        return facts
    later: dict[tuple[str, str], list[dict]] = {}
    for e in _stage_entries(db, cuts):
        later.setdefault((e["study_id"], e["subject_id"]), []).append(e)
    rows = db.rows("escalation_subjects",
                   cuts=[{"study_id": study_id, "as_of": as_of} for study_id, as_of in cuts.items()])
    for r in rows:
        first = SubjectFacts(
            subject_id=r["subject_id"], level=r["level"], enrollment_date=r["enrollment_date"],
            first_dose_date=r["first_dose_date"], dlt_onsets=tuple(r["dlt_onsets"]),
            off_study_date=r["off_study_date"], dlt_evaluable=r["dlt_evaluable"], phase=r["phase"])
        entries = later.get((r["study_id"], r["subject_id"]), [])
        if not entries:
            facts[r["study_id"]].append(first)
            continue
        stages = [first] + [replace(first, level=e["level"], enrollment_date=e["start_date"],
                                    first_dose_date=e["first_dose_date"], dlt_evaluable=None,
                                    stage_order=e["stage_order"]) for e in entries]
        for i, this in enumerate(stages):
            since = this.enrollment_date if i else None
            until = stages[i + 1].enrollment_date if i + 1 < len(stages) else None
            facts[r["study_id"]].append(replace(this, dlt_onsets=tuple(
                d for d in first.dlt_onsets if (since is None or d >= since) and (until is None or d < until))))
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


def _facts_of(stage: Stage, subjects: list[SubjectFacts]) -> list[SubjectFacts]:
    return [s for s in subjects if s.stage_order == stage.order]


def assess_stages(study: Study, subjects: list[SubjectFacts], as_of: dt.date) -> list[Assessment]:
    """The rule on every stage in order, as of ``as_of``: a stage with a ceiling stage is capped at the highest
    level cleared there on that date."""
    done: dict[str, Assessment] = {}
    out = []
    for stage in study.regimen:
        ceiling = None
        if stage.ceiling_stage is not None:
            ceiling = Ceiling(stage.ceiling_stage, highest_cleared(done[stage.ceiling_stage].levels))
        result = assess(study.design, stage.dlt_window_days, list(study.levels), _facts_of(stage, subjects), as_of,
                        stage.start_level, ceiling)
        done[stage.name] = result
        out.append(result)
    return out


def _level_rows(result: Assessment, target: float) -> tuple[LevelRow, ...]:
    n = [s.n_evaluable for s in result.levels]
    first_out = boin.first_eliminated(n, [s.n_dlt for s in result.levels], target)
    rows = []
    for i, s in enumerate(result.levels):
        low, high = exact_ci(s.n_dlt, s.n_evaluable)
        rows.append(LevelRow(
            **asdict(s), dlt_rate=s.n_dlt / s.n_evaluable if s.n_evaluable else None, ci_low=low, ci_high=high,
            boin_call="eliminated" if i >= first_out else boin.call(s.n_dlt, s.n_evaluable, target) or "—"))
    return tuple(rows)


def _boin_advice(stage: Stage, result: Assessment, subjects: list[SubjectFacts], as_of: dt.date,
                 target: float) -> boin.BoinAdvice:
    """BOIN's call among the levels the stage may use (all of them without a ceiling), opening where the rule
    opens the stage."""
    allowed = [s for s in result.levels if s.status != ABOVE_CEILING]
    if not allowed:
        lambda_e, lambda_d = boin.boundaries(target)
        return boin.BoinAdvice(target, lambda_e, lambda_d, None, "wait", None, None,
                               f"No level is cleared in {result.ceiling.stage} yet: no level to advise on.")
    current = current_level(subjects, as_of)
    if current is not None and current not in {s.level for s in allowed}:
        current = max(s.level for s in allowed)  # treated above the ceiling: advise from the ceiling
    return boin.advise([s.level for s in allowed], [s.label for s in allowed], [s.n_evaluable for s in allowed],
                       [s.n_dlt for s in allowed], current, target, starting_level(allowed, stage.start_level).level)


def decide(study: Study, as_of: dt.date, subjects: list[SubjectFacts]) -> DoseDecision:
    """The decision from the study's subject facts as of ``as_of`` (:func:`load_subject_facts`), stage by stage."""
    stages = []
    for stage, result in zip(study.regimen, assess_stages(study, subjects, as_of)):
        mine = _facts_of(stage, subjects)
        stages.append(StageDecision(stage, result, _level_rows(result, study.target_dlt_rate),
                                    _boin_advice(stage, result, mine, as_of, study.target_dlt_rate), tuple(mine)))
    return DoseDecision(study, as_of, tuple(stages))


def decision_history(decision: DoseDecision, stage: str | None = None) -> list[Assessment]:
    """The rule of one stage (default: the first) replayed at every enrollment, dose, DLT, drop-out and window end
    up to as-of, of any stage (a ceiling moves with its stage)."""
    study, subjects = decision.study, [f for s in decision.stages for f in s.subjects]
    index = [s.stage.name for s in decision.stages].index(stage) if stage is not None else 0
    dates = sorted({d for s in decision.stages
                    for d in decision_dates(list(s.subjects), s.stage.dlt_window_days, decision.as_of)})
    return [assess_stages(study, subjects, d)[index] for d in dates]


def rule_steps(history: list[Assessment]) -> pd.DataFrame:
    """The rule's call at each replayed date that points to a level (its target, else the MTD, else the
    highest level started): date, level, action, reason. A small frame for the history chart, whose cache
    key would otherwise hash every assessment's per-subject states."""
    rows = [dict(date=a.as_of, level=recommended_level(a), action=a.recommendation.action,
                 reason=a.recommendation.reason) for a in history]
    steps = pd.DataFrame(rows, columns=["date", "level", "action", "reason"])
    return steps[steps["level"].notna()].astype({"level": int}).reset_index(drop=True)


def counted_dlts(decision: DoseDecision, stage: str | None = None) -> pd.DataFrame:
    """The DLTs the rule counts on the as-of date in a stage (default: the first; ``"*"``: every stage, with its
    name): the first in-window DLT of each escalation subject."""
    chosen = decision.stages if stage == "*" else [decision.of_stage(stage)]
    rows = [dict(subject_id=s.subject_id, level=s.level, label=decision.study.label(s.level),
                 stage=part.stage.name,
                 onset_date=pd.Timestamp(dlt_onset_in_window(s, decision.as_of, part.stage.dlt_window_days)))
            for part in chosen for s in part.subjects if part.assessment.states.get(s.subject_id) == DLT]
    return pd.DataFrame(rows, columns=["subject_id", "level", "label", "stage", "onset_date"])


def window_stage(decision: DoseDecision, events: pd.DataFrame) -> pd.Series:
    """For each event (``subject_id``, ``onset_date``), the stage whose DLT window holds its onset as the rule counts
    it (docs/rules.md#staged-regimens), "" when none does: where a DLT counts."""
    entries = {(f.subject_id, part.stage.order): f.enrollment_date for part in decision.stages for f in part.subjects}
    bounded: dict[str, list[tuple[str, dt.date, dt.date]]] = {}
    for part in decision.stages:  # a window ends where the subject enters the next stage
        for f in part.subjects:
            nxt = entries.get((f.subject_id, part.stage.order + 1))
            if f.first_dose_date is not None:
                end = window_end(f.first_dose_date, part.stage.dlt_window_days)
                bounded.setdefault(f.subject_id, []).append(
                    (part.stage.title(), f.first_dose_date, min(end, nxt) if nxt else end))

    def holding(subject_id: str, onset) -> str:
        if pd.isna(onset):
            return ""
        day = onset.date() if isinstance(onset, pd.Timestamp) else onset
        return next((name for name, start, end in bounded.get(subject_id, ()) if start <= day < end), "")

    return pd.Series([holding(s, d) for s, d in zip(events["subject_id"], events["onset_date"])], index=events.index,
                     dtype=object)


def level_table(stage: StageDecision) -> pd.DataFrame:
    """The per-level table of one stage, as the Escalation page and the meeting packet show it."""
    return pd.DataFrame([{
        "Level": r.level, "Dose": r.label, "Enrolled": r.n_enrolled, "Evaluable": r.n_evaluable, "DLT": r.n_dlt,
        "Pending": r.n_pending, "Not evaluable": r.n_nonevaluable, "Needed": r.needed, "Status": r.status,
        "DLT rate": "—" if r.dlt_rate is None else f"{r.dlt_rate:.0%}",
        "95% CI (exact)": "—" if r.ci_low is None else f"{r.ci_low:.0%}–{r.ci_high:.0%}",
        "BOIN": r.boin_call} for r in stage.rows])


LEVEL_TABLE_NOTE = ("Evaluable includes subjects with a DLT. Pending: enrolled and not yet dosed, or inside the DLT "
                    "window. Not evaluable: left the study inside the window without a DLT, or marked not evaluable "
                    "(to be replaced). 95% CI: Clopper–Pearson.")
CEILING_NOTE = ("above_ceiling: a level this stage may not use, not cleared in its ceiling stage on this date.")


def _stage_json(stage: StageDecision) -> dict:
    rec, advice = stage.assessment.recommendation, stage.boin
    return {
        "levels": [{
            "level": r.level, "label": r.label, "n_enrolled": r.n_enrolled, "n_evaluable": r.n_evaluable,
            "n_dlt": r.n_dlt, "n_pending": r.n_pending, "n_nonevaluable": r.n_nonevaluable,
            "needed": r.needed, "status": r.status, "dlt_rate": r.dlt_rate,
            "dlt_rate_ci95": [r.ci_low, r.ci_high], "boin_call": r.boin_call,
        } for r in stage.rows],
        "recommendation": {"action": rec.action, "to_level": rec.to_level, "mtd_level": rec.mtd_level,
                           "reason": rec.reason},
        "boin": {"target": advice.target, "lambda_e": round(advice.lambda_e, 4),
                 "lambda_d": round(advice.lambda_d, 4), "current_level": advice.current_level,
                 "advice": advice.advice, "to_level": advice.to_level, "mtd_estimate": advice.mtd_estimate,
                 "reason": advice.reason},
    }


def escalation_json(decision: DoseDecision) -> dict:
    """The report's ``escalation``: the first stage's fields; a staged study adds ``stages``, each shaped alike."""
    out = {"design": decision.study.design, "dlt_window_days": decision.study.dlt_window_days,
           **_stage_json(decision.stages[0])}
    if decision.study.staged:
        out["stages"] = [{"stage": s.stage.name, "stage_order": s.stage.order, "agent": s.stage.agent,
                          "dlt_window_days": s.stage.dlt_window_days, "start_level": s.stage.start_level,
                          "ceiling_stage": s.stage.ceiling_stage,
                          "ceiling_level": s.assessment.ceiling.level if s.assessment.ceiling else None,
                          **_stage_json(s)} for s in decision.stages]
    return out
