"""Safety: what toxicity, at which dose, how bad (treatment-emergent AEs as of the sidebar date)."""
import streamlit as st

from smc import ui
from smc.analysis import safety
from smc.analysis.dose_decision import load_dose_decision, window_stage
from smc.charts.safety import ae_heatmap
from smc.ui import review
from smc.ui.text import md

ctx = ui.context()
study = ctx.study

st.title(f"{md(study.study_id)} · Safety")
st.caption(f"As of {ctx.as_of:%Y-%m-%d}. Treatment-emergent AE (TEAE): onset on or after the first dose of any "
           "study treatment; earlier AEs are baseline events, listed but not counted. A subject counts once per "
           "term and SOC, at their worst CTCAE grade. % of subjects dosed at the level.")

with st.container(border=True):
    phase_col, flags_col, term_col = st.columns([2, 4, 2])
    phase = phase_col.segmented_control("Phase", ["All", "Escalation", "Expansion"], default="All",
                                        key="ae_phase") or "All"
    flags = flags_col.columns(4)
    filters = safety.AeFilters(
        phase=phase.lower(),
        dlt_only=flags[0].checkbox("DLT only", key="ae_dlt_only"),
        related_only=flags[1].checkbox("Related only", key="ae_related_only"),
        serious_only=flags[2].checkbox("Serious only", key="ae_serious_only"),
        grade3_plus=flags[3].checkbox("Grade ≥3", key="ae_grade3"),
        term_search=term_col.text_input("Term contains", key="ae_term", placeholder="e.g. neutro"))
safety_view = ui.cached(safety.load_safety_view, ctx.db, study, ctx.as_of, filters)
shown, total = safety_view.shown, safety_view.total
st.markdown(f"Filters leave **{shown['teae']} of {total['teae']} TEAEs** in **{shown['subjects_with_teae']} of "
            f"{total['subjects_with_teae']} subjects** with a TEAE; denominators: {shown['dosed']} of "
            f"{total['dosed']} dosed subjects. Baseline events: {shown['baseline']} of {total['baseline']}.")

st.subheader("Heatmap")
view_col, colour_col = st.columns([3, 2])
view = view_col.segmented_control("Count subjects with", list(safety.HEATMAP_VIEWS), default="DLTs",
                                  key="heatmap_view") or "DLTs"
colour = colour_col.segmented_control("Colour by", ["Count", "Worst grade"], default="Count",
                                      key="heatmap_colour") or "Count"
cells, rows = safety_view.heatmaps[view]
st.plotly_chart(ui.figure(ae_heatmap, cells, rows, safety_view.columns,
                          f"{safety.HEATMAP_TITLES[view]}, by term and dose level",
                          "grade" if colour == "Worst grade" else "count"), key="ae_heatmap")
if study.staged:
    st.caption(f"DLTs of every stage ({md(', '.join(s.title() for s in study.regimen))}), at the subject's "
               "assigned level; the listings name the stage whose DLT window holds each onset.")

st.subheader("AE summary")
summary = safety_view.ae_summary
display_columns = [c for c in summary.columns if c not in ("soc", "term")]
FIRST_COLUMN = {"System organ class / term": st.column_config.TextColumn(pinned=True, width="large")}
st.dataframe(summary, hide_index=True, column_order=display_columns, column_config=FIRST_COLUMN, key="ae_summary")
ui.download_csv(summary.drop(columns="System organ class / term"), f"{study.study_id}_ae_summary_{ctx.as_of}.csv",
                key="ae_summary_csv")
st.markdown("##### By worst CTCAE grade")
grades = safety_view.grade_summary
st.dataframe(grades, hide_index=True, column_order=[c for c in grades.columns if c not in ("soc", "term")],
             column_config=FIRST_COLUMN, key="ae_grades")
ui.download_csv(grades.drop(columns="System organ class / term"), f"{study.study_id}_ae_grades_{ctx.as_of}.csv",
                key="ae_grades_csv")

st.subheader("Listings")
LISTING_CONFIG = {
    "subject_id": ui.subject_link_column(), "level": None, "label": "Dose level", "phase": "Phase",
    "day": st.column_config.NumberColumn("Day", help="Days from the first dose of any study treatment (0 = that day)"),
    "onset_date": st.column_config.DateColumn("Onset", format="YYYY-MM-DD"),
    "end_date": st.column_config.DateColumn("End", format="YYYY-MM-DD"),
    "term": "Term", "soc": "SOC", "grade": "Grade", "serious": "Serious", "related": "Related", "dlt": "DLT",
    "outcome": "Outcome", "action_taken": "Action taken", "ae_seq": "AE seq", "ae_spid": "Sponsor AE id",
    "since_review": review.SINCE_REVIEW_COLUMN,
    "window_stage": st.column_config.TextColumn(
        "In the DLT window of", help="The stage whose DLT window holds the onset: where a DLT counts")}
listings = safety_view.listings
if study.staged:  # where each DLT counts
    decision = ui.cached(load_dose_decision, ctx.db, study, ctx.as_of)
    listings = {name: frame.assign(window_stage=window_stage(decision, frame)) for name, frame in listings.items()}
for tab, (name, frame) in zip(st.tabs([f"{name} ({len(f)})" for name, f in listings.items()]), listings.items()):
    with tab:
        slug = name.split(" ")[0].lower()
        if frame.empty:
            st.info(f"No {name.lower()} by this date with these filters.")
            continue
        if (rows := ui.subject_view(ctx, frame)) is None:
            continue
        st.dataframe(ui.with_subject_links(review.marked(ctx, rows, "adverse_events"), ctx), hide_index=True,
                     column_config=LISTING_CONFIG, key=f"listing_{slug}")
        ui.download_csv(rows, f"{study.study_id}_{slug}_{ctx.as_of}.csv", key=f"listing_{slug}_csv")
