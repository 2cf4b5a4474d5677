"""Safety counting (smc.safety) and the subject profile (smc.subject_profile) on a tiny study.

Every expected number below is worked out by hand from the fixture (see TRIAL).
Study S1 escalates VIRUS (DLT window 28 days); subject 101 gets lymphodepletion
(cyclophosphamide) three days before VIRUS. As of 2025-03-15 (AS_OF):

  level 1 (N=2): 101 dosed 01-05 (cyclo) / 01-08 (VIRUS), 102 dosed 01-10, 103 never dosed
  level 2 (N=2): 201 dosed 02-03, 202 (expansion) dosed 02-12, 203 dosed only on 03-20 (after as-of)
  level 3 (N=0): 301 enrolled, never dosed
"""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from smc.analysis import safety
from smc.analysis.safety import AeFilters, apply_filters, load_safety
from smc.analysis.subject_profile import load_subject_profile
from tests.helpers import one_study_db

D = dt.date.fromisoformat
AS_OF = D("2025-03-15")
GEN = "General disorders and administration site conditions"
GI, IMM = "Gastrointestinal disorders", "Immune system disorders"
INF, INV, NERV, SKIN = "Infections and infestations", "Investigations", "Nervous system disorders", "Skin disorders"
PYR, NAU, DIA, CRS, SEP, NCD = ("Pyrexia", "Nausea", "Diarrhoea", "Cytokine release syndrome", "Sepsis",
                                "Neutrophil count decreased")
ANY = ("Any TEAE", "")


def subject(sid, level, enrolled, phase="escalation", **extra):
    return dict(study_id="S1", subject_id=sid, dose_level=level, enrollment_date=enrolled, phase=phase, **extra)


def dose(sid, date, agent="VIRUS"):
    return dict(study_id="S1", subject_id=sid, agent=agent, admin_date=date)


def ae(sid, seq, term, soc, onset, grade, end="", serious="N", related="N", dlt="N", outcome="Recovered"):
    return dict(study_id="S1", subject_id=sid, ae_seq=seq, term=term, soc=soc, onset_date=onset, end_date=end,
                grade=grade, serious=serious, related=related, dlt=dlt, outcome=outcome)


TRIAL = dict(
    subjects=[
        subject("101", 1, "2025-01-02", off_treatment_date="2025-02-15"),
        subject("102", 1, "2025-01-03"),
        subject("103", 1, "2025-01-04"),
        subject("201", 2, "2025-02-01"),
        subject("202", 2, "2025-02-10", phase="expansion", death_date="2025-03-05"),
        subject("203", 2, "2025-03-01"),
        subject("301", 3, "2025-03-10"),
    ],
    administrations=[
        dose("101", "2025-01-05", agent="cyclophosphamide"), dose("101", "2025-01-08"), dose("102", "2025-01-10"),
        dose("201", "2025-02-03"), dose("202", "2025-02-12"), dose("203", "2025-03-20"),
    ],
    adverse_events=[
        ae("101", 1, NAU, GI, "2025-01-03", 1, end="2025-01-04"),  # before any dose: baseline
        ae("101", 2, NCD, INV, "2025-01-06", 3),  # after lymphodepletion, before VIRUS: TEAE, day 1
        ae("101", 3, PYR, GEN, "2025-01-09", 2, related="Y"),
        ae("101", 4, PYR, GEN, "2025-01-15", 4, serious="Y", related="Y", dlt="Y"),  # DLT, day 10
        ae("102", 1, PYR, GEN, "2025-01-10", 1, related="Y"),  # day 0: on the day of first dose
        ae("102", 2, NAU, GI, "2025-01-12", 2),
        ae("102", 3, "Rash", SKIN, "2025-03-20", 3),  # onset after as-of
        ae("103", 1, "Headache", NERV, "2025-01-20", 1),  # never dosed: baseline
        ae("201", 1, PYR, GEN, "2025-02-04", 2),
        ae("201", 2, CRS, IMM, "2025-02-05", 3, end="2025-03-30", serious="Y", related="Y", dlt="Y"),
        ae("201", 3, DIA, GI, "2025-02-06", 1),
        ae("202", 1, PYR, GEN, "2025-02-13", 3),
        ae("202", 2, SEP, INF, "2025-03-01", 5, serious="Y", outcome="Fatal"),  # day 17
        ae("203", 1, NAU, GI, "2025-03-10", 1),  # dosed only after as-of: baseline
        ae("203", 2, "Rash", SKIN, "2025-03-21", 2),
    ],
)


