"""AppTest: the Efficacy page for every demo study and several as-of dates, with
best responses, rates and best changes recomputed by an independent SQL reading
of the RECIST 1.1 rules on the contract tables (tests.helpers.BOR_SQL; the
report's section against the same SQL: tests/unit/test_report.py)."""
from __future__ import annotations

import pytest

from smc.ui import pages
from tests.helpers import (
    STUDIES,
    array,
    as_of_dates,
    clopper_pearson,
    expected_counts,
    expected_subjects,
    figures,
    run_app,
)


@pytest.mark.parametrize("study_id", STUDIES)
def test_efficacy_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("efficacy"))
        assert at.title[0].value == f"{study_id} · Efficacy"
        assert any("Rule applied" in c.value and "28 days" in c.value for c in at.caption)
        subjects = expected_subjects(sql, study_id, as_of)
        counts = expected_counts(subjects)
        table = at.dataframe[0].value
        shown = {r["Dose level"]: {k: r[k] for k in ("CR", "PR", "SD", "PD", "NE")} | {"n": r["Evaluable"]}
                 for _, r in table.iterrows()}
        assert shown == (counts or {"Total": dict.fromkeys(["n", "CR", "PR", "SD", "PD", "NE"], 0)})
        for _, r in table.iterrows():
            n, responders = r["Evaluable"], r["CR"] + r["PR"]
            if n:
                low, high = clopper_pearson(responders, n)
                assert r["ORR [95% CI]"].startswith(f"{responders}/{n} ")
                assert f"[{low:.1%}–{high:.1%}]" in r["ORR [95% CI]"]
        charts = {fig["layout"]["title"]["text"]: fig for fig in figures(at)}
        measured = {s: best for s, (_, _, _, best) in subjects.items() if best is not None}
        waterfall = [c for t, c in charts.items() if t.startswith("Best change in target-lesion sum")]
        if measured:
            bars = {x: y for trace in waterfall[0]["data"] if trace["type"] == "bar"
                    for x, y in zip(trace["x"], array(trace["y"]))}
            assert bars.keys() == measured.keys()
            assert all(bars[s] == pytest.approx(measured[s]) for s in measured)
            colours = {x: trace["name"] for trace in waterfall[0]["data"] if trace["type"] == "bar"
                       for x in trace["x"]}
            assert colours == {s: subjects[s][2] for s in measured}
        else:
            assert not waterfall
        assert not any(t.startswith("Time on study") for t in charts)  # in the "Over time" view
        over_time = run_app(study_id, as_of, pages.script("efficacy"), efficacy_view="Over time")
        swimmer = [fig for fig in figures(over_time) if fig["layout"]["title"]["text"].startswith("Time on study")]
        if subjects:
            lanes = {y for trace in swimmer[0]["data"] if trace["type"] == "bar" for y in trace["y"]}
            assert lanes == subjects.keys()
        else:
            assert not swimmer


def test_efficacy_phase_filter_narrows_the_denominators(app_env, sql):
    study_id = "IDOV-SAFE"
    as_of = as_of_dates(sql, study_id)[0]
    at = run_app(study_id, as_of, pages.script("efficacy"))
    at.segmented_control(key="efficacy_phase").set_value("Expansion").run()
    assert not at.exception
    expansion = {s for (s,) in sql("SELECT subject_id FROM subjects WHERE study_id = ? AND phase = 'expansion'",
                                   study_id)}
    subjects = {s: v for s, v in expected_subjects(sql, study_id, as_of).items() if s in expansion}
    total = at.dataframe[0].value.set_index("Dose level").loc["Total"]
    assert total["Evaluable"] == expected_counts(subjects)["Total"]["n"] > 0


def test_efficacy_flags_the_investigator_misreads(app_env, sql):
    """PR with < 30% decrease from baseline, or PD without a 20% and 5 mm rise from the nadir (no new
    lesions, non-target not PD), counted by SQL, are listed with their subjects."""
    for study_id in STUDIES:
        as_of = as_of_dates(sql, study_id)[0]
        flagged = sql("""
            WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
                        JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
                        WHERE a.study_id = $1 GROUP BY 1),
            t AS (SELECT t.*, fd.d,
                         max(CASE WHEN t.assessment_date <= fd.d THEN t.assessment_date END)
                             OVER (PARTITION BY t.subject_id) AS bdate,
                         min(t.target_sum_mm) OVER (PARTITION BY t.subject_id ORDER BY t.assessment_date
                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS nadir
                  FROM tumor_assessments t JOIN fd USING (subject_id) WHERE t.study_id = $1),
            b AS (SELECT subject_id, target_sum_mm AS bmm FROM t WHERE assessment_date = bdate)
            SELECT t.subject_id, t.assessment_date FROM t JOIN b USING (subject_id)
            WHERE t.assessment_date > t.bdate AND (
                (t.overall_response = 'PR' AND t.target_sum_mm > 0.7 * b.bmm)
             OR (t.overall_response = 'PD' AND t.new_lesions <> 'Y' AND t.nontarget_response <> 'PD'
                 AND NOT (t.target_sum_mm >= 1.2 * t.nadir AND t.target_sum_mm - t.nadir >= 5)))
            """, study_id)
        at = run_app(study_id, as_of, pages.script("efficacy"))
        listed = [df.value for df in at.dataframe if "data_issue" in df.value.columns]
        if flagged:
            assert any("disagrees with the measurements" in w.value for w in at.warning)
            assert sorted((s, d.isoformat()) for s, d in flagged) == sorted(
                (r["subject_id"].split("subject=")[-1], r["assessment_date"].isoformat()[:10])  # links
                for _, r in listed[0].iterrows())
        else:
            assert not listed
    assert any(sql("SELECT 1 FROM tumor_assessments WHERE overall_response = 'PR'"))
