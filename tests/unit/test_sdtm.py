"""SDTM importer: every mapping rule, checked on small SDTM datasets built here.

``study()`` is a minimal valid study (6 subjects in 2 dose levels and 1
screen failure, with DM, DS, EX, AE and SUPPAE). A test (or a module
fixture shared by the tests that only read it, since one import takes about
half a second) changes what its rule is about, writes the domains as CSV or
XPT into a temporary directory, imports them, and reads the contract tables
back from the DuckDB file. Expected values are worked out by hand from the
rule and the data written here, never taken from the importer's output. The
last tests compare an import of the CDISC pilot sample (tests/data/sdtm_sample)
with numbers computed straight from its SDTM files.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat
import pytest

from smc import cli, settings
from smc.ingest.load import ERROR, WARNING, ImportFailed, Problem
from smc.ingest.sdtm import REQUIRED_DOMAINS, dates, import_sdtm
from smc.ingest.sdtm.mapping import TEMPLATE, parse_mapping
from smc.ingest.target import Target
from tests.helpers import DATA, ROOT

SAMPLE = DATA / "sdtm_sample"  # the CDISC pilot and pharmaversesdtm files (README.md, LICENSES.md there)
STUDYID = "STUDY1"


def D(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


# --------------------------------------------------------------------------- the minimal study


def _dm(usubjid, arm, consent, first, last, site, country, sex, age, **extra) -> dict:
    row = dict(STUDYID=STUDYID, DOMAIN="DM", USUBJID=usubjid, SITEID=site, COUNTRY=country, SEX=sex, AGE=age,
               AGEU="YEARS", RFICDTC=consent, RFSTDTC=first, RFXSTDTC=first, RFXENDTC=last, DTHDTC="",
               ARMCD=arm, ARM=f"Arm {arm}", ACTARMCD=arm, ARMNRS="")
    row.update(extra)
    return row


def _ds(usubjid, seq, decod, date, term=None, cat="DISPOSITION EVENT", epoch="") -> dict:
    return dict(STUDYID=STUDYID, DOMAIN="DS", USUBJID=usubjid, DSSEQ=seq, DSTERM=term or decod, DSDECOD=decod,
                DSCAT=cat, EPOCH=epoch, DSSTDTC=date)


def _ex(usubjid, seq, start, end, dose, trt="DRUGX") -> dict:
    return dict(STUDYID=STUDYID, DOMAIN="EX", USUBJID=usubjid, EXSEQ=seq, EXTRT=trt, EXDOSE=dose, EXDOSU="mg",
                EXROUTE="INTRAVENOUS", EXSTDTC=start, EXENDTC=end)


def _ae(usubjid, seq, term, decod, soc, start, end, toxgr, sev, ser, rel, out, acn) -> dict:
    return dict(STUDYID=STUDYID, DOMAIN="AE", USUBJID=usubjid, AESEQ=seq, AETERM=term, AEDECOD=decod,
                AEBODSYS=soc, AESTDTC=start, AEENDTC=end, AETOXGR=toxgr, AESEV=sev, AESER=ser, AEREL=rel,
                AEOUT=out, AEACN=acn)


def _ts(**values) -> list[dict]:
    return [dict(STUDYID=STUDYID, DOMAIN="TS", TSSEQ=1, TSPARMCD=k, TSPARM=k, TSVAL=v) for k, v in values.items()]


def _supp(usubjid, seq, qval, qnam="AEDLT") -> dict:
    return dict(STUDYID=STUDYID, RDOMAIN="AE", USUBJID=usubjid, IDVAR="AESEQ", IDVARVAL=str(seq), QNAM=qnam,
                QLABEL="Dose-limiting toxicity", QVAL=qval)


def study() -> dict[str, list[dict]]:
    """Levels 1 (arm L1, 10 mg: S-001..S-003) and 2 (arm L2, 20 mg: S-004..S-006), screen failure S-007.
    Each dosed subject gets DRUGX on its first day and 21 days later (its RFXENDTC)."""
    dm = [
        _dm("S-001", "L1", "2024-01-02", "2024-01-10", "2024-01-31", "101", "USA", "M", 55),
        _dm("S-002", "L1", "2024-01-03", "2024-01-12", "2024-02-02", "101", "USA", "F", 61),
        _dm("S-003", "L1", "2024-01-04", "2024-01-15", "2024-02-05", "102", "FRA", "M", 47),
        _dm("S-004", "L2", "2024-02-01", "2024-02-12", "2024-03-04", "102", "FRA", "F", 58),
        _dm("S-005", "L2", "2024-02-02", "2024-02-14", "2024-03-06", "101", "USA", "M", 66),
        _dm("S-006", "L2", "2024-02-03", "2024-02-16", "2024-03-08", "101", "USA", "F", 70),
        _dm("S-007", "SCRNFAIL", "2024-02-05", "", "", "102", "FRA", "M", 52, ARM="Screen Failure"),
    ]
    randomized = {"S-001": "2024-01-08", "S-002": "2024-01-10", "S-003": "2024-01-13",
                  "S-004": "2024-02-10", "S-005": "2024-02-12", "S-006": "2024-02-14"}
    ds = [_ds(s, 1, "RANDOMIZED", d, cat="PROTOCOL MILESTONE") for s, d in randomized.items()]
    ds.append(_ds("S-007", 1, "SCREEN FAILURE", "2024-02-08", term="INCLUSION CRITERION 3 NOT MET"))
    ex = [
        _ex("S-001", 1, "2024-01-10T09:30", "2024-01-10", 10), _ex("S-001", 2, "2024-01-31", "2024-01-31", 10),
        _ex("S-002", 1, "2024-01-12", "2024-01-12", 10), _ex("S-002", 2, "2024-02-02", "2024-02-02", 10),
        _ex("S-003", 1, "2024-01-15", "2024-01-15", 10), _ex("S-003", 2, "2024-02-05", "2024-02-05", 10),
        _ex("S-004", 1, "2024-02-12", "2024-02-12", 20), _ex("S-004", 2, "2024-03-04", "2024-03-04", 20),
        _ex("S-005", 1, "2024-02-14", "2024-02-14", 20), _ex("S-005", 2, "2024-03-06", "2024-03-06", 20),
        _ex("S-006", 1, "2024-02-16", "2024-02-16", 20), _ex("S-006", 2, "2024-03-08", "2024-03-08", 20),
    ]
    ae = [
        _ae("S-001", 1, "Feeling sick", "Nausea", "Gastrointestinal disorders", "2024-01-12", "2024-01-15",
            "2", "MODERATE", "N", "POSSIBLE", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
        _ae("S-001", 2, "Low neutrophils", "Neutrophil count decreased", "Investigations", "2024-01-20",
            "2024-01-27", "4", "SEVERE", "Y", "PROBABLE", "RECOVERED/RESOLVED", "DRUG INTERRUPTED"),
        _ae("S-002", 1, "Tiredness", "Fatigue", "General disorders and administration site conditions",
            "2024-01-15", "", "1", "MILD", "N", "NOT RELATED", "NOT RECOVERED/NOT RESOLVED", "DOSE NOT CHANGED"),
        _ae("S-004", 1, "Skin rash", "Rash maculo-papular", "Skin and subcutaneous tissue disorders",
            "2024-02-20", "2024-03-01", "3", "SEVERE", "N", "RELATED", "RECOVERED/RESOLVED", "DOSE REDUCED"),
        _ae("S-005", 1, "Headache", "Headache", "Nervous system disorders", "2024-02-20", "2024-02-21",
            "1", "MILD", "N", "", "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
    ]
    suppae = [_supp("S-001", 1, "N"), _supp("S-001", 2, "Y"), _supp("S-004", 1, "Y"),
              _supp("S-002", 1, "Y", qnam="AETRTEM")]
    return {"DM": dm, "DS": ds, "EX": ex, "AE": ae, "SUPPAE": suppae}


LEVELS = """
[[levels]]
level = 1
label = "10 mg"
dose = 10
unit = "mg"
arms = ["L1"]

[[levels]]
level = 2
label = "20 mg"
dose = 20
unit = "mg"
arms = ["L2"]
"""


def mapping(study_extra: str = "", ae: str = 'dlt_qnam = "AEDLT"', levels: str = LEVELS, extra: str = "") -> str:
    return (f'[study]\ndesign = "3+3"\nagent = "DRUGX"\ndlt_window_days = 28\n{study_extra}\n'
            f"{levels}\n[ae]\n{ae}\n\n{extra}\n")


MAPPING = mapping()


def record(data: dict, domain: str, usubjid: str, **match) -> dict:
    """The one row of ``domain`` for the subject (and the given variable values), to edit in place."""
    rows = [r for r in data[domain] if r["USUBJID"] == usubjid and all(r.get(k) == v for k, v in match.items())]
    assert len(rows) == 1, (domain, usubjid, match, rows)
    return rows[0]


def _text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def write_study(directory: Path, data: dict, fmt: str = "csv") -> Path:
    """One file per key: ``DM`` -> dm.csv / dm.xpt, ``rs_onco_recist`` -> rs_onco_recist.csv."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in data.items():
        if rows is None:
            continue
        frame = pd.DataFrame(rows)
        for col in frame.columns:
            if frame[col].dtype == object:
                frame[col] = frame[col].map(_text)
        if fmt == "xpt":
            pyreadstat.write_xport(frame, str(directory / f"{name.lower()}.xpt"),
                                   table_name=name.split("_")[0].upper()[:8], file_format_version=5)
        else:
            frame.to_csv(directory / f"{name.lower()}.csv", index=False)
    return directory


@dataclass
class Imported:
    db: Path
    warnings: list[Problem]
    counts: dict[str, int]

    def query(self, sql: str, *params) -> list[tuple]:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            return con.execute(sql, list(params)).fetchall()
        finally:
            con.close()

    def subject(self, subject_id: str) -> dict:
        con = duckdb.connect(str(self.db), read_only=True)
        try:
            cur = con.execute("SELECT * FROM subjects WHERE subject_id = ?", [subject_id])
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        finally:
            con.close()
        assert len(rows) == 1, (subject_id, rows)
        return dict(zip(names, rows[0]))

    def ae(self, subject_id: str, seq: int, column: str):
        rows = self.query(f"SELECT {column} FROM adverse_events WHERE subject_id = ? AND ae_seq = ?", subject_id, seq)
        assert len(rows) == 1, rows
        return rows[0][0]

    def warning_text(self) -> str:
        return "\n".join(str(w) for w in self.warnings)


def run_import(tmp_path: Path, data: dict | None = None, mapping_text: str = MAPPING, fmt: str = "csv",
               name: str = "run") -> Imported:
    source = write_study(tmp_path / f"{name}_sdtm", study() if data is None else data, fmt)
    map_path = tmp_path / f"{name}_mapping.toml"
    map_path.write_text(mapping_text, encoding="utf-8")
    db = tmp_path / f"{name}.duckdb"
    warnings, counts = import_sdtm(source, db, map_path)
    return Imported(db, warnings, counts)


def import_problems(tmp_path: Path, data: dict | None = None, mapping_text: str = MAPPING,
                    fmt: str = "csv") -> list[Problem]:
    with pytest.raises(ImportFailed) as failed:
        run_import(tmp_path, data, mapping_text, fmt)
    assert not (tmp_path / "run.duckdb").exists()
    return failed.value.problems


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR]


def find(problems: list[Problem], table: str, subject: str | None, column: str | None,
         severity: str = ERROR) -> Problem:
    """The problem about ``table`` (the domain), naming the subject in its record, about ``column``."""
    for p in problems:
        if p.severity == severity and p.table == table and p.column == column \
                and (subject is None or subject in (p.record or "")):
            return p
    raise AssertionError(f"no {severity} on {table} {subject} {column} in:\n" + "\n".join(map(str, problems)))


