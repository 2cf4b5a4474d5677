"""AppTest: the Efficacy and Biomarkers pages past MAX_SUBJECT_LINES subjects (the demo studies drawn as if each
had more subjects than the limit) page the spider and summarise markers and biomarkers per dose level. The chart
builders themselves are checked in tests/unit/test_dense_charts.py."""
from __future__ import annotations

import pytest
import streamlit as st

from smc import settings
from smc.ui import pages
from tests.helpers import STUDIES, as_of_dates, figures, run_app


@pytest.fixture()
def few_lines(app_env, monkeypatch):
    """The demo studies drawn as if they were past the limit: at most 4 subjects a line each (charts cached
    under the real limit are cleared first and after)."""
    st.cache_resource.clear()
    monkeypatch.setattr(settings, "MAX_SUBJECT_LINES", 4)
    yield 4
    st.cache_resource.clear()


@pytest.mark.parametrize("study_id", STUDIES)
def test_efficacy_page_pages_the_spider_and_summarises_markers_past_the_limit(few_lines, sql, study_id):
    as_of = as_of_dates(sql, study_id)[0]
    dosed = [s for s, in sql("""
        SELECT s.subject_id FROM subjects s JOIN administrations a USING (study_id, subject_id)
        JOIN studies st USING (study_id)
        WHERE s.study_id = ? AND a.agent = st.agent AND a.admin_date <= ? AND s.enrollment_date <= ?
        GROUP BY s.subject_id, s.dose_level ORDER BY s.dose_level, s.subject_id""", study_id, as_of, as_of)]
    at = run_app(study_id, as_of, pages.script("efficacy"), efficacy_view="Over time")
    charts = {fig["layout"]["title"]["text"]: fig for fig in figures(at)}
    spider = charts.get("Change in target-lesion sum over time, per subject")
    if spider is None:
        return  # no post-baseline measurement in this study
    assert at.selectbox(key="spider_page").options[0] == f"Subjects 1–{few_lines} of {len(dosed)}"
    assert set(spider_subjects(spider)) <= set(dosed[:few_lines])
    at.selectbox(key="spider_page").set_value(1).run()
    second = [fig for fig in figures(at) if fig["layout"]["title"]["text"].startswith("Change in target-lesion")]
    assert set(spider_subjects(second[0])) <= set(dosed[few_lines:2 * few_lines])
    markers = run_app(study_id, as_of, pages.script("efficacy"), efficacy_view="Tumor markers")
    charts = {fig["layout"]["title"]["text"]: fig for fig in figures(markers)}
    assert not any(title.endswith("per subject, with the median per dose level") for title in charts)
    if not any("No tumor-marker result" in i.value for i in markers.info):
        assert any(title.endswith("median and 25th–75th percentiles per dose level and week") for title in charts)


def spider_subjects(spider: dict) -> list[str]:
    """The subject ids on the spider's lines (customdata[0]; a gap row between subjects holds None)."""
    return [row[0] for t in spider["data"] for row in t["customdata"] if row[0] is not None]


@pytest.mark.parametrize("study_id", STUDIES)
def test_biomarkers_page_draws_level_summaries_past_the_limit(few_lines, sql, study_id):
    as_of = as_of_dates(sql, study_id)[0]
    at = run_app(study_id, as_of, pages.script("biomarkers"))
    if not figures(at):
        return
    course = figures(at)[0]
    assert course["layout"]["title"]["text"].endswith("per dose level")
    assert all(t["name"].endswith("summary") for t in course["data"])
    assert any("summary only" in c.value for c in at.caption)