def make_study(tmp_path, subjects, administrations, adverse_events):
    return one_study_db(tmp_path / "s1.duckdb", subjects=subjects, administrations=administrations,
                        adverse_events=adverse_events)


@pytest.fixture()
def trial(tmp_path):
    return make_study(tmp_path, **TRIAL)


@pytest.fixture()
def data(trial):
    return load_safety(*trial, AS_OF)


def summary(data, column="n_any"):
    """{(soc, term): {level: value}} and the row order, from the long ae_summary/grade_summary."""
    long = safety.ae_summary(data) if column in ("n_any", "n_grade3", "n_dosed") else safety.grade_summary(data)
    table = {}
    for r in long.itertuples():
        table.setdefault((r.soc, r.term), {})[r.level] = getattr(r, column)
    return table


def cells(data, view):
    frame = safety.heatmap_cells(data, view)
    return {(r.term, r.level): (r.n_subjects, r.n_dosed, r.percent, r.worst_grade) for r in frame.itertuples()}


# --------------------------------------------------------------------------- counting once at the worst grade


def test_a_subject_with_a_term_twice_counts_once_at_the_worst_grade_everywhere(tmp_path):
    data = load_safety(*make_study(
        tmp_path, [subject("101", 1, "2025-01-02")], [dose("101", "2025-01-05")],
        [ae("101", 1, PYR, GEN, "2025-01-06", 2), ae("101", 2, PYR, GEN, "2025-01-20", 4)]), AS_OF)
    rows = [ANY, (GEN, ""), (GEN, PYR)]
    assert safety.row_order(data) == rows
    for row in rows:
        assert summary(data, "n_any")[row] == {1: 1, "Total": 1}
        assert summary(data, "n_grade3")[row] == {1: 1, "Total": 1}
        for grade in (1, 2, 3, 4, 5):
            assert summary(data, f"grade_{grade}")[row] == {1: int(grade == 4), "Total": int(grade == 4)}
    assert cells(data, "All TEAEs") == {(PYR, 1): (1, 1, 100.0, 4)}


def test_each_subject_counts_once_per_term_soc_and_any_teae_row_across_two_levels_and_total(data):
    n_any, n_g3, n_dosed = summary(data, "n_any"), summary(data, "n_grade3"), summary(data, "n_dosed")
    assert n_any == {
        ANY: {1: 2, 2: 2, "Total": 4}, (GEN, ""): {1: 2, 2: 2, "Total": 4}, (GEN, PYR): {1: 2, 2: 2, "Total": 4},
        (GI, ""): {1: 1, 2: 1, "Total": 2}, (GI, DIA): {1: 0, 2: 1, "Total": 1}, (GI, NAU): {1: 1, 2: 0, "Total": 1},
        (IMM, ""): {1: 0, 2: 1, "Total": 1}, (IMM, CRS): {1: 0, 2: 1, "Total": 1},
        (INF, ""): {1: 0, 2: 1, "Total": 1}, (INF, SEP): {1: 0, 2: 1, "Total": 1},
        (INV, ""): {1: 1, 2: 0, "Total": 1}, (INV, NCD): {1: 1, 2: 0, "Total": 1}}
    assert n_g3[ANY] == {1: 1, 2: 2, "Total": 3}  # 101 (4); 201 (3), 202 (5); 102's worst is 2
    assert n_g3[(GEN, PYR)] == {1: 1, 2: 1, "Total": 2}  # 101 (4), 202 (3)
    assert n_g3[(GI, "")] == {1: 0, 2: 0, "Total": 0}
    assert all(counts == {1: 2, 2: 2, "Total": 4} for counts in n_dosed.values())