# An import takes about half a second, so tests that only read share one import of the same data.


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Imported:
    """The minimal study, unchanged."""
    return run_import(tmp_path_factory.mktemp("base"))


# --------------------------------------------------------------------------- the mapping file


def test_template_mapping_parses_and_optional_sections_have_their_defaults():
    parsed, problems = parse_mapping(TEMPLATE)
    assert problems == [] and parsed is not None
    assert [lv.level for lv in parsed.levels] == [1, 2]
    minimal, problems = parse_mapping(
        '[study]\ndesign = "3+3"\nagent = "X"\ndlt_window_days = 21\n[[levels]]\nlevel = 1\nlabel = "1 mg"\n'
        'arms = ["A"]\n')
    assert problems == []
    assert minimal.findings_domains == ("LB",)
    assert minimal.evaluator == "INVESTIGATOR"
    assert minimal.rs_categories == ("RECIST 1.1",)
    assert minimal.dlt_qnam is None
    assert minimal.exclude_arms == ()


def test_unknown_section_and_unknown_key_are_errors():
    parsed, problems = parse_mapping(MAPPING + '\n[dosing]\nx = 1\n')
    assert parsed is None
    assert any(p.column == "[dosing]" for p in problems)
    parsed, problems = parse_mapping(mapping(ae='dlt_qname = "AEDLT"'))
    assert parsed is None
    assert [p.column for p in problems] == ["ae.dlt_qname"]


@pytest.mark.parametrize("key", ["design", "agent", "dlt_window_days"])
def test_missing_required_study_key_is_an_error(key):
    lines = [line for line in MAPPING.splitlines() if not line.startswith(f"{key} =")]
    parsed, problems = parse_mapping("\n".join(lines))
    assert parsed is None
    assert [p.column for p in problems] == [f"study.{key}"]
    assert all(p.severity == ERROR and p.table == "mapping file" for p in problems)


def test_a_level_given_twice_is_an_error():
    parsed, problems = parse_mapping(mapping(levels=LEVELS.replace("level = 2", "level = 1")))
    assert parsed is None
    assert any(p.column == "levels.level" and p.value == "1" for p in problems)


def test_an_arm_in_two_levels_is_an_error():
    parsed, problems = parse_mapping(mapping(levels=LEVELS.replace('arms = ["L2"]', 'arms = ["L2", "L1"]')))
    assert parsed is None
    assert any(p.column == "levels.arms" and p.value == "L1" for p in problems)


def test_a_bad_mapping_refuses_the_import(tmp_path):
    problems = import_problems(tmp_path, mapping_text=mapping(extra="[subjects]\nexclude_arm = [\"L9\"]"))
    assert [(p.table, p.column) for p in errors(problems)] == [("mapping file", "subjects.exclude_arm")]


def test_without_a_mapping_file_the_import_is_refused(tmp_path):
    source = write_study(tmp_path / "sdtm", study())
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(source, tmp_path / "x.duckdb")
    assert [p.table for p in errors(failed.value.problems)] == ["mapping file"]
    assert not (tmp_path / "x.duckdb").exists()


# --------------------------------------------------------------------------- DM -> subjects, sites, levels


def test_dm_gives_subjects_sites_levels_and_study(base):
    assert base.query("SELECT subject_id, site_id, sex, age, screening_date FROM subjects ORDER BY 1") == [
        ("S-001", "101", "M", 55, D("2024-01-02")), ("S-002", "101", "F", 61, D("2024-01-03")),
        ("S-003", "102", "M", 47, D("2024-01-04")), ("S-004", "102", "F", 58, D("2024-02-01")),
        ("S-005", "101", "M", 66, D("2024-02-02")), ("S-006", "101", "F", 70, D("2024-02-03")),
        ("S-007", "102", "M", 52, D("2024-02-05")),
    ]
    assert base.query("SELECT site_id, country FROM sites ORDER BY 1") == [("101", "USA"), ("102", "FRA")]
    assert base.query("SELECT level, label, dose, unit FROM dose_levels ORDER BY 1") == [
        (1, "10 mg", 10.0, "mg"), (2, "20 mg", 20.0, "mg")]
    assert base.query("SELECT subject_id, dose_level, phase FROM subjects WHERE dose_level IS NOT NULL "
                      "ORDER BY 1") == [("S-001", 1, "escalation"), ("S-002", 1, "escalation"),
                                        ("S-003", 1, "escalation"), ("S-004", 2, "escalation"),
                                        ("S-005", 2, "escalation"), ("S-006", 2, "escalation")]
    assert base.query("SELECT study_id, design, agent, dlt_window_days FROM studies") == [
        (STUDYID, "3+3", "DRUGX", 28)]
    assert base.query("SELECT DISTINCT study_id FROM subjects") == [(STUDYID,)]
    # DS RANDOMIZED gives the enrollment date (S-001: 01-08, not RFSTDTC 01-10)
    assert base.query("SELECT enrollment_date FROM subjects WHERE subject_id = 'S-001'") == [(D("2024-01-08"),)]


@pytest.fixture(scope="module")
def dm_variants(tmp_path_factory) -> Imported:
    """The minimal study with each DM/SV/TS rule's case added (each change says which rule it serves)."""
    data = study()
    # sex and age the contract cannot hold
    record(data, "DM", "S-002")["SEX"] = "U"
    record(data, "DM", "S-003").update(AGE=30, AGEU="MONTHS")
    # enrollment: no DS milestone for S-002 and S-003; S-004's milestone is ENROLLED
    data["DS"] = [r for r in data["DS"] if r["USUBJID"] not in ("S-002", "S-003")]
    record(data, "DM", "S-002")["RFSTDTC"] = "2024-01-11"  # RFXSTDTC stays 2024-01-12
    record(data, "DM", "S-003")["RFSTDTC"] = ""  # RFXSTDTC 2024-01-15
    record(data, "DS", "S-004").update(DSDECOD="ENROLLED", DSTERM="ENROLLED", DSSTDTC="2024-02-09")
    # arms: ACTARMCD unless it says "not treated"
    record(data, "DM", "S-002").update(ARMCD="L2", ACTARMCD="NOTTRT")
    record(data, "DM", "S-003").update(ARMCD="L2", ACTARMCD="")
    record(data, "DM", "S-005").update(ARMCD="L2", ACTARMCD="L1")
    record(data, "DM", "S-006").update(ARMCD="L1", ACTARMCD="NOTTRT")
    # more screen failures
    data["DM"] += [
        # ARMNRS NOT ASSIGNED; DSTERM is only "SCREEN FAILURE" -> the reason is ARMNRS
        _dm("S-008", "", "2024-02-06", "", "", "101", "USA", "F", 40, ARM="", ACTARMCD="", ARMNRS="NOT ASSIGNED"),
        # ARMCD NOTASSGN, no DS record, no ARMNRS -> "Screen failure"
        _dm("S-009", "NOTASSGN", "2024-02-07", "", "", "101", "USA", "F", 41, ARM="Not Assigned"),
        # the CDISC pilot's mixed-case code, ARM "Screen Failure"
        _dm("S-010", "Scrnfail", "2024-02-08", "", "", "101", "USA", "M", 42, ARM="Screen Failure"),
        # ARMNRS SCREEN FAILURE, with an ARMCD that is no level
        _dm("S-011", "XX", "2024-02-09", "", "", "101", "USA", "M", 43, ACTARMCD="", ARMNRS="SCREEN FAILURE"),
    ]
    data["DS"] += [_ds("S-008", 1, "SCREEN FAILURE", "2024-02-10", term="SCREEN FAILURE"),
                   _ds("S-010", 1, "SCREEN FAILURE", "2024-02-11", term="Withdrew consent")]
    # an expansion-cohort subject of level 2
    data["DM"].append(_dm("S-012", "L2X", "2024-02-10", "2024-02-20", "", "101", "USA", "F", 44))
    # a placebo subject, with records in every domain, in an excluded arm
    data["DM"].append(_dm("S-013", "PBO", "2024-01-05", "2024-01-20", "2024-01-20", "103", "GBR", "F", 50))
    data["DS"].append(_ds("S-013", 1, "RANDOMIZED", "2024-01-19", cat="PROTOCOL MILESTONE"))
    data["EX"].append(_ex("S-013", 1, "2024-01-20", "2024-01-20", 0, trt="PLACEBO"))
    data["AE"].append(_ae("S-013", 1, "Cough", "Cough", "Respiratory disorders", "2024-01-22", "", "1", "MILD",
                          "N", "NONE", "RECOVERING/RESOLVING", "NONE"))
    data["SUPPAE"].append(_supp("S-013", 1, "N"))
    # visits
    data["SV"] = [
        dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-001", VISITNUM=1, SVSTDTC="2024-01-02", SVENDTC="2024-01-02"),
        dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-001", VISITNUM=2, SVSTDTC="2024-02-20", SVENDTC="2024-02-21"),
        dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-004", VISITNUM=1, SVSTDTC="2024-02-01", SVENDTC=""),
        dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-004", VISITNUM=2, SVSTDTC="2024-03-20", SVENDTC=""),
        dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-013", VISITNUM=1, SVSTDTC="2024-01-05", SVENDTC=""),
    ]
    # trial summary
    data["TS"] = _ts(TITLE="A first-in-human study of DRUGX", INDIC="Advanced solid tumors", PLANSUB="30",
                     DCUTDTC="2024-04-01")
    levels = LEVELS.replace('arms = ["L2"]', 'arms = ["L2"]\nexpansion_arms = ["L2X"]')
    text = mapping(levels=levels, extra='[subjects]\nexclude_arms = ["PBO"]')
    return run_import(tmp_path_factory.mktemp("dm"), data, text)


def test_sex_other_than_m_or_f_is_left_empty_with_a_warning(dm_variants):
    assert dm_variants.subject("S-002")["sex"] is None
    assert dm_variants.subject("S-001")["sex"] == "M"
    assert find(dm_variants.warnings, "DM", "S-002", "SEX", WARNING).value == "U"


def test_age_not_in_years_is_left_empty_with_a_warning(dm_variants):
    assert dm_variants.subject("S-003")["age"] is None
    assert dm_variants.subject("S-004")["age"] == 58
    assert find(dm_variants.warnings, "DM", "S-003", "AGEU", WARNING).value == "MONTHS"


def test_enrollment_date_is_ds_randomized_or_enrolled_else_rfstdtc_else_rfxstdtc(dm_variants):
    assert dm_variants.subject("S-001")["enrollment_date"] == D("2024-01-08")  # DS RANDOMIZED
    assert dm_variants.subject("S-002")["enrollment_date"] == D("2024-01-11")  # RFSTDTC
    assert dm_variants.subject("S-003")["enrollment_date"] == D("2024-01-15")  # RFXSTDTC
    assert dm_variants.subject("S-004")["enrollment_date"] == D("2024-02-09")  # DS ENROLLED


def test_arm_is_actarmcd_unless_not_treated_then_armcd(dm_variants):
    levels = dict(dm_variants.query("SELECT subject_id, dose_level FROM subjects WHERE subject_id <= 'S-006'"))
    assert levels == {"S-001": 1, "S-002": 2, "S-003": 2, "S-004": 2, "S-005": 1, "S-006": 1}


def test_screen_failure_has_no_enrollment_nor_level_and_its_reason_from_dsterm(base):
    s = base.subject("S-007")
    assert (s["enrollment_date"], s["dose_level"]) == (None, None)
    assert s["screen_fail_reason"] == "INCLUSION CRITERION 3 NOT MET"
    assert s["screening_date"] == D("2024-02-05")
    assert base.subject("S-001")["screen_fail_reason"] is None


