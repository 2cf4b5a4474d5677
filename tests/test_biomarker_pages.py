"""AppTest and report: the Biomarkers page for every demo study and several
as-of dates; what it lists, counts and computes checked against SQL on the
contract tables."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import STUDIES, as_of_dates
from tests.test_db_and_cli import smc_cli
from tests.test_pages import figures, run_app
from tests.test_safety_pages import array

# Results of dosed subjects by $2, with hours from the agent's first dose at its clock time and the
# agent's second dose time (the end of the first-dose profile).
RESULTS_SQL = """
WITH agent_doses AS (
    SELECT a.subject_id, a.admin_date + CAST(a.admin_time AS TIME) AS given_at,
           row_number() OVER (PARTITION BY a.subject_id ORDER BY a.admin_date, a.admin_time) AS nth
    FROM administrations a JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
    WHERE a.study_id = $1 AND a.admin_date <= $2),
results AS (
    SELECT l.*, s.dose_level, d1.given_at AS t0, d2.given_at AS t1,
           epoch(l.collected_at - d1.given_at) / 3600 AS hours
    FROM lab_results l JOIN subjects s USING (study_id, subject_id)
    JOIN agent_doses d1 ON d1.subject_id = l.subject_id AND d1.nth = 1
    LEFT JOIN agent_doses d2 ON d2.subject_id = l.subject_id AND d2.nth = 2
    WHERE l.study_id = $1 AND l.collected_at::DATE <= $2 AND s.enrollment_date <= $2
      AND l.category IN ('pk', 'virology', 't_cell', 'cytokine', 'immunogenicity')
      AND (l.value IS NOT NULL OR l.lloq IS NOT NULL))
"""


def series_counts(sql, study_id, as_of) -> dict[tuple, tuple[int, int]]:
    """{(category, test, specimen): (results, below LLOQ)}."""
    rows = sql(RESULTS_SQL + "SELECT category, test, specimen, count(*), count(*) FILTER (WHERE value IS NULL) "
               "FROM results GROUP BY ALL", study_id, as_of)
    return {(c, t, s): (n, blq) for c, t, s, n, blq in rows}


def cmax_by_subject(sql, study_id, as_of) -> dict[tuple, float]:
    """{(subject, test, specimen): Cmax} over the first-dose profile of PK-like tests."""
    rows = sql(RESULTS_SQL + "SELECT subject_id, test, specimen, max(value) FROM results WHERE category = 'pk' "
               "AND hours >= 0 AND (t1 IS NULL OR collected_at <= t1) GROUP BY ALL HAVING max(value) > 0",
               study_id, as_of)
    return {(s, t, sp): v for s, t, sp, v in rows}


def shedding_counts(sql, study_id, as_of) -> dict[tuple, tuple[int, int]]:
    """{(specimen, level): (subjects tested after dosing, subjects with detectable virus)}."""
    rows = sql(RESULTS_SQL + "SELECT specimen, dose_level, count(DISTINCT subject_id), "
               "count(DISTINCT subject_id) FILTER (WHERE value > 0) FROM results "
               "WHERE category = 'virology' AND hours > 0 GROUP BY ALL", study_id, as_of)
    return {(sp, lv): (n, d) for sp, lv, n, d in rows}


@pytest.mark.parametrize("study_id", STUDIES)
def test_biomarkers_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, "views/biomarkers.py")
        assert at.title[0].value == f"{study_id} · Biomarkers"
        counts = series_counts(sql, study_id, as_of)
        if not counts:
            assert not figures(at) and any("No biomarker result" in i.value for i in at.info)
            continue
        picker = at.selectbox(key="biomarker_series")
        assert len(picker.options) == len(counts)
        for option in picker.options:
            at.selectbox(key="biomarker_series").set_value(option).run()
            assert not at.exception
            (category, test, specimen), = [k for k in counts if option.endswith(f"{k[1]} · {k[2]}")
                                           and k[1] in option]
            n, blq = counts[(category, test, specimen)]
            course = figures(at)[0]
            subject_traces = [t for t in course["data"] if not t["name"].endswith("summary")]
            # One trace per level; a gap (NaN) separates its subjects' lines.
            assert sum(int(np.isfinite(np.asarray(array(t["x"]), float)).sum()) for t in subject_traces) == n
            open_circles = sum(symbol == "circle-open" for t in subject_traces for symbol in t["marker"]["symbol"])
            assert open_circles == blq
            assert any(c.value.startswith(f"{blq} of {n} results below the LLOQ") for c in at.caption)

        assert not [df for df in at.dataframe if "cmax" in df.value.columns]  # in the Exposure tab
        tabs = [tab.label for tab in at.tabs]
        expected_cmax = cmax_by_subject(sql, study_id, as_of)
        assert ("Exposure" in tabs) == bool(expected_cmax)
        at = run_app(study_id, as_of, "views/biomarkers.py", biomarkers_view="Exposure")
        exposure = [df.value for df in at.dataframe if "cmax" in df.value.columns]
        if expected_cmax:
            table = exposure[0]
            shown = {r["subject_id"].split("subject=")[-1]: r["cmax"] for _, r in table.iterrows()
                     if r["cmax"] == r["cmax"]}  # links; NaN: nothing quantified
            first_test = at.selectbox(key="exposure_series").value
            expected = {s: v for (s, t, sp), v in expected_cmax.items() if f"{t} · {sp}" == first_test}
            assert shown == pytest.approx(expected)
        at = run_app(study_id, as_of, "views/biomarkers.py", biomarkers_view="Shedding")
        shed = [df.value for df in at.dataframe if "n_detected" in df.value.columns]
        expected_shed = shedding_counts(sql, study_id, as_of)
        assert ("Shedding" in tabs) == bool(expected_shed)
        if expected_shed:
            assert {(r["specimen"], r["level"]): (r["n_tested"], r["n_detected"])
                    for _, r in shed[0].iterrows()} == expected_shed
        else:
            assert not shed


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
