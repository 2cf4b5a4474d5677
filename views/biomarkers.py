"""Biomarkers: courses by dose level, T-cell subsets, exposure and dose proportionality, shedding, immunogenicity."""
import streamlit as st

from smc import ui
from smc.analysis import biomarkers
from smc.charts.biomarkers import (
    biomarker_course,
    exposure_vs_dose,
    immunogenicity_chart,
    shedding_chart,
    subset_panels,
)
from smc.settings import MAX_SUBJECT_LINES, too_many_subjects
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
levels = {lv.level: lv.label for lv in study.levels}
view = ui.cached(biomarkers.load_biomarker_view, ctx.db, study, ctx.as_of)
data, series = view.data, view.series

st.title(f"{md(study.study_id)} · Biomarkers")
st.caption(f"As of {ctx.as_of:%Y-%m-%d}. Subjects dosed with {md(study.agent)}; time 0 is that first dose. A result "
           "below the lower limit of quantification (LLOQ) is drawn at LLOQ/2 as an open circle and counted. "
           "Baseline: the last result at or before time 0.")
if not data.results.empty and not data.results["first_agent_dose_time_known"].all():
    st.warning("Some first doses have no administration time: their hours count from midnight.",
               icon=":material/schedule:")


def series_name(row) -> str:
    specimen = f" · {row.specimen}" if isinstance(row.specimen, str) else ""
    return f"{biomarkers.CATEGORIES.get(row.category, row.category)}: {row.test}{specimen}"


def draw_course() -> None:
    """One measurement's course per subject or per level."""
    st.subheader("Over time, by dose level")
    names = {series_name(r): r for r in series.itertuples()}
    picked = names[st.selectbox("Measurement", list(names), key="biomarker_series",
                                help="What this study measured, grouped by category")]
    results = data.results_of(picked.test, picked.specimen)
    measure_col, log_col = st.columns([4, 1])
    measure = {"Value": "plot_value", "Fold change from baseline": "fold_change"}[
        measure_col.segmented_control("Show", ["Value", "Fold change from baseline"], default="Value",
                                      key="biomarker_measure") or "Value"]
    log_y = log_col.toggle("Log scale", value=biomarkers.spans_decades(results[measure].dropna()),
                           key=f"biomarker_log::{picked.test}::{picked.specimen}::{measure}")
    unit = biomarkers.time_unit(results)
    summary = biomarkers.level_summary(results, unit, measure, geometric=log_y)
    y_title = (f"{picked.test}: fold change from baseline (×)" if measure == "fold_change"
               else f"{picked.test} ({picked.unit})" if isinstance(picked.unit, str) else picked.test)
    summarised = too_many_subjects(results)
    specimen = f" in {picked.specimen}" if isinstance(picked.specimen, str) else ""
    lines = results  # summarised: the level summary only, no mark of a subject
    if not summarised:  # a line per subject this viewer may see; the summary is of every subject
        lines = ui.subject_view(ctx, results)
    st.plotly_chart(ui.figure(biomarker_course, results.iloc[:0] if lines is None else lines, summary, levels,
                              measure, unit, log_y, y_title, study.agent,
                              f"{picked.test}{specimen} per dose level" if summarised or lines is None
                              else f"{picked.test}{specimen} per subject, with the level summary"),
                    key="biomarker_course")
    st.caption(f"{int(results['below_lloq'].sum())} of {len(results)} results below the LLOQ. Summary per level and "
               f"{unit[:-1]}: " + ("geometric mean ×/÷ geometric SD." if log_y else "mean ± SD.")
               + (f" Over {MAX_SUBJECT_LINES} subjects the summary only; each subject's results are on their "
                  "profile." if summarised else ""))


def draw_t_cells() -> None:
    """T-cell subsets: geometric mean fold change from baseline."""
    fold = view.t_cell_fold_changes
    st.subheader("T-cell subsets: fold change from baseline")
    st.plotly_chart(ui.figure(subset_panels, fold, levels, study.agent,
                              "Geometric mean fold change from baseline per subset and dose level"),
                    key="t_cell_panels")
    table = fold.pivot_table(index=["test", "label", "level"], columns="nominal_day", values="gmean_fold_change")
    table = table.sort_index(level=["test", "level"]).reset_index().drop(columns="level")
    table.columns = ["Subset", "Dose level", *[f"Day {d}" for d in table.columns[2:]]]
    st.dataframe(table, hide_index=True, key="t_cell_table",
                 column_config={c: st.column_config.NumberColumn(format="%.2f×") for c in table.columns[2:]})