def test_grade_summary_counts_each_subject_under_its_worst_grade_in_the_row(data):
    by_grade = {g: summary(data, f"grade_{g}") for g in (1, 2, 3, 4, 5)}
    # Any TEAE: 101 worst 4, 102 worst 2 | 201 worst 3, 202 worst 5
    assert [by_grade[g][ANY] for g in (1, 2, 3, 4, 5)] == [
        {1: 0, 2: 0, "Total": 0}, {1: 1, 2: 0, "Total": 1}, {1: 0, 2: 1, "Total": 1},
        {1: 1, 2: 0, "Total": 1}, {1: 0, 2: 1, "Total": 1}]
    # Pyrexia: 101 worst 4 (not also 2), 102 grade 1 | 201 grade 2, 202 grade 3
    assert [by_grade[g][(GEN, PYR)] for g in (1, 2, 3, 4, 5)] == [
        {1: 1, 2: 0, "Total": 1}, {1: 0, 2: 1, "Total": 1}, {1: 0, 2: 1, "Total": 1},
        {1: 1, 2: 0, "Total": 1}, {1: 0, 2: 0, "Total": 0}]


def test_rows_are_socs_by_subjects_then_terms_by_subjects_with_ties_broken_by_name(data):
    assert safety.row_order(data) == [
        ANY, (GEN, ""), (GEN, PYR), (GI, ""), (GI, DIA), (GI, NAU), (IMM, ""), (IMM, CRS),
        (INF, ""), (INF, SEP), (INV, ""), (INV, NCD)]
    long = safety.ae_summary(data)
    assert list(long["level"][:3]) == [1, 2, "Total"] and tuple(long.iloc[0][["soc", "term"]]) == ANY


# --------------------------------------------------------------------------- treatment emergence and as-of


def test_an_ae_before_any_dose_is_baseline_and_one_after_lymphodepletion_is_treatment_emergent(data):
    teae = set(zip(data.teae["subject_id"], data.teae["ae_seq"]))
    baseline = set(zip(data.baseline["subject_id"], data.baseline["ae_seq"]))
    assert baseline == {("101", 1), ("103", 1), ("203", 1)}
    assert teae == {("101", 2), ("101", 3), ("101", 4), ("102", 1), ("102", 2),
                    ("201", 1), ("201", 2), ("201", 3), ("202", 1), ("202", 2)}
    days = dict(zip(zip(data.teae["subject_id"], data.teae["ae_seq"]), data.teae["day"]))
    assert days[("101", 2)] == 1 and days[("101", 4)] == 10 and days[("102", 1)] == 0


def test_as_of_excludes_later_onsets_and_later_doses_from_counts_and_denominators(trial):
    data = load_safety(*trial, AS_OF)
    assert data.n_dosed() == {1: 2, 2: 2, 3: 0}  # 103 and 301 never dosed; 203 dosed after as-of
    assert "Rash" not in set(data.teae["term"]) | set(data.baseline["term"])  # onsets 03-20, 03-21
    later = load_safety(*trial, D("2025-04-01"))
    assert later.n_dosed() == {1: 2, 2: 3, 3: 0}
    assert set(later.teae.query("subject_id == '203'")["term"]) == {"Rash"}
    assert set(later.baseline.query("subject_id == '203'")["term"]) == {NAU}
    early = load_safety(*trial, D("2025-01-07"))  # 101 has had cyclophosphamide only; 102 not yet dosed
    assert early.n_dosed() == {1: 1, 2: 0, 3: 0}
    assert list(early.teae["term"]) == [NCD] and list(early.baseline["term"]) == [NAU]
    same_day = load_safety(*trial, D("2025-01-10"))  # 102's dose and pyrexia onset fall on the as-of date
    assert same_day.n_dosed()[1] == 2 and ("102", 1) in set(zip(same_day.teae["subject_id"], same_day.teae["ae_seq"]))


