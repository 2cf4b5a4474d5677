"""What changed since the last review, on every page, and the SMC's review marks: the banner, the marks on
listings, the Changes page's and the Subject profile's review controls.

Every count comes from :func:`smc.analysis.changes.load_review_changes`, computed once per pair of cuts (and
kept beside them) and shared by every session; the review status from :mod:`smc.decision_log.reviews`.
"""
from __future__ import annotations

import sqlite3
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from smc.access import permissions
from smc.analysis.changes import ReviewChanges, load_review_changes, mark_rows
from smc.analysis.dose_decision import load_dose_decision
from smc.decision_log import ledger, reviews
from smc.store.cuts import Registry
from smc.store.study import default_as_of, load_study
from smc.ui import PageContext, cached, database, log, open_registry
from smc.ui.pages import CHANGES_PAGE
from smc.ui.text import md


def review_changes(ctx: PageContext) -> ReviewChanges | None:
    """The study's changes from the compared cut to the one shown (None: no earlier cut), computed once per
    pair of cuts and shared by every session."""
    if ctx.since_db is None:
        return None
    return cached(load_review_changes, ctx.since_db, ctx.db, ctx.study.study_id)


def changed_records(ctx: PageContext) -> pd.DataFrame | None:
    """:func:`review_changes`' records limited to what this viewer may see (study-level records for everyone;
    a subject's only within the subject scope)."""
    found = review_changes(ctx)
    return None if found is None else ctx.scope.with_study_rows(found.records)


def since_decision(ctx: PageContext):
    """The dose decision the compared cut held at its own data cut: what the SMC saw at the last review."""
    study = load_study(ctx.since_db, ctx.study.study_id)
    return cached(load_dose_decision, ctx.since_db, study, default_as_of(study))


def changes_url(ctx: PageContext, category: str | None = None) -> str:
    """A link to the Changes page for this study and pair of cuts, showing one category of change."""
    params = {k: v for k, v in st.query_params.to_dict().items() if k in ("study", "cut", "since", "as_of")}
    if category:
        params["show"] = category
    return f"{CHANGES_PAGE}?{urlencode(params)}"


def changes_banner(ctx: PageContext) -> None:
    """Every page's short account of what changed since the compared cut, each count a link to its list. The
    counts are aggregates, of the whole study for every role (as every page's counts are); the lists they link
    to show the rows the viewer may see."""
    found = review_changes(ctx)
    if found is None:
        return
    since = f"**{md(ctx.since.title)}**"
    counts = found.summary
    if not counts:
        st.caption(f":material/check_circle: No change to {md(ctx.study.study_id)}'s records since {since}.")
        return
    linked = permissions.may_open(ctx.viewer.role, "changes")
    parts = [f"[{md(c.text)}]({changes_url(ctx, c.category)})" if linked else md(c.text) for c in counts]
    st.info(f"Since {since}: " + ", ".join(parts) + ".", icon=":material/difference:")


