"""Safety labs: CTCAE v5 grading (smc.ctcae) and baseline, shifts, eDISH, nadir/recovery (smc.labs).

Every expected value is worked out by hand from LABS below. Study S1 escalates VIRUS; as of 2025-03-15:

  101 L1  cyclophosphamide 01-05, VIRUS 01-08 (lymphodepletion: baseline cut is 01-05)
  102 L1  VIRUS 01-10          103 L1  never dosed
  201 L2  VIRUS 02-03          202 L2 (expansion) VIRUS 02-12      204 L2  VIRUS 02-05
  203 L2  VIRUS only 03-20 (after as-of)                           301 L3  enrolled 03-20 (after as-of)
ULNs: ALT/AST 40 U/L, bilirubin 20 umol/L. Neutrophil LLN 2.0 ×10^9/L.
"""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from smc.analysis import labs
from smc.rules.ctcae import grade
from smc.settings import MAX_SUBJECT_LINES
from tests.helpers import one_study_db

D = dt.date.fromisoformat
AS_OF = D("2025-03-15")
NA = None


def subject(sid, level, enrolled, phase="escalation"):
    return dict(study_id="S1", subject_id=sid, dose_level=level, enrollment_date=enrolled, phase=phase)


def dose(sid, date, agent="VIRUS"):
    return dict(study_id="S1", subject_id=sid, agent=agent, admin_date=date)


REF = {"Neutrophils": (2.0, 7.5, "10^9/L"), "Lymphocytes": (20, 40, "%"), "Platelets": (150, 400, ""),
       "Hemoglobin": (12.0, 16.0, "g/dL"), "ALT": (0, 40, "U/L"), "AST": (0, 40, "U/L"),
       "Bilirubin": (0, 20, "umol/L"), "CA19-9": ("", 37, "U/mL")}


def lab(sid, at, test, value, reported=""):
    lo, hi, unit = REF[test]
    category = ("hematology" if test in labs.CYTOPENIA_TESTS else
                "tumor_marker" if test == "CA19-9" else "chemistry")
    return dict(study_id="S1", subject_id=sid, collected_at=at, category=category, test=test, value=value,
                unit=unit, lloq="", ref_low=lo, ref_high=hi, grade=reported)


SUBJECTS = [subject("101", 1, "2025-01-02"), subject("102", 1, "2025-01-03"), subject("103", 1, "2025-01-04"),
            subject("201", 2, "2025-02-01"), subject("202", 2, "2025-02-10", phase="expansion"),
            subject("203", 2, "2025-03-01"), subject("204", 2, "2025-02-04"), subject("301", 3, "2025-03-20")]
DOSES = [dose("101", "2025-01-05", "cyclophosphamide"), dose("101", "2025-01-08"), dose("102", "2025-01-10"),
         dose("201", "2025-02-03"), dose("202", "2025-02-12"), dose("203", "2025-03-20"), dose("204", "2025-02-05")]