def draw_exposure() -> None:
    """NCA exposure against dose, with the power model."""
    exposure = view.exposure
    st.subheader("Exposure by dose")
    pk_names = {f"{t} · {s}": (t, s) for t, s in dict.fromkeys(zip(exposure["test"], exposure["specimen"]))}
    pk_col, measure_col = st.columns([3, 2])
    test, specimen = pk_names[pk_col.selectbox("PK-like measurement", list(pk_names), key="exposure_series")]
    exposure_measure = measure_col.segmented_control(
        "Exposure", list(biomarkers.EXPOSURE_MEASURES), default="auc", key="exposure_measure",
        format_func=biomarkers.EXPOSURE_MEASURES.get) or "auc"
    mine = exposure[(exposure["test"] == test) & (exposure["specimen"] == specimen)]
    value_unit = mine["unit"].iloc[0] + (" × h" if exposure_measure == "auc" else "")
    fit = biomarkers.power_model(mine["dose"], mine[exposure_measure])
    label = biomarkers.EXPOSURE_MEASURES[exposure_measure]
    shown = ui.subject_view(ctx, mine)  # a point and a row per subject; the power model is fitted to every subject
    if shown is not None:
        st.plotly_chart(ui.figure(exposure_vs_dose, shown, exposure_measure, label, fit, levels, data.dose_unit,
                                  value_unit, f"{label} of {test} against dose, per subject (log–log)"),
                        key="exposure_chart")
    st.caption("First-dose profile (samples up to the second dose of the agent). AUClast: linear-up/log-down "
               "trapezoid from time 0 to the last quantifiable sample; below-LLOQ results count as 0 before "
               "the first quantifiable one and are left out after it. Power model ln(y) = a + b·ln(dose): "
               + (f"b = {fit.slope:.2f} (95% CI {fit.slope_lo:.2f}–{fit.slope_hi:.2f}, n = {fit.n}); b = 1 "
                  "means exposure rises in proportion to dose." if fit else
                  "needs at least 3 subjects at 2 or more doses."))
    if shown is None:
        return
    st.dataframe(ui.with_subject_links(shown, ctx), hide_index=True, key="exposure_table", column_config={
        "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "test": None,
        "specimen": None, "unit": "Unit", "dose": st.column_config.NumberColumn("Dose", format="%.3g"),
        "cmax": st.column_config.NumberColumn("Cmax", format="%.4g"),
        "tmax_h": st.column_config.NumberColumn("Tmax (h)", format="%.1f"),
        "auc": st.column_config.NumberColumn("AUClast (unit × h)", format="%.4g"),
        "tlast_h": st.column_config.NumberColumn("Tlast (h)", format="%.1f"), "n_samples": "Samples"})
    ui.download_csv(ctx.scope.rows(exposure), f"{study.study_id}_exposure_{ctx.as_of}.csv", key="exposure_csv")


def draw_shedding() -> None:
    """Virus detected by specimen, day and level; each subject's last day detected."""
    shed = view.shedding
    st.subheader("Shedding")
    st.plotly_chart(ui.figure(shedding_chart, shed, levels,
                              "Subjects with detectable virus by specimen, day and level"),
                    key="shedding_chart")
    st.dataframe(view.shedding_by_level, hide_index=True, key="shedding_table", column_config={
        "test": "Test", "specimen": "Specimen", "level": None, "label": "Dose level",
        "n_tested": "Subjects tested", "n_detected": "Ever detected",
        "last_day_detected": "Last day detected (any subject)"})
    st.caption("Detected: a quantifiable result above zero after dosing.")
    with st.expander("Last day detected, per subject"):
        if (last := ui.subject_view(ctx, view.last_day_detected)) is not None:
            st.dataframe(ui.with_subject_links(last, ctx), hide_index=True,
                         key="shedding_subjects", column_config={
                             "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level",
                             "test": "Test", "specimen": "Specimen", "n_samples": "Samples after dosing",
                             "last_sample_day": "Last sample (day)", "last_day_detected": "Last day detected"})


def draw_immunogenicity() -> None:
    """Subjects positive per assay, day and level."""
    immunity = view.immunogenicity
    st.subheader("Immunogenicity")
    tests = list(dict.fromkeys(immunity["test"]))
    test = st.segmented_control("Assay", tests, default=tests[0], format_func=md,
                                key="immunogenicity_test") or tests[0]
    st.plotly_chart(ui.figure(immunogenicity_chart, immunity, test, levels,
                              f"{test}: subjects positive by day and level"),
                    key="immunogenicity_chart")
    st.caption("Positive: a quantifiable titer (at or above the LLOQ). Titers over time: pick the assay in the "
               "Over time tab.")


if series.empty:
    st.info("No biomarker result (T cells, virology, PK, cytokines, immunogenicity) by this date.")
else:
    sections = {"Over time": draw_course, "T-cell subsets": None if view.t_cell_fold_changes.empty else draw_t_cells,
                "Exposure": None if view.exposure.empty else draw_exposure,
                "Shedding": None if view.shedding.empty else draw_shedding,
                "Immunogenicity": None if view.immunogenicity.empty else draw_immunogenicity}
    ui.lazy_tabs({label: draw for label, draw in sections.items() if draw}, key="biomarkers_view")  # those with data
