"""The Escalation page's decision log: its integrity, its history table, the form that records a decision and the
chair's approval.

Validation, the permission and freshness checks, and storage are :mod:`smc.decision_log.ledger`; this module only
draws and collects. The signer is the signed-in identity (``ctx.viewer``), shown read-only.
"""
from __future__ import annotations

import datetime as dt
import sqlite3

import streamlit as st

from smc import settings, ui
from smc.access import permissions
from smc.analysis.dose_decision import DoseDecision, stage_heading
from smc.decision_log import ledger
from smc.rules.escalation import recommended_level
from smc.ui.text import md

NEW = 0  # "Corrects record" choice for a new decision (record ids start at 1)


def _today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def _prefill(dose: DoseDecision) -> None:
    """Start the form at the rule's recommendation; again whenever the study or the data reviewed changes."""
    reviewed = (dose.study.study_id, dose.as_of)
    if st.session_state.get("decision_prefilled_for") == reviewed:
        return
    st.session_state.update(decision_prefilled_for=reviewed, decision_supersedes=NEW,
                            decision_meeting_date=max(_today(), dose.as_of),
                            decision_stage=dose.stages[0].stage.name)
    _prefill_stage(dose)


def _stage(dose: DoseDecision) -> str | None:
    """The stage the form decides on: the chosen one in a staged study, else None (the study's one stage)."""
    return st.session_state.get("decision_stage") if dose.study.staged else None


def _prefill_stage(dose: DoseDecision) -> None:
    """The decision and level the rule recommends for the stage chosen."""
    rule = dose.of_stage(_stage(dose)).assessment
    level, action = recommended_level(rule), rule.recommendation.action
    level = level if level is not None else dose.study.level_order[0]
    st.session_state.update(decision_level=level, decision_word=action,
                            decision_follows=ledger.follows(action, level, dose, _stage(dose)))


def _refill_follows(dose: DoseDecision) -> None:
    state = st.session_state
    state["decision_follows"] = ledger.follows(state["decision_word"], state["decision_level"], dose, _stage(dose))


def _record(ctx: ui.PageContext, dose: DoseDecision, log, source: str) -> None:
    state = st.session_state
    draft = ledger.Draft(
        study_id=dose.study.study_id, meeting_date=state["decision_meeting_date"], data_cut_date=dose.as_of,
        level=state["decision_level"], decision=state["decision_word"], rationale=state["decision_rationale"],
        attendees=state["decision_attendees"], signer=ctx.viewer, stage=_stage(dose),
        follows_recommendation=state["decision_follows"], supersedes=state.get("decision_supersedes") or None)
    if _signed("decision_outcome", "recorded", log, lambda: ledger.append(log, draft, dose, source)):
        state["decision_rationale"] = state["decision_attendees"] = ""
        state["decision_supersedes"] = NEW


def _approve(ctx: ui.PageContext, log) -> None:
    _signed("approval_outcome", "approved", log,
            lambda: ledger.approve(log, ctx.study.study_id, st.session_state["decision_to_approve"], ctx.viewer))


def _signed(outcome_key: str, done: str, log, sign) -> bool:
    """Run ``sign`` (an append to the log) and keep its outcome for the next run to show: ``(done, record)``, or
    ``("refused", every reason)``; whether it was stored."""
    try:
        record = sign()
    except ledger.Refused as refused:
        st.session_state[outcome_key] = ("refused", refused.errors)
        return False
    except (OSError, sqlite3.Error, ledger.LogUnreadable) as exc:
        st.session_state[outcome_key] = ("refused", [f"the decision log {log} could not be written: {exc}"])
        return False
    st.session_state[outcome_key] = (done, record)
    return True


