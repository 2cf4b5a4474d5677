"""Enrollment for the sponsor: against plan with a projection, by site, level and status; the portfolio."""
import streamlit as st

from smc import ui
from smc.analysis import enrollment
from smc.charts.enrollment import cumulative_enrollment, site_counts, status_counts
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
data = ui.cached(enrollment.load_enrollment, ctx.db, study, ctx.as_of)
projected = enrollment.projection(data)

st.title(f"{md(study.study_id)} · Enrollment")
st.caption(f"As of {ctx.as_of:%Y-%m-%d}. Screened: screening date by then (a screen failure counts from its "
           "screening date); dosed: any study treatment given.")

c = st.columns(5)
c[0].metric("Screened", data.screened)
c[1].metric("Screen failures", data.screen_failures)
c[2].metric("Enrolled / planned", f"{data.enrolled} / {data.planned if data.planned is not None else '—'}")
c[3].metric("Dosed", data.dosed)
if projected is None:
    c[4].metric("Plan reached", "—", help="Needs a planned enrollment and at least one enrolled subject")
elif projected.reached_on:
    c[4].metric("Plan reached", f"{projected.reached_on:%Y-%m-%d}")
else:
    c[4].metric("Plan reached (projected)", f"{projected.projected:%Y-%m-%d}" if projected.projected else "—")

cumulative = enrollment.cumulative(data)
if cumulative.empty:
    st.info("Nobody screened by this date.")
else:
    st.plotly_chart(ui.figure(cumulative_enrollment, cumulative, enrollment.plan_line(data), data.planned, projected,
                              "Screened and enrolled over time, against the plan"),
                    key="enrollment_cumulative")
    plan_text = (f"Plan: {data.planned} by {study.enrollment_target_date:%Y-%m-%d} (dashed line from the first "
                 "enrollment)." if enrollment.plan_line(data) is not None else
                 f"Plan: {data.planned} subjects, no target date." if data.planned else "No planned enrollment.")
    if projected and projected.projected:
        latest = f"{projected.latest:%Y-%m-%d}" if projected.latest else "no upper bound"
        plan_text += (f" At the recent rate ({projected.recent_enrolled} enrolled in the last "
                      f"{projected.window_days} days, {projected.rate_per_day * 30.4375:.1f} per month, 95% CI "
                      f"{projected.rate_low * 30.4375:.1f}–{projected.rate_high * 30.4375:.1f}), the remaining "
                      f"{projected.planned - projected.enrolled} would be enrolled by {projected.projected:%Y-%m-%d} "
                      f"(95%: {projected.earliest:%Y-%m-%d} to {latest}; exact Poisson interval of the rate).")
    elif projected and not projected.reached_on:
        plan_text += f" No enrollment in the last {projected.window_days} days: no projection."
    st.caption(plan_text)

left, right = st.columns(2)
with left:
    st.subheader("By site")
    sites = enrollment.by_site(data)
    if sites.empty:
        st.info("No site has screened anyone by this date.")
    else:
        st.plotly_chart(ui.figure(site_counts, sites, "Subjects per site"), key="enrollment_sites")
        st.dataframe(sites.drop(columns="site_id"), hide_index=True, key="enrollment_site_table", column_config={
            "site_name": "Site", "screened": "Screened", "screen_failures": "Screen failures",
            "reasons": "Screen-failure reasons", "enrolled": "Enrolled", "dosed": "Dosed"})
        ui.download_csv(sites, f"{study.study_id}_sites_{ctx.as_of}.csv", key="sites_csv")
with right:
    st.subheader("Status now")
    statuses = enrollment.status_counts(data)
    st.plotly_chart(ui.figure(status_counts, statuses, f"Subjects by status on {ctx.as_of:%Y-%m-%d}"),
                    key="enrollment_status")
    reasons = enrollment.screen_fail_reasons(data)
    if not reasons.empty:
        st.dataframe(reasons, hide_index=True, key="screen_fail_reasons",
                     column_config={"reason": "Screen-failure reason", "n": "Subjects"})

left, right = st.columns(2)
with left:
    st.subheader("By dose level and phase")
    st.dataframe(enrollment.by_level(data).drop(columns="level"), hide_index=True, key="enrollment_levels",
                 column_config={"label": "Dose level", "escalation": "Escalation", "expansion": "Expansion",
                                "enrolled": "Enrolled", "dosed": "Dosed"})
with right:
    st.subheader("Timing (days)")
    st.dataframe(enrollment.timing(data), hide_index=True, key="enrollment_timing", column_config={
        "interval": "Interval", "n": "Subjects", "median": st.column_config.NumberColumn("Median", format="%.1f"),
        "min": "Min", "max": "Max"})

st.subheader("Portfolio")
st.caption("Every study in this database at its own data cut (the sidebar date does not apply). The "
           "recommendation is the protocol rule's, from the Escalation page.")
portfolio = ui.cached(enrollment.load_portfolio, ctx.db)
st.dataframe(portfolio.drop(columns="title"), hide_index=True, key="portfolio", column_config={
    "study_id": "Study", "design": "Design", "agent": "Agent", "levels_opened": "Levels opened",
    "enrolled": "Enrolled", "planned": "Planned", "dlts": "DLTs", "recommendation": "Recommendation",
    "data_cut_date": st.column_config.DateColumn("Data cut")})
