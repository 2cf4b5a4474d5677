"""Escalation: what the protocol rule says next, and the subjects behind it."""
import html

import pandas as pd
import streamlit as st

from smc import settings, ui
from smc.analysis.changes import mark_rows, recommendation_since
from smc.analysis.dose_decision import (
    CEILING_NOTE,
    LEVEL_TABLE_NOTE,
    level_table,
    load_dose_decision,
    stage_description,
    stage_heading,
)
from smc.analysis.swimlanes import lane_stage_options, load_swimlanes, stage_history
from smc.charts.escalation import escalation_history, swimlanes
from smc.decision_log import ledger
from smc.outputs.packet import build_packet
from smc.rules import boin
from smc.ui import decision_log_form as decision_form
from smc.ui import review
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
decision = ui.cached(load_dose_decision, ctx.db, study, ctx.as_of)


def stage_panels() -> list:
    """One tab per stage of a staged regimen (each has its own window and escalation); the page itself otherwise."""
    if not study.staged:
        return [st.container()]
    return st.tabs([md(stage_heading(s.stage)) for s in decision.stages])


def key(name: str, stage) -> str:
    """The first stage keeps the page's element keys; a later stage's are numbered."""
    return name if stage.stage.order == 1 else f"{name}_stage{stage.stage.order}"


st.title(f"{md(study.study_id)} · Escalation")
if study.staged:
    st.caption(f"{md(study.design)} in {len(study.regimen)} stages, each with its own DLT window and escalation · "
               f"as of {ctx.as_of:%Y-%m-%d}. Only escalation-phase subjects count.")
else:
    st.caption(f"{md(study.design)} · DLT window {study.dlt_window_days} days from the first dose of "
               f"{md(study.agent)} · as of {ctx.as_of:%Y-%m-%d}. Only escalation-phase subjects count.")

st.download_button(
    "Meeting packet (HTML)",
    data=lambda: build_packet(ctx.db, study.study_id, ctx.as_of, scope=ctx.scope, since=ctx.since_db).encode("utf-8"),
    file_name=f"{study.study_id}_smc_packet_{ctx.as_of}.html", mime="text/html", on_click="ignore",
    key="packet_download", icon=":material/description:",
    help="One self-contained file for the minutes: every section as of this date, and the decision log. "
         "Opens without a network."
         + ("" if ctx.scope.whole_study else f" Its subject-level sections show {md(ctx.scope.description)}."))

for panel, stage in zip(stage_panels(), decision.stages):
    rec, advice = stage.assessment.recommendation, stage.boin
    with panel:
        if study.staged:
            st.caption(md(stage_description(stage.stage)))
        protocol, second = st.columns([3, 2])
        with protocol.container(border=True):
            st.markdown("##### Protocol rule")
            target = md(study.label(rec.to_level)) if rec.to_level is not None else ""
            st.markdown(f"### `{rec.action}` {target}")
            if rec.mtd_level is not None:
                st.markdown(f"**MTD: {md(study.label(rec.mtd_level))}** (level {rec.mtd_level})")
            st.markdown(md(rec.reason))
            if (found := review.review_changes(ctx)) is not None:
                changed, why = recommendation_since(review.since_decision(ctx), decision, found.records,
                                                    review.changed_records(ctx),
                                                    stage.stage.name if study.staged else None)
                (st.warning if changed else st.caption)(f"**Since {md(ctx.since.title)}:** {md(why)}")
        with second.container(border=True):
            st.markdown(f"##### BOIN advice (target DLT rate {advice.target:.0%}) — advice only")
            st.markdown(f"**{advice.advice}** {md(study.label(advice.to_level)) if advice.to_level is not None else ''}")
            st.markdown(md(advice.reason))
            mtd = md(study.label(advice.mtd_estimate)) if advice.mtd_estimate is not None else "none yet"
            st.caption(f"λe = {advice.lambda_e:.4f}, λd = {advice.lambda_d:.4f}; isotonic MTD estimate: {mtd}. "
                       "The protocol rule decides.")

        st.subheader("Dose levels")
        st.dataframe(level_table(stage), hide_index=True, key=key("level_table", stage))
        st.caption(LEVEL_TABLE_NOTE + (" " + CEILING_NOTE if stage.assessment.ceiling else ""))

st.subheader("Swimlanes")
if not ctx.scope.nothing:
    calendar = st.segmented_control("x axis", ["Days from first dose", "Calendar date"],
                                    default="Days from first dose", key="swimlane_axis") == "Calendar date"
lanes = ui.cached(load_swimlanes, ctx.db, study, ctx.as_of, decision.assessment.states)
if lanes.lanes.empty:
    st.info("No subject enrolled by this date.")
