"""The protocol's dose-escalation rule (3+3, ATD+3+3): each subject's DLT state, each level's status, the next step.

Rules: docs/rules.md#dose-escalation
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

DESIGNS = ("3+3", "ATD+3+3")

# Subject states, in the order the rule tests them.
NOT_COUNTED, DLT, NONEVALUABLE, EVALUABLE, PENDING = (
    "not_counted", "dlt", "nonevaluable", "evaluable", "pending")

# Level statuses. above_ceiling: a level a stage with a ceiling may not use (not cleared in its ceiling stage).
NOT_STARTED, EXCEEDED, CLEARED, LEVEL_PENDING, ENROLLING, ABOVE_CEILING = (
    "not_started", "exceeded", "cleared", "pending", "enrolling", "above_ceiling")

# Recommended actions.
ACTIONS = ("enroll", "wait", "escalate", "de-escalate", "declare_mtd", "max_dose_cleared", "stop")

# A level is confirmed (MTD or top dose) once this many subjects are evaluable.
CONFIRM_N = 6


@dataclass(frozen=True)
class DoseLevel:
    level: int
    label: str


@dataclass(frozen=True)
class SubjectFacts:
    """What the escalation rule needs to know about one subject, all dated."""

    subject_id: str
    level: int | None
    enrollment_date: dt.date | None
    first_dose_date: dt.date | None = None  # first administration of the study's agent
    dlt_onsets: tuple[dt.date, ...] = ()  # onset dates of AEs adjudicated dlt = Y
    off_study_date: dt.date | None = None  # earliest of off-study and death
    dlt_evaluable: str | None = None  # "N" forces not evaluable (replaced)
    phase: str = "escalation"
    stage_order: int = 1  # the stage these facts are about: its level, entry (enrollment_date) and window start


@dataclass(frozen=True)
class Ceiling:
    """What caps a stage: the highest level cleared in an earlier stage on the as-of date (None: none yet)."""

    stage: str
    level: int | None


def window_end(first_dose: dt.date, dlt_window_days: int) -> dt.date:
    """First day after the DLT window [first dose, first dose + window)."""
    return first_dose + dt.timedelta(days=dlt_window_days)


def dlt_onset_in_window(s: SubjectFacts, as_of: dt.date, dlt_window_days: int) -> dt.date | None:
    """Earliest DLT onset known on ``as_of`` that falls inside the subject's window."""
    if s.first_dose_date is None or s.first_dose_date > as_of:
        return None
    end = window_end(s.first_dose_date, dlt_window_days)
    inside = [d for d in s.dlt_onsets if s.first_dose_date <= d < end and d <= as_of]
    return min(inside, default=None)


def subject_state(s: SubjectFacts, as_of: dt.date, dlt_window_days: int) -> str:
    """The subject's DLT state on ``as_of`` (the first rule that applies)."""
    if s.enrollment_date is None or s.enrollment_date > as_of or s.level is None:
        return NOT_COUNTED
    if dlt_onset_in_window(s, as_of, dlt_window_days) is not None:
        return DLT
    dosed = s.first_dose_date is not None and s.first_dose_date <= as_of
    if s.dlt_evaluable == "N":
        return NONEVALUABLE
    if s.off_study_date is not None and s.off_study_date <= as_of:
        if not dosed or s.off_study_date < s.first_dose_date:
            return NONEVALUABLE  # left before any dose
        if s.off_study_date < window_end(s.first_dose_date, dlt_window_days):
            return NONEVALUABLE  # left inside the window without a DLT
    if dosed and window_end(s.first_dose_date, dlt_window_days) <= as_of:
        return EVALUABLE
    return PENDING


@dataclass(frozen=True)
class LevelSummary:
    level: int
    label: str
    n_enrolled: int
    n_evaluable: int  # evaluable + DLT
    n_dlt: int
    n_pending: int
    n_nonevaluable: int
    needed: int  # evaluable subjects this level needs before a decision
    status: str