LABS = [
    # 101: baseline is the dose-day (cyclophosphamide) result 2.5 (G0), not 0.4 on 01-07 (the day before VIRUS)
    lab("101", "2025-01-03", "Neutrophils", 3.0), lab("101", "2025-01-05T07:00:00", "Neutrophils", 2.5),
    lab("101", "2025-01-07", "Neutrophils", 0.4),  # G4, agent day -1: post-baseline, not a nadir candidate
    lab("101", "2025-01-10", "Neutrophils", 0.8), lab("101", "2025-01-14", "Neutrophils", 0.6),  # G3 d2, G3 d6
    lab("101", "2025-01-20", "Neutrophils", 1.2), lab("101", "2025-01-25", "Neutrophils", 1.6),  # G2 d12, G1 d17
    lab("101", "2025-03-20", "Neutrophils", 0.1),  # after as-of
    # 102: two pre-dose values -> the later (1.8, G1); nadir tie 0.9 on d2 (reported G2) and d9 (derived G3)
    lab("102", "2025-01-02", "Neutrophils", 1.4), lab("102", "2025-01-09", "Neutrophils", 1.8),
    lab("102", "2025-01-12", "Neutrophils", 0.9, reported="2"), lab("102", "2025-01-19", "Neutrophils", 0.9),
    lab("102", "2025-02-01", "Neutrophils", 1.3),  # G2 d22: never back to grade <= 1
    lab("102", "2025-01-09", "Hemoglobin", 13.0), lab("102", "2025-01-15T09:00:00", "Hemoglobin", 7.9),  # 79 g/L G3
    lab("102", "2025-01-10", "ALT", 50), lab("102", "2025-01-10", "Bilirubin", 10),  # dose day: baseline
    lab("102", "2025-01-11", "CA19-9", 500),  # not a safety lab
    lab("103", "2025-01-20", "Neutrophils", 1.2),  # never dosed
    lab("201", "2025-02-10", "Neutrophils", 1.7), lab("201", "2025-02-17", "Neutrophils", 1.5),  # G1, G1 (edge)
    lab("201", "2025-02-10", "Platelets", 40),  # no unit: grading unit 10^9/L, G3
    lab("201", "2025-02-10", "Lymphocytes", 10),  # unit % cannot be graded
    lab("201", "2025-02-01", "ALT", 160),  # pre-dose 4xULN: baseline G2, not a peak
    lab("201", "2025-02-10", "ALT", 120), lab("201", "2025-02-10", "AST", 60),
    lab("201", "2025-02-10", "Bilirubin", 40),
    lab("202", "2025-02-20", "ALT", 119), lab("202", "2025-02-25", "Bilirubin", 40),
    lab("204", "2025-02-06", "ALT", 200), lab("204", "2025-02-06", "Bilirubin", 29),
    lab("203", "2025-03-01", "Neutrophils", 3.0), lab("203", "2025-03-10", "Neutrophils", 1.2),
    lab("203", "2025-03-10", "ALT", 130), lab("203", "2025-03-10", "Bilirubin", 50),
    lab("301", "2025-03-14", "Neutrophils", 0.1),  # enrolled after as-of
]


def make_db(tmp_path, lab_rows=LABS):
    tables = dict(subjects=SUBJECTS, administrations=DOSES)
    if lab_rows:
        tables["lab_results"] = lab_rows
    return one_study_db(tmp_path / "labs.duckdb", **tables)


@pytest.fixture()
def trial(tmp_path):
    return make_db(tmp_path)


@pytest.fixture()
def data(trial):
    return labs.load_safety_labs(*trial, AS_OF)


def shifts(data):
    return {(r.test, r.level, None if pd.isna(r.baseline_grade) else int(r.baseline_grade), int(r.worst_grade)): r.n
            for r in labs.shift_table(data).itertuples()}


def row(data, sid, test, day):
    r = data.results
    return r[(r.subject_id == sid) & (r.test == test) & (r.collected_at.dt.strftime("%Y-%m-%d") == day)].iloc[0]


# ----------------------------------------------------------------------------------- CTCAE v5 edges and units

CUTS = [  # (test, value, expected grade); LLN/ULN: neutrophils 2.0, lymphocytes 1.0, platelets 150, Hb 120 g/L,
    # ALT/AST 40, bilirubin 20, creatinine 100. A value exactly on a cut belongs to the milder grade.
    *[("Neutrophils", v, g) for v, g in [(2.1, 0), (2.0, 0), (1.99, 1), (1.5, 1), (1.49, 2), (1.0, 2), (0.99, 3),
                                         (0.5, 3), (0.49, 4), (0.0, 4)]],
    *[("Lymphocytes", v, g) for v, g in [(1.0, 0), (0.99, 1), (0.8, 1), (0.79, 2), (0.5, 2), (0.49, 3), (0.2, 3),
                                         (0.19, 4)]],
    *[("Platelets", v, g) for v, g in [(150, 0), (149, 1), (75, 1), (74.9, 2), (50, 2), (49.9, 3), (25, 3), (24.9, 4)]],
    *[("Hemoglobin", v, g) for v, g in [(120, 0), (119, 1), (100, 1), (99.9, 2), (80, 2), (79.9, 3), (30, 3)]],
    *[(t, v, g) for t in ("ALT", "AST") for v, g in [(40, 0), (40.1, 1), (120, 1), (120.1, 2), (200, 2), (200.1, 3),
                                                       (800, 3), (800.1, 4)]],
    *[("Bilirubin", v, g) for v, g in [(20, 0), (20.1, 1), (30, 1), (30.1, 2), (60, 2), (60.1, 3), (200, 3),
                                       (200.1, 4)]],
    *[("Creatinine", v, g) for v, g in [(100, 0), (101, 1), (150, 1), (151, 2), (300, 2), (301, 3), (600, 3),
                                        (601, 4)]],
]
LIMITS = {"Neutrophils": (2.0, 7.5), "Lymphocytes": (1.0, 4.0), "Platelets": (150, 400), "Hemoglobin": (120, 160),
          "ALT": (0, 40), "AST": (0, 40), "Bilirubin": (3, 20), "Creatinine": (60, 100)}