def test_screen_failures_by_armcd_arm_or_armnrs_and_reason_fallbacks(dm_variants):
    got = dm_variants.query("SELECT subject_id, enrollment_date, dose_level, screen_fail_reason FROM subjects "
                            "WHERE subject_id BETWEEN 'S-007' AND 'S-011' ORDER BY 1")
    assert got == [("S-007", None, None, "INCLUSION CRITERION 3 NOT MET"),
                   ("S-008", None, None, "NOT ASSIGNED"), ("S-009", None, None, "Screen failure"),
                   ("S-010", None, None, "Withdrew consent"), ("S-011", None, None, "SCREEN FAILURE")]


def test_an_unmapped_arm_is_an_error_naming_dm_the_subject_and_the_variable(tmp_path):
    data = study()
    record(data, "DM", "S-003").update(ARMCD="L9", ACTARMCD="L9")
    record(data, "DM", "S-005").update(ARMCD="L8", ACTARMCD="")
    problems = import_problems(tmp_path, data)
    assert find(problems, "DM", "USUBJID S-003", "ACTARMCD").value == "L9"
    assert find(problems, "DM", "USUBJID S-005", "ARMCD").value == "L8"


def test_expansion_arms_give_the_level_and_the_expansion_phase(dm_variants):
    assert (dm_variants.subject("S-012")["dose_level"], dm_variants.subject("S-012")["phase"]) == (2, "expansion")
    assert (dm_variants.subject("S-004")["dose_level"], dm_variants.subject("S-004")["phase"]) == (2, "escalation")


def test_excluded_arm_subjects_and_all_their_records_are_left_out_with_one_warning(dm_variants):
    for table in ("subjects", "administrations", "adverse_events"):
        assert dm_variants.query(f"SELECT count(*) FROM {table} WHERE subject_id = 'S-013'") == [(0,)], table
    assert dm_variants.query("SELECT count(*) FROM administrations WHERE agent = 'PLACEBO'") == [(0,)]
    assert dm_variants.query("SELECT count(*) FROM sites WHERE site_id = '103'") == [(0,)]
    assert len([w for w in dm_variants.warnings if "PBO" in str(w)]) == 1


def test_study_id_defaults_to_dm_studyid_and_the_mapping_can_set_it(base, own_mapping):
    assert base.query("SELECT study_id FROM studies") == [(STUDYID,)]
    assert own_mapping.query("SELECT study_id FROM studies") == [("DRUGX-101",)]  # study_id in its mapping
    assert own_mapping.query("SELECT DISTINCT study_id FROM adverse_events") == [("DRUGX-101",)]


# --------------------------------------------------------------------------- TS -> studies


def test_ts_gives_title_indication_planned_enrollment_and_data_cut(dm_variants):
    assert dm_variants.query("SELECT title, indication, planned_enrollment, data_cut_date FROM studies") == [
        ("A first-in-human study of DRUGX", "Advanced solid tumors", 30, D("2024-04-01"))]
    assert "data_cut_date" not in dm_variants.warning_text()


def test_the_mapping_file_overrides_ts(own_mapping):
    assert own_mapping.query("SELECT title, indication, planned_enrollment, data_cut_date FROM studies") == [
        ("Mapping title", "Sarcoma", 40, D("2024-05-01"))]


def test_without_any_data_cut_the_latest_date_in_the_data_is_used_with_a_warning(base):
    # Latest date written: S-006's second dose, 2024-03-08 (AEs end by 2024-03-01, DS by 2024-02-14).
    assert base.query("SELECT data_cut_date FROM studies") == [(D("2024-03-08"),)]
    assert any(w.column == "study.data_cut_date" for w in base.warnings)


# --------------------------------------------------------------------------- DS, SV


@pytest.fixture(scope="module")
def disposition(tmp_path_factory) -> Imported:
    data = study()
    data["DS"] += [
        # S-002: two disposition events, the later one first in the file; an OTHER EVENT record after both
        _ds("S-002", 2, "LOST TO FOLLOW-UP", "2024-03-15"),
        _ds("S-002", 3, "WITHDRAWAL BY SUBJECT", "2024-02-20"),
        _ds("S-002", 4, "FINAL LAB VISIT", "2024-03-30", cat="OTHER EVENT"),
        # S-004: off treatment (TREATMENT epoch), then off study
        _ds("S-004", 2, "ADVERSE EVENT", "2024-03-10", epoch="TREATMENT"),
        _ds("S-004", 3, "COMPLETED", "2024-04-15", epoch="FOLLOW-UP"),
        # S-006: died, known from DS only
        _ds("S-006", 2, "DEATH", "2024-03-25", term="DISEASE PROGRESSION"),
    ]
    record(data, "DM", "S-005")["DTHDTC"] = "2024-03-20"
    record(data, "AE", "S-001", AESEQ=2)["AEENDTC"] = "2024-02-03"  # after S-001's last dose (01-31)
    data["LB"] = [_lb("S-003", 1, "ALT", "Alanine Aminotransferase", "CHEMISTRY", 30, "U/L", "2024-02-10T08:00")]
    return run_import(tmp_path_factory.mktemp("ds"), data)


def test_death_date_is_dthdtc_else_the_ds_death_record(disposition):
    assert disposition.subject("S-005")["death_date"] == D("2024-03-20")
    assert disposition.subject("S-006")["death_date"] == D("2024-03-25")
    assert disposition.subject("S-004")["death_date"] is None


def test_off_study_is_the_latest_disposition_event_and_off_treatment_defaults_to_rfxendtc(disposition):
    s = disposition.subject("S-002")
    assert (s["off_study_date"], s["off_study_reason"]) == (D("2024-03-15"), "LOST TO FOLLOW-UP")
    assert (s["off_treatment_date"], s["off_treatment_reason"]) == (D("2024-02-02"), "LOST TO FOLLOW-UP")
    s = disposition.subject("S-006")  # a DS death is a disposition event too
    assert (s["off_study_date"], s["off_study_reason"]) == (D("2024-03-25"), "DEATH")
    assert (s["off_treatment_date"], s["off_treatment_reason"]) == (D("2024-03-08"), "DEATH")
    # no disposition event: on study; a SCREEN FAILURE record is not an off-study event
    assert disposition.subject("S-001")["off_study_date"] is None
    assert disposition.subject("S-001")["off_treatment_date"] is None
    assert disposition.subject("S-007")["off_study_date"] is None


def test_a_treatment_epoch_ds_record_gives_off_treatment(disposition):
    s = disposition.subject("S-004")
    assert (s["off_treatment_date"], s["off_treatment_reason"]) == (D("2024-03-10"), "ADVERSE EVENT")
    assert (s["off_study_date"], s["off_study_reason"]) == (D("2024-04-15"), "COMPLETED")


def test_without_sv_last_contact_is_the_latest_dated_record_but_not_a_death(disposition):
    last = dict(disposition.query("SELECT subject_id, last_contact_date FROM subjects"))
    assert last == {
        "S-001": D("2024-02-03"),  # AE end
        "S-002": D("2024-03-30"),  # DS OTHER EVENT record
        "S-003": D("2024-02-10"),  # lab
        "S-004": D("2024-04-15"),  # DS disposition event
        "S-005": D("2024-03-06"),  # last dose (DTHDTC is not a contact)
        "S-006": D("2024-03-08"),  # last dose, not the DS death
        "S-007": D("2024-02-08"),  # screen-failure DS record
    }


def test_last_contact_is_the_latest_sv_date(dm_variants):
    assert dm_variants.subject("S-001")["last_contact_date"] == D("2024-02-21")  # SVENDTC
    assert dm_variants.subject("S-004")["last_contact_date"] == D("2024-03-20")  # after its last dose 03-04


# --------------------------------------------------------------------------- EX -> administrations


def test_ex_gives_administrations_with_clock_time_when_given(base):
    got = base.query("SELECT agent, admin_date, admin_time, end_date, dose, unit, route FROM administrations "
                    "WHERE subject_id = 'S-001' ORDER BY admin_date")
    assert got == [("DRUGX", D("2024-01-10"), "09:30", D("2024-01-10"), 10.0, "mg", "INTRAVENOUS"),
                   ("DRUGX", D("2024-01-31"), None, D("2024-01-31"), 10.0, "mg", "INTRAVENOUS")]
    assert base.query("SELECT count(*), count(DISTINCT subject_id) FROM administrations") == [(12, 6)]


def test_an_agent_that_is_not_an_extrt_value_is_an_error(tmp_path):
    problems = import_problems(tmp_path, mapping_text=MAPPING.replace('agent = "DRUGX"', 'agent = "DRUGY"'))
    p = find(problems, "mapping file", None, "study.agent")
    assert p.value == "DRUGY" and "EXTRT" in p.message


# --------------------------------------------------------------------------- AE -> adverse_events


def test_ae_gives_adverse_events(base):
    got = base.query("SELECT ae_seq, term, soc, onset_date, end_date, grade, serious, outcome, action_taken "
                    "FROM adverse_events WHERE subject_id = 'S-001' ORDER BY ae_seq")
    assert got == [
        (1, "Nausea", "Gastrointestinal disorders", D("2024-01-12"), D("2024-01-15"), 2, "N",
         "RECOVERED/RESOLVED", "DOSE NOT CHANGED"),
        (2, "Neutrophil count decreased", "Investigations", D("2024-01-20"), D("2024-01-27"), 4, "Y",
         "RECOVERED/RESOLVED", "DRUG INTERRUPTED"),
    ]
    assert base.ae("S-002", 1, "end_date") is None
    assert base.query("SELECT count(*) FROM adverse_events") == [(5,)]


@pytest.fixture(scope="module")
def own_mapping(tmp_path_factory) -> Imported:
    """No AEDECOD for S-001's first AE; AESOC in place of AEBODSYS; no AETOXGR at all; TS; and a mapping
    that sets study_id, title, indication, planned enrollment, data cut and not_related, but no dlt_qnam."""
    data = study()
    record(data, "AE", "S-001", AESEQ=1)["AEDECOD"] = ""
    for row in data["AE"]:
        row["AESOC"] = row.pop("AEBODSYS").upper()
        del row["AETOXGR"]
    data["TS"] = _ts(TITLE="TS title", INDIC="TS indication", PLANSUB="30", DCUTDTC="2024-04-01")
    study_extra = ('study_id = "DRUGX-101"\ntitle = "Mapping title"\nindication = "Sarcoma"\n'
                   'planned_enrollment = 40\ndata_cut_date = 2024-05-01')
    text = mapping(study_extra=study_extra, ae='not_related = ["POSSIBLE"]')
    return run_import(tmp_path_factory.mktemp("ae"), data, text)


def test_term_falls_back_to_aeterm_and_soc_to_aesoc(own_mapping):
    assert own_mapping.ae("S-001", 1, "term") == "Feeling sick"
    assert own_mapping.ae("S-001", 2, "term") == "Neutrophil count decreased"
    assert own_mapping.ae("S-001", 2, "soc") == "INVESTIGATIONS"


def test_without_aetoxgr_the_grade_is_aesev_mild_moderate_severe_as_1_2_3_with_a_warning(own_mapping):
    grades = dict(((s, q), g) for s, q, g in own_mapping.query("SELECT subject_id, ae_seq, grade "
                                                               "FROM adverse_events"))
    assert grades == {("S-001", 1): 2, ("S-001", 2): 3, ("S-002", 1): 1, ("S-004", 1): 3, ("S-005", 1): 1}
    assert "AESEV" in own_mapping.warning_text()


def test_aetoxgr_wins_over_aesev(base):
    assert base.ae("S-001", 2, "grade") == 4  # AETOXGR 4, AESEV SEVERE
    assert "AESEV" not in base.warning_text()