@dataclass(frozen=True)
class Recommendation:
    action: str
    to_level: int | None
    mtd_level: int | None
    reason: str


@dataclass(frozen=True)
class Assessment:
    design: str
    as_of: dt.date
    dlt_window_days: int
    levels: tuple[LevelSummary, ...]
    recommendation: Recommendation
    states: dict[str, str] = field(default_factory=dict)  # subject_id -> state
    first_dlt_level: int | None = None
    ceiling: Ceiling | None = None

    def level(self, level: int) -> LevelSummary:
        return next(s for s in self.levels if s.level == level)


def recommended_level(a: Assessment) -> int | None:
    """The level the recommendation is about: its target, else the MTD, else the highest level started."""
    rec = a.recommendation
    if rec.to_level is not None or rec.mtd_level is not None:
        return rec.to_level if rec.to_level is not None else rec.mtd_level
    started = [s.level for s in a.levels if s.n_enrolled]  # an above_ceiling level may have nobody
    return max(started, default=None)


def first_dlt_level(subjects: list[SubjectFacts], states: dict[str, str], as_of: dt.date,
                    dlt_window_days: int) -> int | None:
    """Level of the study's first DLT (earliest onset; a tie goes to the lower level)."""
    firsts = [(dlt_onset_in_window(s, as_of, dlt_window_days), s.level)
              for s in subjects if states[s.subject_id] == DLT]
    return min(firsts)[1] if firsts else None


def _needed(design: str, level: int, n_dlt: int, first_dlt: int | None) -> int:
    if design == "ATD+3+3" and n_dlt == 0 and (first_dlt is None or level < first_dlt):
        return 1  # accelerated titration: one subject per level until the first DLT
    return 3 if n_dlt == 0 else 6


def _status(n_enrolled: int, n_evaluable: int, n_dlt: int, n_pending: int, needed: int) -> str:
    if n_enrolled == 0:
        return NOT_STARTED
    if n_dlt >= 2:
        return EXCEEDED
    if n_evaluable >= needed:
        return CLEARED
    if n_evaluable + n_pending >= needed:
        return LEVEL_PENDING
    return ENROLLING


def summarize_levels(design: str, dlt_window_days: int, levels: list[DoseLevel],
                     subjects: list[SubjectFacts], as_of: dt.date) -> tuple[tuple[LevelSummary, ...], dict[str, str], int | None]:
    escalation = [s for s in subjects if s.phase == "escalation"]
    states = {s.subject_id: subject_state(s, as_of, dlt_window_days) for s in escalation}
    first_dlt = first_dlt_level(escalation, states, as_of, dlt_window_days) if design == "ATD+3+3" else None
    summaries = []
    for dose in sorted(levels, key=lambda d: d.level):
        here = [states[s.subject_id] for s in escalation if s.level == dose.level]
        counted = [st for st in here if st != NOT_COUNTED]
        n_dlt = counted.count(DLT)
        n_evaluable = counted.count(EVALUABLE) + n_dlt
        n_pending = counted.count(PENDING)
        needed = _needed(design, dose.level, n_dlt, first_dlt)
        summaries.append(LevelSummary(
            level=dose.level, label=dose.label, n_enrolled=len(counted), n_evaluable=n_evaluable,
            n_dlt=n_dlt, n_pending=n_pending, n_nonevaluable=counted.count(NONEVALUABLE),
            needed=needed, status=_status(len(counted), n_evaluable, n_dlt, n_pending, needed)))
    return tuple(summaries), states, first_dlt


def _subjects(n: int) -> str:
    return f"{n} subject" if n == 1 else f"{n} subjects"


def _dlt_phrase(s: LevelSummary) -> str:
    return f"{s.n_dlt} of {s.n_evaluable} evaluable {'subject' if s.n_evaluable == 1 else 'subjects'} at {s.label} had a DLT"


