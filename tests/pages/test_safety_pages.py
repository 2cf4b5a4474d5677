"""AppTest: the Safety page and the subject profile, for every demo study and
several as-of dates, with the numbers checked against SQL on the contract tables."""
from __future__ import annotations

import numpy as np
import pytest

from smc.ui import pages
from tests.helpers import STUDIES, array, as_of_dates, data_cut, figures, run_app

# What each heatmap view counts, as SQL conditions on adverse_events `ae`.
VIEW_SQL = {"DLTs": "ae.dlt = 'Y'", "All TEAEs": "true", "Grade ≥3": "ae.grade >= 3",
            "Serious": "ae.serious = 'Y'", "Related": "ae.related = 'Y'"}

TEAE_SQL = """
    WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
    SELECT {select}
    FROM adverse_events ae JOIN subjects s USING (study_id, subject_id) JOIN fd USING (subject_id)
    WHERE ae.study_id = $1 AND ae.onset_date <= $2 AND ae.onset_date >= fd.d AND s.enrollment_date <= $2
      AND ({condition}) AND (s.phase = $3 OR $3 IS NULL)
    {group}"""


def heatmap_cells(fig: dict) -> dict[tuple[str, str], float]:
    """{(term, column label): value} of the non-empty cells of the AE heatmap (its second trace)."""
    if not fig["data"]:  # the chart says there is nothing to show
        return {}
    trace = fig["data"][1]
    z = array(trace["z"])
    terms = trace["y"][1]
    labels = [x.split("<br>")[0] for x in trace["x"]]
    return {(terms[i], labels[j]): z[i, j] for i in range(z.shape[0]) for j in range(z.shape[1])
            if not np.isnan(z[i, j])}


def expected_cells(sql, study_id, as_of, condition, phase=None, value="count(DISTINCT ae.subject_id)"):
    rows = sql(TEAE_SQL.format(select=f"ae.term, dl.label, {value}", condition=condition,
                               group="GROUP BY 1, 2").replace(
        "JOIN fd USING (subject_id)",
        "JOIN fd USING (subject_id) JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level"),
        study_id, as_of, phase)
    return {(term, label): n for term, label, n in rows}


def dosed_per_label(sql, study_id, as_of, phase=None):
    return dict(sql("""
        SELECT dl.label, count(DISTINCT s.subject_id) FROM subjects s
        JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
        WHERE s.study_id = $1 AND s.enrollment_date <= $2 AND (s.phase = $3 OR $3 IS NULL)
          AND EXISTS (SELECT 1 FROM administrations a WHERE a.study_id = s.study_id
                      AND a.subject_id = s.subject_id AND a.admin_date <= $2)
        GROUP BY 1""", study_id, as_of, phase))


def column_n(fig: dict) -> dict[str, int]:
    return {x.split("<br>")[0]: int(x.split("N=")[1]) for x in fig["data"][1]["x"]} if len(fig["data"]) > 1 else {}


@pytest.mark.parametrize("study_id", STUDIES)
def test_safety_heatmap_cells_and_denominators_match_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("safety"))
        assert at.title[0].value == f"{study_id} · Safety"
        dosed = dosed_per_label(sql, study_id, as_of)
        for view, condition in VIEW_SQL.items():
            at.segmented_control(key="heatmap_view").set_value(view).run()
            assert not at.exception
            heatmap = figures(at)[0]
            assert heatmap_cells(heatmap) == expected_cells(sql, study_id, as_of, condition), view
            if len(heatmap["data"]) > 1:
                assert column_n(heatmap) == dosed  # only levels with dosed subjects, N = dosed


def test_colour_by_worst_grade_shows_each_cells_worst_grade(app_env, sql):
    study_id = "IX001"
    cut = data_cut(sql, study_id)
    at = run_app(study_id, cut, pages.script("safety"))
    at.segmented_control(key="heatmap_view").set_value("All TEAEs").run()
    at.segmented_control(key="heatmap_colour").set_value("Worst grade").run()
    shown = {cell: z + 0.5 for cell, z in heatmap_cells(figures(at)[0]).items()}  # z = grade - 0.5
    assert shown == expected_cells(sql, study_id, cut, "true", value="max(ae.grade)")


