"""The protocol's dose-escalation rule (3+3 and ATD+3+3), checked against the issue's specification.

Every expected value below is derived by hand from the clinical rule, never copied from a run.
Dates are day numbers from DAY0; the DLT window is [first dose, first dose + 28 days).
"""
from __future__ import annotations

import datetime as dt
import re

import pytest

from smc.analysis.dose_decision import decide, decision_history
from smc.rules.escalation import (
    DoseLevel,
    SubjectFacts,
    assess,
    decision_dates,
    subject_state,
)
from smc.store.study import Study

W = 28  # dlt_window_days
DAY0 = dt.date(2024, 1, 1)
GAP = 7  # days between consecutive subjects in a sequence
DLT_AFTER = 10  # a "T" subject's DLT starts 10 days after the first dose: inside the 28-day window


def day(n: int) -> dt.date:
    return DAY0 + dt.timedelta(days=n)


END = day(2000)  # after every window has ended
LEVELS = [DoseLevel(k, f"{10 * k} mg") for k in range(1, 6)]  # 10 mg .. 50 mg
IX001_LEVELS = [DoseLevel(-1, "3×10^8 PFU"), DoseLevel(1, "1×10^9 PFU"),
                DoseLevel(2, "3×10^9 PFU"), DoseLevel(3, "1×10^10 PFU")]


def subj(sid: str, level: int | None, dose: int | None = None, *, enrolled: int | None = None,
         dlt: tuple[int, ...] = (), off: int | None = None, evaluable: str | None = None,
         phase: str = "escalation") -> SubjectFacts:
    """One subject; all dates as day numbers. Enrolled on the dose day unless told otherwise."""
    if enrolled is None:
        enrolled = dose if dose is not None else 0
    return SubjectFacts(
        subject_id=sid, level=level, enrollment_date=day(enrolled),
        first_dose_date=day(dose) if dose is not None else None,
        dlt_onsets=tuple(day(d) for d in dlt), off_study_date=day(off) if off is not None else None,
        dlt_evaluable=evaluable, phase=phase)


def cohort(seq: str, *, start: int = 0, prefix: str = "S", phase: str = "escalation") -> list[SubjectFacts]:
    """'1NNN 2NTT': one letter per subject in the order treated (T = DLT, N = none), all evaluable.

    Subject i is enrolled and dosed on day start + 7i; a T subject's DLT starts 10 days after the dose.
    """
    subjects = []
    i = 0
    for token in seq.split():
        m = re.fullmatch(r"(-?\d+)([NT]+)", token)
        assert m, token
        level = int(m.group(1))
        for letter in m.group(2):
            d = start + GAP * i
            subjects.append(subj(f"{prefix}{i + 1:02d}", level, d,
                                 dlt=(d + DLT_AFTER,) if letter == "T" else (), phase=phase))
            i += 1
    return subjects


def run(subjects, *, design="3+3", levels=LEVELS, as_of=END):
    return assess(design, W, levels, subjects, as_of)


def run_seq(seq, **kw):
    return run(cohort(seq), **kw)


def state(s: SubjectFacts, as_of_day: int) -> str:
    return subject_state(s, day(as_of_day), W)


def assert_one_sentence(reason: str) -> None:
    assert reason and reason.strip().endswith(".")
    # exactly one sentence end: a ".", "!" or "?" followed by a space or the end (decimals like 0.30 don't count)
    assert len(re.findall(r"[.!?](?:\s|$)", reason.strip())) == 1, reason


# ---------------------------------------------------------------------------
# Subject state at T
# ---------------------------------------------------------------------------

