"""Staged regimens (monotherapy, then a combination): a DLT window and an escalation per stage.

Every expected value is worked by hand from the rule in docs/rules.md#staged-regimens: each stage runs 3+3 over its
own subjects and window; a stage with a ceiling may use only the levels cleared in its ceiling stage, and the
highest of them is its top dose. Dates are day numbers from DAY0.
"""
from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

from smc.analysis.changes import recommendation_since
from smc.analysis.dose_decision import counted_dlts, decide, decision_history, escalation_json, load_dose_decision
from smc.ingest import load
from smc.rules.escalation import DoseLevel, SubjectFacts
from smc.store.db import Database
from smc.store.study import Stage, Study, load_study
from tests.unit.test_load import find_problems, valid_tables, write_csv_set

DAY0 = dt.date(2025, 1, 1)
LEVELS = (DoseLevel(1, "1e8 VP"), DoseLevel(2, "1e9 VP"), DoseLevel(3, "1e10 VP"))
MONO = Stage("monotherapy", 1, "VIRUS", 28)
COMBO = Stage("combination", 2, "PD1", 28, ceiling_stage="monotherapy")


def day(n: int) -> dt.date:
    return DAY0 + dt.timedelta(days=n)


def study(*stages: Stage) -> Study:
    return Study("S", None, "3+3", "VIRUS", 28, 0.30, None, None, 42, None, None, LEVELS, stages)


def mono(sid: str, level: int, dose: int, dlt: tuple[int, ...] = ()) -> SubjectFacts:
    return SubjectFacts(sid, level, day(dose), day(dose), tuple(day(d) for d in dlt))


def combo(sid: str, level: int, start: int, dlt: tuple[int, ...] = ()) -> SubjectFacts:
    return SubjectFacts(sid, level, day(start), day(start), tuple(day(d) for d in dlt), stage_order=2)


def three_cleared(level: int, first: int, prefix: str) -> list[SubjectFacts]:
    """Three DLT-free monotherapy subjects at ``level``, dosed a week apart from day ``first``."""
    return [mono(f"{prefix}{i}", level, first + 7 * i) for i in range(3)]


def levels_of(stage) -> dict[int, tuple[int, int, int, str]]:
    """level -> (evaluable, DLT, needed, status)."""
    return {r.level: (r.n_evaluable, r.n_dlt, r.needed, r.status) for r in stage.rows}