def test_related_is_n_for_not_related_values_y_otherwise_and_empty_stays_null(base):
    related = dict(((s, q), r) for s, q, r in base.query("SELECT subject_id, ae_seq, related FROM adverse_events"))
    assert related == {("S-001", 1): "Y", ("S-001", 2): "Y", ("S-002", 1): "N", ("S-004", 1): "Y",
                       ("S-005", 1): None}


def test_the_mapping_not_related_list_decides_related(own_mapping):
    rows = own_mapping.query("SELECT subject_id, ae_seq, related FROM adverse_events")
    related = {(s, q): r for s, q, r in rows}
    # POSSIBLE now means not related; NOT RELATED is not in the list, so it counts as related
    assert related == {("S-001", 1): "N", ("S-001", 2): "Y", ("S-002", 1): "Y", ("S-004", 1): "Y",
                       ("S-005", 1): None}


def test_dlt_flag_comes_from_the_suppae_qnam_and_aes_without_one_are_n(base):
    # S-002's AE has only an AETRTEM record (another QNAM), S-005's none at all
    dlt = dict(((s, q), f) for s, q, f in base.query("SELECT subject_id, ae_seq, dlt FROM adverse_events"))
    assert dlt == {("S-001", 1): "N", ("S-001", 2): "Y", ("S-002", 1): "N", ("S-004", 1): "Y",
                   ("S-005", 1): "N"}


def test_without_dlt_qnam_every_ae_is_not_a_dlt_with_a_warning(own_mapping):
    assert own_mapping.query("SELECT DISTINCT dlt FROM adverse_events") == [("N",)]
    assert "dlt_qnam" in own_mapping.warning_text()


def test_a_named_dlt_flag_without_suppae_refuses_the_import(tmp_path):
    data = study()
    data["SUPPAE"] = None
    problem = find(import_problems(tmp_path, data), "SUPPAE", None, "QNAM")
    assert problem.value == "AEDLT" and "no SUPPAE dataset" in problem.message


def test_a_named_dlt_flag_that_no_suppae_record_has_refuses_the_import(tmp_path):
    data = study()
    for row in data["SUPPAE"]:
        row["QNAM"] = "AETRTEM"
    problem = find(import_problems(tmp_path, data), "SUPPAE", None, "QNAM")
    assert problem.value == "AEDLT" and "no SUPPAE record has it" in problem.message


def test_the_dlt_qnam_matches_in_any_case(tmp_path):
    data = study()
    for row in data["SUPPAE"]:
        row["QNAM"] = row["QNAM"].lower()
    run = run_import(tmp_path, data)
    assert run.ae("S-001", 2, "dlt") == "Y" and run.ae("S-004", 1, "dlt") == "Y"


def test_two_dlt_flags_of_one_ae_that_disagree_are_an_error(tmp_path):
    data = study()
    data["SUPPAE"].append(_supp("S-001", 2, "N"))  # S-001 AESEQ 2 is already flagged Y
    problems = errors(import_problems(tmp_path, data))
    assert {(p.table, p.column, p.value) for p in problems} == {("SUPPAE", "QVAL", "Y"), ("SUPPAE", "QVAL", "N")}


def test_an_unplanned_treatment_is_an_unmapped_arm(tmp_path):
    data = study()
    record(data, "DM", "S-006").update(ACTARMCD="UNPLAN")  # planned L2; the level actually given is unknown
    problem = find(import_problems(tmp_path, data), "DM", "S-006", "ACTARMCD")
    assert problem.value == "UNPLAN"


def test_an_arm_given_twice_within_one_level_is_an_error():
    text = MAPPING.replace('arms = ["L1"]', 'arms = ["L1"]\nexpansion_arms = ["L1"]')
    parsed, problems = parse_mapping(text)
    assert parsed is None and any(p.column == "levels.arms" and p.value == "L1" for p in problems)


# --------------------------------------------------------------------------- RS, TR, TU -> tumor_assessments


def _rs(usubjid, seq, visit, date, test, result, evaluator="INVESTIGATOR", cat="RECIST 1.1") -> dict:
    return dict(STUDYID=STUDYID, DOMAIN="RS", USUBJID=usubjid, RSSEQ=seq, RSTESTCD=test, RSCAT=cat,
                RSORRES=result, RSSTRESC=result, RSEVAL=evaluator, VISITNUM=visit, RSDTC=date)


def _tr(usubjid, seq, visit, date, group, lesion, test, value, unit="mm", evaluator="INVESTIGATOR") -> dict:
    return dict(STUDYID=STUDYID, DOMAIN="TR", USUBJID=usubjid, TRSEQ=seq, TRGRPID=group, TRLNKID=lesion,
                TRTESTCD=test, TRSTRESN=value, TRSTRESU=unit, TREVAL=evaluator, VISITNUM=visit, TRDTC=date)


def _no_domain(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "DOMAIN"}


def tumor_study() -> dict:
    """S-001: baseline (TR only) 30 + 25 mm targets and a 15 mm non-target; visit 2 targets 2.0 + 1.5 cm
    (TR dated the day before RS), PR; visit 3 SUMDIAM 60 mm beside lesions 35 + 30, PD with new lesions.
    An independent assessor reads CR at visit 2 with a 99 mm target.
    S-004: non-target-only baseline; NON-CR/NON-PD at visit 2; PD (RSORRES only) at visit 3 with a new
    lesion in TU.
    (For the XPT tests, S-003's first EXDOSE is missing and its second exactly 0.)"""
    data = study()
    record(data, "EX", "S-003", EXSEQ=1)["EXDOSE"] = None
    record(data, "EX", "S-003", EXSEQ=2)["EXDOSE"] = 0
    data["RS"] = [
        _rs("S-001", 1, 2, "2024-02-05", "OVRLRESP", "PR"), _rs("S-001", 2, 2, "2024-02-05", "NTRGRESP",
                                                                "NON-CR/NON-PD"),
        _rs("S-001", 3, 2, "2024-02-05", "NEWLPROG", "N"),
        _rs("S-001", 4, 3, "2024-03-01", "OVRLRESP", "PD"), _rs("S-001", 5, 3, "2024-03-01", "NTRGRESP", "PD"),
        _rs("S-001", 6, 3, "2024-03-01", "NEWLPROG", "Y"),
        _rs("S-001", 7, 2, "2024-02-05", "OVRLRESP", "CR", evaluator="INDEPENDENT ASSESSOR"),
        _rs("S-004", 1, 2, "2024-03-10", "OVRLRESP", "NON-CR/NON-PD"),
        _rs("S-004", 2, 2, "2024-03-10", "NTRGRESP", "NON-CR/NON-PD"),
        _rs("S-004", 3, 3, "2024-04-05", "OVRLRESP", "PD"),
    ]
    data["RS"][-1]["RSSTRESC"] = ""  # RSORRES (PD) stands in
    # RS in a file named like the pharmaverse sample, and DM, without DOMAIN: the file name gives the domain
    data["rs_onco_recist"] = [_no_domain(r) for r in data.pop("RS")]
    for row in data["DM"]:
        del row["DOMAIN"]
    data["TR"] = [
        _tr("S-001", 1, 1, "2024-01-05", "TARGET", "T01", "LDIAM", 30),
        _tr("S-001", 2, 1, "2024-01-05", "TARGET", "T02", "LDIAM", 25),
        _tr("S-001", 3, 1, "2024-01-05", "NON-TARGET", "NT01", "LDIAM", 15),
        _tr("S-001", 4, 2, "2024-02-04", "TARGET", "T01", "LDIAM", 2.0, unit="cm"),
        _tr("S-001", 5, 2, "2024-02-04", "TARGET", "T02", "LDIAM", 1.5, unit="cm"),
        _tr("S-001", 6, 3, "2024-03-01", "TARGET", "T01", "LDIAM", 35),
        _tr("S-001", 7, 3, "2024-03-01", "TARGET", "T02", "LDIAM", 30),
        _tr("S-001", 8, 3, "2024-03-01", "TARGET", "", "SUMDIAM", 60),
        _tr("S-001", 9, 2, "2024-02-04", "TARGET", "T01", "LDIAM", 99, evaluator="INDEPENDENT ASSESSOR"),
        _tr("S-004", 1, 1, "2024-02-08", "NON-TARGET", "NT01", "TUMSTATE", None),
    ]
    data["TU"] = [
        dict(STUDYID=STUDYID, DOMAIN="TU", USUBJID="S-004", TUSEQ=1, TULNKID="NT01", TUTESTCD="TUMIDENT",
             TUORRES="NON-TARGET", TUSTRESC="NON-TARGET", TUEVAL="INVESTIGATOR", VISITNUM=1),
        dict(STUDYID=STUDYID, DOMAIN="TU", USUBJID="S-004", TUSEQ=2, TULNKID="NEW01", TUTESTCD="TUMIDENT",
             TUORRES="NEW", TUSTRESC="NEW", TUEVAL="INVESTIGATOR", VISITNUM=3),
    ]
    return data


@pytest.fixture(scope="module")
def tumor(tmp_path_factory) -> Imported:
    return run_import(tmp_path_factory.mktemp("tumor"), tumor_study())


TUMOR_SQL = ("SELECT assessment_date, target_sum_mm, new_lesions, nontarget_response, overall_response "
             "FROM tumor_assessments WHERE subject_id = ? ORDER BY assessment_date")


def test_rs_and_tr_give_one_assessment_per_visit(tumor):
    assert tumor.query(TUMOR_SQL, "S-001") == [
        (D("2024-01-05"), 55.0, None, None, None),  # TR only (dated by TR); the non-target LDIAM is not summed
        (D("2024-02-05"), 35.0, "N", "NON-CR/NON-PD", "PR"),  # dated by RS, cm -> mm
        (D("2024-03-01"), 60.0, "Y", "PD", "PD"),  # SUMDIAM, not 35 + 30
    ]


def test_a_non_target_only_tr_visit_is_an_assessment_and_non_cr_non_pd_is_sd_with_a_warning(tumor):
    assert tumor.query(TUMOR_SQL, "S-004") == [
        (D("2024-02-08"), None, None, None, None),
        (D("2024-03-10"), None, None, "NON-CR/NON-PD", "SD"),
        (D("2024-04-05"), None, "Y", None, "PD"),  # TU NEW at visit 3
    ]
    assert find(tumor.warnings, "RS", None, "RSSTRESC", WARNING).value == "NON-CR/NON-PD"


def test_the_mapping_evaluator_selects_whose_assessments_count(tmp_path):
    run = run_import(tmp_path, tumor_study(), mapping(extra='[tumor]\nevaluator = "INDEPENDENT ASSESSOR"'))
    # Only visit 2 has independent RS/TR records for S-001.
    assert run.query(TUMOR_SQL, "S-001") == [(D("2024-02-05"), 99.0, None, None, "CR")]


def test_records_of_another_evaluator_are_counted_in_a_warning(tmp_path):
    run = run_import(tmp_path, tumor_study())
    warning = find(run.warnings, "RS", None, "RSEVAL", WARNING)
    assert "INDEPENDENT ASSESSOR (1)" in warning.message  # S-001's visit-2 CR by the independent assessor


def test_rs_rows_of_another_rscat_are_ignored_and_rows_without_rscat_are_used(tmp_path):
    data = tumor_study()
    data["rs_onco_recist"].append(_no_domain(_rs("S-001", 8, 4, "2024-03-20", "OVRLRESP", "CR", cat="CA125")))
    data["rs_onco_recist"].append(_no_domain(_rs("S-004", 4, 4, "2024-05-01", "OVRLRESP", "PD", cat="")))
    run = run_import(tmp_path, data)
    assert run.query("SELECT count(*) FROM tumor_assessments WHERE assessment_date = '2024-03-20'") == [(0,)]
    assert run.query("SELECT overall_response FROM tumor_assessments WHERE subject_id = 'S-004' "
                     "AND assessment_date = '2024-05-01'") == [("PD",)]
    ca125 = run_import(tmp_path, data, mapping(extra='[tumor]\nrs_categories = ["CA125"]'), name="ca125")
    assert ca125.query("SELECT overall_response FROM tumor_assessments WHERE subject_id = 'S-001' "
                       "AND overall_response IS NOT NULL") == [("CR",)]