def test_an_end_date_after_as_of_is_unknown_and_the_ae_is_ongoing(trial):
    def crs(as_of):
        row = load_safety(*trial, as_of).teae.query("term == @CRS").iloc[0]
        return (None if pd.isna(row["end_date"]) else row["end_date"]), row["outcome"]

    assert crs(AS_OF) == (None, "Ongoing on the as-of date")
    end, outcome = crs(D("2025-04-01"))
    assert pd.Timestamp(end).date() == D("2025-03-30") and outcome == "Recovered"


def test_denominators_count_subjects_dosed_per_level_and_columns_skip_undosed_levels(data):
    assert data.n_dosed() == {1: 2, 2: 2, 3: 0}
    assert data.columns() == [(1, "1e8 PFU", 2), (2, "1e9 PFU", 2)]
    assert safety.column_title(data, "Total") == "Total (N=4)"
    assert safety.tally(data) == {"dosed": 4, "subjects_with_teae": 4, "teae": 10, "baseline": 3}


# --------------------------------------------------------------------------- filters


def test_phase_filter_changes_events_and_denominators(data):
    esc = apply_filters(data, AeFilters(phase="escalation"))
    assert esc.n_dosed() == {1: 2, 2: 1, 3: 0}
    assert summary(esc, "n_any")[ANY] == {1: 2, 2: 1, "Total": 3}
    assert summary(esc, "n_dosed")[ANY] == {1: 2, 2: 1, "Total": 3}
    assert (INF, SEP) not in safety.row_order(esc)  # only 202 (expansion) had sepsis
    assert cells(esc, "All TEAEs")[(PYR, 2)] == (1, 1, 100.0, 2)
    exp = apply_filters(data, AeFilters(phase="expansion"))
    assert exp.columns() == [(2, "1e9 PFU", 1)]
    assert summary(exp, "n_any")[ANY] == {2: 1, "Total": 1}
    assert safety.tally(exp) == {"dosed": 1, "subjects_with_teae": 1, "teae": 2, "baseline": 0}


@pytest.mark.parametrize("filters, teae, subjects_with_teae, baseline", [
    (AeFilters(dlt_only=True), 2, 2, 0),
    (AeFilters(serious_only=True), 3, 3, 0),  # 101 pyrexia, 201 CRS, 202 sepsis
    (AeFilters(related_only=True), 4, 3, 0),  # 101 pyrexia x2, 102 pyrexia, 201 CRS
    (AeFilters(grade3_plus=True), 5, 3, 0),  # 101 (NCD 3, pyrexia 4), 201 (CRS 3), 202 (pyrexia 3, sepsis 5)
    (AeFilters(term_search="  PYREX "), 5, 4, 0),
    (AeFilters(term_search="ausea"), 1, 1, 2),  # 102 is a TEAE; 101 and 203 are baseline
    (AeFilters(term_search="disorders"), 0, 0, 0),  # the SOC is not searched
])
def test_event_filters_narrow_events_but_never_the_denominators(data, filters, teae, subjects_with_teae, baseline):
    filtered = apply_filters(data, filters)
    assert safety.tally(filtered) == {"dosed": 4, "subjects_with_teae": subjects_with_teae, "teae": teae,
                                      "baseline": baseline}
    assert filtered.n_dosed() == {1: 2, 2: 2, 3: 0}
    assert summary(filtered, "n_dosed")[ANY] == {1: 2, 2: 2, "Total": 4}