class TestCombinationDlt:
    """Monotherapy clears 1 and 2 (3 subjects each, no DLT). The combination clears 1 with A, B, C, then D, E, F
    enter it at 2 on days 95-97 and D has a DLT on day 100: as of day 130 every window has ended."""

    subjects = (three_cleared(1, 0, "A") + three_cleared(2, 50, "D")
                + [combo("A0", 1, 60), combo("A1", 1, 61), combo("A2", 1, 62)]
                + [combo("D0", 2, 95, dlt=(100,)), combo("D1", 2, 96), combo("D2", 2, 97)])

    def test_the_combination_level_needs_six_while_the_monotherapy_level_stays_cleared(self):
        decision = decide(study(MONO, COMBO), day(130), self.subjects)
        monotherapy, combination = decision.stages
        assert levels_of(monotherapy)[2] == (3, 0, 3, "cleared")
        assert levels_of(combination)[1] == (3, 0, 3, "cleared")
        assert levels_of(combination)[2] == (3, 1, 6, "enrolling")
        assert levels_of(combination)[3][3] == "above_ceiling"  # not cleared in monotherapy
        rec = combination.assessment.recommendation
        assert (rec.action, rec.to_level) == ("enroll", 2)
        assert "enroll 3 subjects more" in rec.reason
        # monotherapy: 2 cleared, 3 not started: escalate
        assert (monotherapy.assessment.recommendation.action, monotherapy.assessment.recommendation.to_level) == (
            "escalate", 3)
        assert combination.assessment.ceiling.level == 2

    def test_the_dlt_is_counted_in_the_combination_only(self):
        decision = decide(study(MONO, COMBO), day(130), self.subjects)
        assert counted_dlts(decision).empty  # the first stage's
        dlts = counted_dlts(decision, "*")
        assert dlts[["subject_id", "stage", "level"]].values.tolist() == [["D0", "combination", 2]]
        assert dlts["onset_date"].iloc[0].date() == day(100)

    def test_the_report_keeps_the_first_stage_on_top_and_lists_both(self):
        out = escalation_json(decide(study(MONO, COMBO), day(130), self.subjects))
        assert out["recommendation"]["action"] == "escalate" and out["dlt_window_days"] == 28
        assert [(s["stage"], s["agent"], s["dlt_window_days"]) for s in out["stages"]] == [
            ("monotherapy", "VIRUS", 28), ("combination", "PD1", 28)]
        assert out["stages"][0]["levels"] == out["levels"]
        assert out["stages"][1]["recommendation"]["to_level"] == 2
        assert {"levels", "recommendation", "boin"} <= set(out["stages"][1])

    def test_since_the_last_review_each_stage_names_its_own_change(self):
        before, now = (decide(study(MONO, COMBO), day(d), self.subjects) for d in (90, 130))
        nothing = pd.DataFrame({"categories": [], "subject_id": [], "record": []})
        # combination: enroll more at 1, its top until monotherapy cleared 2 on day 92; now 2 needs 6
        changed, why = recommendation_since(before, now, nothing, nothing, "combination")
        assert changed and "it was enroll 1e8 VP" in why and "it is now enroll 1e9 VP" in why
        # the same cut compared with itself: unchanged, per stage
        assert recommendation_since(now, now, nothing, nothing, "combination") == (
            False, "Unchanged since the compared cut: enroll 1e9 VP.")
        one_stage = decide(study(MONO), day(90), self.subjects)  # a cut from before the combination was added
        changed, why = recommendation_since(one_stage, now, nothing, nothing, "combination")
        assert changed and why.startswith("The compared cut had no stage combination")

    def test_the_history_replays_the_combination_with_its_ceiling(self):
        decision = decide(study(MONO, COMBO), day(130), self.subjects)
        steps = {a.as_of: a.recommendation for a in decision_history(decision, "combination")}
        # Day 60: monotherapy has cleared 1 (A0-A2's windows ended on days 28, 35, 42) but not 2 (D0-D2 dosed on
        # days 50-64): the combination opens at 1 with A0 pending.
        assert (steps[day(60)].action, steps[day(60)].to_level) == ("enroll", 1)
        # Day 90: A0-A2's combination windows have ended (88-90); monotherapy cleared 2 on day 92 (D2's window):
        # until then 1 is the combination's top: enroll more at it.
        assert (steps[day(90)].action, steps[day(90)].to_level) == ("enroll", 1)
        assert "highest level cleared in monotherapy" in steps[day(90)].reason
        assert (steps[day(92)].action, steps[day(92)].to_level) == ("escalate", 2)


