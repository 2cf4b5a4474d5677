"""SDTM importer, staged regimens: the mapping's [[stages]] give ``stages``, and SE and EX records of a later stage
give ``subject_stages``.

The data are tests/data/sdtm_stages (its README.md tables each subject): DRUGX alone (EPOCH MONOTHERAPY), then
DRUGX with PD1 (EPOCH COMBINATION, element COMBO). Expected values are read off those files by hand: a subject's
start in the combination is its SE COMBO SESTDTC, else its earliest COMBINATION EX date; its level there is the
[[levels]] dose matching its first DRUGX EXDOSE there, else its DM level with a warning.
"""
from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest

from smc.analysis.dose_decision import load_dose_decision
from smc.ingest.load import ERROR, WARNING, ImportFailed, Problem
from smc.ingest.sdtm import import_sdtm, synthetic
from smc.ingest.sdtm.mapping import parse_mapping
from smc.store.db import Database
from smc.store.study import load_study
from tests.helpers import DATA
from tests.unit.test_load import query

SOURCE = DATA / "sdtm_stages"
MAPPING = (SOURCE / "mapping.toml").read_text(encoding="utf-8")
COMBINATION_EPOCHS = 'epochs = ["Combination"]     # EPOCH values match in any case'
NO_STAGES = MAPPING[:MAPPING.index("[[stages]]")]


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def copy_set(tmp_path: Path, mapping: str = MAPPING, name: str = "sdtm") -> Path:
    """The data set in a folder of its own, with ``mapping`` as its mapping.toml."""
    folder = tmp_path / name
    shutil.copytree(SOURCE, folder)
    (folder / "mapping.toml").write_text(mapping, encoding="utf-8")
    return folder


def edit_csv(folder: Path, domain: str, usubjid: str, seq: int, **values) -> None:
    path = folder / f"{domain.lower()}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    row = (frame["USUBJID"] == usubjid) & (frame[f"{domain}SEQ"] == str(seq))
    assert row.sum() == 1
    for variable, value in values.items():
        frame.loc[row, variable] = value
    frame.to_csv(path, index=False)


def refused(folder: Path, tmp_path: Path) -> list[Problem]:
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(folder, tmp_path / "refused.duckdb")
    assert not (tmp_path / "refused.duckdb").exists()
    return failed.value.problems


def find(problems: list[Problem], table: str, column: str | None, severity: str = ERROR,
         record: str | None = None) -> Problem:
    found = [p for p in problems if (p.severity, p.table, p.column) == (severity, table, column)
             and (record is None or p.record == record)]
    assert len(found) == 1, "\n".join(map(str, problems))
    return found[0]


SUBJECT_STAGES = "SELECT study_id, subject_id, stage, dose_level, start_date FROM subject_stages ORDER BY subject_id"


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> tuple[Path, list[Problem]]:
    db = tmp_path_factory.mktemp("staged") / "staged.duckdb"
    warnings, _ = import_sdtm(SOURCE, db)
    return db, warnings


# --------------------------------------------------------------------------- the import


def test_the_mapping_stages_are_the_stages_rows_in_file_order(staged):
    db, _ = staged
    assert query(db, "SELECT * FROM stages ORDER BY stage_order") == [
        ("STG1", "monotherapy", 1, "DRUGX", 28, None, None),
        ("STG1", "combination", 2, "PD1", 21, 1, "monotherapy"),
    ]


def test_subjects_of_the_later_stage_with_their_level_and_start(staged):
    db, _ = staged
    assert query(db, SUBJECT_STAGES) == [
        ("STG1", "S-01", "combination", 1, D("2024-02-28")),  # SESTDTC, three days before its EX
        ("STG1", "S-02", "combination", 1, D("2024-03-25")),  # 15 mg is no level: DM level 1
        ("STG1", "S-03", "combination", 1, D("2024-03-05")),  # DM level 2, but 10 mg in the combination
        ("STG1", "S-04", "combination", 2, D("2024-03-10")),  # no SE COMBO: its first COMBINATION EX (PD1)
        ("STG1", "S-05", "combination", 3, D("2024-03-28")),  # no DRUGX there yet: DM level 3
    ]  # S-06 stayed on monotherapy; S-07, a screen failure, has SE SCREENING only


def test_a_level_taken_from_dm_is_a_warning_naming_the_subject_and_the_stage(staged):
    _, warnings = staged
    unmatched = find(warnings, "EX", "EXDOSE", WARNING, record="USUBJID S-02 EXSEQ 3")
    assert unmatched.value == "15"
    assert unmatched.message == ("is the dose of no [[levels]] (the subject's first dose of DRUGX in the stage "
                                 "combination); its level in that stage is taken as its DM level 1")
    undosed = find(warnings, "SE", None, WARNING, record="USUBJID S-05 SESEQ 3")
    assert undosed.message == ("has no dose of DRUGX in the stage combination; the subject's level in that stage "
                               "is taken as its DM level 3")
    assert not [w for w in warnings if "S-01" in (w.record or "") or "S-04" in (w.record or "")]