@pytest.mark.parametrize("test,value,expected", CUTS, ids=[f"{t}-{v}-G{g}" for t, v, g in CUTS])
def test_ctcae_v5_grade_bands_put_a_value_on_a_cut_in_the_milder_grade(test, value, expected):
    assert grade(test, value, *LIMITS[test]) == expected


@pytest.mark.parametrize("test,value,lln,unit,expected", [
    ("Neutrophils", 1500, 2000, "/uL", 1),  # 1.5 x10^9/L: G1
    ("Neutrophils", 1490, 2000, "/uL", 2),  # 1.49: G2
    ("Neutrophils", 400, 2000, "cells/uL", 4),  # 0.4 < 0.5: G4
    ("Neutrophils", 2000, 2000, "cells/uL", 0),  # == LLN
    ("Platelets", 49.9, 150, "10^3/uL", 3),
    ("Platelets", 40, 150, "", 3),  # empty unit: the grading unit
    ("Lymphocytes", 0.3, 1.0, " 10^9/L ", 3),
    ("Hemoglobin", 10.0, 12.0, "g/dL", 1),  # 100 g/L: G1
    ("Hemoglobin", 9.9, 12.0, "g/dL", 2),
    ("Hemoglobin", 8.0, 12.0, "g/dL", 2),  # 80 g/L: G2
    ("Hemoglobin", 7.9, 12.0, "g/dL", 3),
    ("Hemoglobin", 79, 120, "g/L", 3),
    ("Neutrophils", 0.4, 2.0, "mmol/L", None),  # unknown unit: not graded
    ("Hemoglobin", 7.0, 8.0, "mmol/L", None),
    ("Platelets", 10, 150, "g/L", None),
])
def test_ctcae_v5_counts_convert_from_per_microlitre_and_hemoglobin_from_g_per_dl_unknown_unit_is_not_graded(
        test, value, lln, unit, expected):
    assert grade(test, value, lln, None, unit) == expected


def test_ctcae_v5_needs_the_limit_it_grades_against_a_known_test_and_a_value():
    assert grade("Neutrophils", 0.4, None, 7.5) is None  # no LLN
    assert grade("ALT", 400, 0, None) is None  # no ULN
    assert grade("ALT", 400, None, 40) == 3  # ALT needs only the ULN (10xULN: G3)
    assert grade("Platelets", 40, 150, None) == 3  # platelets need only the LLN
    assert grade("CA19-9", 500, 0, 37) is None  # not a CTCAE-graded lab
    assert grade("Neutrophils", None, 2.0, 7.5) is None


# ------------------------------------------------------------------------------------ baseline and grade source

def test_baseline_is_the_last_result_on_or_before_the_first_dose_day_of_any_treatment(data):
    r = data.results
    baseline = {(b.subject_id, b.test): (b.collected_at.strftime("%Y-%m-%d"), b.value)
                for b in r[r.baseline].itertuples()}
    assert baseline == {
        ("101", "Neutrophils"): ("2025-01-05", 2.5),  # lymphodepletion day, not 01-07 (before VIRUS on 01-08)
        ("102", "Neutrophils"): ("2025-01-09", 1.8),  # the later of two pre-dose values
        ("102", "Hemoglobin"): ("2025-01-09", 13.0),
        ("102", "ALT"): ("2025-01-10", 50), ("102", "Bilirubin"): ("2025-01-10", 10),  # on the dose day
        ("201", "ALT"): ("2025-02-01", 160)}  # 103 and 203 (dosed after as-of) have no baseline
    assert not row(data, "102", "ALT", "2025-01-10").post_baseline  # the dose-day baseline is not post-baseline
    assert row(data, "101", "Neutrophils", "2025-01-07").post_baseline  # after lymphodepletion, before VIRUS
    assert not r[r.subject_id.isin(["103", "203"])].post_baseline.any()
    assert set(r.subject_id) == {"101", "102", "103", "201", "202", "203", "204"}  # 301 enrolled after as-of
    assert "CA19-9" not in set(r.test)  # only hematology and chemistry
    assert r.collected_at.max() <= pd.Timestamp("2025-03-15 23:59:59")  # 101's 03-20 result is cut


