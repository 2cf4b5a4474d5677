"""Efficacy: RECIST 1.1 best response with ORR/DCR, waterfall, spider and swimmer plots, tumor markers."""
import streamlit as st

from smc import ui
from smc.analysis import efficacy, tumor_markers
from smc.charts.efficacy import marker_best_change, marker_trends, spider, swimmer, swimmer_order, waterfall
from smc.rules import recist
from smc.settings import MAX_SUBJECT_LINES, too_many_subjects
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
levels = {lv.level: lv.label for lv in study.levels}
as_of = f"{ctx.as_of:%Y-%m-%d}"

st.title(f"{md(study.study_id)} · Efficacy")
st.caption(f"As of {as_of}. Subjects dosed with {md(study.agent)}; day 0 is that first dose and the baseline scan is "
           "the last assessment on or before it. Best overall response (BOR) from the investigator's time-point "
           f"responses. **Rule applied:** {recist.rule_text(study.min_sd_days)}")
phase = (st.segmented_control("Phase", ["All", "Escalation", "Expansion"], default="All", key="efficacy_phase")
         or "All").lower()
data = ui.cached(efficacy.load_efficacy, ctx.db, study, ctx.as_of).for_phase(phase)
no_baseline = data.subjects[data.subjects["baseline_date"].isna()]
unmeasured = data.subjects[data.subjects["best_pct_change"].isna()]


def not_evaluable() -> str:
    """The subjects without a baseline scan: by id where this viewer may see them, else by number."""
    mine = ", ".join(map(md, ctx.scope.rows(no_baseline)["subject_id"]))
    if ctx.scope.whole_study:
        return mine
    return f"{len(no_baseline)} subject(s)" + (f"; yours: {mine}" if mine else "")


def best_response() -> None:
    """BOR table with ORR and DCR, the investigator's misreads, the waterfall."""
    st.subheader("Best overall response by dose level")
    table = efficacy.response_table(data)
    st.dataframe(efficacy.response_table_display(table), hide_index=True, key="response_table")
    st.caption("Evaluable: dosed subjects with a baseline assessment (the ORR and DCR denominator); those without a "
               "post-baseline assessment count as NE. ORR = (CR + PR) / evaluable, DCR = (CR + PR + SD) / evaluable, "
               "with exact Clopper–Pearson 95% CIs."
               + (f" Not evaluable (no baseline scan): {not_evaluable()}." if len(no_baseline) else ""))
    ui.download_csv(efficacy.response_table_display(table), f"{study.study_id}_response_{ctx.as_of}.csv",
                    key="response_csv")

    issues = efficacy.data_issues(data)
    if not issues.empty:
        st.warning(f"{len(issues)} time point(s) where the investigator's response disagrees with the measurements. "
                   "They are shown as recorded and count as recorded; query them with the site.",
                   icon=":material/report:")
    if not issues.empty and (issues := ui.subject_view(ctx, issues)) is not None:
        st.dataframe(ui.with_subject_links(issues, ctx), hide_index=True, key="data_issues", column_config={
            "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level",
            "assessment_date": st.column_config.DateColumn("Assessed"), "day": "Day", "overall_response": "Response",
            "target_sum_mm": st.column_config.NumberColumn("Sum (mm)", format="%.0f"),
            "pct_change": st.column_config.NumberColumn("vs baseline", format="%+.1f%%"),
            "nadir_mm": st.column_config.NumberColumn("Nadir (mm)", format="%.0f"),
            "change_from_nadir_mm": st.column_config.NumberColumn("vs nadir (mm)", format="%+.0f"),
            "new_lesions": "New lesions", "nontarget_response": "Non-target", "data_issue": "Issue"})

    st.subheader("Waterfall")
    if len(unmeasured) == len(data.subjects):
        st.info("No post-baseline tumor measurement by this date.")
    elif (measured := ui.subject_view(ctx, data.subjects[data.subjects["best_pct_change"].notna()])) is not None:  # a bar each
        ui.open_clicked_subject(st.plotly_chart(
            ui.figure(waterfall, measured, levels,
                      "Best change in target-lesion sum per subject, coloured by best response"),
            key="waterfall", on_select="rerun", selection_mode="points"), ctx)
        st.caption("Best change: the most negative % change from baseline at any post-baseline assessment. Click a bar "
                   "to open the subject profile." + (f" No post-baseline measurement: {len(unmeasured)} subject(s)."
                                                    if len(unmeasured) else ""))