class TestSubjectState:
    def test_not_counted_when_enrolled_after_as_of(self):
        s = subj("A", 1, 10, enrolled=10)
        assert state(s, 9) == "not_counted"
        assert state(s, 10) == "pending"

    def test_not_counted_without_enrollment_date(self):
        s = SubjectFacts("A", 1, None, first_dose_date=day(0))
        assert state(s, 100) == "not_counted"

    def test_enrolled_not_yet_dosed_is_pending(self):
        s = subj("A", 1, None, enrolled=0)
        assert state(s, 5) == "pending"

    def test_enrolled_dose_scheduled_after_as_of_is_pending(self):
        s = subj("A", 1, 10, enrolled=0)
        assert state(s, 5) == "pending"

    def test_inside_window_without_dlt_is_pending(self):
        s = subj("A", 1, 0)
        assert state(s, 0) == "pending"
        assert state(s, 27) == "pending"  # last day of [0, 28)

    def test_evaluable_once_first_dose_plus_window_is_reached(self):
        # first dose day 0 + 28 = day 28 <= T
        s = subj("A", 1, 0)
        assert state(s, 28) == "evaluable"
        assert state(s, 500) == "evaluable"

    def test_dlt_inside_window_counts_from_its_onset(self):
        s = subj("A", 1, 0, dlt=(10,))
        assert state(s, 9) == "pending"  # onset not yet known on day 9
        assert state(s, 10) == "dlt"
        assert state(s, 500) == "dlt"

    def test_dlt_on_first_dose_day_counts(self):
        assert state(subj("A", 1, 5, dlt=(5,)), 5) == "dlt"

    def test_dlt_on_last_day_of_window_counts(self):
        # window [0, 28): day 27 is inside
        assert state(subj("A", 1, 0, dlt=(27,)), 100) == "dlt"

    def test_dlt_on_window_end_day_does_not_count(self):
        # day 28 = first dose + 28 is outside [0, 28): the subject is simply evaluable
        assert state(subj("A", 1, 0, dlt=(28,)), 100) == "evaluable"

    def test_dlt_with_onset_after_window_does_not_count(self):
        assert state(subj("A", 1, 0, dlt=(40,)), 100) == "evaluable"

    def test_dlt_before_first_dose_does_not_count(self):
        assert state(subj("A", 1, 10, enrolled=0, dlt=(5,)), 100) == "evaluable"

    def test_dlt_evaluable_n_is_nonevaluable(self):
        assert state(subj("A", 1, 0, evaluable="N"), 100) == "nonevaluable"

    def test_dlt_beats_dlt_evaluable_n(self):
        # "the first that applies": dlt is tested before nonevaluable
        assert state(subj("A", 1, 0, dlt=(10,), evaluable="N"), 100) == "dlt"

    def test_off_study_inside_window_without_dlt_is_nonevaluable(self):
        s = subj("A", 1, 0, off=15)
        assert state(s, 14) == "pending"  # not yet off study on day 14
        assert state(s, 15) == "nonevaluable"  # off on or before T, before the window ends
        assert state(s, 100) == "nonevaluable"

    def test_off_study_on_last_window_day_is_nonevaluable(self):
        assert state(subj("A", 1, 0, off=27), 100) == "nonevaluable"

    def test_off_study_exactly_on_window_end_day_is_evaluable(self):
        # window is [0, 28): leaving on day 28 is after the window ended
        assert state(subj("A", 1, 0, off=28), 100) == "evaluable"

    def test_off_study_after_window_is_evaluable(self):
        assert state(subj("A", 1, 0, off=60), 100) == "evaluable"

    def test_off_study_after_a_dlt_stays_dlt(self):
        assert state(subj("A", 1, 0, dlt=(10,), off=12), 100) == "dlt"

    def test_off_study_before_any_dose_is_nonevaluable(self):
        s = subj("A", 1, None, enrolled=0, off=3)
        assert state(s, 2) == "pending"
        assert state(s, 3) == "nonevaluable"
        assert state(s, 500) == "nonevaluable"

    def test_off_study_before_a_later_first_dose_is_nonevaluable(self):
        assert state(subj("A", 1, 10, enrolled=0, off=5), 100) == "nonevaluable"

    def test_death_in_window_is_nonevaluable(self):
        # off_study_date holds the earliest of off study and death
        assert state(subj("A", 1, 0, off=20), 20) == "nonevaluable"