def test_a_reported_grade_is_kept_and_an_empty_grade_is_derived_from_value_by_ctcae_v5(data):
    reported = row(data, "102", "Neutrophils", "2025-01-12")  # 0.9 would be G3 by value; lab reported 2
    derived = row(data, "102", "Neutrophils", "2025-01-19")  # 0.9, empty grade -> G3 (<1.0-0.5)
    hb = row(data, "102", "Hemoglobin", "2025-01-15")  # 7.9 g/dL = 79 g/L -> G3 (<80)
    ungradable = row(data, "201", "Lymphocytes", "2025-02-10")  # unit %
    assert (reported.grade, reported.grade_source) == (2, "reported")
    assert (derived.grade, derived.grade_source) == (3, "CTCAE v5 from value")
    assert (hb.grade, hb.grade_source) == (3, "CTCAE v5 from value")
    assert pd.isna(ungradable.grade) and ungradable.grade_source == ""
    assert row(data, "201", "Platelets", "2025-02-10").grade == 3  # empty unit graded in 10^9/L
    assert row(data, "201", "ALT", "2025-02-10").xuln == pytest.approx(3.0)


UNIT_CASES = [  # (test, value, LLN, unit, expected): the unit rules of the test above
    ("Neutrophils", 1500, 2000, "/uL", 1), ("Neutrophils", 1490, 2000, "/uL", 2),
    ("Neutrophils", 400, 2000, "cells/uL", 4), ("Neutrophils", 2000, 2000, "cells/uL", 0),
    ("Platelets", 49.9, 150, "10^3/uL", 3), ("Platelets", 40, 150, "", 3), ("Lymphocytes", 0.3, 1.0, " 10^9/L ", 3),
    ("Hemoglobin", 10.0, 12.0, "g/dL", 1), ("Hemoglobin", 9.9, 12.0, "g/dL", 2), ("Hemoglobin", 7.9, 12.0, "g/dL", 3),
    ("Neutrophils", 0.4, 2.0, "mmol/L", None), ("Platelets", 10, 150, "g/L", None)]


def test_the_page_grades_in_sql_by_the_same_ctcae_v5_bands_units_and_missing_limits(tmp_path):
    """The Safety labs query grades every empty grade at once; each hand-graded case above, given to it as
    a result without a grade, comes back with the same grade, and a reported grade is kept."""
    rows, expected = [], []

    def add(test, value, lo, hi, unit, grade_expected, reported=""):
        at = f"2025-02-01T00:{len(rows) // 60:02d}:{len(rows) % 60:02d}"
        rows.append(dict(study_id="S1", subject_id="101", collected_at=at, category="chemistry", test=test,
                         value=value, unit=unit, lloq="", ref_low=lo, ref_high=hi, grade=reported))
        expected.append((at, grade_expected, "reported" if reported else "" if grade_expected is None
                         else "CTCAE v5 from value"))
    for test, value, grade_expected in CUTS:
        add(test, value, *LIMITS[test], "", grade_expected)
    for test, value, lln, unit, grade_expected in UNIT_CASES:
        add(test, value, lln, "", unit, grade_expected)
    add("Neutrophils", 0.4, "", 7.5, "", None)  # no LLN
    add("ALT", 400, 0, "", "U/L", None)  # no ULN
    add("ALT", 400, "", 40, "U/L", 3)  # ALT needs only the ULN
    add("CA19-9", 500, 0, 37, "U/mL", None)  # not CTCAE-graded
    add("ALT", 130, "", 40, "U/L", 4, reported="4")  # 3.25xULN would be G2: the lab's grade stands
    db, study = one_study_db(tmp_path / "grades.duckdb", subjects=[subject("101", 1, "2025-01-02")],
                             administrations=[dose("101", "2025-01-05")], lab_results=rows)
    r = labs.load_safety_labs(db, study, AS_OF).results.sort_values("collected_at")
    got = [(at.strftime("%Y-%m-%dT%H:%M:%S"), None if pd.isna(g) else int(g), source)
           for at, g, source in zip(r.collected_at, r.grade, r.grade_source)]
    assert got == expected


# ------------------------------------------------------------------------------------------------ shift table

