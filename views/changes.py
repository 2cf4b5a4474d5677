"""Changes: every record added, removed or changed since the compared data cut, and who has reviewed whom."""
import pandas as pd
import streamlit as st

from smc import ui
from smc.analysis.changes import CATEGORIES, KINDS, TABLE_NAMES, TABLES, as_frame, in_category
from smc.decision_log import ledger, reviews
from smc.store.study import study_subject_ids
from smc.ui import review
from smc.ui.text import md

ctx = ui.context()
study = ctx.study
st.title(f"{md(study.study_id)} · Changes")

found = review.review_changes(ctx)
if found is None:
    st.info(f"{md(ctx.cut.title if ctx.cut else 'This data cut')} is the first data cut of {md(study.study_id)}: "
            "there is nothing to compare it with.", icon=":material/info:")
else:
    st.caption(f"From **{md(ctx.since.title)}** to **{md(ctx.cut.title)}**, matched record by record on each "
               "table's record key (docs/data-contract.md, Record keys). Pick another cut to compare with in the "
               "sidebar.")
    for table, tc in found.changes.tables.items():
        if tc.duplicate_keys:
            st.warning(f"{md(TABLE_NAMES[table])} records: {len(tc.duplicate_keys)} record key(s) appear more than "
                       f"once in a cut (key: {md(', '.join(tc.key_columns))}). Those records are left out of the "
                       "comparison, neither added, removed nor changed: correct the data at its source.",
                       icon=":material/warning:")
            st.dataframe(ctx.scope.with_study_rows(pd.DataFrame(
                [{"cut": "compared" if d["cut"] == "from" else "shown", "subject_id": d["key"].get("subject_id"),
                  "key": ", ".join(f"{k} {v}" for k, v in d["key"].items() if k != "study_id"),
                  "records": d["records"]} for d in tc.duplicate_keys])), hide_index=True, key=f"duplicates_{table}")
    records = review.changed_records(ctx)
    names = {c: several for c, _, several in CATEGORIES}
    wanted = st.query_params.get("show")
    filters = st.columns(4)
    category = filters[0].selectbox("Show", [None, *names], index=[None, *names].index(wanted) if wanted in names
                                    else 0, format_func=lambda c: "every change" if c is None else names[c],
                                    key="changes_show")
    tables = filters[1].multiselect("Tables", TABLES, default=[], key="changes_tables", placeholder="every table",
                                    format_func=lambda t: TABLE_NAMES[t])
    kinds = filters[2].multiselect("Kind", KINDS, default=[], key="changes_kinds", placeholder="added, removed, changed")
    subjects = sorted(s for s in records["subject_id"].dropna().unique())
    subject = filters[3].selectbox("Subject", [None, *subjects], format_func=lambda s: "every subject" if s is None
                                   else md(s), key="changes_subject")
    shown = in_category(records, category)
    if tables:
        shown = shown[shown["table"].isin(tables)]
    if kinds:
        shown = shown[shown["change"].isin(kinds)]
    if subject:
        shown = shown[shown["subject_id"] == subject]
    st.subheader(f"{len(shown)} record(s)" + (f": {md(names[category])}" if category else ""))
    listing = shown.drop(columns=["categories", "key", "grade_change", "grade"]).assign(
        table=lambda f: f["table"].map(TABLE_NAMES))
    st.dataframe(ui.with_subject_links(listing, ctx), hide_index=True, key="changes_listing", column_config={
        "subject_id": ui.subject_link_column(), "table": "Table", "change": "Change", "record": "Record",
        "what_changed": st.column_config.TextColumn("What changed (old → new)", width="large")})
    fields = ctx.scope.with_study_rows(as_frame(found.changes))
    ui.download_csv(fields, f"{study.study_id}_changes_{ctx.since.short_id}_{ctx.cut.short_id}.csv",
                    key="changes_csv", label="Download every changed field (CSV)")

st.subheader("Review status")
log = ledger.log_path(ctx.db.path)
marks = reviews.read_marks(log, study.study_id)
registry = ui.open_registry()
subject_ids = list(ui.subject_rows(ctx, study_subject_ids(ctx.db, study.study_id), "subject_id")["subject_id"])
status = review.review_status(ctx, registry, subject_ids, marks)
counts = reviews.progress(status)
for column, (name, n) in zip(st.columns(len(counts)), counts.items()):
    column.metric(name.capitalize(), n)
by_reviewer = reviews.progress_by_reviewer(status)
if len(by_reviewer):
    st.dataframe(by_reviewer, hide_index=True, key="review_by_reviewer")
st.dataframe(ui.with_subject_links(status, ctx), hide_index=True, key="review_status", column_config={
    "subject_id": ui.subject_link_column(), "status": "Status", "reviewed_by": "Last reviewed by",
    "reviewed_on_cut": "On cut", "reviewed_at_utc": "At (UTC)",
    "changed_since": st.column_config.TextColumn("Changed since that review", width="large")})
if ctx.may("review_subjects") and ctx.cut is not None:
    pending = list(status.loc[status["status"] != reviews.REVIEWED, "subject_id"])
    with st.form("review_form", border=True):
        chosen = st.multiselect("Subjects reviewed on this cut", subject_ids, default=[], key="review_subjects",
                                format_func=md, help=f"{len(pending)} need review; each mark names you, the time and "
                                                     "this cut, and is kept for good.")
        if st.form_submit_button("Mark as reviewed", type="primary"):
            review.mark_reviewed(ctx, chosen)
review.show_review_outcome()