# ---------------------------------------------------------------------------
# Per-level counts and status
# ---------------------------------------------------------------------------

class TestLevelSummary:
    def test_counts_per_level(self):
        subjects = [
            subj("E", 1, 0),  # evaluable
            subj("D", 1, 0, dlt=(5,)),  # dlt
            subj("P", 1, 90),  # pending (window ends day 118)
            subj("X", 1, 0, off=10),  # nonevaluable
            subj("F", 1, 200, enrolled=200),  # not counted on day 100
        ]
        lv = run(subjects, as_of=day(100)).level(1)
        assert lv.n_enrolled == 4
        assert lv.n_dlt == 1
        assert lv.n_evaluable == 2  # evaluable + dlt
        assert lv.n_pending == 1
        assert lv.n_nonevaluable == 1
        assert lv.needed == 6  # one DLT
        assert lv.status == "enrolling"  # 2 evaluable + 1 pending = 3 < 6

    def test_status_not_started(self):
        a = run_seq("1NNN")
        assert a.level(2).status == "not_started"
        assert a.level(2).n_enrolled == 0

    def test_status_exceeded_with_two_dlts(self):
        a = run_seq("1NTT")
        assert a.level(1).status == "exceeded"

    def test_status_cleared_with_three_and_no_dlt(self):
        lv = run_seq("1NNN").level(1)
        assert (lv.needed, lv.n_evaluable, lv.status) == (3, 3, "cleared")

    def test_one_dlt_needs_six(self):
        lv = run_seq("1NNT").level(1)
        assert (lv.needed, lv.n_evaluable, lv.n_dlt, lv.status) == (6, 3, 1, "enrolling")

    def test_status_cleared_with_one_dlt_in_six(self):
        lv = run_seq("1NNT 1NNN").level(1)
        assert (lv.needed, lv.n_evaluable, lv.status) == (6, 6, "cleared")

    def test_status_pending_when_evaluable_plus_pending_reach_needed(self):
        # two evaluable (days 0, 7) + one inside its window (day 40, window ends 68) = 3 >= 3
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, 40)]
        assert run(subjects, as_of=day(50)).level(1).status == "pending"

    def test_status_enrolling_when_short(self):
        assert run_seq("1NN").level(1).status == "enrolling"


# ---------------------------------------------------------------------------
# Required sequences (5 levels, 3+3, all evaluable)
# ---------------------------------------------------------------------------