def test_shift_table_counts_subjects_by_baseline_grade_and_worst_post_baseline_grade(data):
    assert shifts(data) == {
        ("Neutrophils", 1, 0, 4): 1,  # 101: baseline 2.5, worst 0.4 after lymphodepletion
        ("Neutrophils", 1, 1, 3): 1,  # 102: baseline 1.8; post 2 (reported), 3, 2
        ("Neutrophils", 2, None, 1): 1,  # 201: no baseline; 1.7, 1.5
        ("Hemoglobin", 1, 0, 3): 1,
        ("Platelets", 2, None, 3): 1,
        ("ALT", 2, 2, 1): 1,  # 201: pre-dose 4xULN, post 3xULN (G1)
        ("ALT", 2, None, 1): 1,  # 202: 2.975xULN
        ("ALT", 2, None, 2): 1,  # 204: exactly 5xULN is G2
        ("AST", 2, None, 1): 1,
        ("Bilirubin", 2, None, 2): 2,  # 201 and 202: exactly 2xULN
        ("Bilirubin", 2, None, 1): 1,  # 204: 1.45xULN
    }  # 102's dose-day ALT/bilirubin are baseline only; 103, 203, 301 absent


def test_shift_matrix_shows_missing_baseline_and_worst_grades_across(data):
    m = labs.shift_matrix(labs.shift_table(data), "Neutrophils", data.study)
    assert m[["Dose level", "Baseline grade", "Worst 1", "Worst 3", "Worst 4", "Subjects"]].values.tolist() == [
        ["1e8 PFU", "0", 0, 0, 1, 1], ["1e8 PFU", "1", 0, 1, 0, 1], ["1e9 PFU", "missing", 1, 0, 0, 1]]


# --------------------------------------------------------------------------------------------- eDISH, Hy's law

@pytest.mark.parametrize("alt,bili,quadrant", [
    (3.0, 2.0, "Possible Hy's law"), (2.999, 2.0, "Hyperbilirubinemia"),
    (3.0, 1.999, "Temple's corollary"), (2.999, 1.999, "Normal range"), (10, 0.5, "Temple's corollary")])
def test_hys_law_quadrant_alt_at_least_3x_and_bilirubin_at_least_2x_uln(alt, bili, quadrant):
    assert labs.hys_law_quadrant(alt, bili) == quadrant


def test_liver_peaks_take_the_highest_xuln_from_the_first_dose_day_on(data):
    peaks = labs.liver_peaks(data)
    got = {p.subject_id: (p.level, round(p.peak_alt_xuln, 4), round(p.peak_bili_xuln, 4), p.hys_law_quadrant)
           for p in peaks.itertuples()}
    assert got == {
        "102": (1, 1.25, 0.5, "Normal range"),  # dose-day results count
        "201": (2, 3.0, 2.0, "Possible Hy's law"),  # pre-dose ALT 4xULN ignored; both exactly at the edges
        "202": (2, 2.975, 2.0, "Hyperbilirubinemia"),  # peaks on different days
        "204": (2, 5.0, 1.45, "Temple's corollary"),
    }  # 203 (dosed after as-of) has no peaks
    assert peaks.set_index("subject_id").loc["201", "peak_ast_xuln"] == pytest.approx(1.5)


# ------------------------------------------------------------------------------------------- nadir, recovery

def nadirs(data, test="Neutrophils"):
    return {n.subject_id: (n.baseline_value if pd.notna(n.baseline_value) else None, n.nadir_value,
                           int(n.nadir_day), None if pd.isna(n.nadir_grade) else int(n.nadir_grade), n.recovery)
            for n in labs.nadir_recoveries(data, (test,))[test].itertuples()}


def test_nadir_is_from_the_agents_first_dose_and_recovery_is_the_first_later_grade_1_or_less(data):
    assert nadirs(data) == {
        "101": (2.5, 0.6, 6, 3, "day 17"),  # 0.4 the day before VIRUS is not the nadir; 1.2 (G2) on d12 not recovery
        "102": (1.8, 0.9, 2, 2, "not recovered"),  # tie 0.9 on d2/d9: first occurrence; 1.3 on d22 is G2
        "201": (None, 1.5, 14, 1, "no grade ≥2"),  # nadir exactly 1.5 is G1
    }  # 103 never dosed, 203 dosed after as-of
    recovered = labs.nadir_recoveries(data)["Neutrophils"].set_index("subject_id")
    assert recovered.loc["101", "recovery_day"] == 17 and pd.isna(recovered.loc["102", "recovery_day"])
    assert nadirs(data, "Hemoglobin") == {"102": (13.0, 7.9, 5, 3, "not recovered")}