def highest_cleared(levels: tuple[LevelSummary, ...]) -> int | None:
    """The highest level with status cleared: what a later stage capped by this one may use."""
    return max((s.level for s in levels if s.status == CLEARED), default=None)


def capped(levels: tuple[LevelSummary, ...], ceiling: Ceiling | None) -> tuple[LevelSummary, ...]:
    """The levels with those above the ceiling marked above_ceiling (all of them while nothing is cleared there)."""
    if ceiling is None:
        return levels
    return tuple(replace(s, status=ABOVE_CEILING) if ceiling.level is None or s.level > ceiling.level else s
                 for s in levels)


def starting_level(levels: list[LevelSummary], start_level: int | None) -> LevelSummary:
    """Where a stage opens among the levels it may use: level 1 (the starting dose) when ``start_level`` is empty,
    else the highest allowed level at or below ``start_level``; failing those, the lowest allowed."""
    lowest = min(levels, key=lambda s: s.level)
    if start_level is None:
        return next((s for s in levels if s.level == 1), lowest)
    return max((s for s in levels if s.level <= start_level), key=lambda s: s.level, default=lowest)


def _refused(levels: tuple[LevelSummary, ...], ceiling: Ceiling) -> Recommendation | None:
    """A stage treating above its ceiling is told to come down to it (or to wait for one when there is none)."""
    above = [s for s in levels if s.status == ABOVE_CEILING and s.n_enrolled]
    if not above:
        return None
    where = ", ".join(s.label for s in above)
    if ceiling.level is None:
        return Recommendation("wait", None, None,
                              f"{where} has subjects in this stage, but no level is cleared in {ceiling.stage} yet: "
                              "the stage may not treat at any level until one is.")
    cap = next(s for s in levels if s.level == ceiling.level)
    return Recommendation("de-escalate", cap.level, None,
                          f"{where} is above {cap.label}, the highest level cleared in {ceiling.stage}: this stage "
                          f"may not use it; treat at {cap.label}.")