def _signer(ctx: ui.PageContext, meaning: str, key: str) -> None:
    """Who signs, read-only from the sign-in, what the signature means, and whether the sign-in is fresh enough."""
    viewer = ctx.viewer
    st.markdown(f"**Signed by** {md(viewer.name)} ({md(viewer.email or 'no e-mail')}) · {md(viewer.role_title)} · "
                f"*{md(meaning)}*")
    age = viewer.signed_in_for_s(dt.datetime.now(dt.UTC))
    limit = settings.SIGNATURE_MAX_AUTH_AGE_S
    st.caption(f"Identity from the sign-in: {md(viewer.subject)} at {md(viewer.issuer)}. A signature needs a sign-in "
               f"within the last {limit // 60} minutes" + ("" if age is None else
                                                          f"; yours was {age / 60:.0f} minute(s) ago") + ".")
    if age is None or age > limit:
        st.warning("Sign in again before you sign: the provider asks for your password, and you come back to the "
                   "Overview; open this page again to sign.", icon=":material/lock_clock:")
        st.button("Sign in again to sign", key=f"fresh_sign_in_{key}", icon=":material/key:", on_click=st.login,
                  args=(settings.AUTH_FRESH_PROVIDER,))


def decision_log(ctx: ui.PageContext) -> tuple[list[ledger.Decision], bool]:
    """The study's records and whether its chain is intact, with a loud message when it is not."""
    try:
        records, broken = ledger.study_log(ledger.log_path(ctx.db.path), ctx.study.study_id)
    except ledger.LogUnreadable as exc:
        st.error(f"The decision log cannot be read: {md(exc)}", icon=":material/gpp_bad:")
        return [], False
    if broken:
        st.error("**The decision log has been altered outside the dashboard.** Its hash chain is broken at:\n\n"
                 + "\n".join(f"- {md(b)}" for b in broken) + "\n\nRestore it from a backup and investigate before "
                 "relying on these records.", icon=":material/gpp_bad:")
    return records, not broken


def history_section(ctx: ui.PageContext, records: list[ledger.Decision], intact: bool) -> None:
    log = ledger.log_path(ctx.db.path)
    if not records:
        st.info(f"No decision recorded for {md(ctx.study.study_id)} yet. The log is {md(log.name)}, beside the "
                "database.")
        return
    table = ledger.log_table(records, {lv.level: lv.label for lv in ctx.study.levels})
    st.dataframe(table, hide_index=True, key="decision_table")
    head = (f" Chain head {md(records[-1].hash)} (quote it in the minutes: any later change to the log changes it or "
            "breaks the chain)." if intact else "")
    st.caption(f"{len(records)} record(s) in {md(log.name)}, newest first; every record, whatever the as-of date. "
               f"Records are never changed: a correction supersedes one.{head}")
    ui.download_csv(table, f"{ctx.study.study_id}_smc_decisions.csv", key="decision_csv")