def over_time() -> None:
    """Spider and swimmer plots, and the responders' time to and duration of response."""
    if len(unmeasured) < len(data.subjects):
        st.subheader("Spider plot")
        if (mine := ui.subject_view(ctx, data.subjects)) is not None:  # a line each
            shown = ui.paged(mine.sort_values(["level", "subject_id"]), key="spider_page", size=MAX_SUBJECT_LINES)
            ui.open_clicked_subject(st.plotly_chart(
                ui.figure(spider, data.time_points[data.time_points["subject_id"].isin(shown["subject_id"])], levels,
                          study.agent, "Change in target-lesion sum over time, per subject"),
                key="spider", on_select="rerun", selection_mode="points"), ctx)
            st.caption("Marker fill: the investigator's time-point response (white: baseline)."
                       + (f" {MAX_SUBJECT_LINES} subjects at a time, by dose level." if len(shown) < len(mine)
                          else ""))

    st.subheader("Swimmer plot")
    if data.subjects.empty:
        st.info(f"No subject dosed with {md(study.agent)} by this date.")
    elif (mine := ui.subject_view(ctx, data.subjects)) is not None:  # a bar each
        ui.open_clicked_subject(st.plotly_chart(
            ui.figure(swimmer, ui.paged(swimmer_order(mine), key="swimmer_page"), levels, study.agent, as_of,
                      "Time on study per subject, with response and progression"),
            key="swimmer", on_select="rerun", selection_mode="points"), ctx)

    st.subheader("Responders: time to and duration of response")
    responders = efficacy.responders(data)
    if responders.empty:
        st.info("No confirmed responder by this date.")
    elif (responders := ui.subject_view(ctx, responders)) is not None:
        st.dataframe(ui.with_subject_links(responders, ctx), hide_index=True, key="responders", column_config={
            "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "phase": "Phase",
            "bor": "BOR", "response_date": st.column_config.DateColumn("First CR/PR"),
            "confirmed_on": st.column_config.DateColumn("Confirmed"),
            "ttr_days": st.column_config.NumberColumn("Time to response (d)"),
            "dor_days": st.column_config.NumberColumn("Duration of response (d)"),
            "dor_event": st.column_config.CheckboxColumn("Ended (PD/death)", help="Unticked: censored at the last "
                                                         "assessment"),
            "progression_date": st.column_config.DateColumn("PD"), "death_date": st.column_config.DateColumn("Death")})


def tumor_marker_trends() -> None:
    """Each marker's course per level and each subject's best change."""
    st.subheader("Tumor markers")
    markers = ui.cached(tumor_markers.load_tumor_markers, ctx.db, study, ctx.as_of)
    markers = markers if phase == "all" else markers[markers["phase"] == phase]
    tests = tumor_markers.marker_tests(markers)
    if not tests:
        st.info("No tumor-marker result by this date.")
    else:
        test_col, measure_col, log_col = st.columns([3, 3, 1])
        test = test_col.segmented_control("Marker", tests, default=tests[0], format_func=md,
                                          key="marker_test") or tests[0]
        measure = {"Value": "plot_value", "% change from baseline": "pct_change"}[
            measure_col.segmented_control("Show", ["Value", "% change from baseline"], default="Value",
                                          key="marker_measure") or "Value"]
        log_y = log_col.toggle("Log scale", value=True, key="marker_log", disabled=measure == "pct_change")
        medians = tumor_markers.level_medians(markers, test, measure)
        summarised = too_many_subjects(tumor_markers.measured(markers, test, measure))
        lines = markers  # summarised: the level quartiles only, no mark of a subject
        if not summarised:  # a line per subject this viewer may see; the medians are of every subject
            lines = ui.subject_view(ctx, markers)
        st.plotly_chart(ui.figure(marker_trends, markers.iloc[:0] if lines is None else lines, medians, test, measure,
                                  levels, study.agent, log_y,
                                  f"{test}: median and 25th–75th percentiles per dose level and week" if summarised
                                  else f"{test}: median per dose level and week" if lines is None
                                  else f"{test} per subject, with the median per dose level"), key="marker_trends")
        below = int(markers[markers["test"] == test]["below_lloq"].sum())
        st.caption("Baseline: last result on or before the first dose. "
                   + (f"Over {MAX_SUBJECT_LINES} subjects: each level's median (line) and 25th–75th percentiles "
                      "(band) per week with at least two subjects." if summarised else
                      "Dashed: median per level and week.")
                   + (f" {below} result(s) below the LLOQ "
                      + ("count at LLOQ/2." if summarised else "are drawn at LLOQ/2 as open circles.")
                      if below else ""))
        best = tumor_markers.best_change(markers, test)
        if not best.empty and (best := ui.subject_view(ctx, best)) is not None:
            st.plotly_chart(ui.figure(marker_best_change, best, test, levels,
                                      f"Best change in {test} from baseline, per subject"),
                            key="marker_best")


ui.lazy_tabs({"Best response": best_response, "Over time": over_time, "Tumor markers": tumor_marker_trends},
             key="efficacy_view")