def test_the_imported_database_decides_each_stage(staged):
    db, _ = staged
    database = Database(db)
    study = load_study(database, "STG1")
    decision = load_dose_decision(database, study, D("2024-04-15"))
    assert len(decision.stages) == 2
    combination = decision.stages[1]
    assert combination.stage.name == "combination"
    # Its DLT window starts at the first PD1 on or after the entry: S-01 entered 02-28 and had PD1 on 03-01.
    assert [(s.subject_id, s.level, s.first_dose_date) for s in combination.subjects] == [
        ("S-01", 1, D("2024-03-01")), ("S-02", 1, D("2024-03-25")), ("S-03", 1, D("2024-03-05")),
        ("S-04", 2, D("2024-03-10")), ("S-05", 3, D("2024-03-29"))]


def test_a_stage_known_by_its_elements_places_ex_by_the_se_dates(tmp_path):
    folder = copy_set(tmp_path, MAPPING.replace(COMBINATION_EPOCHS, 'elements = ["COMBO"]'))
    db = tmp_path / "elements.duckdb"
    import_sdtm(folder, db)
    # S-04 has no COMBO element, so it is not in the stage; the others' DRUGX doses are the EX records on or after
    # their COMBO SESTDTC (and up to its SEENDTC), as with the epochs: S-03's 20 mg on 03-04 was before its 03-05.
    assert query(db, SUBJECT_STAGES) == [
        ("STG1", "S-01", "combination", 1, D("2024-02-28")),
        ("STG1", "S-02", "combination", 1, D("2024-03-25")),
        ("STG1", "S-03", "combination", 1, D("2024-03-05")),
        ("STG1", "S-05", "combination", 3, D("2024-03-28")),
    ]


def test_without_an_se_record_of_the_stage_the_earliest_ex_of_its_epochs_is_the_start(tmp_path):
    folder = copy_set(tmp_path)
    se = pd.read_csv(folder / "se.csv", dtype=str, keep_default_na=False)
    se[se["ETCD"] != "COMBO"].to_csv(folder / "se.csv", index=False)
    db = tmp_path / "no_se.duckdb"
    import_sdtm(folder, db)
    starts = query(db, "SELECT subject_id, start_date FROM subject_stages ORDER BY subject_id")
    assert starts == [("S-01", D("2024-03-01")), ("S-02", D("2024-03-25")), ("S-03", D("2024-03-05")),
                      ("S-04", D("2024-03-10")), ("S-05", D("2024-03-29"))]


def test_without_stages_the_import_has_none_and_se_is_not_read(tmp_path):
    folder = copy_set(tmp_path, NO_STAGES)
    pd.read_csv(folder / "se.csv", dtype=str).drop(columns="SESTDTC").to_csv(folder / "se.csv", index=False)
    db = tmp_path / "one_stage.duckdb"
    warnings, counts = import_sdtm(folder, db)
    assert counts["stages"] == 0 and counts["subject_stages"] == 0
    assert not [w for w in warnings if w.table == "SE"]
    database = Database(db)
    assert len(load_dose_decision(database, load_study(database, "STG1"), D("2024-04-15")).stages) == 1


# --------------------------------------------------------------------------- bad input


def test_a_misspelt_stage_key_is_an_error_naming_it():
    parsed, problems = parse_mapping(MAPPING.replace("dlt_window_days = 21", "dlt_window_day = 21"))
    assert parsed is None
    assert [(p.table, p.column) for p in problems] == [("mapping file", "stages.dlt_window_day"),
                                                       ("mapping file", "stages[2].dlt_window_days")]
    assert problems[0].message == ("is not a known key of [stages] (stage, agent, dlt_window_days, start_level, "
                                   "ceiling_stage, epochs, elements)")
    assert problems[1].message == "is missing or not a whole number of days"


def test_an_unknown_ceiling_stage_refuses_the_import(tmp_path):
    folder = copy_set(tmp_path, MAPPING.replace('ceiling_stage = "monotherapy"', 'ceiling_stage = "mono"'))
    problem = find(refused(folder, tmp_path), "mapping file", "stages[2].ceiling_stage")
    assert (problem.value, problem.message) == ("mono", "is not a stage of the mapping (monotherapy, combination)")


def test_a_start_level_outside_the_ladder_refuses_the_import(tmp_path):
    folder = copy_set(tmp_path, MAPPING.replace("start_level = 1", "start_level = 4"))
    problem = find(refused(folder, tmp_path), "mapping file", "stages[2].start_level")
    assert (problem.value, problem.message) == ("4", "is not a level of [[levels]] (1, 2, 3)")


def test_a_later_stage_must_say_which_records_are_its_own():
    parsed, problems = parse_mapping(MAPPING.replace(COMBINATION_EPOCHS, ""))
    assert parsed is None
    assert [(p.column, p.message) for p in problems] == [
        ("stages[2].epochs", "is missing, and so is elements: name the EPOCH values (SE, EX) or SE ETCD element "
                             "codes of the stage's records")]


