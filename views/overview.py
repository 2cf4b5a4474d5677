"""Overview: the study's design, dose ladder and enrollment as of the sidebar date."""
from urllib.parse import urlencode

import streamlit as st

from smc import ui
from smc.analysis.dose_decision import load_dose_decision, stage_description, stage_heading
from smc.analysis.overview import load_overview
from smc.charts.overview import subjects_per_level
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
decision = ui.cached(load_dose_decision, ctx.db, study, ctx.as_of)
ov = load_overview(ctx.db, study, decision)

st.title(f"{md(study.study_id)} · Overview")
st.caption(md(study.title or ""))

c = st.columns(5)
c[0].metric("Screened", ov.screened, help="Screening (consent) date on or before the as-of date")
c[1].metric("Screen failures", ov.screen_failures)
c[2].metric("Enrolled / planned", f"{ov.enrolled} / {ov.planned if ov.planned is not None else '—'}")
c[3].metric("Deaths", ov.deaths)
c[4].metric("Data cut", f"{study.data_cut_date:%Y-%m-%d}" if study.data_cut_date else "—")

st.markdown(
    f"**Design** {md(study.design)} · **Agent** {md(study.agent)} · "
    + (f"**Stages** {len(study.regimen)} · " if study.staged else f"**DLT window** {study.dlt_window_days} days · ")
    + f"**Target DLT rate** {study.target_dlt_rate:.0%} · **Indication** {md(study.indication or '—')}")
if study.staged:
    st.markdown("\n".join(f"- **{md(stage_heading(s))}**: {md(stage_description(s))}" for s in study.regimen))

left, right = st.columns([1, 1])
with left:
    st.plotly_chart(ui.figure(subjects_per_level, ov.per_level), key="subject_counts_by_level")
with right:
    st.subheader("Dose ladder")
    first = f"DLTs ({study.regimen[0].title()})" if study.staged else "DLTs"
    ladder = ov.per_level.rename(columns={
        "level": "Level", "label": "Dose", "escalation": "Escalation", "expansion": "Expansion",
        "n_dosed": "Dosed", "n_dlt": first, "n_died": "Deaths",
        **{f"n_dlt:{s.title()}": f"DLTs ({s.title()})" for s in study.regimen[1:]}})
    dlt_columns = [first] + [f"DLTs ({s.title()})" for s in study.regimen[1:]]
    st.dataframe(ladder[["Level", "Dose", "Escalation", "Expansion", "Dosed", *dlt_columns, "Deaths"]],
                 hide_index=True, key="overview_ladder")
    st.caption("DLTs: escalation subjects with an adjudicated DLT inside their DLT window, as the "
               "protocol rule counts them" + (", in each stage at the subject's level there." if study.staged else "."))
    details = urlencode({"study": study.study_id, "as_of": ctx.as_of.isoformat()})  # the id is data: encoded
    for stage in decision.stages:
        rec = stage.assessment.recommendation
        named = f" ({md(stage.stage.title())})" if study.staged else ""
        st.markdown(f"**Protocol rule{named}:** `{rec.action}` — {md(rec.reason)} ([details](/escalation?{details}))")
