"""Subject profile: one subject's course as of the sidebar date. Shareable as
``/subject?study=IX001&subject=IX001-004``."""
import streamlit as st

from smc import ui
from smc.analysis.subject_profile import load_enrolled_subjects, load_subject_profile
from smc.charts.subject import subject_labs, subject_timeline
from smc.ui import review
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
wanted = st.query_params.get("subject")
linked = bool(wanted) and wanted != st.session_state.get("_subject_in_url")  # arrived by a link, not picked here
if linked and not ctx.scope.admits(wanted):  # refused before anything of it is read or drawn; the text shown
    ui.refuse(ctx, f"subject {wanted}",  # does not name it (the access log does)
              f"the subject in this link is not one you may see: {ctx.scope.description}.")
st.title(f"{md(study.study_id)} · Subject profile")
enrolled = load_enrolled_subjects(ctx.db, study, ctx.as_of)
ids = [s for s in enrolled if ctx.scope.admits(s)]  # the picker lists the subjects this viewer may see

key = f"subject::{study.study_id}"
if linked:
    if wanted in ids:
        st.session_state[key] = wanted
    else:
        st.warning(f'Subject "{md(wanted)}" from the link is not enrolled in {md(study.study_id)} by {ctx.as_of}.')
if st.session_state.get(key) not in ids:
    st.session_state.pop(key, None)

if not ids:
    st.info("No subject enrolled by this date." if not enrolled else
            f"None of the {len(enrolled)} subjects enrolled by this date is one you may see "
            f"({md(ctx.scope.description)}).")
else:
    subject_id = st.selectbox("Subject", ids, key=key)
    st.session_state["_subject_in_url"] = subject_id
    st.query_params["subject"] = subject_id
    profile = ui.cached(load_subject_profile, ctx.db, study, ctx.as_of, subject_id)
    s = profile.subject

    st.markdown(f"## {md(subject_id)} · {md(profile.status)}")
    teae = profile.adverse_events[profile.adverse_events["treatment_emergent"]]
    facts = {
        "Dose level": f"{profile.label} (level {s['level']})",
        "Phase": s["phase"] + (f", cohort {s['cohort']}" if s["cohort"] else ""),
        "DLT state": profile.dlt_state or "expansion: not counted by the rule",
        "TEAEs": f"{len(teae)}" + (f", worst grade {teae['grade'].max()}" if len(teae) else ""),
        "Sex / age / site": f"{s['sex'] or '—'} / {s['age'] if s['age'] is not None else '—'} / {s['site_id'] or '—'}",
    }
    for column, (name, value) in zip(st.columns(len(facts)), facts.items()):
        column.markdown(f":small[{name}]  \n**{md(value)}**")  # a small label over the value, as Markdown

    def when(label, date, extra=None):
        return f"{md(label)} **{date:%Y-%m-%d}**" + (f" ({md(extra)})" if extra else "") if date else None

    st.markdown(" · ".join(x for x in (
        when("Screened", s["screening_date"]), when("Enrolled", s["enrollment_date"]),
        when("First dose", s["first_dose_date"]),
        when(f"First {study.agent}", s["first_agent_dose_date"],
             f"DLT window to {profile.dlt_window[1]:%Y-%m-%d}, exclusive" if profile.dlt_window else None),
        when("Off treatment", s["off_treatment_date"], s["off_treatment_reason"]),
        when("Off study", s["off_study_date"], s["off_study_reason"]),
        when("Died", s["death_date"], s["death_cause"]),
        when("Last contact", s["last_contact_date"])) if x))

    milestones = {label: day for label, column in (
        ("Off treatment", "off_treatment_date"), ("Off study", "off_study_date"), ("Death", "death_date"))
        if (day := profile.day(s[column])) is not None}
    window = tuple(profile.day(d) for d in profile.dlt_window) if profile.dlt_window else None
    st.plotly_chart(ui.figure(subject_timeline, profile.administrations, profile.adverse_events, profile.assessments,
                              study.agent,
                              f"{subject_id} · {profile.label}: treatment, adverse events and target lesions",
                              as_of_day=profile.day(ctx.as_of) or 0, dlt_window=window, milestones=milestones),
                    key="timeline")

    labs = profile.labs
    categories = list(dict.fromkeys(labs["category"].fillna("other")))
    default = [c for c in categories if c in ("hematology", "chemistry", "tumor_marker")] or categories[:1]
    chosen = st.pills("Laboratory categories", categories, default=default, selection_mode="multi", format_func=md,
                      key=f"subject_lab_categories::{study.study_id}") or []
    st.plotly_chart(ui.figure(subject_labs, labs[labs["category"].fillna("other").isin(chosen)],
                              f"{subject_id} · laboratory results (shaded: normal range; open circle: below LLOQ, "
                              "drawn at LLOQ/2)"), key="labs")

    with st.expander(f"Adverse events ({len(profile.adverse_events)})", expanded=True):
        st.dataframe(review.marked(ctx, profile.adverse_events.assign(
            treatment_emergent=profile.adverse_events["treatment_emergent"].map({True: "TEAE", False: "baseline"})),
            "adverse_events"), hide_index=True, key="subject_aes",
            column_order=["since_review", "day", "onset_date", "end_date", "term", "soc", "grade", "serious", "related", "dlt",
                          "outcome", "action_taken", "treatment_emergent"],
            column_config={"since_review": review.SINCE_REVIEW_COLUMN,
                           "day": st.column_config.NumberColumn("Day", help="Days from the first dose of any study "
                                                                "treatment (0 = that day)"),
                           "onset_date": st.column_config.DateColumn("Onset", format="YYYY-MM-DD"),
                           "end_date": st.column_config.DateColumn("End", format="YYYY-MM-DD"),
                           "term": "Term", "soc": "SOC", "grade": "Grade", "serious": "Serious",
                           "related": "Related", "dlt": "DLT", "outcome": "Outcome", "action_taken": "Action taken",
                           "treatment_emergent": "Emergence"})
    with st.expander(f"Administrations ({len(profile.administrations)})"):
        st.dataframe(profile.administrations.drop(columns=["subject_id", "end_day"]), hide_index=True,
                     key="subject_doses")
    with st.expander(f"Tumor assessments ({len(profile.assessments)})"):
        st.dataframe(profile.assessments.drop(columns=["subject_id"]), hide_index=True, key="subject_scans")
        st.caption("Investigator time-point responses as recorded (the baseline has none).")
    review.review_section(ctx, subject_id, profile.adverse_events, profile.assessments)