def test_a_stage_name_or_epoch_given_twice_is_an_error():
    twice = MAPPING.replace('stage = "combination"', 'stage = "monotherapy"').replace(
        'ceiling_stage = "monotherapy"\n', "")
    assert [(p.column, p.value) for p in parse_mapping(twice)[1]] == [("stages.stage", "monotherapy")]
    shared = MAPPING.replace(COMBINATION_EPOCHS, 'epochs = ["monotherapy"]')
    problems = parse_mapping(shared)[1]
    assert [(p.column, p.value, p.message) for p in problems] == [
        ("stages.epochs", "MONOTHERAPY", "is given to two stages (monotherapy and combination); a record is in one "
                                         "stage")]


THIRD_STAGE = '''
[[stages]]
stage = "triplet"
agent = "CTLA4"
dlt_window_days = 21
epochs = ["TRIPLET"]
'''


def test_a_stage_nobody_entered_nor_whose_agent_was_given_is_a_warning_not_an_error(tmp_path):
    folder = copy_set(tmp_path, MAPPING + THIRD_STAGE)
    db = tmp_path / "three.duckdb"
    warnings, counts = import_sdtm(folder, db)
    assert counts["stages"] == 3 and counts["subject_stages"] == 5
    empty = find(warnings, "mapping file", "stages[3].epochs", WARNING)
    assert (empty.value, empty.message) == ("TRIPLET", "matches no SE or EX record: nobody has entered the stage "
                                                       "triplet yet")
    # The contract validator's own message, restated on the mapping key it came from.
    never = find(warnings, "mapping file", "stages[3].agent", WARNING)
    assert (never.value, never.message) == ("CTLA4", "is never given in administrations.csv of STG1: no subject "
                                                     "has begun the DLT window of the stage triplet yet")


def test_a_first_stage_other_than_the_study_is_refused_with_the_validator_message(tmp_path):
    mapping = MAPPING.replace('stage = "monotherapy"\nagent = "DRUGX"', 'stage = "monotherapy"\nagent = "PD1"')
    problem = find(refused(copy_set(tmp_path, mapping), tmp_path), "mapping file", "stages[1].agent")
    assert (problem.value, problem.message) == (
        "PD1", "of the first stage differs from studies.agent (DRUGX): the first stage is the study's own escalation")


def test_a_stage_start_before_enrollment_names_the_se_record(tmp_path):
    folder = copy_set(tmp_path)
    edit_csv(folder, "SE", "S-01", 3, SESTDTC="2024-01-05")  # S-01 enrolled (RFSTDTC) 2024-01-10
    problem = find(refused(folder, tmp_path), "SE", "SESTDTC", record="USUBJID S-01 SESEQ 3")
    assert (problem.value, problem.message) == ("2024-01-05", "is before the subject's enrollment_date 2024-01-10")


def test_a_stage_start_from_ex_before_enrollment_names_the_ex_record(tmp_path):
    folder = copy_set(tmp_path)
    edit_csv(folder, "EX", "S-04", 4, EXSTDTC="2024-02-13", EXENDTC="2024-02-13")  # S-04 enrolled 2024-02-14
    problem = find(refused(folder, tmp_path), "EX", "EXSTDTC", record="USUBJID S-04 EXSEQ 4")
    assert (problem.value, problem.message) == ("2024-02-13", "is before the subject's enrollment_date 2024-02-14")


def test_se_needs_its_start_variable_when_the_mapping_has_stages(tmp_path):
    folder = copy_set(tmp_path)
    pd.read_csv(folder / "se.csv", dtype=str).drop(columns="SESTDTC").to_csv(folder / "se.csv", index=False)
    problem = find(refused(folder, tmp_path), "SE", "SESTDTC")
    assert problem.message == "is a required variable and is missing from se.csv"


# --------------------------------------------------------------------------- the synthetic set


def test_the_synthetic_set_in_two_stages_keeps_the_default_set_unchanged_and_imports_both(tmp_path):
    plain, staged = synthetic.build(30, seed=2), synthetic.build(30, seed=2, staged=True)
    assert "SE" not in plain and "EPOCH" not in plain["EX"].columns
    assert all(plain[name].equals(staged[name]) for name in plain if name != "EX")
    synthetic.write(tmp_path / "sdtm", 30, seed=2, fmt="csv", staged=True)
    db = tmp_path / "synthetic.duckdb"
    import_sdtm(tmp_path / "sdtm", db)
    dm = plain["DM"]
    dosed = dm[dm["ARMCD"] != "SCRNFAIL"]
    moved = dosed.iloc[::2]  # every other dosed subject, from its fourth cycle (day 63 = 3 x 21)
    expected = sorted((s, 1, D(first) + dt.timedelta(days=63)) for s, first in zip(moved["USUBJID"], moved["RFSTDTC"]))
    assert query(db, "SELECT subject_id, dose_level, start_date FROM subject_stages ORDER BY 1") == expected
    database = Database(db)
    study = load_study(database, synthetic.STUDY)
    assert len(load_dose_decision(database, study, D("2026-06-30")).stages) == 2
