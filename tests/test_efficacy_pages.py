"""AppTest and report: the Efficacy page for every demo study and several as-of
dates, with best responses, rates and best changes recomputed by an independent
SQL reading of the RECIST 1.1 rules on the contract tables."""
from __future__ import annotations

import json

import pytest
from scipy.stats import beta

from tests.conftest import STUDIES, as_of_dates
from tests.test_db_and_cli import smc_cli
from tests.test_pages import figures, run_app
from tests.test_safety_pages import array

# Per subject dosed with the agent by $2: level label, whether it has a baseline scan, its BOR and best
# % change. BOR: confirmed CR, else confirmed PR, else SD (CR/PR/SD on or after day min_sd_days), else PD,
# else NE; only time points up to the first PD count.
BOR_SQL = """
WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
            JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
            WHERE a.study_id = $1 AND a.admin_date <= $2 GROUP BY 1),
dosed AS (SELECT s.subject_id, dl.label, fd.d FROM subjects s JOIN fd USING (subject_id)
          JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
          WHERE s.study_id = $1 AND s.enrollment_date <= $2),
ta AS (SELECT t.subject_id, t.assessment_date AS day_date, coalesce(t.overall_response, 'NE') AS r,
              t.target_sum_mm AS mm, dosed.d
       FROM tumor_assessments t JOIN dosed USING (subject_id)
       WHERE t.study_id = $1 AND t.assessment_date <= $2),
base AS (SELECT DISTINCT ON (subject_id) subject_id, day_date AS bdate, mm AS bmm FROM ta WHERE day_date <= d
         ORDER BY subject_id, day_date DESC),
post AS (SELECT ta.*, base.bmm FROM ta JOIN base USING (subject_id) WHERE ta.day_date > base.bdate),
first_pd AS (SELECT subject_id, min(day_date) AS pd_date FROM post WHERE r = 'PD' GROUP BY 1),
counted AS (SELECT post.* FROM post LEFT JOIN first_pd USING (subject_id)
            WHERE pd_date IS NULL OR day_date <= pd_date),
cr AS (SELECT DISTINCT a.subject_id FROM counted a JOIN counted b USING (subject_id)
       WHERE a.r = 'CR' AND b.r = 'CR' AND b.day_date - a.day_date >= 28
         AND NOT EXISTS (SELECT 1 FROM counted c WHERE c.subject_id = a.subject_id
                         AND c.day_date > a.day_date AND c.day_date < b.day_date AND c.r NOT IN ('CR', 'NE'))),
pr AS (SELECT DISTINCT a.subject_id FROM counted a JOIN counted b USING (subject_id)
       WHERE a.r IN ('CR', 'PR') AND b.r IN ('CR', 'PR') AND b.day_date - a.day_date >= 28
         AND NOT EXISTS (SELECT 1 FROM counted c WHERE c.subject_id = a.subject_id AND c.day_date > a.day_date
                         AND c.day_date < b.day_date AND c.r NOT IN ('CR', 'PR', 'NE'))),
sd AS (SELECT DISTINCT subject_id FROM counted, studies st
       WHERE st.study_id = $1 AND r IN ('CR', 'PR', 'SD') AND day_date - d >= coalesce(st.min_sd_days, 42))
SELECT dosed.subject_id, dosed.label, base.subject_id IS NOT NULL AS evaluable,
       CASE WHEN cr.subject_id IS NOT NULL THEN 'CR' WHEN pr.subject_id IS NOT NULL THEN 'PR'
            WHEN sd.subject_id IS NOT NULL THEN 'SD' WHEN first_pd.subject_id IS NOT NULL THEN 'PD'
            ELSE 'NE' END AS bor,
       (SELECT min((mm - bmm) / bmm * 100) FROM post WHERE post.subject_id = dosed.subject_id) AS best_pct
FROM dosed LEFT JOIN base USING (subject_id) LEFT JOIN cr USING (subject_id) LEFT JOIN pr USING (subject_id)
LEFT JOIN sd USING (subject_id) LEFT JOIN first_pd USING (subject_id)
"""


def expected_subjects(sql, study_id, as_of) -> dict[str, tuple]:
    return {subject: (label, evaluable, bor, best) for subject, label, evaluable, bor, best
            in sql(BOR_SQL, study_id, as_of)}


def expected_counts(subjects: dict) -> dict[str, dict[str, int]]:
    """{label or 'Total': {n, CR, PR, SD, PD, NE}} over evaluable subjects."""
    counts: dict[str, dict[str, int]] = {}
    for label, evaluable, bor, _ in subjects.values():
        if evaluable:
            for key in (label, "Total"):
                row = counts.setdefault(key, dict.fromkeys(["n", "CR", "PR", "SD", "PD", "NE"], 0))
                row["n"] += 1
                row[bor] += 1
    return counts


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    return (0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)), (1.0 if k == n else beta.ppf(0.975, k + 1, n - k))


def test_clopper_pearson_reference_matches_the_issue_example():
    low, high = clopper_pearson(1, 6)
    assert (round(low * 100, 1), round(high * 100, 1)) == (0.4, 64.1)


@pytest.mark.parametrize("study_id", STUDIES)
def test_efficacy_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, "views/efficacy.py")
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
        over_time = run_app(study_id, as_of, "views/efficacy.py", efficacy_view="Over time")
        swimmer = [fig for fig in figures(over_time) if fig["layout"]["title"]["text"].startswith("Time on study")]
        if subjects:
            lanes = {y for trace in swimmer[0]["data"] if trace["type"] == "bar" for y in trace["y"]}
            assert lanes == subjects.keys()
        else:
            assert not swimmer


def test_efficacy_phase_filter_narrows_the_denominators(app_env, sql):
    study_id = "IDOV-SAFE"
    as_of = as_of_dates(sql, study_id)[0]
    at = run_app(study_id, as_of, "views/efficacy.py")
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
        at = run_app(study_id, as_of, "views/efficacy.py")
        listed = [df.value for df in at.dataframe if "data_issue" in df.value.columns]
        if flagged:
            assert any("disagrees with the measurements" in w.value for w in at.warning)
            assert sorted((s, d.isoformat()) for s, d in flagged) == sorted(
                (r["subject_id"].split("subject=")[-1], r["assessment_date"].isoformat()[:10])  # links
                for _, r in listed[0].iterrows())
        else:
            assert not listed
    assert any(sql("SELECT 1 FROM tumor_assessments WHERE overall_response = 'PR'"))


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