def marked(ctx: PageContext, frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """A listing with a first column "Since last review" (new / changed / empty) when there is a compared cut."""
    records = changed_records(ctx)
    if records is None or frame.empty:
        return frame
    return frame.assign(since_review=mark_rows(frame, records, table))[["since_review", *frame.columns]]


def review_status(ctx: PageContext, registry: Registry, subject_ids: list[str], marks: list) -> pd.DataFrame:
    """Each subject's review status on the cut shown (:func:`reviews.review_status`), the changes since each
    cut a mark was made on computed once per pair of cuts."""
    return reviews.review_status(subject_ids, reviews.marks_up_to(marks, registry, ctx.cut), ctx.cut,
                                 _records_since(ctx, registry))


def _records_since(ctx: PageContext, registry: Registry):
    """sha256 of an earlier cut -> the study's changed records from it to the cut shown (None: not in the
    registry), each pair computed once and shared."""
    def records_since(sha256: str) -> pd.DataFrame | None:
        marked_on = registry.by_sha(sha256)
        if marked_on is None:
            return None
        return cached(load_review_changes, database(marked_on), ctx.db, ctx.study.study_id).records
    return records_since


def mark_reviewed(ctx: PageContext, subject_ids: list[str], record_table: str = "", record_key: dict | None = None,
                  ) -> None:
    """Store the viewer's review marks on the cut shown, then draw the page again with the outcome."""
    try:
        n = reviews.mark(ledger.log_path(ctx.db.path), ctx.study.study_id, subject_ids, ctx.cut, ctx.viewer,
                         record_table, record_key)
        st.session_state["_review_outcome"] = ("success", f"Marked {n} as reviewed on {ctx.cut.title}, by "
                                               f"{ctx.viewer.name}.")
    except reviews.MarkRefused as exc:
        st.session_state["_review_outcome"] = ("error", f"Not marked: {exc}.")
    except (OSError, sqlite3.Error) as exc:
        log.exception("review mark failed")
        st.session_state["_review_outcome"] = ("error", f"Not marked: the store could not be written ({exc}).")
    st.rerun()


def review_section(ctx: PageContext, subject_id: str, adverse_events: pd.DataFrame,
                   assessments: pd.DataFrame) -> None:
    """The subject profile's review status on the cut shown (the subject's, and each record marked on its own),
    and for an SMC member the buttons that mark the subject, or one AE or tumor assessment, as reviewed."""
    if ctx.cut is None:
        return
    st.subheader("Review")
    registry = open_registry()
    marks = reviews.read_marks(ledger.log_path(ctx.db.path), ctx.study.study_id)
    row = review_status(ctx, registry, [subject_id], marks).iloc[0]
    text = f"**{md(row.status.capitalize())}**"
    if row.reviewed_by:
        text += f" · last marked by {md(row.reviewed_by)} on {md(row.reviewed_on_cut)} at {md(row.reviewed_at_utc)}"
    if row.changed_since:
        text += f" · changed since: {md(row.changed_since)}"
    st.markdown(text)
    records = reviews.record_status(reviews.marks_up_to(marks, registry, ctx.cut), subject_id, ctx.cut,
                                    _records_since(ctx, registry))
    if len(records):
        st.dataframe(records, hide_index=True, key="review_records", column_config={
            "record": "Record reviewed on its own", "status": "Status", "reviewed_by": "Last reviewed by",
            "reviewed_on_cut": "On cut", "changed_since": "Changed since that review"})
    if not ctx.may("review_subjects"):
        return
    left, right = st.columns(2)
    if left.button(f"Mark {md(subject_id)} as reviewed on this cut", key="review_subject", type="primary"):
        mark_reviewed(ctx, [subject_id])
    choices = [(f"AE: {r.term} (grade {r.grade}, onset {r.onset_date:%Y-%m-%d})", "adverse_events",
                {"ae_spid": r.ae_spid} if isinstance(r.ae_spid, str) and r.ae_spid else {"ae_seq": r.ae_seq})
               for r in adverse_events.itertuples()]
    choices += [(f"Tumor assessment {r.assessment_date:%Y-%m-%d} ({r.overall_response or 'baseline'})",
                 "tumor_assessments", {"assessment_date": f"{r.assessment_date:%Y-%m-%d}"})
                for r in assessments.itertuples()]
    if choices:
        chosen = right.selectbox("One record", range(len(choices)), key="review_ae",
                                 format_func=lambda i: md(choices[i][0]))
        if right.button("Mark this record as reviewed", key="review_ae_button"):
            mark_reviewed(ctx, [subject_id], choices[chosen][1], choices[chosen][2])
    show_review_outcome()


def show_review_outcome() -> None:
    outcome = st.session_state.pop("_review_outcome", None)
    if outcome:
        (st.success if outcome[0] == "success" else st.error)(md(outcome[1]))


SINCE_REVIEW_COLUMN = st.column_config.TextColumn(
    "Since last review", help="new: not in the compared data cut; changed: some field differs (the Changes page "
                              "says which)")