def test_tr_without_rs_still_gives_one_assessment_per_tr_visit(tmp_path):
    data = tumor_study()
    del data["rs_onco_recist"]
    run = run_import(tmp_path, data)
    assert run.query(TUMOR_SQL, "S-001") == [(D("2024-01-05"), 55.0, None, None, None),
                                            (D("2024-02-04"), 35.0, None, None, None),
                                            (D("2024-03-01"), 60.0, None, None, None)]


# --------------------------------------------------------------------------- LB -> lab_results


def _lb(usubjid, seq, code, name, cat, value, unit, when, **extra) -> dict:
    row = dict(STUDYID=STUDYID, DOMAIN="LB", USUBJID=usubjid, LBSEQ=seq, LBTESTCD=code, LBTEST=name, LBCAT=cat,
               LBORRES=_text(value), LBORRESU=unit, LBSTRESC=_text(value), LBSTRESN=value, LBSTRESU=unit,
               LBSTNRLO="", LBSTNRHI="", LBTOXGR="", LBSPEC="BLOOD", LBSTAT="", LBDTC=when)
    row.update(extra)
    return row


def lab_study() -> dict:
    data = study()
    data["LB"] = [
        _lb("S-001", 1, "NEUT", "Neutrophils", "HEMATOLOGY", 0.4, "10^9/L", "2024-01-20T08:30",
            LBSTNRLO="1.5", LBSTNRHI="8", LBTOXGR="4"),
        _lb("S-001", 2, "ALT", "Alanine Aminotransferase", "CHEMISTRY", 42, "U/L", "2024-01-20",
            LBSTNRLO="0", LBSTNRHI="40", LBTOXGR="1", LBSPEC="SERUM"),
        _lb("S-001", 3, "CRP", "C Reactive Protein", "CHEMISTRY", None, "mg/L", "2024-01-21",
            LBORRES="<5", LBSTRESC="<5"),
        _lb("S-001", 4, "GLUC", "Glucose", "CHEMISTRY", None, "mmol/L", "2024-01-21", LBSTAT="NOT DONE"),
        _lb("S-001", 5, "UPROT", "Urine protein", "URINALYSIS", None, "", "2024-01-21",
            LBORRES="NEGATIVE", LBSTRESC="NEGATIVE", LBSPEC="URINE"),
        _lb("S-001", 6, "CA199", "CA 19-9", "SPECIAL", 35, "U/mL", "2024-01-22"),
        _lb("S-001", 7, "IL6X", "Interleukin 6", "SPECIAL", 12.5, "pg/mL", "2024-01-22"),
        _lb("S-001", 8, "FERR", "Ferritin", "SPECIAL", 250, "ug/L", "2024-01-22"),
        _lb("S-001", 9, "HGB", "", "HEMATOLOGY", 11.2, "g/dL", "2024-01-22"),
    ]
    data["IS"] = [dict(STUDYID=STUDYID, DOMAIN="IS", USUBJID="S-004", ISSEQ=1, ISTESTCD="ADA",
                       ISTEST="Anti-drug antibody", ISSTRESC="1.5", ISSTRESN=1.5, ISSTRESU="titer",
                       ISSPEC="SERUM", ISDTC="2024-03-01")]
    return data


LAB_MAPPING = mapping(extra='[lab_categories]\nCA199 = "tumor_marker"\n"Interleukin 6" = "cytokine"')


@pytest.fixture(scope="module")
def labs(tmp_path_factory) -> Imported:
    return run_import(tmp_path_factory.mktemp("lab"), lab_study(), LAB_MAPPING)


def test_lb_gives_lab_results(labs):
    run = labs
    got = run.query("SELECT test, collected_at, value, unit, ref_low, ref_high, grade, specimen, lloq "
                    "FROM lab_results WHERE test IN ('Neutrophils', 'Alanine Aminotransferase') ORDER BY test")
    assert got == [
        ("Alanine Aminotransferase", dt.datetime(2024, 1, 20), 42.0, "U/L", 0.0, 40.0, 1, "serum", None),
        ("Neutrophils", dt.datetime(2024, 1, 20, 8, 30), 0.4, "10^9/L", 1.5, 8.0, 4, "blood", None),
    ]
    assert run.query("SELECT value FROM lab_results WHERE test = 'HGB'") == [(11.2,)]  # LBTEST empty: LBTESTCD


def test_a_result_below_the_limit_has_lloq_and_no_value(labs):
    run = labs
    assert run.query("SELECT value, lloq FROM lab_results WHERE test = 'C Reactive Protein'") == [(None, 5.0)]


def test_not_done_results_are_dropped_and_non_numeric_ones_dropped_with_a_warning(labs):
    run = labs
    tests = {r[0] for r in run.query("SELECT test FROM lab_results")}
    assert tests == {"Neutrophils", "Alanine Aminotransferase", "C Reactive Protein", "CA 19-9",
                     "Interleukin 6", "Ferritin", "HGB"}
    assert "NEGATIVE" in run.warning_text()
    assert "Glucose" not in run.warning_text() and "NOT DONE" not in run.warning_text()


def test_lab_category_from_mapping_by_code_then_name_else_lbcat_else_other(labs):
    run = labs
    assert dict(run.query("SELECT test, category FROM lab_results")) == {
        "Neutrophils": "hematology", "Alanine Aminotransferase": "chemistry", "C Reactive Protein": "chemistry",
        "CA 19-9": "tumor_marker", "Interleukin 6": "cytokine", "Ferritin": "other", "HGB": "hematology"}


def test_other_findings_domains_are_read_only_when_named(tmp_path, labs):
    assert labs.query("SELECT count(*) FROM lab_results WHERE subject_id = 'S-004'") == [(0,)]  # IS not named
    data = study()
    data["IS"] = lab_study()["IS"]
    extra = '[findings]\ndomains = ["LB", "IS"]\n[lab_categories]\nADA = "immunogenicity"'
    named = run_import(tmp_path, data, mapping(extra=extra), name="named")
    assert named.query("SELECT subject_id, test, value, unit, specimen, category, collected_at FROM lab_results") \
        == [("S-004", "Anti-drug antibody", 1.5, "titer", "serum", "immunogenicity", dt.datetime(2024, 3, 1))]


# --------------------------------------------------------------------------- dates


def test_dates_parse_complete_partial_and_bad_values():
    values = pd.Series(["2014-03-05T08:30", "2014-03", "2014", "2014---05", "2024-02", "",
                        "2014-13-01", "2014-02-30", "03/05/2014"])
    start, end = dates.parse(values), dates.parse(values, end=True)
    assert list(start.kind) == ["full", "partial", "partial", "partial", "partial", "empty", "bad", "bad", "bad"]
    assert list(start.date_text) == ["2014-03-05", "2014-03-01", "2014-01-01", "2014-01-01", "2024-02-01",
                                     "", "", "", ""]
    assert list(end.date_text) == ["2014-03-05", "2014-03-31", "2014-12-31", "2014-12-31", "2024-02-29",
                                   "", "", "", ""]
    assert list(start.has_time) == [True] + [False] * 8
    assert start.clock_text[0] == "08:30"


@pytest.fixture(scope="module")
def partial(tmp_path_factory) -> Imported:
    """Partial dates. First DRUGX doses: S-001 01-10, S-002 01-12, S-004 02-12, S-005 02-14."""
    data = study()
    # starts
    record(data, "DM", "S-001")["RFICDTC"] = "2024-01"
    record(data, "EX", "S-004", EXSEQ=2).update(EXSTDTC="2024-03", EXENDTC="")
    record(data, "AE", "S-004", AESEQ=1).update(AESTDTC="2024-03", AEENDTC="")  # March: after the first dose
    record(data, "DM", "S-003")["RFICDTC"] = ""  # no consent date for the pre-study onset to precede
    data["AE"].append(_ae("S-003", 1, "Back pain", "Back pain", "Musculoskeletal disorders", "2023-12", "",
                          "1", "MILD", "N", "NONE", "NOT RECOVERED/NOT RESOLVED", "NONE"))
    # onsets whose period holds the first dose
    record(data, "AE", "S-001", AESEQ=1)["AESTDTC"] = "2024-01"
    record(data, "AE", "S-001", AESEQ=2)["AESTDTC"] = "2024"
    record(data, "AE", "S-005", AESEQ=1)["AESTDTC"] = "2024-02"
    # S-002 took another drug the day before its first DRUGX dose: only the agent counts
    data["EX"].append(_ex("S-002", 3, "2024-01-11", "2024-01-11", 8, trt="DEXAMETHASONE"))
    record(data, "AE", "S-002", AESEQ=1)["AESTDTC"] = "2024-01"
    # ends
    record(data, "AE", "S-001", AESEQ=2)["AEENDTC"] = "2024-02"
    record(data, "EX", "S-006", EXSEQ=2)["EXENDTC"] = "2024-03"
    record(data, "DM", "S-002")["RFXENDTC"] = "2024-02"
    data["DS"].append(_ds("S-002", 2, "WITHDRAWAL BY SUBJECT", "2024-03-01"))
    return run_import(tmp_path_factory.mktemp("partial"), data)


def test_partial_start_dates_are_imputed_to_the_first_day_with_a_warning(partial):
    assert partial.subject("S-001")["screening_date"] == D("2024-01-01")
    assert partial.query("SELECT max(admin_date) FROM administrations WHERE subject_id = 'S-004'") \
        == [(D("2024-03-01"),)]
    assert partial.ae("S-004", 1, "onset_date") == D("2024-03-01")
    assert find(partial.warnings, "DM", "S-001", "RFICDTC", WARNING).value == "2024-01"
    assert find(partial.warnings, "EX", "USUBJID S-004 EXSEQ 2", "EXSTDTC", WARNING).value == "2024-03"
    assert find(partial.warnings, "AE", "USUBJID S-004 AESEQ 1", "AESTDTC", WARNING).value == "2024-03"


def test_partial_end_dates_are_imputed_to_the_last_day(partial):
    assert partial.ae("S-001", 2, "end_date") == D("2024-02-29")
    assert partial.query("SELECT end_date FROM administrations WHERE subject_id = 'S-006' "
                         "AND admin_date = '2024-03-08'") == [(D("2024-03-31"),)]
    assert partial.subject("S-002")["off_treatment_date"] == D("2024-02-29")
    assert find(partial.warnings, "AE", "USUBJID S-001 AESEQ 2", "AEENDTC", WARNING).value == "2024-02"


def test_a_partial_onset_whose_period_holds_the_first_dose_is_imputed_to_the_first_dose(partial):
    assert partial.ae("S-001", 1, "onset_date") == D("2024-01-10")
    assert partial.ae("S-001", 2, "onset_date") == D("2024-01-10")
    assert partial.ae("S-005", 1, "onset_date") == D("2024-02-14")
    assert partial.ae("S-002", 1, "onset_date") == D("2024-01-12")
    warning = find(partial.warnings, "AE", "USUBJID S-001 AESEQ 1", "AESTDTC", WARNING)
    assert "2024-01-10" in warning.message and "dose" in warning.message


def test_a_partial_onset_whose_period_does_not_hold_the_first_dose_keeps_the_first_day(partial):
    assert partial.ae("S-004", 1, "onset_date") == D("2024-03-01")  # after the first dose's month
    assert partial.ae("S-003", 1, "onset_date") == D("2023-12-01")  # before it