def recommend(levels: tuple[LevelSummary, ...], start_level: int | None = None,
              ceiling: Ceiling | None = None) -> Recommendation:
    """The protocol rule's next step, with a one-sentence reason. ``levels`` may carry levels above the ceiling
    (:func:`capped`): the rule moves only among the others, and the highest of those is the stage's top dose."""
    if ceiling is not None:
        refused = _refused(levels, ceiling)
        if refused is not None:
            return refused
        if ceiling.level is None:
            return Recommendation("wait", None, None, f"No level is cleared in {ceiling.stage} yet: this stage "
                                                      "opens once one is.")
    ladder = levels
    levels = tuple(s for s in levels if s.status != ABOVE_CEILING)
    top = (f"the highest level cleared in {ceiling.stage}" if ceiling is not None and len(levels) < len(ladder)
           else "the highest planned dose")
    started = [s for s in levels if s.status != NOT_STARTED]
    if not started:
        if not levels:
            return Recommendation("stop", None, None, "The study has no dose levels.")
        start = starting_level(list(levels), start_level)
        return Recommendation("enroll", start.level, None,
                              f"No subject is enrolled yet: enroll the first cohort at the starting dose {start.label}.")
    cur = max(started, key=lambda s: s.level)

    if cur.status == EXCEEDED:
        below = [s for s in levels if s.level < cur.level and s.status != EXCEEDED]
        if not below:
            return Recommendation("stop", None, None,
                                  f"{_dlt_phrase(cur)}: the MTD is exceeded and no lower dose level is left; "
                                  "no tolerable dose was found.")
        target = max(below, key=lambda s: s.level)
        head = f"{_dlt_phrase(cur)}: the MTD is exceeded"
        if target.n_evaluable >= CONFIRM_N:
            return Recommendation("declare_mtd", None, target.level,
                                  f"{head}; {target.label} has {target.n_dlt} DLT in {target.n_evaluable} "
                                  f"evaluable subjects: declare it the MTD.")
        if target.n_evaluable + target.n_pending >= CONFIRM_N:
            return Recommendation("wait", target.level, None,
                                  f"{head}; {target.label} has {target.n_evaluable} of the {CONFIRM_N} evaluable "
                                  f"subjects it needs and {target.n_pending} still in the DLT window: wait for them.")
        return Recommendation("de-escalate", target.level, None,
                              f"{head}; de-escalate to {target.label}, which has {target.n_evaluable} of the "
                              f"{CONFIRM_N} evaluable subjects it needs.")

    if cur.status == CLEARED:
        above = [s for s in levels if s.level > cur.level]
        cleared = (f"{_dlt_phrase(cur)} and {cur.n_evaluable} of the {cur.needed} "
                   f"evaluable {'subject' if cur.needed == 1 else 'subjects'} it needs are in")
        if above:
            nxt = min(above, key=lambda s: s.level)
            return Recommendation("escalate", nxt.level, None, f"{cleared}: escalate to {nxt.label}.")
        if cur.n_evaluable >= CONFIRM_N:
            return Recommendation("max_dose_cleared", None, None,
                                  f"{_dlt_phrase(cur)}, {top}: the maximum dose is cleared "
                                  "without reaching the MTD.")
        if cur.n_evaluable + cur.n_pending >= CONFIRM_N:
            return Recommendation("wait", cur.level, None,
                                  f"{cur.label} is {top} and has {cur.n_evaluable} of the "
                                  f"{CONFIRM_N} evaluable subjects that confirm it, {cur.n_pending} still in the "
                                  "DLT window: wait for them.")
        return Recommendation("enroll", cur.level, None,
                              f"{cur.label} is {top} and has {cur.n_evaluable} of the "
                              f"{CONFIRM_N} evaluable subjects that confirm it: enroll more at it.")

    if cur.status == LEVEL_PENDING:
        return Recommendation("wait", cur.level, None,
                              f"{cur.label} has {cur.n_evaluable} evaluable and {cur.n_pending} "
                              f"{'subject' if cur.n_pending == 1 else 'subjects'} still in the DLT window "
                              f"({cur.n_dlt} DLT so far; {cur.needed} evaluable needed): wait before deciding.")
    missing = cur.needed - cur.n_evaluable - cur.n_pending
    return Recommendation("enroll", cur.level, None,
                          f"{cur.label} has {cur.n_evaluable} evaluable and {cur.n_pending} pending of the "
                          f"{cur.needed} it needs ({cur.n_dlt} DLT so far): enroll "
                          f"{_subjects(missing)} more at it.")


def assess(design: str, dlt_window_days: int, levels: list[DoseLevel],
           subjects: list[SubjectFacts], as_of: dt.date, start_level: int | None = None,
           ceiling: Ceiling | None = None) -> Assessment:
    """Apply the protocol rule as of ``as_of`` to one stage's subjects (a study without stages has one):
    ``start_level`` where it opens, ``ceiling`` what an earlier stage has cleared."""
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}; expected one of {DESIGNS}")
    summaries, states, first_dlt = summarize_levels(design, dlt_window_days, levels, subjects, as_of)
    summaries = capped(summaries, ceiling)
    return Assessment(design, as_of, dlt_window_days, summaries, recommend(summaries, start_level, ceiling),
                      states, first_dlt, ceiling)


def decision_dates(subjects: list[SubjectFacts], dlt_window_days: int, as_of: dt.date) -> list[dt.date]:
    """Every date on or before ``as_of`` on which the rule's inputs changed."""
    dates: set[dt.date] = set()
    for s in subjects:
        if s.phase != "escalation":
            continue
        candidates = [s.enrollment_date, s.first_dose_date, s.off_study_date, *s.dlt_onsets]
        if s.first_dose_date is not None:
            candidates.append(window_end(s.first_dose_date, dlt_window_days))
        dates.update(d for d in candidates if d is not None and d <= as_of)
    return sorted(dates)