class TestCeiling:
    def test_a_combination_level_above_the_monotherapy_ceiling_is_refused(self):
        # monotherapy: 1 cleared; 2 has a DLT in its first 3 (needs 6): the ceiling is 1
        subjects = (three_cleared(1, 0, "A") + [mono("D0", 2, 50, dlt=(60,)), mono("D1", 2, 57), mono("D2", 2, 64)]
                    + [combo("A0", 1, 60), combo("X", 2, 70)])
        decision = decide(study(MONO, COMBO), day(120), subjects)
        monotherapy, combination = decision.stages
        assert levels_of(monotherapy)[2] == (3, 1, 6, "enrolling")
        assert combination.assessment.ceiling.level == 1
        assert levels_of(combination)[2][3] == "above_ceiling"
        rec = combination.assessment.recommendation
        assert (rec.action, rec.to_level) == ("de-escalate", 1)
        assert "1e9 VP is above 1e8 VP, the highest level cleared in monotherapy" in rec.reason
        assert combination.boin.current_level == 1  # BOIN advises among the levels the stage may use

    def test_the_ceiling_is_the_combination_top_dose(self):
        # monotherapy cleared only 1; the combination has 6 evaluable at 1 without a DLT
        subjects = three_cleared(1, 0, "A") + [combo(f"C{i}", 1, 40 + i) for i in range(6)]
        combination = decide(study(MONO, COMBO), day(100), subjects).stages[1]
        rec = combination.assessment.recommendation
        assert rec.action == "max_dose_cleared"
        assert "the highest level cleared in monotherapy" in rec.reason
        assert combination.boin.advice == "stay"  # no higher level is open to it

    def test_with_nothing_cleared_in_monotherapy_the_combination_waits(self):
        subjects = [mono("A0", 1, 0), mono("A1", 1, 7)]  # 2 of the 3 level 1 needs
        combination = decide(study(MONO, COMBO), day(60), subjects).stages[1]
        assert combination.assessment.ceiling.level is None
        assert {r.status for r in combination.rows} == {"above_ceiling"}
        assert (combination.assessment.recommendation.action, combination.assessment.recommendation.to_level) == (
            "wait", None)
        assert combination.boin.advice == "wait"

    def test_a_stage_opens_at_its_start_level(self):
        subjects = three_cleared(1, 0, "A") + three_cleared(2, 50, "D")
        opening = Stage("combination", 2, "PD1", 28, start_level=2, ceiling_stage="monotherapy")
        opened = decide(study(MONO, opening), day(100), subjects).stages[1]
        rec = opened.assessment.recommendation
        assert (rec.action, rec.to_level) == ("enroll", 2)
        assert (opened.boin.advice, opened.boin.to_level) == ("enroll", 2)  # BOIN opens where the rule does
        without = decide(study(MONO, COMBO), day(100), subjects).stages[1]
        rec = without.assessment.recommendation
        assert (rec.action, rec.to_level) == ("enroll", 1)  # empty: level 1, the starting dose
        assert (without.boin.advice, without.boin.to_level) == ("enroll", 1)


def test_a_one_stage_study_has_no_stages_in_the_report():
    subjects = three_cleared(1, 0, "A")
    one = decide(study(), day(60), subjects)
    assert len(one.stages) == 1 and one.stages[0].stage.name is None
    assert "stages" not in escalation_json(one)
    assert (one.assessment.recommendation.action, one.assessment.recommendation.to_level) == ("escalate", 2)


# --------------------------------------------------------------------------- through the CSV import

def two_stage_tables() -> dict:
    """The valid set's study S1 (agent DRUG-X, 28 days) as monotherapy then a combination with PD1 (28 days),
    capped by monotherapy. Subjects 001 (level 1) and 002 (level 2) as in the valid set, and 004 at level 1:
      001: DRUG-X on 01-10; enters the combination at level 1 on 02-07 (start_date); its DLT on 01-20 lies in the
           monotherapy window [01-10, 02-07).
      004: DRUG-X on 01-12; the combination at level 1 from its first PD1 (no start_date), 02-09; DLT on 02-15,
           inside the combination window [02-09, 03-09) and after its monotherapy window [01-12, 02-09).
    """
    t = valid_tables()
    t["stages"] = [
        dict(study_id="S1", stage="monotherapy", stage_order="1", agent="DRUG-X", dlt_window_days="28",
             start_level="", ceiling_stage=""),
        dict(study_id="S1", stage="combination", stage_order="2", agent="PD1", dlt_window_days="28",
             start_level="", ceiling_stage="monotherapy"),
    ]
    t["subjects"].append(dict(t["subjects"][0], subject_id="004", enrollment_date="2025-01-12", cohort="1",
                              dlt_evaluable="", off_treatment_date="", off_treatment_reason=""))
    t["subject_stages"] = [
        dict(study_id="S1", subject_id="001", stage="combination", dose_level="1", start_date="2025-02-07"),
        dict(study_id="S1", subject_id="004", stage="combination", dose_level="1", start_date=""),
    ]
    dose = t["administrations"][0]
    t["administrations"] += [
        dict(dose, subject_id="004", admin_date="2025-01-12", cycle="1"),
        dict(dose, subject_id="001", agent="PD1", admin_date="2025-02-07", cycle="1"),
        dict(dose, subject_id="004", agent="PD1", admin_date="2025-02-09", cycle="1"),
    ]
    ae = t["adverse_events"][1]
    t["adverse_events"] += [
        dict(ae, subject_id="001", ae_seq="2", onset_date="2025-01-20", end_date="2025-01-25"),
        dict(ae, subject_id="004", ae_seq="1", onset_date="2025-02-15", end_date="2025-02-20"),
    ]
    return t