def record_form(ctx: ui.PageContext, dose: DoseDecision, records: list[ledger.Decision]) -> None:
    if not ctx.may("record_decision"):
        st.caption(f"Decisions are recorded by SMC members and approved by the chair; the {md(ctx.viewer.role_title)} "
                   "role reads them.")
        return
    _prefill(dose)
    study = ctx.study
    with st.container(border=True):
        st.markdown("##### Record a decision")
        if study.staged:
            st.radio("Stage", [s.name for s in study.regimen], key="decision_stage", horizontal=True,
                     format_func=lambda name: md(stage_heading(study.stage(name))), on_change=_prefill_stage,
                     args=(dose,), help="Each stage has its own DLT window and escalation: the decision is about one.")
        rule = dose.of_stage(_stage(dose)).assessment
        rec, target = rule.recommendation, recommended_level(rule)
        st.markdown(f"On the data as of **{dose.as_of:%Y-%m-%d}** (database cut {study.data_cut_date or '—'}), "
                    f"the protocol rule recommends **{md(rec.action)}**"
                    + ("" if target is None else f" at **{md(study.label(target))}** (level {target})")
                    + (f" in the {md(_stage(dose))} stage" if study.staged else "") + ".")
        left, middle, right = st.columns(3)
        left.date_input("Meeting date", key="decision_meeting_date", min_value=dose.as_of,
                        # the UTC date + 1 is already today east of Greenwich (decisions.validate allows it)
                        max_value=max(_today() + dt.timedelta(days=1), dose.as_of), format="YYYY-MM-DD")
        middle.selectbox("Dose level", study.level_order, key="decision_level",
                         format_func=lambda lv: f"{study.label(lv)} (level {lv})",
                         on_change=_refill_follows, args=(dose,))
        right.selectbox("Decision", ledger.VOCABULARY, key="decision_word", on_change=_refill_follows,
                        args=(dose,))
        st.checkbox("Follows the protocol recommendation", key="decision_follows",
                    help="Set from the decision and level chosen. A deviation needs a rationale.")
        st.text_area("Rationale", key="decision_rationale",
                     placeholder="Required for a deviation from the recommendation or a decision of 'other'")
        attendees, corrects = st.columns([3, 2])
        attendees.text_input("Attendees", key="decision_attendees", placeholder="names, roles")
        if ctx.may("supersede_decision"):
            corrected = ledger.superseded_by(records)
            open_ids = [r.id for r in records if r.kind == ledger.DECISION and r.id not in corrected
                        and r.data_cut_date == dose.as_of.isoformat()]
            corrects.selectbox("Corrects record", [NEW, *reversed(open_ids)], key="decision_supersedes",
                               format_func=lambda i: "— (a new decision)" if i == NEW else f"#{i}",
                               help="A correction is a new record that supersedes the old one; nothing is "
                                    "overwritten. Say why in the rationale. Records on this as-of date's data can be "
                                    "corrected here.")
        else:
            corrects.caption("Only the SMC chair corrects (supersedes) a record.")
        correcting = bool(st.session_state.get("decision_supersedes"))
        _signer(ctx, permissions.CORRECTION_MEANING if correcting else permissions.MEANINGS[ctx.viewer.role], "record")
        st.button("Sign and record the decision", key="decision_record", type="primary", icon=":material/gavel:",
                  on_click=_record, args=(ctx, dose, ledger.log_path(ctx.db.path), ledger.data_source(ctx.db)))
        outcome = st.session_state.pop("decision_outcome", None)
        if outcome and outcome[0] == "refused":
            st.error("Not recorded:\n\n" + "\n".join(f"- {md(e)}" for e in outcome[1]), icon=":material/block:")
        elif outcome:
            record = outcome[1]
            st.success(f"Recorded as #{record.id} at {record.recorded_at_utc} (UTC): {md(record.decision)} at "
                       f"{md(study.label(record.level))}"
                       + (f" ({md(record.stage)})" if record.stage else "") + f", signed by {md(record.recorded_by)} "
                       f"({md(record.signature_meaning)}).", icon=":material/check_circle:")
    if ctx.may("approve_decision"):
        approval_form(ctx, records)


def approval_form(ctx: ui.PageContext, records: list[ledger.Decision]) -> None:
    """The chair's signature on the decisions members recorded."""
    waiting = [r.id for r in records if not ledger.approval_problems(records, r.id) and r.signed]
    with st.container(border=True):
        st.markdown("##### Approve a decision")
        outcome = st.session_state.pop("approval_outcome", None)
        if outcome and outcome[0] == "refused":
            st.error("Not approved:\n\n" + "\n".join(f"- {md(e)}" for e in outcome[1]), icon=":material/block:")
        elif outcome:
            st.success(f"Approved #{outcome[1].approves} as #{outcome[1].id} at {outcome[1].recorded_at_utc} (UTC).",
                       icon=":material/verified:")
        if not waiting:
            st.caption("No recorded decision awaits the chair's approval.")
            return
        by_id = {r.id: r for r in records}
        st.selectbox("Decision to approve", list(reversed(waiting)), key="decision_to_approve",
                     format_func=lambda i: f"#{i}: {by_id[i].decision} at level {by_id[i].level}"
                                           + (f" ({by_id[i].stage})" if by_id[i].stage else "") + " on the data of "
                                           f"{by_id[i].data_cut_date}, {by_id[i].signature_meaning} by "
                                           f"{by_id[i].recorded_by}")
        _signer(ctx, permissions.APPROVAL_MEANING, "approve")
        st.button("Sign the approval", key="decision_approve", icon=":material/verified:", on_click=_approve,
                  args=(ctx, ledger.log_path(ctx.db.path)))