elif (mine := ui.subject_view(ctx, lanes.lanes)) is not None:  # the lanes this viewer may see
    shown = mine
    if len(shown) > settings.CHART_PAGE_LANES and shown["phase"].nunique() > 1:
        phase = st.segmented_control("Lanes", ["escalation", "expansion"], default="escalation",
                                     format_func=lambda p: f"{md(p.capitalize())} ({(shown['phase'] == p).sum()})",
                                     key="swimlane_phase") or "escalation"
        shown = shown[shown["phase"] == phase]
    shown = ui.paged(shown, key="swimlane_page")
    drawn = set(shown["subject_id"])
    drawn_aes = lanes.adverse_events[lanes.adverse_events["subject_id"].isin(drawn)]
    records = review.changed_records(ctx)
    new_aes = drawn_aes[mark_rows(drawn_aes, records, "adverse_events") != ""] if records is not None else None
    figure = ui.figure(swimlanes, shown, *(frame[frame["subject_id"].isin(drawn)] for frame in
                       (lanes.administrations, lanes.adverse_events, lanes.assessments)),
                       study.dlt_window_days, ctx.as_of, calendar=calendar, changed_events=new_aes,
                       **lane_stage_options(decision))
    event = st.plotly_chart(figure, key="swimlanes", on_select="rerun", selection_mode="points")
    points = (event or {}).get("selection", {}).get("points", [])
    # customdata holds the id as plotly text (charts.style.plain): unescaped, it is the id again
    clicked = next((html.unescape(p["customdata"][0]) for p in points if p.get("customdata")), None)
    if clicked in set(mine.subject_id):
        st.session_state["escalation_subject"] = clicked

    st.markdown("##### Subject detail")
    subject = st.selectbox("Subject (or click a lane)", mine.subject_id, key="escalation_subject")
    lane = mine[mine.subject_id == subject].iloc[0]
    st.markdown(
        f"**{md(subject)}** · {md(lane.label)} · {md(lane.phase)} · DLT state **{md(lane.state)}** · enrolled "
        f"{lane.enrollment_date:%Y-%m-%d} · first dose "
        f"{'—' if pd.isna(lane.first_dose_date) else f'{lane.first_dose_date:%Y-%m-%d}'}"
        + ("" if pd.isna(lane.window_end) else f" · window ends {lane.window_end:%Y-%m-%d} (exclusive)")
        + ("" if pd.isna(lane.off_study_date) else f" · off study {lane.off_study_date:%Y-%m-%d} "
                                                    f"({md(lane.off_study_reason)})")
        + ("" if pd.isna(lane.death_date) else f" · died {lane.death_date:%Y-%m-%d}"))
    st.page_link("views/subject.py", label=f"Open the profile of {md(subject)}", icon=":material/person:",
                 query_params={"study": study.study_id, "as_of": ctx.as_of.isoformat(), "subject": subject})
    aes = lanes.adverse_events[lanes.adverse_events.subject_id == subject]
    st.dataframe(aes[["day", "onset_date", "end_date", "term", "soc", "grade", "serious", "related", "dlt", "outcome"]],
                 hide_index=True, key="subject_aes", column_config={
                     "day": st.column_config.NumberColumn("Day", help="Days from the first dose of the agent"),
                     "onset_date": st.column_config.DateColumn("Onset", format="YYYY-MM-DD"),
                     "end_date": st.column_config.DateColumn("End", format="YYYY-MM-DD"),
                     "term": "Term", "soc": "SOC", "grade": "Grade", "serious": "Serious",
                     "related": "Related", "dlt": "DLT", "outcome": "Outcome"})

st.subheader("Escalation history")
records, intact = decision_form.decision_log(ctx)
labels = {lv.level: lv.label for lv in study.levels}
for panel, stage in zip(stage_panels(), decision.stages):
    name = stage.stage.name
    with panel:
        # The rule's steps and the SMC's decisions are the study's; the enrollment and DLT marks are per subject.
        history = stage_history(decision, name, lanes.lanes)
        st.plotly_chart(ui.figure(escalation_history, history.steps, ctx.scope.rows(history.entries),
                                  ctx.scope.rows(history.dlts), labels, ctx.as_of,
                                  ledger.in_force(ledger.of_stage(records, study, name), ctx.as_of),
                                  entry=history.entry),
                        key=key("history", stage))
st.caption("Diamonds: the SMC's recorded decisions in force (not corrected), placed at the data cut they reviewed "
           "(up to the as-of date); a red outline marks a deviation from the rule."
           + ("" if ctx.scope.whole_study else f" Enrollment and DLT marks: {md(ctx.scope.description)}; the "
                                               "rule's steps are of every subject."))

st.subheader("SMC decisions")
decision_form.history_section(ctx, records, intact)
decision_form.record_form(ctx, decision, records)

with st.expander(f"BOIN decision table (target {study.target_dlt_rate:.0%})"):
    st.dataframe(pd.DataFrame(boin.decision_table(study.target_dlt_rate)).rename(columns={
        "n": "Evaluable subjects", "escalate_if_dlt_le": "Escalate if DLTs ≤",
        "deescalate_if_dlt_ge": "De-escalate if DLTs ≥", "eliminate_if_dlt_ge": "Eliminate if DLTs ≥"}),
        hide_index=True, key="boin_table")
    st.caption("Liu & Yuan (2015); elimination when Pr(DLT rate > target) > 0.95 with at least 3 evaluable.")