@pytest.fixture
def two_stage_db(tmp_path):
    path = tmp_path / "staged.duckdb"
    load.import_csv_dir(write_csv_set(tmp_path / "csv", two_stage_tables()), path)
    return Database(path)


def test_each_dlt_counts_in_the_stage_whose_window_holds_its_onset(two_stage_db):
    decision = load_dose_decision(two_stage_db, load_study(two_stage_db, "S1"), dt.date(2025, 6, 30))
    monotherapy, combination = decision.stages
    # monotherapy level 1: 001 (DLT 01-20) and 004 (no DLT before it entered the combination on 02-09)
    assert monotherapy.assessment.states["001"] == "dlt" and monotherapy.assessment.states["004"] == "evaluable"
    assert levels_of(monotherapy)[1][:2] == (2, 1)
    # monotherapy level 2: 002's DLT on 01-16 (valid set) exceeds nothing yet: 1 of 1
    assert levels_of(monotherapy)[2][:2] == (1, 1)
    # combination level 1: 001 without a DLT there, 004 with its 02-15 DLT
    assert combination.assessment.states == {"001": "evaluable", "004": "dlt"}
    assert levels_of(combination)[1][:2] == (2, 1)
    # nothing is cleared in monotherapy (level 1 has 1 DLT in 2 and needs 6): the combination may not treat
    assert combination.assessment.ceiling.level is None
    assert combination.assessment.recommendation.action == "wait"


def test_a_stage_starts_on_its_agents_first_administration_without_a_start_date(two_stage_db):
    decision = load_dose_decision(two_stage_db, load_study(two_stage_db, "S1"), dt.date(2025, 2, 8))
    combination = decision.stages[1]
    # 004 has had no PD1 by 02-08: not yet in the combination; 001 entered on 02-07 and is in its window
    assert combination.assessment.states == {"001": "pending", "004": "not_counted"}


def test_a_cut_written_before_stages_existed_reads_as_one_stage(tmp_path):
    """A data cut whose file has no stages or subject_stages tables (written before the contract had them): one
    stage, the study's own, and monotherapy's counts as in the staged cut (the combination's DLT of 004 on 02-15
    is past its 28-day window from 01-12, so it is not counted either way)."""
    path = tmp_path / "old.duckdb"
    load.import_csv_dir(write_csv_set(tmp_path / "csv", two_stage_tables()), path)
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE subject_stages")
    con.execute("DROP TABLE stages")
    con.close()
    db = Database(path)
    study = load_study(db, "S1")
    assert not study.staged and [s.name for s in study.regimen] == [study.regimen[0].name]
    (only,) = load_dose_decision(db, study, dt.date(2025, 6, 30)).stages
    assert levels_of(only)[1][:2] == (2, 1) and levels_of(only)[2][:2] == (1, 1)


@pytest.mark.parametrize("table, row, column, value, message", [
    ("subject_stages", 2, "stage", "maintenance", "is not a stage of S1 in stages.csv"),
    ("subject_stages", 2, "stage", "monotherapy", "is the first stage of S1"),
    ("subject_stages", 2, "dose_level", "7", "is not a dose level of S1 in dose_levels.csv"),
    ("subject_stages", 2, "start_date", "2025-01-01", "is before the subject's enrollment_date 2025-01-10"),
    ("stages", 3, "start_level", "9", "is not a dose level of S1 in dose_levels.csv"),
    ("stages", 3, "ceiling_stage", "induction", "is not a stage of S1"),
    ("stages", 2, "ceiling_stage", "combination", "is not an earlier stage"),
    ("stages", 2, "dlt_window_days", "21", "of the first stage differs from studies.dlt_window_days (28)"),
    ("stages", 2, "agent", "DRUG-Y", "of the first stage differs from studies.agent (DRUG-X)"),
])
def test_bad_stage_input_is_refused_with_its_place_named(tmp_path, table, row, column, value, message):
    tables = two_stage_tables()
    tables[table][row - 2][column] = value
    target = tmp_path / "staged.duckdb"
    with pytest.raises(load.ImportFailed) as refused:
        load.import_csv_dir(write_csv_set(tmp_path / "csv", tables), target)
    assert find_problems(refused.value.problems, table, row, column, contains=message), refused.value.problems
    assert not target.exists()  # nothing written