@pytest.mark.parametrize("study_id", STUDIES)
def test_summary_table_any_teae_row_and_listing_counts_match_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("safety"))
        summary = at.dataframe[0].value
        first = summary.iloc[0]
        assert first["System organ class / term"] == "Any TEAE"
        n_dosed = sum(dosed_per_label(sql, study_id, as_of).values())
        (n_teae,) = sql(TEAE_SQL.format(select="count(DISTINCT ae.subject_id)", condition="true", group=""),
                        study_id, as_of, None)[0]
        total = first[f"Total (N={n_dosed}) any grade"]
        assert total == (f"{n_teae} ({100 * n_teae / n_dosed:.0f}%)" if n_dosed else str(n_teae))
        tabs = {t.label.split(" (")[0]: int(t.label.rsplit("(", 1)[1].rstrip(")")) for t in at.tabs}
        for name, condition in (("DLTs", "ae.dlt = 'Y'"), ("Serious AEs", "ae.serious = 'Y'"),
                                ("Grade 5", "ae.grade = 5")):
            (n,) = sql(TEAE_SQL.format(select="count(*)", condition=condition, group=""), study_id, as_of, None)[0]
            assert tabs[name] == n, name
        (n_baseline,) = sql("""
            SELECT count(*) FROM adverse_events ae JOIN subjects s USING (study_id, subject_id)
            WHERE ae.study_id = $1 AND ae.onset_date <= $2 AND s.enrollment_date <= $2 AND NOT EXISTS (
                SELECT 1 FROM administrations a WHERE a.study_id = ae.study_id AND a.subject_id = ae.subject_id
                AND a.admin_date <= ae.onset_date AND a.admin_date <= $2)""", study_id, as_of)[0]
        assert tabs["Baseline events"] == n_baseline


def test_filters_narrow_events_and_phase_narrows_denominators(app_env, sql):
    study_id = "IDOV-SAFE"
    cut = data_cut(sql, study_id)
    at = run_app(study_id, cut, pages.script("safety"))
    at.segmented_control(key="heatmap_view").set_value("All TEAEs").run()
    at.checkbox(key="ae_grade3").check().run()
    assert heatmap_cells(figures(at)[0]) == expected_cells(sql, study_id, cut, "ae.grade >= 3")
    at.checkbox(key="ae_grade3").uncheck().run()
    at.text_input(key="ae_term").input("PYREX").run()
    assert heatmap_cells(figures(at)[0]) == expected_cells(sql, study_id, cut, "ae.term ILIKE '%pyrex%'")
    at.text_input(key="ae_term").input("").run()
    at.segmented_control(key="ae_phase").set_value("Expansion").run()
    fig = figures(at)[0]
    assert heatmap_cells(fig) == expected_cells(sql, study_id, cut, "true", phase="expansion")
    assert column_n(fig) == dosed_per_label(sql, study_id, cut, phase="expansion")
    (n_events,) = sql(TEAE_SQL.format(select="count(*)", condition="true", group=""), study_id, cut, "expansion")[0]
    assert any(f"**{n_events} of" in m.value for m in at.markdown)


def subject_run(study_id, as_of, subject_id):
    return run_app(study_id, as_of, pages.script("subject"), subject=subject_id)


@pytest.mark.parametrize("study_id", STUDIES)
def test_subject_profile_shows_that_subjects_course(app_env, sql, study_id):
    cut = data_cut(sql, study_id)
    # The subject with the most AEs: a real course to draw.
    (subject_id,) = sql("SELECT subject_id FROM adverse_events WHERE study_id = ? GROUP BY 1 "
                        "ORDER BY count(*) DESC, 1 LIMIT 1", study_id)[0]
    for as_of in as_of_dates(sql, study_id)[:2]:
        enrolled = sql("SELECT enrollment_date <= ? FROM subjects WHERE study_id = ? AND subject_id = ?",
                       as_of, study_id, subject_id)[0][0]
        at = subject_run(study_id, as_of, subject_id)
        assert at.title[0].value == f"{study_id} · Subject profile"
        if not enrolled:
            assert any(subject_id in w.value for w in at.warning)
            continue
        assert at.selectbox(key=f"subject::{study_id}").value == subject_id
        aes = sql("SELECT term, grade, dlt FROM adverse_events WHERE study_id = ? AND subject_id = ? "
                  "AND onset_date <= ? ORDER BY onset_date", study_id, subject_id, as_of)
        shown = at.dataframe[0].value
        assert sorted(zip(shown["term"], shown["grade"], shown["dlt"])) == sorted(aes)
        timeline, labs = figures(at)
        bars = [t for t in timeline["data"] if t["type"] == "bar"]
        assert len(bars) == len(aes)  # one bar per AE
        stars = [t for t in timeline["data"] if t.get("name") == "DLT"]
        assert len(array(stars[0]["x"]) if stars else []) == sum(d == "Y" for _, _, d in aes)
        n_panels = sql("SELECT count(DISTINCT (test, specimen)) FROM lab_results WHERE study_id = ? AND subject_id = ? "
                       "AND collected_at::DATE <= ? AND category IN ('hematology', 'chemistry', 'tumor_marker')",
                       study_id, subject_id, as_of)[0][0]
        assert len([t for t in labs["data"] if t["type"] == "scatter"]) == n_panels
    (death,) = sql("SELECT death_date FROM subjects WHERE study_id = ? AND subject_id = ?", study_id, subject_id)[0]
    at = subject_run(study_id, cut, subject_id)
    header = next(m.value for m in at.markdown if m.value.startswith(f"## {subject_id}"))
    died = death is not None and death <= cut
    assert ("Died" in header) == died and (not died or f"Died {death:%Y-%m-%d}" in header)


