"""AppTest and report: the Survival page for every demo study and several as-of
dates. Each subject's OS and PFS time and event are derived again by SQL from the
contract tables, the Kaplan–Meier median by a product-limit loop written here,
and both compared with the page's table, plot and the report."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.conftest import STUDIES, as_of_dates
from tests.test_db_and_cli import smc_cli
from tests.test_efficacy_pages import expected_subjects
from tests.test_pages import figures, run_app

DAYS_PER_MONTH = 30.4375

DOSED = """
WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
            JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
            WHERE a.study_id = $1 AND a.admin_date <= $2 GROUP BY 1),
dosed AS (SELECT s.subject_id, s.phase, dl.label, fd.d,
                 CASE WHEN s.death_date <= $2 THEN s.death_date END AS death
          FROM subjects s JOIN fd USING (subject_id)
          JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
          WHERE s.study_id = $1 AND s.enrollment_date <= $2)
"""

# OS: death by the as-of date, else the last contact date if known by then, else the latest dated record.
OS_SQL = DOSED + """,
records AS (SELECT subject_id, admin_date AS r FROM administrations WHERE study_id = $1
            UNION ALL SELECT subject_id, end_date FROM administrations WHERE study_id = $1
            UNION ALL SELECT subject_id, assessment_date FROM tumor_assessments WHERE study_id = $1
            UNION ALL SELECT subject_id, collected_at::DATE FROM lab_results WHERE study_id = $1
            UNION ALL SELECT subject_id, onset_date FROM adverse_events WHERE study_id = $1
            UNION ALL SELECT subject_id, end_date FROM adverse_events WHERE study_id = $1)
SELECT dosed.subject_id, label, dosed.phase,
       coalesce(death, CASE WHEN s.last_contact_date <= $2 THEN s.last_contact_date END,
                (SELECT max(r) FROM records WHERE records.subject_id = dosed.subject_id AND r <= $2)) - d,
       death IS NOT NULL
FROM dosed JOIN subjects s ON s.study_id = $1 AND s.subject_id = dosed.subject_id
"""

# PFS: the first PD time point after the first dose or death, whichever first; else censored at the last scan
# after the first dose, or day 0 without one.
PFS_SQL = DOSED + """,
scans AS (SELECT t.subject_id, t.assessment_date, t.overall_response FROM tumor_assessments t
          JOIN dosed USING (subject_id) WHERE t.study_id = $1 AND t.assessment_date <= $2
          AND t.assessment_date > dosed.d),
first_pd AS (SELECT subject_id, min(assessment_date) AS pd FROM scans WHERE overall_response = 'PD' GROUP BY 1),
last_scan AS (SELECT subject_id, max(assessment_date) AS l FROM scans GROUP BY 1)
SELECT subject_id, label, phase, coalesce(least(pd, death), l, d) - d, least(pd, death) IS NOT NULL
FROM dosed LEFT JOIN first_pd USING (subject_id) LEFT JOIN last_scan USING (subject_id)
"""


def expected_times(sql, endpoint: str, study_id: str, as_of: dt.date) -> dict[str, tuple]:
    """{subject_id: (level label, phase, days, event)}."""
    return {s: (label, phase, days, event)
            for s, label, phase, days, event in sql({"os": OS_SQL, "pfs": PFS_SQL}[endpoint], study_id, as_of)}


def km_median(times: list[tuple[int, bool]]) -> int | None:
    """Product-limit estimate, stepped by hand: the first event time where S(t) <= 0.5."""
    surviving = 1.0
    for t in sorted({d for d, event in times if event}):
        at_risk = sum(1 for d, _ in times if d >= t)
        deaths = sum(1 for d, event in times if d == t and event)
        surviving *= 1 - deaths / at_risk
        if surviving <= 0.5:
            return t
    return None


def by_group(expected: dict[str, tuple], index: int) -> dict[str, list[tuple[int, bool]]]:
    groups: dict[str, list] = {}
    for row in expected.values():
        groups.setdefault(row[index], []).append((row[2], row[3]))
    return groups


def median_text(days: int | None) -> str:
    return "NR" if days is None else f"{days / DAYS_PER_MONTH:.1f}"


def table_with(at, column: str):
    """The page's dataframe with that column (AppTest does not expose dataframe keys)."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def check_page(at, expected: dict[str, tuple], index: int):
    """Table rows and plot curves per group: N, events, median; at-risk at month 0 = N."""
    groups = by_group(expected, index)
    table = table_with(at, "Events")
    assert set(table["Group"]) == set(groups)
    for _, row in table.iterrows():
        times = groups[row["Group"]]
        assert row["N"] == len(times)
        assert row["Events"] == sum(event for _, event in times)
        assert row["Median, months [95% CI]"].split(" [")[0] == median_text(km_median(times)), row["Group"]
    spec = figures(at)[0]
    curves = [t for t in spec["data"] if t.get("mode") == "lines" and t.get("showlegend", True)]
    assert [c["name"] for c in curves] == list(table["Group"])
    at_risk = {t["y"][0]: int(t["text"][0]) for t in spec["data"] if t.get("mode") == "text"}
    assert at_risk == {group: len(times) for group, times in groups.items()}


