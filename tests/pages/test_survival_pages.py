"""AppTest: the Survival page for every demo study and several as-of dates. Each
subject's OS and PFS time and event are derived again by SQL from the contract
tables, the Kaplan–Meier median by a product-limit loop (both in tests.helpers),
and compared with the page's table and plot (the report: tests/unit/test_report.py)."""
from __future__ import annotations

import pytest

from smc.ui import pages
from tests.helpers import STUDIES, as_of_dates, by_group, expected_subjects, expected_times, figures, km_median, run_app

DAYS_PER_MONTH = 30.4375


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
        at = run_app(study_id, as_of, pages.script("survival"))
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
    at = run_app(study_id, cut, pages.script("survival"))
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
    at = run_app(study_id, cut, pages.script("survival"))
    at.segmented_control(key="survival_endpoint").set_value("dor").run()
    if not responders:
        assert any("no confirmed responder" in i.value for i in at.info)
        return
    table = table_with(at, "Events")
    assert dict(zip(table["Group"], table["N"])) == {
        label: list(responders.values()).count(label) for label in set(responders.values())}
    listing = table_with(at, "reason")
    assert sorted(s.split("subject=")[-1] for s in listing["subject_id"]) == sorted(responders)