def test_a_partial_onset_of_an_ae_that_ended_before_the_first_dose_is_not_moved_past_its_end(tmp_path):
    data = study()
    # Started some day in January, ended 01-05; S-001's first dose was 01-10: the AE cannot be on treatment.
    record(data, "AE", "S-001", AESEQ=1).update(AESTDTC="2024-01", AEENDTC="2024-01-05")
    run = run_import(tmp_path, data)
    onset = run.ae("S-001", 1, "onset_date")
    assert D("2024-01-01") <= onset <= D("2024-01-05")


def test_a_partial_onset_in_the_month_of_consent_is_not_imputed_before_the_consent(tmp_path):
    data = study()
    # S-001 consented 01-02 and was first dosed 01-10; an AE in January that ended 01-05 happened
    # between consent and dose: the first of January would put it before the consent.
    record(data, "AE", "S-001", AESEQ=1).update(AESTDTC="2024-01", AEENDTC="2024-01-05")
    run = run_import(tmp_path, data)
    assert run.ae("S-001", 1, "onset_date") == D("2024-01-02")
    assert "imputed to 2024-01-02, the informed consent" in run.warning_text()


def test_a_subject_without_sv_visits_takes_its_latest_record_as_last_contact(tmp_path):
    data = study()
    # SV holds visits of S-001 only; S-002's latest record is its second dose on 02-02.
    data["SV"] = [dict(STUDYID=STUDYID, DOMAIN="SV", USUBJID="S-001", VISITNUM=1, SVSTDTC="2024-03-01",
                       SVENDTC="")]
    run = run_import(tmp_path, data)
    assert run.subject("S-001")["last_contact_date"] == D("2024-03-01")
    assert run.subject("S-002")["last_contact_date"] == D("2024-02-02")


def test_two_overall_responses_for_one_visit_that_differ_are_named_in_a_warning(tmp_path):
    data = tumor_study()
    first = next(r for r in data["rs_onco_recist"] if r["RSTESTCD"] == "OVRLRESP"
                 and r["RSEVAL"] == "INVESTIGATOR" and r["RSSTRESC"] in ("PR", "SD"))
    other = dict(first, RSSEQ=99, RSSTRESC="PD" if first["RSSTRESC"] != "PD" else "SD")
    data["rs_copy"] = [other]
    run = run_import(tmp_path, data)
    text = run.warning_text()
    assert f"USUBJID {first['USUBJID']} VISITNUM {first['VISITNUM']}" in text
    # Files are read in name order, and the first file's response is the one imported.
    assert f"{other['RSSTRESC']} in rs_copy.csv; {first['RSSTRESC']} in rs_onco_recist.csv" in text
    assert run.query("SELECT overall_response FROM tumor_assessments WHERE subject_id = ? AND assessment_date = ?",
                     first["USUBJID"], D(first["RSDTC"])) == [(other["RSSTRESC"],)]


def test_disposition_without_dscat_ignores_consent_and_screening_records(tmp_path):
    data = study()
    for row in data["DS"]:
        del row["DSCAT"]
    data["DS"] += [_ds("S-001", 2, "INFORMED CONSENT OBTAINED", "2024-01-02"),
                   _ds("S-002", 2, "COMPLETED", "2024-01-09", epoch="SCREENING"),
                   _ds("S-003", 2, "WITHDRAWAL BY SUBJECT", "2024-03-01")]
    run = run_import(tmp_path, data)
    assert run.subject("S-001")["off_study_date"] is None
    assert run.subject("S-002")["off_study_date"] is None
    assert (run.subject("S-003")["off_study_date"], run.subject("S-003")["off_study_reason"]) == (
        D("2024-03-01"), "WITHDRAWAL BY SUBJECT")


def test_a_ds_record_of_a_subject_not_in_dm_is_an_error(tmp_path):
    data = study()
    data["DS"].append(_ds("S-999", 1, "COMPLETED", "2024-03-01"))
    assert find(import_problems(tmp_path, data), "DS", "S-999", "USUBJID")


def test_visit_numbers_written_as_decimals_in_csv_still_join_rs_and_tr(tmp_path):
    data = tumor_study()
    for row in data["TR"]:
        row["VISITNUM"] = f"{row['VISITNUM']}.0"
    expected = run_import(tmp_path, tumor_study(), name="plain").query(TUMOR_SQL, "S-001")
    assert run_import(tmp_path, data, name="decimal").query(TUMOR_SQL, "S-001") == expected


def test_a_variable_given_twice_in_one_file_is_an_error_naming_it(tmp_path):
    source = write_study(tmp_path / "sdtm", study())
    ae = (source / "ae.csv").read_text().splitlines()
    (source / "ae.csv").write_text("\n".join([ae[0] + ",aeseq"] + [line + ",9" for line in ae[1:]]) + "\n")
    (tmp_path / "map.toml").write_text(MAPPING)
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(source, tmp_path / "x.duckdb", tmp_path / "map.toml")
    assert any(p.table == "ae.csv" and "AESEQ more than once" in p.message for p in failed.value.problems)


def test_a_mapping_file_that_is_not_utf8_is_a_problem_not_a_traceback(tmp_path):
    source = write_study(tmp_path / "sdtm", study())
    (tmp_path / "map.toml").write_bytes(MAPPING.encode("utf-16"))
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(source, tmp_path / "x.duckdb", tmp_path / "map.toml")
    assert "is not UTF-8 text" in str(failed.value.problems[-1])


def test_a_dm_without_records_is_refused_without_a_traceback(tmp_path):
    data = study()
    columns = list(data["DM"][0])
    source = write_study(tmp_path / "sdtm", data)
    (source / "dm.csv").write_text(",".join(columns) + "\n")
    (tmp_path / "map.toml").write_text(MAPPING)
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(source, tmp_path / "x.duckdb", tmp_path / "map.toml")
    assert any(p.table == "EX" and p.column == "USUBJID" for p in failed.value.problems)  # dosed, not in DM


BAD_DATES = {("S-001", 2): "2014-13-01", ("S-002", 1): "2014-02-30", ("S-004", 1): "03/05/2014",
             ("S-005", 1): "2014-13-45"}


def test_an_unparsable_date_is_an_error_naming_domain_subject_sequence_and_variable(tmp_path):
    data = study()
    for (subject, seq), bad in BAD_DATES.items():
        record(data, "AE", subject, AESEQ=seq)["AESTDTC"] = bad
    problems = import_problems(tmp_path, data)
    for (subject, seq), bad in BAD_DATES.items():
        p = find(problems, "AE", f"USUBJID {subject} AESEQ {seq}", "AESTDTC")
        assert p.value == bad
        assert str(p).startswith(f'AE USUBJID {subject} AESEQ {seq}: AESTDTC "{bad}" is not an ISO 8601 date')
    assert len(errors(problems)) == len(BAD_DATES)


def test_an_unparsable_ex_date_names_the_ex_sequence(tmp_path):
    data = study()
    record(data, "EX", "S-002", EXSEQ=2)["EXSTDTC"] = "2024-02-30"
    problems = import_problems(tmp_path, data)
    assert find(problems, "EX", "USUBJID S-002 EXSEQ 2", "EXSTDTC").value == "2024-02-30"


def test_a_date_time_with_hours_only_is_a_valid_iso_8601_value(tmp_path):
    data = study()
    record(data, "AE", "S-001", AESEQ=2)["AESTDTC"] = "2024-01-20T14"
    run = run_import(tmp_path, data)
    assert run.ae("S-001", 2, "onset_date") == D("2024-01-20")


# --------------------------------------------------------------------------- XPT and CSV


def _all_tables(run: Imported) -> dict[str, list]:
    return {t: sorted(map(repr, run.query(f"SELECT * FROM {t}")))
            for t in ("studies", "dose_levels", "sites", "subjects", "administrations", "adverse_events",
                      "tumor_assessments", "lab_results")}


@pytest.fixture(scope="module")
def xpt(tmp_path_factory) -> Imported:
    return run_import(tmp_path_factory.mktemp("xpt"), tumor_study(), fmt="xpt")


def test_xpt_and_csv_with_the_same_variables_import_the_same(xpt, tumor):
    csv = tumor  # the same data, as CSV
    assert sorted(p.name for p in (xpt.db.parent / "run_sdtm").iterdir()) == [
        "ae.xpt", "dm.xpt", "ds.xpt", "ex.xpt", "rs_onco_recist.xpt", "suppae.xpt", "tr.xpt", "tu.xpt"]
    assert _all_tables(xpt) == _all_tables(csv)
    assert xpt.counts == csv.counts
    assert xpt.ae("S-001", 2, "dlt") == "Y"


def test_an_xpt_exdose_of_exactly_zero_imports_as_zero_not_null(xpt):
    assert xpt.query("SELECT admin_date, dose FROM administrations WHERE subject_id = 'S-003' "
                     "ORDER BY admin_date") == [(D("2024-01-15"), None), (D("2024-02-05"), 0.0)]


def test_a_file_without_domain_variable_is_named_by_its_file_name(tumor, xpt):
    # dm.csv and rs_onco_recist.csv (and their .xpt twins) have no DOMAIN variable
    for run in (tumor, xpt):
        assert run.query("SELECT count(*) FROM subjects") == [(7,)]
        assert run.query("SELECT count(overall_response) FROM tumor_assessments") == [(4,)]


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize("domain", REQUIRED_DOMAINS)
def test_a_missing_required_domain_is_an_error(tmp_path, domain):
    data = study()
    data[domain] = None
    problems = errors(import_problems(tmp_path, data))
    assert any(p.table == domain and "missing" in p.message for p in problems)


def test_a_missing_required_variable_is_an_error(tmp_path):
    data = study()
    for row in data["AE"]:
        del row["AESTDTC"]
    problems = errors(import_problems(tmp_path, data))
    assert find(problems, "AE", None, "AESTDTC")


def test_missing_domains_and_variables_are_reported_together(tmp_path):
    data = study()
    data["EX"] = None
    for row in data["AE"]:
        del row["AESTDTC"]
    for row in data["DM"]:
        del row["ARMCD"]
    problems = errors(import_problems(tmp_path, data))
    assert {(p.table, p.column) for p in problems} >= {("EX", None), ("AE", "AESTDTC"), ("DM", "ARMCD")}


def _broken_study() -> dict:
    data = study()
    record(data, "DM", "S-003").update(ARMCD="L9", ACTARMCD="L9")  # unmapped arm
    data["DM"].append(copy.deepcopy(record(data, "DM", "S-005")))  # DM USUBJID twice
    data["AE"].append(_ae("S-099", 1, "Cough", "Cough", "Respiratory disorders", "2024-02-01", "", "1", "MILD",
                          "N", "NONE", "RECOVERED/RESOLVED", "NONE"))  # not a DM subject
    record(data, "AE", "S-001", AESEQ=1)["AESTDTC"] = "2014-13-45"  # unparsable
    data["AE"].append(copy.deepcopy(record(data, "AE", "S-002", AESEQ=1)))  # USUBJID + AESEQ twice
    record(data, "EX", "S-004", EXSEQ=2)["EXENDTC"] = "03/05/2014"  # unparsable
    record(data, "DS", "S-002")["DSSTDTC"] = "2024-02-30"  # unparsable
    data["LB"] = [_lb("S-001", 1, "ALT", "Alanine Aminotransferase", "CHEMISTRY", 30, "U/L", "2024-13-01")]
    return data