def test_a_stage_agent_never_given_is_a_warning_not_a_refusal(tmp_path):
    tables = two_stage_tables()
    tables["administrations"] = [a for a in tables["administrations"] if a["agent"] != "PD1"]
    tables["subject_stages"][1]["start_date"] = "2025-02-09"
    warnings = load.import_csv_dir(write_csv_set(tmp_path / "csv", tables), tmp_path / "staged.duckdb")
    assert find_problems(warnings, "stages", 3, "agent", severity=load.WARNING,
                         contains="is never given in administrations.csv of S1")


def test_stage_orders_with_a_gap_are_refused(tmp_path):
    tables = two_stage_tables()
    tables["stages"][1]["stage_order"] = "3"
    with pytest.raises(load.ImportFailed) as refused:
        load.import_csv_dir(write_csv_set(tmp_path / "csv", tables), tmp_path / "staged.duckdb")
    assert any("numbers the stages of S1 1, 3" in str(p) for p in refused.value.problems)


# --------------------------------------------------------------------------- the decision log names the stage

def test_a_decision_names_its_stage_and_is_judged_by_that_stages_rule(two_stage_db, tmp_path):
    from smc.decision_log import ledger
    from tests.helpers import signer

    as_of = dt.date(2025, 6, 30)
    dose = load_dose_decision(two_stage_db, load_study(two_stage_db, "S1"), as_of)
    log = tmp_path / "decisions.sqlite"

    def draft(**kw):
        return ledger.Draft("S1", as_of, as_of, 1, "wait", rationale="", signer=signer(), **kw)

    with pytest.raises(ledger.Refused) as refused:
        ledger.append(log, draft(), dose, "test")
    assert "stage: S1 has stages (monotherapy, combination): say which one the decision is about" in refused.value.errors
    with pytest.raises(ledger.Refused) as refused:
        ledger.append(log, draft(stage="maintenance"), dose, "test")
    assert 'stage "maintenance" is not a stage of S1 (it has monotherapy, combination)' in refused.value.errors

    # The combination's rule says wait, about level 1 where its subjects are (nothing cleared in monotherapy):
    # "wait" at 1 follows it there. In monotherapy the rule says enroll at level 2 (002: 1 DLT in 1, 6 needed),
    # so "wait" at 1 is a deviation that needs a rationale.
    record = ledger.append(log, draft(stage="combination"), dose, "test")
    assert (record.stage, record.follows_recommendation, record.recommended_action) == ("combination", 1, "wait")
    with pytest.raises(ledger.Refused) as refused:
        ledger.append(log, draft(stage="monotherapy"), dose, "test")
    assert "rationale: a decision that deviates from the protocol recommendation needs one" in refused.value.errors
    assert ledger.verify(log) == []
    assert [r.id for r in ledger.of_stage(ledger.read_log(log), dose.study, "combination")] == [record.id]
    assert ledger.of_stage(ledger.read_log(log), dose.study, "monotherapy") == []

    # The stage is sealed: a record moved to another stage no longer verifies.
    import sqlite3
    con = sqlite3.connect(log)
    con.executescript("DROP TRIGGER decisions_no_update; UPDATE decisions SET stage = 'monotherapy';")
    con.close()
    assert any(b.record_id == record.id for b in ledger.verify(log))


def test_a_one_stage_study_takes_no_stage_in_a_decision(tmp_path):
    from smc.decision_log import ledger
    from tests.helpers import signer

    path = tmp_path / "one.duckdb"
    load.import_csv_dir(write_csv_set(tmp_path / "csv", valid_tables()), path)
    db = Database(path)
    as_of = dt.date(2025, 6, 30)
    dose = load_dose_decision(db, load_study(db, "S1"), as_of)
    with pytest.raises(ledger.Refused) as refused:
        ledger.append(tmp_path / "d.sqlite", ledger.Draft("S1", as_of, as_of, 1, "other", rationale="r",
                                                          signer=signer(), stage="combination"), dose, "test")
    assert 'stage "combination": S1 has one stage; leave the stage empty' in refused.value.errors
