"""The report's biomarker, efficacy, enrollment and survival sections (``python -m smc report --json``) for every
demo study, checked against the same independent SQL readings of the contract tables as the page tests of
tests/pages (tests.helpers), and the Clopper–Pearson reference those checks use. The report's overview,
escalation, safety and labs sections are checked in test_db_and_cli.py."""
from __future__ import annotations

import json

import pytest

from tests.helpers import (
    COUNTS_SQL,
    STUDIES,
    as_of_dates,
    by_group,
    clopper_pearson,
    cmax_by_subject,
    expected_counts,
    expected_subjects,
    expected_times,
    km_median,
    shedding_counts,
    smc_cli,
)


@pytest.mark.parametrize("study_id", STUDIES)
def test_report_biomarkers_section_matches_sql(demo_db, sql, study_id):
    as_of = as_of_dates(sql, study_id)[0]
    report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--json").stdout)["biomarkers"]
    cmax = {(r["subject_id"], r["test"], r["specimen"]): r["cmax"] for r in report["exposure"]
            if r["cmax"] is not None}
    expected = cmax_by_subject(sql, study_id, as_of)
    assert cmax.keys() == expected.keys() and expected
    assert all(cmax[k] == pytest.approx(v, rel=1e-5) for k, v in expected.items())
    assert all(r["tmax_h"] >= 0 and r["auc"] > 0 for r in report["exposure"] if r["cmax"] is not None)
    assert {(r["specimen"], r["level"]): (r["n_tested"], r["n_detected"]) for r in report["shedding"]} == \
        shedding_counts(sql, study_id, as_of)



def test_clopper_pearson_reference_matches_the_issue_example():
    low, high = clopper_pearson(1, 6)
    assert (round(low * 100, 1), round(high * 100, 1)) == (0.4, 64.1)



@pytest.mark.parametrize("study_id", STUDIES)
def test_report_efficacy_section_matches_sql(demo_db, sql, study_id):
    as_of = as_of_dates(sql, study_id)[0]
    report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--json").stdout)["efficacy"]
    subjects = expected_subjects(sql, study_id, as_of)
    assert {r["subject_id"]: (r["bor"], r["evaluable"]) for r in report["subjects"]} == {
        s: (bor, evaluable) for s, (_, evaluable, bor, _) in subjects.items()}
    for r in report["subjects"]:
        best = subjects[r["subject_id"]][3]
        assert r["best_pct_change"] == (None if best is None else pytest.approx(best, abs=0.006))
    total = expected_counts(subjects)["Total"]
    assert report["total"] == report["by_level"][-1] and report["total"]["level"] is None
    assert {k: report["total"][k] for k in ("n", "cr", "pr", "sd", "pd", "ne")} == {
        k.lower(): v for k, v in total.items()}
    k = total["CR"] + total["PR"]
    assert (report["total"]["orr_lo"], report["total"]["orr_hi"]) == pytest.approx(
        clopper_pearson(k, total["n"]), abs=1e-4)
    assert [r["level"] for r in report["by_level"][:-1]] == sorted(r["level"] for r in report["by_level"][:-1])



@pytest.mark.parametrize("study_id", STUDIES)
def test_report_enrollment_section_matches_sql(demo_db, sql, study_id):
    for as_of in as_of_dates(sql, study_id)[:2]:
        report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--as-of",
                                    as_of.isoformat(), "--json").stdout)["enrollment"]
        screened, failures, enrolled, dosed = sql(COUNTS_SQL, study_id, as_of)[0]
        planned = sql("SELECT planned_enrollment FROM studies WHERE study_id = ?", study_id)[0][0]
        assert {k: report[k] for k in ("screened", "screen_failures", "enrolled", "dosed", "planned")} == dict(
            screened=screened, screen_failures=failures, enrolled=enrolled, dosed=dosed, planned=planned)
        by_site = sql("SELECT site_id, count(*), count(*) FILTER (WHERE enrollment_date <= $2) FROM subjects "
                      "WHERE study_id = $1 AND coalesce(screening_date, enrollment_date) <= $2 GROUP BY 1",
                      study_id, as_of)
        assert sorted((r["site_id"], r["screened"], r["enrolled"]) for r in report["by_site"]) == sorted(by_site)



@pytest.mark.parametrize("study_id", STUDIES)
def test_report_survival_section_matches_sql(demo_db, sql, study_id):
    for as_of in as_of_dates(sql, study_id)[:2]:
        report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--as-of",
                                    as_of.isoformat(), "--json").stdout)["survival"]
        assert set(report) == {"os", "pfs", "dor"}
        levels = [level for (level,) in sql("SELECT level FROM dose_levels WHERE study_id = ? ORDER BY level",
                                            study_id)]
        labels = dict(sql("SELECT level, label FROM dose_levels WHERE study_id = ?", study_id))
        for endpoint in ("os", "pfs"):
            expected = expected_times(sql, endpoint, study_id, as_of)
            groups = by_group(expected, 0)
            rows = report[endpoint]
            assert [r["group"] for r in rows] == [*levels, "all"]
            for r in rows:
                times = ([(d, e) for _, _, d, e in expected.values()] if r["group"] == "all"
                         else groups.get(labels[r["group"]], []))
                assert (r["n"], r["events"]) == (len(times), sum(e for _, e in times)), (endpoint, r)
                assert r["median"] == km_median(times)


def test_report_escalation_gains_stages_for_the_staged_study_only(demo_db, sql):
    """IDOV-SAFE and IX001 have one stage: no ``stages`` key. BIOTTT001 lists its two stages in order, the first
    equal to the top-level fields, the combination's enrolled per level as subject_stages says."""
    for study_id in ("IDOV-SAFE", "IX001"):
        report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", study_id, "--json").stdout)
        assert "stages" not in report["escalation"]
    report = json.loads(smc_cli("report", "--db", str(demo_db), "--study", "BIOTTT001", "--json").stdout)
    escalation = report["escalation"]
    first, combination = escalation["stages"]
    assert (first["stage"], first["agent"], first["dlt_window_days"]) == ("monotherapy", "BioTTT001", 28)
    assert (combination["stage"], combination["agent"], combination["ceiling_stage"]) == (
        "combination", "toripalimab", "monotherapy")
    assert {k: first[k] for k in ("levels", "recommendation", "boin")} == {
        k: escalation[k] for k in ("levels", "recommendation", "boin")}
    entered = dict(sql("SELECT ss.dose_level, count(*) FROM subject_stages ss JOIN subjects s USING (study_id, "
                       "subject_id) WHERE ss.study_id = 'BIOTTT001' AND s.phase = 'escalation' AND ss.start_date <= "
                       "(SELECT data_cut_date FROM studies WHERE study_id = 'BIOTTT001') GROUP BY 1"))
    assert {r["level"]: r["n_enrolled"] for r in combination["levels"]} == {
        r["level"]: entered.get(r["level"], 0) for r in combination["levels"]}
    # the highest level cleared in monotherapy caps the combination (3 subjects at 5×10^8 VP without a DLT)
    cleared = max(r["level"] for r in first["levels"] if r["status"] == "cleared")
    assert combination["ceiling_level"] == cleared == 2