BROKEN = [  # (domain, record names, variable)
    ("DM", "USUBJID S-003", "ACTARMCD"),
    ("DM", "USUBJID S-005", "USUBJID"),
    ("AE", "USUBJID S-099 AESEQ 1", "USUBJID"),
    ("AE", "USUBJID S-001 AESEQ 1", "AESTDTC"),
    ("AE", "USUBJID S-002 AESEQ 1", "AESEQ"),
    ("EX", "USUBJID S-004 EXSEQ 2", "EXENDTC"),
    ("DS", "USUBJID S-002 DSSEQ 1", "DSSTDTC"),
    ("LB", "USUBJID S-001 LBSEQ 1", "LBDTC"),
]


def test_every_problem_is_reported_at_once_naming_domain_record_and_variable(tmp_path):
    problems = errors(import_problems(tmp_path, _broken_study()))
    for domain, where, variable in BROKEN:
        find(problems, domain, where, variable)
    assert find(problems, "AE", "S-001 AESEQ 1", "AESTDTC").value == "2014-13-45"


def test_a_missing_variable_and_record_errors_are_reported_at_once(tmp_path):
    data = _broken_study()
    for row in data["AE"]:
        del row["AESTDTC"]
    problems = errors(import_problems(tmp_path, data))
    find(problems, "AE", None, "AESTDTC")
    find(problems, "DM", "USUBJID S-003", "ACTARMCD")
    find(problems, "DM", "USUBJID S-005", "USUBJID")
    find(problems, "EX", "USUBJID S-004 EXSEQ 2", "EXENDTC")


def test_an_ae_of_a_subject_not_in_dm_is_an_error(tmp_path):
    data = study()
    record(data, "AE", "S-005", AESEQ=1)["USUBJID"] = "S-050"
    problems = errors(import_problems(tmp_path, data))
    assert [(p.table, p.record, p.column) for p in problems] == [("AE", "USUBJID S-050 AESEQ 1", "USUBJID")]


def test_a_duplicate_dm_subject_and_a_duplicate_ae_key_are_errors(tmp_path):
    data = study()
    data["DM"].append(copy.deepcopy(record(data, "DM", "S-002")))
    data["AE"].append(copy.deepcopy(record(data, "AE", "S-004", AESEQ=1)))
    problems = errors(import_problems(tmp_path, data))
    assert find(problems, "DM", "USUBJID S-002", "USUBJID").value == "S-002"
    assert find(problems, "AE", "USUBJID S-004 AESEQ 1", "AESEQ").value == "1"
    assert len(problems) == 2


def test_a_contract_rule_broken_by_the_mapped_data_names_the_sdtm_record(tmp_path):
    data = study()
    record(data, "AE", "S-002", AESEQ=1)["AESTDTC"] = "2024-01-01"  # before consent 2024-01-03
    problems = errors(import_problems(tmp_path, data))
    p = find(problems, "AE", "USUBJID S-002 AESEQ 1", "AESTDTC")
    assert "2024-01-03" in p.message


# --------------------------------------------------------------------------- command line


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_imports_valid_sdtm_with_exit_0_and_the_mapping_defaults_to_dir_mapping_toml(tmp_path, capsys):
    source = write_study(tmp_path / "sdtm", study())
    (source / "mapping.toml").write_text(MAPPING, encoding="utf-8")
    db = tmp_path / "cut.duckdb"
    code = cli.main(["import", "--sdtm", str(source), "--db", str(db)])
    assert code == 0
    assert "imported" in capsys.readouterr().err
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM subjects").fetchall() == [(7,)]
    finally:
        con.close()


def test_cli_refuses_invalid_sdtm_with_exit_2_and_leaves_the_database_untouched(tmp_path, capsys, base):
    db = tmp_path / "cut.duckdb"
    shutil.copy(base.db, db)  # an existing data cut at --db
    source = write_study(tmp_path / "bad_sdtm", _broken_study())
    (tmp_path / "m.toml").write_text(MAPPING, encoding="utf-8")
    before, listing = _digest(db), sorted(os.listdir(tmp_path))
    code = cli.main(["import", "--sdtm", str(source), "--db", str(db), "--mapping", str(tmp_path / "m.toml")])
    err = capsys.readouterr().err
    assert code == 2
    assert _digest(db) == before
    assert sorted(os.listdir(tmp_path)) == listing  # no temporary file left beside it
    assert 'AE USUBJID S-001 AESEQ 1: AESTDTC "2014-13-45"' in err
    assert "USUBJID S-099 AESEQ 1" in err and "L9" in err


def test_python_m_smc_import_sdtm_exit_codes(tmp_path):
    bad = write_study(tmp_path / "bad", _broken_study())
    (tmp_path / "m.toml").write_text(MAPPING, encoding="utf-8")
    db = tmp_path / "cut.duckdb"
    db.write_bytes(b"not touched")
    cmd = [sys.executable, "-m", "smc", "import", "--sdtm", str(bad), "--db", str(db),
           "--mapping", str(tmp_path / "m.toml")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "EX USUBJID S-004 EXSEQ 2: EXENDTC" in done.stderr
    assert db.read_bytes() == b"not touched"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "cut.duckdb", "m.toml"]


# --------------------------------------------------------------------------- the CDISC pilot sample


SAMPLE_MAPPING = """
[study]
design = "3+3"
agent = "XANOMELINE"
dlt_window_days = 28

[[levels]]
level = 1
label = "54 mg"
dose = 54
unit = "mg"
arms = ["Xan_Lo"]

[[levels]]
level = 2
label = "81 mg"
dose = 81
unit = "mg"
arms = ["Xan_Hi"]
{extra_level}
[subjects]
exclude_arms = [{excluded}]

[ae]

[lab_categories]
PSA = "tumor_marker"
"""

PBO_LEVEL = '\n[[levels]]\nlevel = 3\nlabel = "placebo"\ndose = 0\nunit = "mg"\narms = ["Pbo"]\n'


def _sample_import(tmp_path: Path, source: Path, name: str, pbo_as_level: bool = False) -> Imported:
    text = SAMPLE_MAPPING.format(extra_level=PBO_LEVEL if pbo_as_level else "",
                                 excluded="" if pbo_as_level else '"Pbo"')
    map_path = tmp_path / f"{name}.toml"
    map_path.write_text(text, encoding="utf-8")
    db = tmp_path / f"{name}.duckdb"
    warnings, counts = import_sdtm(source, db, map_path)
    return Imported(db, warnings, counts)


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sample")
    return _sample_import(tmp, SAMPLE, "sample")


