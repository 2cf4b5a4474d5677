"""Survival: Kaplan–Meier curves of OS, PFS and duration of response by dose level, phase or pooled."""
import streamlit as st

from smc import ui
from smc.analysis import survival
from smc.charts.survival import endpoint_plot
from smc.ui.text import md

ctx = ui.context()
study = ctx.study

st.title(f"{md(study.study_id)} · Survival")
st.caption(f"As of {ctx.as_of:%Y-%m-%d}. Subjects dosed with {md(study.agent)}; time 0 is that first dose. Events and "
           "censorings after the as-of date are not known yet. Kaplan–Meier estimates with Greenwood variance; 95% "
           "CIs of the curve and of the median use the log(−log) transform. Months are days / 30.4375.")
endpoint_col, group_col, unit_col, ci_col = st.columns([2, 3, 2, 2])
endpoint = endpoint_col.segmented_control(
    "Endpoint", list(survival.ENDPOINTS), format_func=survival.ENDPOINT_SHORT.get, default="os",
    key="survival_endpoint") or "os"
by = group_col.segmented_control("Group by", list(survival.GROUPINGS), format_func=survival.GROUPINGS.get,
                                 default="level", key="survival_by") or "level"
unit = unit_col.segmented_control("Time in", ["months", "days"], format_func=str.capitalize, default="months",
                                  key="survival_unit") or "months"
show_ci = ci_col.toggle("95% CI bands", value=False, key="survival_ci", help="Shade the pointwise 95% CI of each "
                        "curve")
st.caption(survival.DEFINITIONS[endpoint])

data = ui.cached(survival.load_survival, ctx.db, study, ctx.as_of)
times = data.endpoint(endpoint)
name = survival.ENDPOINTS[endpoint]
if times.empty:
    st.info(f"No subject in the {name.lower()} analysis by this date"
            + (" (no confirmed responder)." if endpoint == "dor" else "."))
else:
    # The curves are of every subject; a censor tick names its subject only to a viewer who may see them.
    named = None if ctx.scope.whole_study else tuple(sorted(ctx.scope.rows(times)["subject_id"]))
    st.plotly_chart(ui.figure(endpoint_plot, data, endpoint, by, unit, show_ci, study.level_order, named=named),
                    key="km_plot")
    st.caption("Steps drop at events; ticks mark censored subjects. The table under the plot is the number still "
               "followed at each tick.")

    st.subheader(f"{name}: medians and landmark rates")
    table = ui.shared(survival.survival_table, data, endpoint, by)  # a Kaplan–Meier fit per group
    display = survival.survival_table_display(table, unit)
    st.dataframe(display, hide_index=True, key="survival_table")
    st.caption('NR: not reached (the curve, or its confidence band, stays above 50%). A landmark rate is "—" when '
               "no subject of the group has been followed that long. With a handful of subjects per group the "
               "intervals are wide; read them, not the point estimates.")
    ui.download_csv(display, f"{study.study_id}_{endpoint}_{ctx.as_of}.csv", key="survival_csv")

    test = ui.shared(survival.logrank, data, endpoint, by)
    if test:
        st.info(f"Log-rank test across {test.groups} groups: χ² = {test.statistic:.2f} on "
                f"{test.degrees_of_freedom} df, p = {test.p_value:.3g}. Caution: with so few subjects and events "
                "per group the test has little power and its p-value is unstable; it describes these data, it is "
                "not a basis for a dose decision.", icon=":material/functions:")
    elif len(survival.groups(data, endpoint, by)) > 1:
        st.caption("No log-rank test: fewer than two groups have an event.")

    with st.expander(f"Subjects in the {name.lower()} analysis ({len(times)})"):
        listing = times.sort_values(["level", "subject_id"])[
            ["subject_id", "label", "phase", "start_date", "end_date", "days", "event", "reason"]]
        if (listing := ui.subject_view(ctx, listing)) is not None:
            st.dataframe(ui.with_subject_links(listing, ctx), hide_index=True, key="survival_subjects", column_config={
                "subject_id": ui.subject_link_column(), "label": "Dose level", "phase": "Phase",
                "start_date": st.column_config.DateColumn("From"), "end_date": st.column_config.DateColumn("To"),
                "days": st.column_config.NumberColumn("Days"), "event": st.column_config.CheckboxColumn("Event"),
                "reason": "End"})
