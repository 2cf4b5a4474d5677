"""Safety labs: liver signal (eDISH), grade shifts, cytopenia nadir and recovery, grade ≥3 results."""
import streamlit as st

from smc import ui
from smc.analysis import labs
from smc.charts.labs import edish, lab_course
from smc.rules import ctcae
from smc.settings import MAX_SUBJECT_LINES
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
summary = ui.cached(labs.load_lab_summary, ctx.db, study, ctx.as_of)
levels = {lv.level: lv.label for lv in study.levels}

st.title(f"{md(study.study_id)} · Safety labs")
st.caption(f"As of {ctx.as_of:%Y-%m-%d}. Hematology and chemistry. Baseline: last result on or before the day of "
           f"the first dose of any study treatment. Grades as reported; an empty grade is derived from value and "
           f"normal range by CTCAE v5 ({', '.join(g.ae_term.lower() for g in ctcae.GRADINGS.values())}). Days count "
           f"from the first dose of {md(study.agent)}.")
if summary.derived:
    st.info(f"{summary.derived} of {summary.results} results had no grade from the lab; the dashboard graded them "
            "from value and normal range (CTCAE v5, normal-baseline rules).", icon=":material/calculate:")

st.subheader("Liver: eDISH")
transaminase = st.segmented_control("Transaminase", list(labs.LIVER_TESTS), default="ALT",
                                    key="edish_transaminase") or "ALT"
peaks = ui.subject_view(ctx, summary.liver)  # a point per subject
if peaks is not None:
    event = st.plotly_chart(
        ui.figure(edish, peaks, transaminase, levels,
                  f"Peak {transaminase} vs peak total bilirubin after first dose, per subject"),
        key="edish", on_select="rerun", selection_mode="points")
    ui.open_clicked_subject(event, ctx)
    st.caption("Peaks need not fall on the same day (as in the FDA's eDISH). Click a point to open the subject "
               f"profile. Possible Hy's law: {transaminase} ≥ 3×ULN and bilirubin ≥ 2×ULN.")
    flagged = peaks[peaks["hys_law_quadrant"] != "Normal range"]
    if not flagged.empty:
        st.dataframe(ui.with_subject_links(flagged, ctx), hide_index=True, key="liver_flagged", column_config={
            "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "phase": "Phase",
            "peak_alt_xuln": st.column_config.NumberColumn("Peak ALT ×ULN", format="%.2f"),
            "peak_ast_xuln": st.column_config.NumberColumn("Peak AST ×ULN", format="%.2f"),
            "peak_bili_xuln": st.column_config.NumberColumn("Peak bilirubin ×ULN", format="%.2f"),
            "hys_law_quadrant": "Quadrant"})

st.subheader("Shift tables: baseline grade to worst post-baseline grade")
shift = summary.shift
tests = summary.graded_tests
if not tests:
    st.info("No graded hematology or chemistry result by this date.")
else:
    test = st.selectbox("Test", tests, key="shift_test")
    st.dataframe(labs.shift_matrix(shift, test, study), hide_index=True, key="shift_table")
    st.caption("Subjects with at least one post-baseline result, by the worst CTCAE grade after baseline. "
               "Grade 0: within the normal range or on the other side of it.")
    ui.download_csv(shift, f"{study.study_id}_lab_shifts_{ctx.as_of}.csv", key="shift_csv", label="Download all shifts")

st.subheader("Cytopenias: nadir and recovery")
cytopenia = st.segmented_control("Test", list(labs.CYTOPENIA_TESTS), default="Neutrophils",
                                 key="nadir_test") or "Neutrophils"
as_quartiles = labs.course_as_quartiles(summary.course, cytopenia)
first_day, last_day = labs.course_days(study.dlt_window_days)
nadir = "the nadir, the lowest value at any time after the first dose,"
if as_quartiles:  # each level's quartiles: of every subject, with no mark of one
    st.plotly_chart(ui.figure(lab_course, summary.course, summary.nadirs[cytopenia], cytopenia, levels,
                              study.dlt_window_days, study.agent,
                              f"{cytopenia} through the DLT window, median and 25th–75th percentiles per dose level"),
                    key="nadir_chart")
    st.caption(f"Days {first_day} to {last_day} from the first dose of {md(study.agent)}. Over {MAX_SUBJECT_LINES} "
               "subjects: each level's median (line) and 25th–75th percentiles (band) per day, on days with at "
               f"least {labs.COURSE_MIN_RESULTS} results at that level; {nadir} is in the table for every subject.")
nadirs = ui.subject_view(ctx, summary.nadirs[cytopenia])  # a row (and unless as quartiles, a line) per subject
if nadirs is not None:
    if not as_quartiles:
        st.plotly_chart(ui.figure(lab_course, ctx.scope.rows(summary.course), nadirs, cytopenia, levels,
                                  study.dlt_window_days, study.agent, f"{cytopenia} through the DLT window, per subject"),
                        key="nadir_chart")
        st.caption(f"Days {first_day} to {last_day} from the first dose of {md(study.agent)}. ▼ marks {nadir} when it "
                   "falls within these days; the table lists every subject.")
    st.dataframe(ui.with_subject_links(nadirs, ctx), hide_index=True, key="nadir_table", column_config={
        "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "phase": "Phase", "unit": "Unit",
        "baseline_value": st.column_config.NumberColumn("Baseline", format="%.2f"),
        "nadir_value": st.column_config.NumberColumn("Nadir", format="%.2f"),
        "nadir_day": st.column_config.NumberColumn("Nadir day", format="%d"),
        "nadir_grade": "Nadir grade", "recovery_day": None, "recovery": "Recovery to grade ≤1"})

st.subheader("Grade ≥3 results")
listing = summary.listing
if listing.empty:
    st.info("No grade ≥3 hematology or chemistry result by this date.")
elif (listing := ui.subject_view(ctx, listing)) is not None:
    st.dataframe(ui.with_subject_links(listing, ctx), hide_index=True, key="lab_listing", column_config={
        "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "phase": "Phase",
        "test": "Test", "collected_at": st.column_config.DatetimeColumn("Collected", format="YYYY-MM-DD HH:mm"),
        "agent_day": st.column_config.NumberColumn("Day", help=f"Days from the first dose of {md(study.agent)}"),
        "value": st.column_config.NumberColumn("Value", format="%.2f"), "unit": "Unit",
        "xuln": st.column_config.NumberColumn("×ULN", format="%.2f"), "grade": "Grade", "grade_source": "Grade from"})
    ui.download_csv(listing, f"{study.study_id}_lab_grade3_{ctx.as_of}.csv", key="lab_listing_csv")