def test_subject_link_to_unknown_subject_is_a_warning(app_env, sql):
    at = subject_run("IX001", data_cut(sql, "IX001"), "IX001-999")
    assert any("IX001-999" in w.value for w in at.warning)
    assert at.selectbox(key="subject::IX001").value is not None


ALT_GRADE_SQL = """CASE WHEN l.value > 20 * l.ref_high THEN 4 WHEN l.value > 5 * l.ref_high THEN 3
                        WHEN l.value > 3 * l.ref_high THEN 2 WHEN l.value > l.ref_high THEN 1 ELSE 0 END"""


@pytest.mark.parametrize("study_id", STUDIES)
def test_safety_labs_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("labs"))
        assert at.title[0].value == f"{study_id} · Safety labs"
        edish, course = figures(at)
        # eDISH: one point per dosed subject with ALT and bilirubin on or after the first-dose day.
        (n_liver,) = sql("""
            WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                        WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
            SELECT count(*) FROM (SELECT l.subject_id FROM lab_results l JOIN fd USING (subject_id)
                JOIN subjects s USING (study_id, subject_id)
                WHERE l.study_id = $1 AND l.collected_at::DATE BETWEEN fd.d AND $2 AND s.enrollment_date <= $2
                GROUP BY 1 HAVING bool_or(test = 'ALT') AND bool_or(test = 'Bilirubin'))""", study_id, as_of)[0]
        assert sum(len(t["customdata"]) for t in edish["data"]) == n_liver
        assert edish["layout"]["xaxis"]["type"] == "log" and edish["layout"]["yaxis"]["type"] == "log"
        if not n_liver:
            continue
        # ALT shift: worst post-baseline grade by CTCAE v5 thresholds written here in SQL, per subject.
        worst = dict(sql(f"""
            WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                        WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1),
            base AS (SELECT l.subject_id, max(l.collected_at) AS at FROM lab_results l JOIN fd USING (subject_id)
                     WHERE l.study_id = $1 AND l.test = 'ALT' AND l.collected_at::DATE <= fd.d GROUP BY 1),
            graded AS (SELECT l.subject_id, coalesce(l.grade, {ALT_GRADE_SQL}) AS g
                       FROM lab_results l JOIN fd USING (subject_id) LEFT JOIN base USING (subject_id)
                       JOIN subjects s USING (study_id, subject_id)
                       WHERE l.study_id = $1 AND l.test = 'ALT' AND l.collected_at::DATE BETWEEN fd.d AND $2
                         AND l.collected_at > coalesce(base.at, TIMESTAMP '1900-01-01') AND s.enrollment_date <= $2)
            SELECT g, count(*) FROM (SELECT subject_id, max(g) AS g FROM graded GROUP BY 1) GROUP BY 1""",
            study_id, as_of))
        at.selectbox(key="shift_test").set_value("ALT").run()
        shift = next(d.value for d in at.dataframe if "Worst 0" in d.value.columns)  # keys are not recorded
        assert {g: int(shift[f"Worst {g}"].sum()) for g in range(5) if shift[f"Worst {g}"].sum()} == worst


def test_ungraded_lab_results_are_graded_and_said_so(app_env, sql):
    # BIOTTT001's lab reports values only: the page grades them and says how many.
    at = run_app("BIOTTT001", data_cut(sql, "BIOTTT001"), pages.script("labs"))
    (n_ungraded,) = sql("SELECT count(*) FROM lab_results l JOIN subjects s USING (study_id, subject_id) "
                        "WHERE study_id = 'BIOTTT001' AND category IN ('hematology', 'chemistry') AND grade IS NULL "
                        "AND s.enrollment_date <= (SELECT data_cut_date FROM studies WHERE study_id = 'BIOTTT001')")[0]
    assert n_ungraded > 0
    assert any(f"{n_ungraded} of" in i.value for i in at.info)