class TestRequiredSequences:
    def test_nothing_enrolled_enroll_at_level_1(self):
        rec = run([]).recommendation
        assert (rec.action, rec.to_level) == ("enroll", 1)
        assert "10 mg" in rec.reason
        assert_one_sentence(rec.reason)

    def test_0_of_3_escalates(self):
        rec = run_seq("1NNN").recommendation
        assert (rec.action, rec.to_level) == ("escalate", 2)
        assert "10 mg" in rec.reason and "20 mg" in rec.reason
        assert re.search(r"\b0 of 3\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_1_of_3_expands_the_cohort(self):
        rec = run_seq("1NNT").recommendation
        assert (rec.action, rec.to_level) == ("enroll", 1)
        # 3 evaluable, 1 DLT, 6 needed
        assert "10 mg" in rec.reason
        for n in ("1", "3", "6"):
            assert re.search(rf"(?<![\d.]){n}(?![\d.])", rec.reason), n
        assert_one_sentence(rec.reason)

    def test_2_of_3_at_the_first_level_stops(self):
        rec = run_seq("1NTT").recommendation
        assert rec.action == "stop"
        assert rec.to_level is None and rec.mtd_level is None
        assert "10 mg" in rec.reason and re.search(r"\b2 of 3\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_2_of_3_above_a_cleared_level_deescalates(self):
        rec = run_seq("1NNN 2NTT").recommendation
        assert (rec.action, rec.to_level) == ("de-escalate", 1)
        # names both labels, the 2 DLTs in 3 at 20 mg, and that 10 mg has 3 of the 6 it needs
        assert "20 mg" in rec.reason and "10 mg" in rec.reason
        assert re.search(r"\b2 of 3\b", rec.reason)
        assert re.search(r"\b3 of (the )?6\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_1_of_6_escalates(self):
        rec = run_seq("1NNN 2NNT 2NNN").recommendation
        assert (rec.action, rec.to_level) == ("escalate", 3)
        assert "20 mg" in rec.reason and "30 mg" in rec.reason
        assert re.search(r"\b1 of 6\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_2_of_6_deescalates(self):
        rec = run_seq("1NNN 2NNT 2NNT").recommendation
        assert (rec.action, rec.to_level) == ("de-escalate", 1)
        assert "20 mg" in rec.reason and "10 mg" in rec.reason
        assert re.search(r"\b2 of 6\b", rec.reason)
        assert re.search(r"\b3 of (the )?6\b", rec.reason)
        assert_one_sentence(rec.reason)


# ---------------------------------------------------------------------------
# More recommendations
# ---------------------------------------------------------------------------

class TestRecommendation:
    def test_pending_subject_inside_window_means_wait(self):
        # 10 mg: days 0 and 7 evaluable by day 50; day 40 still inside [40, 68)
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, 40)]
        rec = run(subjects, as_of=day(50)).recommendation
        assert rec.action == "wait"
        assert "10 mg" in rec.reason
        assert_one_sentence(rec.reason)

    def test_enrolled_not_dosed_subject_means_wait(self):
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, None, enrolled=45)]
        a = run(subjects, as_of=day(50))
        assert a.level(1).n_pending == 1
        assert a.recommendation.action == "wait"

    def test_same_cohort_escalates_once_the_last_window_ends(self):
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, 40)]
        assert run(subjects, as_of=day(67)).recommendation.action == "wait"
        rec = run(subjects, as_of=day(68)).recommendation  # 40 + 28 = 68
        assert (rec.action, rec.to_level) == ("escalate", 2)

    @pytest.mark.parametrize("dropout", [
        subj("X", 1, 14, evaluable="N"),  # dlt_evaluable = N
        subj("X", 1, 14, off=20),  # off study inside the window
        subj("X", 1, None, enrolled=14, off=16),  # off study before any dose
    ], ids=["dlt_evaluable_N", "off_study_in_window", "off_study_before_dosing"])
    def test_replaced_dropout_does_not_complete_the_cohort(self, dropout):
        subjects = [subj("A", 1, 0), subj("B", 1, 7), dropout]
        a = run(subjects)
        lv = a.level(1)
        assert (lv.n_enrolled, lv.n_evaluable, lv.n_nonevaluable, lv.n_pending) == (3, 2, 1, 0)
        assert lv.status == "enrolling"
        assert (a.recommendation.action, a.recommendation.to_level) == ("enroll", 1)

    def test_replacement_for_dropout_completes_the_cohort(self):
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("X", 1, 14, off=20), subj("R", 1, 21)]
        rec = run(subjects).recommendation
        assert (rec.action, rec.to_level) == ("escalate", 2)

    def test_off_study_on_window_end_day_completes_the_cohort(self):
        # C dosed day 14, window [14, 42): off study on day 42 is evaluable
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, 14, off=42)]
        rec = run(subjects).recommendation
        assert (rec.action, rec.to_level) == ("escalate", 2)

    def test_dlt_after_window_does_not_count_for_the_level(self):
        # C dosed day 14, window [14, 42); the AE on day 50 is outside it
        subjects = [subj("A", 1, 0), subj("B", 1, 7), subj("C", 1, 14, dlt=(50,))]
        a = run(subjects)
        assert a.level(1).n_dlt == 0
        assert (a.recommendation.action, a.recommendation.to_level) == ("escalate", 2)

    def test_as_of_before_and_after_a_dlt_onset(self):
        subjects = [subj("A", 1, 0), subj("B", 1, 0), subj("C", 1, 0),
                    subj("D", 2, 30), subj("E", 2, 30), subj("F", 2, 40, dlt=(60,))]
        # day 59: D, E evaluable (windows end 58), F inside [40, 68) with no DLT yet: 2 + 1 >= 3 -> wait
        before = run(subjects, as_of=day(59))
        assert before.level(2).n_dlt == 0
        assert before.recommendation.action == "wait"
        # day 60: F's DLT is known: 1 DLT -> 6 needed, 3 evaluable, nothing pending -> enroll 3 more at 20 mg
        after = run(subjects, as_of=day(60))
        assert (after.level(2).n_dlt, after.level(2).needed) == (1, 6)
        assert (after.recommendation.action, after.recommendation.to_level) == ("enroll", 2)

    def test_as_of_before_second_dlt_onset_does_not_stop(self):
        # 1NTT with the second DLT on day 24 (subject 3 dosed day 14, +10)
        subjects = cohort("1NTT")
        assert run(subjects, as_of=day(23)).recommendation.action != "stop"
        assert run(subjects, as_of=day(24)).recommendation.action == "stop"

    def test_expansion_phase_subjects_are_ignored(self):
        expansion = cohort("2TTT 1TTT", start=0, prefix="EXP", phase="expansion")
        a = run(cohort("1NNN") + expansion)
        assert a.level(1).n_enrolled == 3 and a.level(1).n_dlt == 0
        assert a.level(2).n_enrolled == 0 and a.level(2).status == "not_started"
        assert (a.recommendation.action, a.recommendation.to_level) == ("escalate", 2)

    def test_only_expansion_subjects_means_nothing_enrolled(self):
        a = run(cohort("1NNN", prefix="EXP", phase="expansion"))
        assert (a.recommendation.action, a.recommendation.to_level) == ("enroll", 1)

    def test_top_level_cleared_with_three_enrolls_more_at_it(self):
        rec = run_seq("1NNN 2NNN 3NNN 4NNN 5NNN").recommendation
        assert (rec.action, rec.to_level) == ("enroll", 5)
        assert "50 mg" in rec.reason and re.search(r"\b3 of (the )?6\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_top_level_with_six_evaluable_is_max_dose_cleared(self):
        rec = run_seq("1NNN 2NNN 3NNN 4NNN 5NNNNNN").recommendation
        assert rec.action == "max_dose_cleared"
        assert "50 mg" in rec.reason and re.search(r"\b0 of 6\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_top_level_with_one_dlt_in_six_is_max_dose_cleared(self):
        assert run_seq("1NNN 2NNN 3NNN 4NNN 5NNT 5NNN").recommendation.action == "max_dose_cleared"

    def test_top_level_with_three_evaluable_and_three_pending_waits(self):
        subjects = cohort("1NNN 2NNN 3NNN 4NNN 5NNN")  # last subject dosed day 98
        subjects += [subj(f"P{i}", 5, 150 + i) for i in range(3)]  # windows end 178..180
        rec = run(subjects, as_of=day(160)).recommendation
        assert rec.action == "wait"
        assert "50 mg" in rec.reason
        assert_one_sentence(rec.reason)

    def test_declare_mtd_when_level_below_has_six_evaluable(self):
        rec = run_seq("1NNN 2NNT 2NNN 3NTT").recommendation
        assert (rec.action, rec.mtd_level) == ("declare_mtd", 2)
        assert "30 mg" in rec.reason and "20 mg" in rec.reason
        assert_one_sentence(rec.reason)

    def test_declare_mtd_after_expanding_the_level_below(self):
        # 20 mg exceeded; 10 mg expanded from 3 to 6 with no DLT
        rec = run_seq("1NNN 2NTT 1NNN").recommendation
        assert (rec.action, rec.mtd_level) == ("declare_mtd", 1)

    def test_wait_when_level_below_has_three_evaluable_and_three_pending(self):
        subjects = cohort("1NNN 2NTT")  # last subject dosed day 35
        subjects += [subj(f"P{i}", 1, 100 + i) for i in range(3)]  # windows end 128..130
        rec = run(subjects, as_of=day(110)).recommendation
        assert rec.action == "wait"
        assert "20 mg" in rec.reason and "10 mg" in rec.reason
        assert_one_sentence(rec.reason)

    def test_deescalate_skips_exceeded_levels_below(self):
        # 30 mg 2/3 and 20 mg 2/6 both exceeded; 10 mg has 3 -> de-escalate to 10 mg
        rec = run_seq("1NNN 2NNN 3NTT 2NTT").recommendation
        assert (rec.action, rec.to_level) == ("de-escalate", 1)

    def test_stop_when_every_level_below_is_exceeded(self):
        rec = run_seq("1NNN 2NTT 1NTT").recommendation
        assert rec.action == "stop"

    def test_stop_with_two_of_six_at_the_first_level(self):
        assert run_seq("1NNT 1NNT").recommendation.action == "stop"

    def test_one_dlt_at_current_level_with_pending_waits(self):
        # 10 mg: 3 evaluable incl. 1 DLT, 3 more inside the window -> 6 reachable -> wait
        subjects = cohort("1NNT") + [subj(f"P{i}", 1, 100) for i in range(3)]
        assert run(subjects, as_of=day(110)).recommendation.action == "wait"


# ---------------------------------------------------------------------------
# IX001-like levels [-1, 1, 2, 3]
# ---------------------------------------------------------------------------

class TestNegativeLevels:
    def test_start_at_level_1_not_minus_1(self):
        rec = run([], levels=IX001_LEVELS).recommendation
        assert (rec.action, rec.to_level) == ("enroll", 1)

    def test_level_1_exceeded_deescalates_to_minus_1_without_subjects(self):
        a = run_seq("1NTT", levels=IX001_LEVELS)
        assert a.level(-1).status == "not_started"
        rec = a.recommendation
        assert (rec.action, rec.to_level) == ("de-escalate", -1)
        assert "1×10^9 PFU" in rec.reason and "3×10^8 PFU" in rec.reason
        assert re.search(r"\b2 of 3\b", rec.reason)
        assert re.search(r"\b0 of (the )?6\b", rec.reason)
        assert_one_sentence(rec.reason)

    def test_level_order_is_numeric_not_list_order(self):
        shuffled = [IX001_LEVELS[2], IX001_LEVELS[0], IX001_LEVELS[3], IX001_LEVELS[1]]
        a = run_seq("1NTT", levels=shuffled)
        assert [s.level for s in a.levels] == [-1, 1, 2, 3]
        assert (a.recommendation.action, a.recommendation.to_level) == ("de-escalate", -1)
        assert run_seq("1NNN", levels=shuffled).recommendation.to_level == 2

    def test_minus_1_with_six_evaluable_is_the_mtd(self):
        rec = run_seq("1NTT -1NNNNNN", levels=IX001_LEVELS).recommendation
        assert (rec.action, rec.mtd_level) == ("declare_mtd", -1)

    def test_minus_1_exceeded_too_stops(self):
        assert run_seq("1NTT -1NTT", levels=IX001_LEVELS).recommendation.action == "stop"

    def test_minus_1_cleared_alone_escalates_to_1(self):
        rec = run_seq("-1NNN", levels=IX001_LEVELS).recommendation
        assert (rec.action, rec.to_level) == ("escalate", 1)


# ---------------------------------------------------------------------------
# ATD+3+3
# ---------------------------------------------------------------------------

class TestAcceleratedTitration:
    def test_before_any_dlt_every_level_needs_one(self):
        a = run_seq("1N", design="ATD+3+3")
        assert [s.needed for s in a.levels] == [1, 1, 1, 1, 1]
        assert a.first_dlt_level is None
        assert (a.recommendation.action, a.recommendation.to_level) == ("escalate", 2)

    def test_single_subject_pending_waits(self):
        a = run(cohort("1N"), design="ATD+3+3", as_of=day(10))
        assert a.recommendation.action == "wait"

    def test_first_dlt_switches_that_level_to_3_plus_3(self):
        a = run_seq("1N 2N 3T", design="ATD+3+3")
        assert a.first_dlt_level == 3
        assert [a.level(k).needed for k in (1, 2, 3)] == [1, 1, 6]
        assert a.level(1).status == a.level(2).status == "cleared"
        assert (a.recommendation.action, a.recommendation.to_level) == ("enroll", 3)

    def test_as_of_before_the_first_dlt_onset_the_level_still_needs_one(self):
        # 3T dosed day 14, DLT on day 24
        subjects = cohort("1N 2N 3T")
        before = run(subjects, design="ATD+3+3", as_of=day(23))
        assert before.first_dlt_level is None
        assert before.level(3).needed == 1
        assert before.recommendation.action == "wait"
        after = run(subjects, design="ATD+3+3", as_of=day(24))
        assert after.first_dlt_level == 3 and after.level(3).needed == 6

    def test_first_dlt_subject_counts_as_one_of_the_cohort(self):
        # 3T + 5 more without DLT = 6 evaluable, 1 DLT -> cleared
        assert run_seq("1N 2N 3T 3NNNNN", design="ATD+3+3").recommendation.to_level == 4
        # 3T + 4 more = 5 evaluable < 6
        rec = run_seq("1N 2N 3T 3NNNN", design="ATD+3+3").recommendation
        assert (rec.action, rec.to_level) == ("enroll", 3)

    def test_levels_above_the_first_dlt_level_follow_3_plus_3(self):
        a = run_seq("1N 2T 2NNNNN 3N", design="ATD+3+3")
        assert a.level(3).needed == 3
        assert (a.recommendation.action, a.recommendation.to_level) == ("enroll", 3)

    def test_two_dlts_exceed_under_atd_too(self):
        rec = run_seq("1N 2N 3T 3T", design="ATD+3+3").recommendation
        # 20 mg has 1 evaluable of the 6 it needs -> de-escalate to it
        assert (rec.action, rec.to_level) == ("de-escalate", 2)

    def test_first_dlt_onset_tie_goes_to_lower_level(self):
        subjects = [subj("A", 1, 0, dlt=(10,)), subj("B", 2, 1), subj("C", 3, 2, dlt=(10,))]
        a = run(subjects, design="ATD+3+3")
        assert a.first_dlt_level == 1
        # level 2 has no DLT but is not below level 1 -> 3+3
        assert a.level(2).needed == 3

    def test_first_dlt_is_the_earliest_onset_not_the_lowest_level(self):
        subjects = [subj("A", 1, 0, dlt=(10,)), subj("B", 2, 1), subj("C", 3, 2, dlt=(9,))]
        a = run(subjects, design="ATD+3+3")
        assert a.first_dlt_level == 3
        assert a.level(2).needed == 1

    def test_expansion_dlt_is_not_the_first_dlt(self):
        subjects = cohort("1N 2N") + cohort("1T", prefix="EXP", phase="expansion")
        a = run(subjects, design="ATD+3+3")
        assert a.first_dlt_level is None
        assert (a.recommendation.action, a.recommendation.to_level) == ("escalate", 3)

    def test_top_level_under_atd_with_one_subject_enrolls_more(self):
        rec = run_seq("1N 2N 3N 4N 5N", design="ATD+3+3").recommendation
        assert (rec.action, rec.to_level) == ("enroll", 5)


# ---------------------------------------------------------------------------
# the replayed history (decision_history, as the page and the report replay it) and decision_dates()
# ---------------------------------------------------------------------------

def history(design: str, dlt_window_days: int, levels: list[DoseLevel], subjects: list[SubjectFacts],
            as_of: dt.date):
    """The rule replayed at every date its inputs changed, for a one-stage study of these levels."""
    study = Study("S", None, design, "AGENT", dlt_window_days, 0.30, None, None, 42, None, None, tuple(levels))
    return decision_history(decide(study, as_of, subjects))


class TestHistory:
    SUBJECTS = [
        subj("A", 1, 2, enrolled=0),  # enrolled 0, dosed 2, window ends 30
        subj("B", 1, 5, dlt=(12,)),  # enrolled + dosed 5, DLT 12, window ends 33
        subj("E", 1, 7, phase="expansion"),  # ignored
        subj("L", 1, 40),  # enrolled after as_of
    ]
    AS_OF = day(35)

    def test_one_assessment_per_date_the_inputs_changed(self):
        h = history("3+3", W, LEVELS, self.SUBJECTS, self.AS_OF)
        expected = [day(d) for d in (0, 2, 5, 12, 30, 33)]
        assert [a.as_of for a in h] == expected
        assert decision_dates(self.SUBJECTS, W, self.AS_OF) == expected

    def test_each_entry_is_the_rule_on_that_date(self):
        h = history("3+3", W, LEVELS, self.SUBJECTS, self.AS_OF)
        actions = [a.recommendation.action for a in h]
        # day 0: A pending (1 of 3) -> enroll; day 12: B's DLT -> 6 needed -> enroll;
        # day 33: both evaluable, 1 DLT, 2 of 6 -> enroll
        assert actions == ["enroll"] * 6
        assert h[0].states == {"A": "pending", "B": "not_counted", "L": "not_counted"}
        assert h[3].states["B"] == "dlt"
        assert h[4].states["A"] == "evaluable"

    def test_history_ends_with_the_as_of_state(self):
        h = history("3+3", W, LEVELS, self.SUBJECTS, self.AS_OF)
        now = assess("3+3", W, LEVELS, self.SUBJECTS, self.AS_OF)
        assert h[-1].levels == now.levels
        assert h[-1].recommendation == now.recommendation
        assert h[-1].states == now.states

    def test_history_of_a_full_sequence_ends_with_its_recommendation(self):
        subjects = cohort("1NNN 2NTT")
        h = history("3+3", W, LEVELS, subjects, END)
        assert h[-1].recommendation.action == "de-escalate"
        assert h[-1].recommendation.to_level == 1
        assert [a.as_of for a in h] == sorted({a.as_of for a in h})

    def test_rule_steps_give_the_date_level_and_action_of_each_replayed_call(self):
        from smc.analysis.dose_decision import rule_steps
        # '1NNN 2N': level 1 dosed on days 0, 7, 14 (windows end 28, 35, 42), level 2 on day 21 (ends 49).
        # Days 0 and 7: level 1 has 1 then 2 of its 3 pending -> enroll; day 14: all 3 in the window -> wait;
        # from day 21 the rule reads level 2, the highest started: 1 of its 3 pending, then evaluable -> enroll.
        steps = rule_steps(history("3+3", W, LEVELS, cohort("1NNN 2N"), END))
        assert list(steps["date"]) == [day(d) for d in range(0, 50, 7)]
        assert list(steps["level"]) == [1, 1, 1, 2, 2, 2, 2, 2]
        assert list(steps["action"]) == ["enroll", "enroll", "wait"] + ["enroll"] * 5
        assert steps["reason"].iloc[-1].startswith("20 mg has 1 evaluable")