# ------------------------------------------------------------------------------------------- grade >=3 listing

def test_grade_3_or_worse_listing_by_level_subject_and_time(data):
    listing = labs.high_grade_listing(data)
    got = [(r.subject_id, r.test, r.collected_at.strftime("%m-%d"), r.agent_day, r.grade, r.grade_source)
           for r in listing.itertuples()]
    v = "CTCAE v5 from value"
    assert got == [
        ("101", "Neutrophils", "01-07", -1, 4, v), ("101", "Neutrophils", "01-10", 2, 3, v),
        ("101", "Neutrophils", "01-14", 6, 3, v),
        ("102", "Hemoglobin", "01-15", 5, 3, v), ("102", "Neutrophils", "01-19", 9, 3, v),  # 01-12 reported G2
        ("201", "Platelets", "02-10", 7, 3, v)]  # 101's 03-20 and 301's results are after as-of


# ------------------------------------------------------------------------------------------------- as-of cut

def test_as_of_cut_drops_later_results_subjects_and_recoveries(trial):
    early = labs.load_safety_labs(*trial, D("2025-01-15"))  # Hb at 09:00 on 01-15 is in
    assert set(early.results.subject_id) == {"101", "102"}  # 103's only lab is 01-20; 2xx enrolled later
    assert nadirs(early) == {"101": (2.5, 0.6, 6, 3, "not recovered"), "102": (1.8, 0.9, 2, 2, "not recovered")}
    assert shifts(early) == {("Neutrophils", 1, 0, 4): 1, ("Neutrophils", 1, 1, 2): 1, ("Hemoglobin", 1, 0, 3): 1}
    assert labs.labs_json(early)["liver"] == [dict(subject_id="102", level=1, peak_alt_xuln=1.25,
                                                   peak_bili_xuln=0.5, hys_law_quadrant="Normal range")]


def test_a_subject_given_only_lymphodepletion_by_as_of_has_shifts_but_no_agent_nadir(trial):
    data = labs.load_safety_labs(*trial, D("2025-01-07"))  # 101: cyclophosphamide 01-05, VIRUS (01-08) not yet
    assert shifts(data) == {("Neutrophils", 1, 0, 4): 1}  # 2.5 on 01-05 -> 0.4 on 01-07
    assert labs.nadir_recoveries(data)["Neutrophils"].empty


# ---------------------------------------------------------------------------------------------------- labs_json

def test_labs_json_has_the_shift_and_liver_sections_with_plain_values(data):
    out = labs.labs_json(data)
    assert set(out) == {"shift", "liver"}
    assert all(set(s) == {"test", "level", "baseline_grade", "worst_grade", "n"} for s in out["shift"])
    assert {(s["test"], s["level"], s["baseline_grade"], s["worst_grade"]): s["n"] for s in out["shift"]} \
        == shifts(data)
    assert all(type(s["level"]) is int and type(s["n"]) is int for s in out["shift"])
    assert dict(test="Neutrophils", level=2, baseline_grade=None, worst_grade=1, n=1) in out["shift"]
    assert out["liver"] == [
        dict(subject_id="102", level=1, peak_alt_xuln=1.25, peak_bili_xuln=0.5, hys_law_quadrant="Normal range"),
        dict(subject_id="201", level=2, peak_alt_xuln=3.0, peak_bili_xuln=2.0, hys_law_quadrant="Possible Hy's law"),
        dict(subject_id="202", level=2, peak_alt_xuln=2.975, peak_bili_xuln=2.0,
             hys_law_quadrant="Hyperbilirubinemia"),
        dict(subject_id="204", level=2, peak_alt_xuln=5.0, peak_bili_xuln=1.45, hys_law_quadrant="Temple's corollary")]


# ------------------------------------------------------------------------------------------------- empty cases

def check_empty(data):
    assert labs.shift_table(data).empty and labs.liver_peaks(data).empty
    assert labs.nadir_recoveries(data)["Neutrophils"].empty and labs.high_grade_listing(data).empty
    assert labs.labs_json(data) == {"shift": [], "liver": []}
    labs.shift_matrix(labs.shift_table(data), "Neutrophils", data.study)