@pytest.fixture()
def raw():
    """SQL straight on the sample's SDTM CSV files (the independent path to each number)."""
    con = duckdb.connect()
    for name in ("dm", "ex", "ae", "rs_onco_recist", "rs_onco_ca125", "lb_onco_pcwg3"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_csv('{SAMPLE / (name + '.csv')}', all_varchar=true)")
    con.execute("CREATE VIEW kept AS SELECT * FROM dm WHERE ACTARMCD <> 'Pbo'")
    yield lambda sql: con.execute(sql).fetchall()
    con.close()


def test_sample_subjects_screen_failures_dosed_and_levels(sample_csv, raw):
    run = sample_csv
    assert run.query("SELECT count(*) FROM subjects") == raw("SELECT count(*) FROM kept")
    assert run.query("SELECT count(*) FROM subjects WHERE enrollment_date IS NULL AND dose_level IS NULL") \
        == raw("SELECT count(*) FROM kept WHERE upper(ARMCD) = 'SCRNFAIL'")
    assert run.query("SELECT count(*) FROM subjects WHERE screen_fail_reason IS NOT NULL") \
        == raw("SELECT count(*) FROM kept WHERE upper(ARMCD) = 'SCRNFAIL'")
    assert run.query("SELECT count(DISTINCT subject_id) FROM administrations WHERE agent = 'XANOMELINE'") \
        == raw("SELECT count(DISTINCT USUBJID) FROM ex WHERE EXTRT = 'XANOMELINE'")
    assert run.query("SELECT count(*) FROM administrations WHERE agent <> 'XANOMELINE'") == [(0,)]
    by_level = dict(run.query("SELECT dose_level, count(*) FROM subjects WHERE dose_level IS NOT NULL GROUP BY 1"))
    expected = dict(raw("SELECT ACTARMCD, count(*) FROM kept WHERE ACTARMCD IN ('Xan_Lo', 'Xan_Hi') GROUP BY 1"))
    assert by_level == {1: expected["Xan_Lo"], 2: expected["Xan_Hi"]}


def test_sample_adverse_events_per_body_system(sample_csv, raw):
    got = dict(sample_csv.query("SELECT soc, count(*) FROM adverse_events GROUP BY 1"))
    expected = dict(raw("SELECT AEBODSYS, count(*) FROM ae JOIN kept USING (USUBJID) GROUP BY 1"))
    assert got == expected
    assert sample_csv.query("SELECT DISTINCT dlt FROM adverse_events") == [("N",)]


def test_sample_aes_carry_the_sponsor_id_and_sequence_that_match_them_across_cuts(sample_csv, raw):
    """ae_spid from AESPID, ae_seq from AESEQ (docs/data-contract.md, Record keys), record by record."""
    got = set(sample_csv.query("SELECT subject_id, ae_seq, ae_spid FROM adverse_events"))
    expected = {(u, int(float(seq)), spid or None) for u, seq, spid in raw(
        "SELECT USUBJID, AESEQ, nullif(trim(AESPID), '') FROM ae JOIN kept USING (USUBJID)")}
    assert got == expected
    assert any(spid for _, _, spid in got)


def test_sample_investigator_recist_overall_responses(sample_csv, raw):
    # Investigator time-point responses (RSCAT empty or RECIST 1.1) of imported subjects, one per visit;
    # NON-CR/NON-PD counts as SD.
    candidates = raw("""
        WITH rs AS (
            SELECT USUBJID, VISITNUM, RSSTRESC, NULL AS RSCAT FROM rs_onco_recist
            WHERE RSEVAL = 'INVESTIGATOR' AND RSTESTCD = 'OVRLRESP'
            UNION ALL
            SELECT USUBJID, VISITNUM, RSSTRESC, RSCAT FROM rs_onco_ca125
            WHERE RSEVAL = 'INVESTIGATOR' AND RSTESTCD = 'OVRLRESP' AND coalesce(RSCAT, '') IN ('', 'RECIST 1.1'))
        SELECT USUBJID, VISITNUM,
               list(DISTINCT CASE WHEN RSSTRESC = 'NON-CR/NON-PD' THEN 'SD' ELSE RSSTRESC END) AS responses
        FROM rs JOIN kept USING (USUBJID) GROUP BY ALL""")
    got = sample_csv.query("SELECT count(overall_response) FROM tumor_assessments")
    assert got == [(len(candidates),)]
    # Where both files agree on a visit's response, the counts per response match exactly.
    agreed: dict[str, int] = {}
    for _, _, responses in candidates:
        if len(responses) == 1:
            agreed[responses[0]] = agreed.get(responses[0], 0) + 1
    imported = dict(sample_csv.query("SELECT overall_response, count(*) FROM tumor_assessments "
                                     "WHERE overall_response IS NOT NULL GROUP BY 1"))
    for response, n in agreed.items():
        assert imported.get(response, 0) >= n, (response, imported, agreed)


def test_sample_recist_file_alone_gives_the_investigator_response_counts(tmp_path, raw):
    source = tmp_path / "recist"
    source.mkdir()
    for name in ("dm", "ex", "ae", "ds", "rs_onco_recist", "tr_onco_recist", "tu_onco_recist", "lb_onco_pcwg3"):
        shutil.copy(SAMPLE / f"{name}.csv", source / f"{name}.csv")
    run = _sample_import(tmp_path, source, "recist")
    expected = dict(raw("""
        SELECT CASE WHEN RSSTRESC = 'NON-CR/NON-PD' THEN 'SD' ELSE RSSTRESC END, count(*)
        FROM rs_onco_recist JOIN kept USING (USUBJID)
        WHERE RSEVAL = 'INVESTIGATOR' AND RSTESTCD = 'OVRLRESP' GROUP BY 1"""))
    got = dict(run.query("SELECT overall_response, count(*) FROM tumor_assessments "
                         "WHERE overall_response IS NOT NULL GROUP BY 1"))
    assert got == expected
    n_non_cr = raw("SELECT count(*) FROM rs_onco_recist JOIN kept USING (USUBJID) WHERE RSEVAL = 'INVESTIGATOR' "
                   "AND RSSTRESC = 'NON-CR/NON-PD'")[0][0]
    assert f"({n_non_cr} overall responses" in run.warning_text()


def test_sample_psa_is_a_tumor_marker(sample_csv, raw):
    got = sample_csv.query("SELECT category, count(*) FROM lab_results GROUP BY 1")
    expected = raw("SELECT count(*) FROM lb_onco_pcwg3 JOIN kept USING (USUBJID) WHERE LBTESTCD = 'PSA' "
                   "AND TRY_CAST(LBSTRESN AS DOUBLE) IS NOT NULL")
    assert got == [("tumor_marker", expected[0][0])]


def test_sample_xpt_drops_placebo_doses_with_pbo_excluded_and_keeps_zero_doses_when_mapped(tmp_path, raw):
    source = SAMPLE / "xpt"
    excluded = _sample_import(tmp_path, source, "xpt")
    assert excluded.query("SELECT count(*) FROM administrations WHERE dose = 0 OR dose IS NULL") == [(0,)]
    # The pilot has no DLT flag (suppae.xpt holds only AETRTEM) and the mapping names none: every AE is N,
    # with a warning.
    assert excluded.query("SELECT DISTINCT dlt FROM adverse_events") == [("N",)]
    assert any(w.table == "AE" and "names no DLT flag" in w.message for w in excluded.warnings)
    xpt_ex, _ = pyreadstat.read_xport(str(source / "ex.xpt"))
    assert excluded.query("SELECT count(*) FROM administrations") == [
        (int((xpt_ex["EXTRT"] == "XANOMELINE").sum()),)]

    with_pbo = _sample_import(tmp_path, source, "xpt_pbo", pbo_as_level=True)
    zero = raw("SELECT count(*) FROM ex WHERE CAST(EXDOSE AS DOUBLE) = 0")[0][0]
    assert zero > 0
    assert with_pbo.query("SELECT count(*) FROM administrations WHERE dose = 0.0") == [(zero,)]
    assert with_pbo.query("SELECT count(*) FROM administrations WHERE dose IS NULL") == [(0,)]
    assert with_pbo.query("SELECT count(*) FROM subjects WHERE dose_level = 3") \
        == raw("SELECT count(*) FROM dm WHERE ACTARMCD = 'Pbo'")


# --------------------------------------------------------------------------- limits, checked before parsing


def _only_error(problems: list[Problem]) -> Problem:
    found = errors(problems)
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


@pytest.mark.parametrize("fmt, n_columns", [("csv", 200_000), ("xpt", 1_500)])
def test_a_wide_dataset_is_refused_in_under_2_s_naming_the_file_and_the_limit(tmp_path, fmt, n_columns):
    data = study()
    source = write_study(tmp_path / "sdtm", data)
    wide = pd.DataFrame({f"V{i}": [1.0] for i in range(n_columns)})
    path = source / f"lb.{fmt}"
    if fmt == "xpt":  # version 5 transport names are 8 characters at most
        pyreadstat.write_xport(wide, str(path), table_name="LB", file_format_version=5)
    else:
        wide.to_csv(path, index=False)
    (tmp_path / "m.toml").write_text(MAPPING)
    started = time.perf_counter()
    with pytest.raises(ImportFailed) as failed:
        import_sdtm(source, tmp_path / "x.duckdb", tmp_path / "m.toml")
    assert time.perf_counter() - started < 2
    error = _only_error(failed.value.problems)
    assert error.table == f"lb.{fmt}" and "import_max_columns" in error.message
    assert f"{settings.IMPORT_MAX_COLUMNS:,}" in error.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.toml", "sdtm"]


@pytest.mark.parametrize("fmt", ["csv", "xpt"])
def test_a_required_domain_past_a_limit_is_refused_and_not_also_called_missing(tmp_path, monkeypatch, fmt):
    data = study()
    monkeypatch.setattr(settings, "IMPORT_MAX_ROWS", len(data["AE"]) - 1)
    problems = import_problems(tmp_path, data, fmt=fmt)
    messages = [str(p) for p in errors(problems)]
    assert any(m.startswith(f"ae.{fmt}: ") and "import_max_rows" in m for m in messages), messages
    assert not any("is missing" in m for m in messages), messages


@pytest.mark.parametrize("fmt", ["csv", "xpt"])
def test_rows_at_the_limit_are_read_and_one_more_is_refused(tmp_path, monkeypatch, fmt):
    data = study()
    longest = max(len(rows) for rows in data.values() if rows)
    monkeypatch.setattr(settings, "IMPORT_MAX_ROWS", longest)
    run = run_import(tmp_path, data, fmt=fmt, name="at_limit")
    assert run.counts["subjects"] == len(data["DM"])
    monkeypatch.setattr(settings, "IMPORT_MAX_ROWS", longest - 1)
    problems = import_problems(tmp_path, data, fmt=fmt)
    refused = {p.table for p in errors(problems) if "import_max_rows" in p.message}
    assert refused == {f"{name.lower()}.{fmt}" for name, rows in data.items() if rows and len(rows) == longest}


def test_a_set_of_datasets_past_the_byte_limit_is_refused_before_reading(tmp_path, monkeypatch):
    data = study()
    data["AE"][0]["AETERM"] = "x" * 1_200_000
    monkeypatch.setattr(settings, "IMPORT_MAX_MB", 1)
    error = _only_error(import_problems(tmp_path, data))
    assert "import_max_mb" in error.message and "ae.csv" in error.message


@pytest.mark.parametrize("depth", [5_000, 50])
@pytest.mark.parametrize("shape", ["arrays", "inline-tables", "dotted-keys", "table-header"])
def test_a_deeply_nested_mapping_is_a_problem_not_a_recursion_error(tmp_path, depth, shape):
    nested = {
        "arrays": "x = " + "[" * depth + "]" * depth,
        "inline-tables": "x = " + "{a = " * depth + "1" + "}" * depth,
        "dotted-keys": "x" + ".a" * depth + " = 1",
        "table-header": "[x" + ".a" * depth + "]\nb = 1",
    }[shape]
    for text in (nested, MAPPING + "\n" + nested):
        mapping, problems = parse_mapping(text)
        assert mapping is None
        (problem,) = problems
        assert problem.table == "mapping file" and "levels deep" in problem.message, str(problem)
    problems = import_problems(tmp_path, mapping_text=MAPPING + "\n" + nested)
    assert [p.table for p in errors(problems)] == ["mapping file"]


def test_the_template_and_every_mapping_of_the_tests_are_within_the_depth_limit():
    for text in (TEMPLATE, MAPPING, SAMPLE_MAPPING.format(extra_level=PBO_LEVEL, excluded="")):
        assert parse_mapping(text)[1] == []


def test_a_mapping_longer_than_the_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    text = MAPPING + "# " + "x" * 1_000 + "\n"
    monkeypatch.setattr(settings, "MAPPING_MAX_CHARS", len(text) - 1)
    assert "mapping_max_chars" in _only_error(parse_mapping(text)[1]).message
    problems = import_problems(tmp_path, mapping_text=text)  # from a file: its size, then its characters
    assert [p.table for p in errors(problems)] == ["mapping file"] and "mapping_max_chars" in problems[-1].message
    monkeypatch.setattr(settings, "MAPPING_MAX_CHARS", len(text))
    assert parse_mapping(text)[1] == []


@pytest.mark.parametrize("change, key", [
    (("dlt_window_days = 28", 'dlt_window_days = "four weeks"'), "study.dlt_window_days"),
    (("dlt_window_days = 28", "dlt_window_days = 28.5"), "study.dlt_window_days"),
    (("dlt_window_days = 28", "dlt_window_days = [28]"), "study.dlt_window_days"),
    (('design = "3+3"', 'design = "4+4"'), "study.design"),
    (("level = 1", "level = 1.5"), "levels[1].level"),
    (("level = 1", 'level = "one"'), "levels[1].level"),
    (('arms = ["L1"]', 'arms = "L1"'), "levels[1].arms"),
    (('arms = ["L1"]', "arms = [1, 2]"), "levels[1].arms"),
    (("dose = 10", 'dose = "ten"'), "levels[1].dose"),
    (("dose = 10", "dose = -10"), "levels.dose"),
    (('dlt_qnam = "AEDLT"', "dlt_qnam = 3"), "ae.dlt_qnam"),
    (('dlt_qnam = "AEDLT"', 'not_related = "NONE"'), "ae.not_related"),
], ids=lambda v: v if isinstance(v, str) else v[1])
def test_a_mapping_value_of_the_wrong_type_is_an_error_naming_its_key(tmp_path, change, key):
    text = MAPPING.replace(*change, 1)
    assert text != MAPPING
    problems = import_problems(tmp_path, mapping_text=text)
    found = [p for p in errors(problems) if p.table == "mapping file"]
    assert [p.column for p in found] == [key], "\n".join(map(str, problems))


@pytest.mark.parametrize("text", [
    "study = 3", "levels = 3", "levels = [1, 2]", "[[study]]\ndesign = 1", "lab_categories = [1]",
    "[lab_categories]\nALT = {a = 1}", "findings = 1", "[findings]\ndomains = [1]", "[tumor]\nevaluator = [1]",
    "", "\x00", "[study]\n" + "k = 1\n" * 1_000,
], ids=lambda t: repr(t[:24]))
def test_a_mapping_of_the_wrong_shape_is_refused_with_problems(tmp_path, text):
    mapping, problems = parse_mapping(text)
    assert mapping is None and problems and all(p.table == "mapping file" and p.message for p in problems)


# --------------------------------------------------------------------------- one import per target at a time


BUSY = "another import is writing"


def test_an_import_of_a_target_another_import_holds_is_refused_at_once(tmp_path, base):
    db = tmp_path / "cut.duckdb"
    shutil.copy(base.db, db)
    before = _digest(db)
    source = write_study(tmp_path / "sdtm", study())
    (tmp_path / "m.toml").write_text(MAPPING)
    with Target(db):
        started = time.perf_counter()
        with pytest.raises(ImportFailed) as failed:
            import_sdtm(source, db, tmp_path / "m.toml")
        assert time.perf_counter() - started < 1
        assert BUSY in _only_error(failed.value.problems).message and _digest(db) == before
    warnings, counts = import_sdtm(source, db, tmp_path / "m.toml")
    assert counts["subjects"] == len(study()["DM"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.duckdb", "m.toml", "sdtm"]


HOLD = """
import sys, time
from smc.ingest.target import Target
target = Target(sys.argv[1]).__enter__()
print("held", flush=True)
time.sleep(300)
"""


def test_a_process_holding_the_target_refuses_the_cli_import_and_its_kill_frees_it(tmp_path):
    source = write_study(tmp_path / "sdtm", study())
    (source / "mapping.toml").write_text(MAPPING)
    db = tmp_path / "cut.duckdb"
    db.write_bytes(b"the served cut")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cmd = [sys.executable, "-m", "smc", "import", "--sdtm", str(source), "--db", str(db)]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and BUSY in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert db.read_bytes() == b"the served cut"
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the kernel lets go of a dead process's lock
        holder.wait(timeout=60)
    assert (tmp_path / "cut.duckdb.lock").exists()  # left by the killed holder
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.duckdb", "sdtm"]