def test_dlt_filter_table_counts_dlt_subjects_over_all_dosed(data):
    dlt = apply_filters(data, AeFilters(dlt_only=True))
    assert safety.row_order(dlt) == [ANY, (GEN, ""), (GEN, PYR), (IMM, ""), (IMM, CRS)]
    assert summary(dlt, "n_any")[ANY] == {1: 1, 2: 1, "Total": 2}
    assert safety.ae_summary_table(dlt).iloc[0]["Total (N=4) any grade"] == "2 (50%)"


def test_term_search_is_a_case_insensitive_substring_of_the_term(data):
    found = apply_filters(data, AeFilters(term_search="NAUS"))
    assert safety.row_order(found) == [ANY, (GI, ""), (GI, NAU)]
    assert summary(found, "n_any")[(GI, NAU)] == {1: 1, 2: 0, "Total": 1}


def test_phase_and_event_filters_combine(data):
    both = apply_filters(data, AeFilters(phase="escalation", dlt_only=True))
    assert safety.tally(both) == {"dosed": 3, "subjects_with_teae": 2, "teae": 2, "baseline": 0}
    with pytest.raises(ValueError):
        AeFilters(phase="expanded")


# --------------------------------------------------------------------------- heatmap, listings, json


@pytest.mark.parametrize("view, expected", [
    ("DLTs", {(PYR, 1): (1, 2, 50.0, 4), (CRS, 2): (1, 2, 50.0, 3)}),
    ("All TEAEs", {(PYR, 1): (2, 2, 100.0, 4), (PYR, 2): (2, 2, 100.0, 3), (NAU, 1): (1, 2, 50.0, 2),
                   (DIA, 2): (1, 2, 50.0, 1), (CRS, 2): (1, 2, 50.0, 3), (SEP, 2): (1, 2, 50.0, 5),
                   (NCD, 1): (1, 2, 50.0, 3)}),
    ("Grade ≥3", {(PYR, 1): (1, 2, 50.0, 4), (PYR, 2): (1, 2, 50.0, 3), (CRS, 2): (1, 2, 50.0, 3),
                  (SEP, 2): (1, 2, 50.0, 5), (NCD, 1): (1, 2, 50.0, 3)}),
    ("Serious", {(PYR, 1): (1, 2, 50.0, 4), (CRS, 2): (1, 2, 50.0, 3), (SEP, 2): (1, 2, 50.0, 5)}),
    ("Related", {(PYR, 1): (2, 2, 100.0, 4), (CRS, 2): (1, 2, 50.0, 3)}),
])
def test_heatmap_cells_give_subjects_n_of_dosed_n_percent_and_worst_grade(data, view, expected):
    assert cells(data, view) == expected
    assert list(safety.HEATMAP_VIEWS)[0] == "DLTs"


@pytest.mark.parametrize("name, expected", [
    ("DLTs", [("101", 1, 10, PYR), ("201", 2, 2, CRS)]),
    ("Serious AEs", [("101", 1, 10, PYR), ("201", 2, 2, CRS), ("202", 2, 17, SEP)]),
    ("Grade 5 (fatal)", [("202", 2, 17, SEP)]),
])
def test_listings_count_days_from_the_first_dose_of_any_treatment(data, name, expected):
    rows = safety.listing(data.teae, name)
    assert list(rows.columns) == safety.LISTING_COLUMNS
    assert list(zip(rows["subject_id"], rows["level"], rows["day"], rows["term"])) == expected


def test_safety_json_reports_every_level_teae_dlt_and_baseline_count(data):
    out = json.loads(json.dumps(safety.safety_json(data)))
    assert out["n_dosed"] == [{"level": 1, "label": "1e8 PFU", "n_dosed": 2},
                              {"level": 2, "label": "1e9 PFU", "n_dosed": 2},
                              {"level": 3, "label": "1e10 PFU", "n_dosed": 0}]
    key = lambda r: (r["term"], r["soc"], r["level"], r["n_subjects"], r["worst_grade"])
    assert sorted(map(key, out["teae"])) == sorted([
        (PYR, GEN, 1, 2, 4), (PYR, GEN, 2, 2, 3), (NAU, GI, 1, 1, 2), (DIA, GI, 2, 1, 1),
        (CRS, IMM, 2, 1, 3), (SEP, INF, 2, 1, 5), (NCD, INV, 1, 1, 3)])
    assert sorted(map(key, out["dlt"])) == [(CRS, IMM, 2, 1, 3), (PYR, GEN, 1, 1, 4)]
    assert out["n_baseline_events"] == 3