def test_a_study_without_lab_results_gives_empty_tables(tmp_path):
    check_empty(labs.load_safety_labs(*make_db(tmp_path, lab_rows=[]), AS_OF))


def test_as_of_before_any_dose_gives_no_post_baseline_results(trial):
    data = labs.load_safety_labs(*trial, D("2025-01-04"))  # 101 (01-03) and 102 (01-02) have pre-dose labs only
    assert len(data.results) == 2 and not data.results.baseline.any() and not data.results.post_baseline.any()
    check_empty(data)


def course_rows(subjects: int, level: int = 1, days=(8,), value=lambda i, day: 1.0 + i) -> list[dict]:
    return [dict(subject_id=f"S{level}-{i:04d}", level=level, label=f"L{level}", test="Neutrophils", agent_day=day,
                 value=value(i, day), unit="10^9/L", ref_low=2.0, grade=0) for i in range(subjects) for day in days]


def test_course_quartiles_per_level_and_day_leave_out_sparse_days():
    course = pd.DataFrame(course_rows(10, days=(8,)) + course_rows(9, days=(15,))   # day 15: 9 results
                          + course_rows(10, level=2, days=(8,), value=lambda i, day: 100.0)
                          + [dict(course_rows(1)[0], test="Platelets", value=-5.0)])
    quartiles = labs.course_quartiles(course, "Neutrophils")
    # Level 1, day 8: values 1..10; linear interpolation puts the 25th percentile at position 2.25 of 0..9.
    assert quartiles.to_dict("records") == [
        dict(level=1, agent_day=8, n=10, median=5.5, q1=3.25, q3=7.75),
        dict(level=2, agent_day=8, n=10, median=100.0, q1=100.0, q3=100.0)]


def test_lab_course_draws_lines_up_to_the_limit_and_quartile_bands_past_it():
    from smc.charts.labs import lab_course
    levels = {1: "L1"}
    nadirs = pd.DataFrame(dict(subject_id=["S1-0000", "S1-0001"], nadir_day=[8, 400], nadir_value=[1.0, 0.1],
                               recovery=["no grade ≥2", "not recovered"]))
    few = pd.DataFrame(course_rows(MAX_SUBJECT_LINES, days=(1, 8)))
    lines = lab_course(few, nadirs, "Neutrophils", levels, 28, "VIRUS", "t").data
    assert [t.name for t in lines] == ["L1", "Nadir"]
    assert {row[0] for row in lines[0].customdata if isinstance(row[0], str)} == set(few["subject_id"])  # gaps: NaN
    assert list(lines[1].x) == [8]  # the day-400 nadir lies beyond the drawn days (to 3 × 28)
    many = pd.DataFrame(course_rows(MAX_SUBJECT_LINES + 1, days=(1, 8)))
    bands = lab_course(many, nadirs, "Neutrophils", levels, 28, "VIRUS", "t").data
    assert [t.name for t in bands] == ["L1 75th percentile", "L1 25th percentile", "L1"]
    median = bands[2]
    assert list(median.x) == [1, 8] and list(median.y) == [101.0, 101.0]  # values 1..201
    assert [list(row) for row in median.customdata] == [[51.0, 151.0, 201]] * 2
    assert list(bands[0].y) == [151.0, 151.0] and bands[1].fill == "tonexty"


def test_lab_course_mode_follows_the_subjects_the_page_counts():
    """The page titles the chart from the whole course; the chart must draw what the title says even when a
    subject's only result lies outside the drawn days."""
    from smc.charts.labs import lab_course
    course = pd.DataFrame(course_rows(MAX_SUBJECT_LINES, days=(1, 8))
                          + [dict(course_rows(1)[0], subject_id="S-late", agent_day=400)])
    assert labs.course_as_quartiles(course, "Neutrophils")  # 201 subjects: the page's title says percentiles
    nadirs = pd.DataFrame(columns=["subject_id", "nadir_day", "nadir_value", "recovery"])
    traces = lab_course(course, nadirs, "Neutrophils", {1: "L1"}, 28, "VIRUS", "t").data
    assert [t.name for t in traces] == ["L1 75th percentile", "L1 25th percentile", "L1"]
    assert list(traces[2].customdata[:, 2]) == [MAX_SUBJECT_LINES, MAX_SUBJECT_LINES]  # day 400 is not drawn