@pytest.mark.parametrize("study_id", STUDIES)
@pytest.mark.parametrize("endpoint", ["os", "pfs"])
def test_survival_page_by_level_matches_sql(app_env, sql, study_id, endpoint):
    for as_of in as_of_dates(sql, study_id):
        expected = expected_times(sql, endpoint, study_id, as_of)
        at = run_app(study_id, as_of, "views/survival.py")
        if endpoint != "os":
            at.segmented_control(key="survival_endpoint").set_value(endpoint).run()
        assert not at.exception
        if not expected:
            assert not at.get("plotly_chart")
            assert any("No subject" in i.value for i in at.info)
            continue
        check_page(at, expected, index=0)


@pytest.mark.parametrize("study_id", STUDIES)
def test_survival_page_by_phase_and_pooled(app_env, sql, study_id):
    cut = as_of_dates(sql, study_id)[0]
    expected = expected_times(sql, "pfs", study_id, cut)
    at = run_app(study_id, cut, "views/survival.py")
    at.segmented_control(key="survival_endpoint").set_value("pfs").run()
    at.segmented_control(key="survival_by").set_value("phase").run()
    check_page(at, {s: (label, phase.capitalize(), days, event) for s, (label, phase, days, event)
                    in expected.items()}, index=1)
    at.segmented_control(key="survival_by").set_value("all").run()
    check_page(at, {s: ("All subjects", *row[1:]) for s, row in expected.items()}, index=0)
    at.segmented_control(key="survival_unit").set_value("days").run()
    at.toggle(key="survival_ci").set_value(True).run()
    assert not at.exception
    pooled = table_with(at, "Events").iloc[0]
    median = km_median([(d, e) for _, _, d, e in expected.values()])
    assert pooled["Median, days [95% CI]"].split(" [")[0] == ("NR" if median is None else f"{median:.0f}")
    bands = [t for t in figures(at)[0]["data"] if t.get("fill") == "tonexty"]
    assert len(bands) == 1


@pytest.mark.parametrize("study_id", STUDIES)
def test_duration_of_response_counts_confirmed_responders(app_env, sql, study_id):
    cut = as_of_dates(sql, study_id)[0]
    responders = {s: label for s, (label, _, bor, _) in expected_subjects(sql, study_id, cut).items()
                  if bor in ("CR", "PR")}
    at = run_app(study_id, cut, "views/survival.py")
    at.segmented_control(key="survival_endpoint").set_value("dor").run()
    if not responders:
        assert any("no confirmed responder" in i.value for i in at.info)
        return
    table = table_with(at, "Events")
    assert dict(zip(table["Group"], table["N"])) == {
        label: list(responders.values()).count(label) for label in set(responders.values())}
    listing = table_with(at, "reason")
    assert sorted(s.split("subject=")[-1] for s in listing["subject_id"]) == sorted(responders)


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