@pytest.mark.parametrize("as_of, n_baseline", [(D("2025-01-04"), 1), (D("2024-12-01"), 0)])
def test_before_any_dose_everything_is_empty_but_the_any_teae_row_shows_zeros(trial, as_of, n_baseline):
    data = load_safety(*trial, as_of)
    assert data.n_dosed() == {1: 0, 2: 0, 3: 0} and data.columns() == [] and len(data.teae) == 0
    assert len(data.baseline) == n_baseline  # 101's nausea on 01-03
    assert safety.ae_summary(data).to_dict("records") == [
        dict(soc="Any TEAE", term="", level="Total", n_any=0, n_grade3=0, n_dosed=0)]
    assert safety.grade_summary(data)[[f"grade_{g}" for g in (1, 2, 3, 4, 5)]].values.tolist() == [[0] * 5]
    assert safety.ae_summary_table(data).iloc[0]["System organ class / term"] == "Any TEAE"
    safety.grade_summary_table(data)
    assert safety.heatmap_cells(data, "DLTs").empty and safety.listing(data.teae, "DLTs").empty
    assert safety.safety_json(data) == {
        "n_dosed": [{"level": lv, "label": f"1e{7 + lv} PFU", "n_dosed": 0} for lv in (1, 2, 3)],
        "teae": [], "dlt": [], "n_baseline_events": n_baseline}


# --------------------------------------------------------------------------- subject profile


def test_profile_is_none_before_enrollment_and_for_an_unknown_subject(trial):
    db, study = trial
    assert load_subject_profile(db, study, D("2025-03-09"), "301") is None
    assert load_subject_profile(db, study, AS_OF, "999") is None
    undosed = load_subject_profile(db, study, AS_OF, "301")
    assert undosed.status == "Enrolled, not yet dosed" and undosed.dlt_window is None


def test_profile_dlt_window_starts_at_the_study_agent_and_days_at_any_treatment(trial):
    p = load_subject_profile(*trial, AS_OF, "101")
    assert p.status == "In follow-up (off treatment)" and p.label == "1e8 PFU"
    assert p.dlt_window == (D("2025-01-08"), D("2025-02-05"))
    assert p.dlt_state == "dlt"
    assert list(zip(p.administrations["agent"], p.administrations["day"])) == [("cyclophosphamide", 0), ("VIRUS", 3)]
    assert list(zip(p.adverse_events["ae_seq"], p.adverse_events["treatment_emergent"])) == [
        (1, False), (2, True), (3, True), (4, True)]
    assert p.day(D("2025-01-15")) == 10


def test_profile_status_and_dlt_state_follow_phase_and_as_of(trial):
    db, study = trial
    assert load_subject_profile(db, study, AS_OF, "102").status == "On treatment"
    assert load_subject_profile(db, study, AS_OF, "102").dlt_state == "evaluable"  # window ended 02-07
    expansion = load_subject_profile(db, study, AS_OF, "202")
    assert expansion.status == "Died 2025-03-05" and expansion.dlt_state is None
    assert expansion.dlt_window == (D("2025-02-12"), D("2025-03-12"))
    assert load_subject_profile(db, study, D("2025-03-04"), "202").status == "On treatment"
    late = load_subject_profile(db, study, AS_OF, "203")  # dosed only after as-of
    assert late.status == "Enrolled, not yet dosed" and late.dlt_window is None
    assert list(late.adverse_events["term"]) == [NAU] and not late.adverse_events["treatment_emergent"].any()
