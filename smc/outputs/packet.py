"""The meeting packet: one self-contained HTML file with what the SMC decided on, frozen for the minutes.

Every number and chart comes from the functions the pages call, on the same as-of date. plotly.js is
embedded once in the head, so the file opens with no network. Subject-level sections (swimlanes, per-subject chart
marks) follow the reader's subject scope, as the pages do; aggregates are of the whole study.
"""
from __future__ import annotations

import datetime as dt
import html
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from smc.access.scope import WHOLE_STUDY, SubjectScope
from smc.analysis import biomarkers, efficacy, safety, survival
from smc.analysis.changes import ReviewChanges, load_review_changes
from smc.analysis.dose_decision import (
    CEILING_NOTE,
    LEVEL_TABLE_NOTE,
    DoseDecision,
    StageDecision,
    level_table,
    load_dose_decision,
    stage_description,
    stage_heading,
)
from smc.analysis.overview import Overview, load_overview
from smc.analysis.swimlanes import Swimlanes, lane_stage_options, load_swimlanes, stage_history
from smc.charts.biomarkers import exposure_vs_dose, immunogenicity_chart, shedding_chart, subset_panels
from smc.charts.efficacy import waterfall
from smc.charts.escalation import escalation_history, swimlanes
from smc.charts.safety import ae_heatmap
from smc.charts.survival import endpoint_plot
from smc.decision_log import ledger
from smc.rules import recist
from smc.store import cuts
from smc.store.db import Database
from smc.store.study import Study, default_as_of, load_study

# Section id -> heading, in packet order; the table of contents and the tests read this.
SECTIONS = {
    "study": "Study and data cut",
    "changes": "Changes since the last review",
    "recommendation": "Protocol recommendation and BOIN advice",
    "levels": "Dose levels",
    "swimlanes": "Swimlanes",
    "history": "Escalation history",
    "safety": "Safety: DLTs and adverse events",
    "efficacy": "Efficacy",
    "biomarkers": "Biomarkers",
    "survival": "Survival",
    "decisions": "SMC decision log",
}
PLOT_CONFIG = {"displaylogo": False, "responsive": True}
STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto;
       max-width: 1180px; padding: 0 24px 48px; }
header { border-bottom: 3px solid #3b528b; margin-bottom: 12px; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ccc; padding-top: 12px; } h3 { margin-bottom: 4px; }
nav ol { columns: 2; } .note { color: #555; font-size: 0.9em; } .meta td { padding: 2px 16px 2px 0; }
table.data { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
table.data th, table.data td { border: 1px solid #d0d0d0; padding: 3px 6px; text-align: left; vertical-align: top; }
.scroll { overflow-x: auto; }
table.data th { background: #f0f2f6; }
.call { font-size: 1.25em; font-weight: 600; } .box { border: 1px solid #ccc; border-radius: 6px; padding: 8px 14px;
       margin: 8px 0; } .alert { border-color: #d7191c; background: #fdecea; }
@media print { section { break-before: page; } nav { display: none; } }
"""


def _text(value) -> str:
    return html.escape("" if value is None else str(value))


class _Packet:
    """Collects the body; each figure becomes a div for the one embedded plotly.js."""

    def __init__(self):
        self.parts: list[str] = []
        self.n_figures = 0

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def para(self, text: str, css: str = "") -> None:
        self.add(f'<p class="{css}">{_text(text)}</p>' if css else f"<p>{_text(text)}</p>")

    def heading(self, text: str) -> None:
        self.add(f"<h3>{_text(text)}</h3>")

    def table(self, frame: pd.DataFrame) -> None:
        self.add(f'<div class="scroll">{frame.to_html(index=False, na_rep="—", border=0, classes="data")}</div>')

    def figure(self, fig: go.Figure) -> None:
        self.n_figures += 1
        self.add(pio.to_html(fig, full_html=False, include_plotlyjs=False, config=PLOT_CONFIG,
                             div_id=f"figure-{self.n_figures}"))

    def section(self, key: str) -> None:
        if len(self.parts):
            self.add("</section>")
        self.add(f'<section id="{key}"><h2>{_text(SECTIONS[key])}</h2>')


def build_packet(db: Database, study_id: str, as_of: dt.date | None = None, now: dt.datetime | None = None, *,
                 scope: SubjectScope = WHOLE_STUDY, since: Database | None = None) -> str:
    """The packet of ``study_id`` as of ``as_of`` (default: the data cut), as one HTML document. Its subject-level
    sections show the subjects ``scope`` admits (the reader's: every subject by default); aggregates are always
    of the whole study. ``since``: the data cut of the last review, for "Changes since the last review"."""
    study = load_study(db, study_id)
    as_of = as_of or default_as_of(study)
    now = now or dt.datetime.now(dt.UTC)
    labels = {lv.level: lv.label for lv in study.levels}
    dose = load_dose_decision(db, study, as_of)
    log = ledger.log_path(db.path)
    out = _Packet()

    out.section("study")
    _section_study(out, study, load_overview(db, study, dose), ledger.data_source(db), as_of, now, scope)
    out.section("changes")
    if since is None:
        out.para("No earlier data cut of this study to compare with (its first cut, or a cut served alone).", "note")
    else:
        _section_changes(out, load_review_changes(since, db, study_id), cuts.cut_of(since.path), scope)
    out.section("recommendation")
    _section_recommendation(out, study, dose)
    out.section("levels")
    _section_levels(out, study, dose)
    out.section("swimlanes")
    lanes = load_swimlanes(db, study, as_of, dose.assessment.states)
    _section_swimlanes(out, lanes, dose, scope)
    out.section("history")
    records, broken = _read_log(log, study_id)
    _section_history(out, dose, lanes.lanes, records, labels, as_of, scope)
    out.section("safety")
    _section_safety(out, safety.load_safety(db, study, as_of))
    out.section("efficacy")
    data = efficacy.load_efficacy(db, study, as_of)
    _section_efficacy(out, data, labels, study.min_sd_days, scope)
    out.section("biomarkers")
    _section_biomarkers(out, biomarkers.load_biomarkers(db, study, as_of), labels, study.agent, scope)
    out.section("survival")
    _section_survival(out, survival.load_survival(db, study, as_of, data), study.level_order, scope)
    out.section("decisions")
    _section_decisions(out, records, broken, labels, log)
    out.add("</section>")
    return _document(f"{study.study_id} SMC meeting packet, as of {as_of:%Y-%m-%d}", out.parts)


def _document(title: str, parts: list[str]) -> str:
    """The HTML document around the sections: plotly.js in the head, the title and the table of contents."""
    toc = "".join(f'<li><a href="#{key}">{_text(heading)}</a></li>' for key, heading in SECTIONS.items())
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f'<meta name="generator" content="SMC Dashboard"><style>{STYLE}</style>'
            f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
            f"<header><h1>{_text(title)}</h1></header><nav><ol>{toc}</ol></nav>{''.join(parts)}</body></html>")


def _scoped(out: _Packet, scope: SubjectScope, frame: pd.DataFrame) -> pd.DataFrame | None:
    """The rows of a subject-level section this packet shows, with a note when some were left out; None (after
    the note) when the scope leaves none of a non-empty section."""
    if scope.nothing:
        out.para(f"Subject-level data are not shown here ({scope.description}).", "note")
        return None
    shown = scope.rows(frame)
    if len(shown) < len(frame):
        out.para(f"Subject-level rows: {scope.description} ({shown['subject_id'].nunique()} of "
                 f"{frame['subject_id'].nunique()} subjects).", "note")
    return None if shown.empty and not frame.empty else shown


def _section_study(out: _Packet, study: Study, ov: Overview, data_source: str, as_of: dt.date,
                   now: dt.datetime, scope: SubjectScope) -> None:
    out.add('<table class="meta">' + "".join(f"<tr><td><b>{_text(k)}</b></td><td>{_text(v)}</td></tr>" for k, v in (
        ("Title", study.title), ("Design", study.design), ("Agent", study.agent),
        *((("Stages", "; ".join(f"{stage_heading(st)}: {stage_description(st)}" for st in study.regimen)),)
          if study.staged else (("DLT window", f"{study.dlt_window_days} days from the first dose"),)),
        ("Target DLT rate", f"{study.target_dlt_rate:.0%}"), ("Indication", study.indication),
        ("Data cut of the database", study.data_cut_date), ("As of (data shown)", as_of),
        ("Screened / screen failures", f"{ov.screened} / {ov.screen_failures}"),
        ("Enrolled / planned", f"{ov.enrolled} / {ov.planned if ov.planned is not None else '—'}"),
        ("Deaths", ov.deaths), ("Data source", data_source),
        ("Packet generated", f"{now:%Y-%m-%d %H:%M} UTC"),
        *(() if scope.whole_study else (("Subject-level sections", scope.description),)))) + "</table>")
    out.para("Everything in this packet but the decision log is what had happened by the as-of date; it was "
             "computed by the same functions as the dashboard's pages.", "note")


def _section_changes(out: _Packet, found: ReviewChanges, since: cuts.Cut, scope: SubjectScope) -> None:
    counts = found.summary  # aggregates: the whole study's, as every section's counts
    records = scope.with_study_rows(found.records)
    out.para(f"Compared with the data cut {since.title} (sha256 {since.sha256}), record by record on each table's "
             "record key.")
    out.para("; ".join(c.text for c in counts) if counts else "No record changed.")
    shown = records[records["table"].isin(["subjects", "adverse_events", "tumor_assessments"])
                    | (records["change"] != "added")]
    if len(shown):
        out.table(shown[["table", "change", "subject_id", "record", "what_changed"]].rename(columns={
            "what_changed": "what changed (old → new)"}))
        out.para("New lab results and administrations are counted above and listed on the Changes page.", "note")


def _stage_title(out: _Packet, study: Study, stage: StageDecision) -> None:
    if study.staged:
        out.heading(stage_heading(stage.stage))
        out.para(stage_description(stage.stage), "note")


def _section_recommendation(out: _Packet, study: Study, dose: DoseDecision) -> None:
    for stage in dose.stages:
        _stage_title(out, study, stage)
        _stage_recommendation(out, study, stage)


def _stage_recommendation(out: _Packet, study: Study, stage: StageDecision) -> None:
    rec, advice = stage.assessment.recommendation, stage.boin
    target = f" {study.label(rec.to_level)}" if rec.to_level is not None else ""
    out.add(f'<div class="box"><div class="call">Protocol rule ({_text(study.design)}): {_text(rec.action)}'
            f"{_text(target)}</div><p>{_text(rec.reason)}</p>"
            + (f"<p><b>MTD: {_text(study.label(rec.mtd_level))}</b></p>" if rec.mtd_level is not None else "")
            + "</div>")
    boin_target = f" {study.label(advice.to_level)}" if advice.to_level is not None else ""
    out.add(f'<div class="box"><div class="call">BOIN advice (target {advice.target:.0%}, advice only): '
            f"{_text(advice.advice)}{_text(boin_target)}</div><p>{_text(advice.reason)}</p>"
            f'<p class="note">λe = {advice.lambda_e:.4f}, λd = {advice.lambda_d:.4f}. The protocol rule decides.</p>'
            "</div>")


def _section_levels(out: _Packet, study: Study, dose: DoseDecision) -> None:
    for stage in dose.stages:
        _stage_title(out, study, stage)
        out.table(level_table(stage))
    capped = any(stage.assessment.ceiling for stage in dose.stages)
    out.para(LEVEL_TABLE_NOTE + (" " + CEILING_NOTE if capped else ""), "note")


def _section_swimlanes(out: _Packet, lanes: Swimlanes, dose: DoseDecision, scope: SubjectScope) -> None:
    study = dose.study
    if lanes.lanes.empty:
        out.para("No subject enrolled by this date.")
    elif (shown := _scoped(out, scope, lanes.lanes)) is not None:
        out.figure(swimlanes(shown, *(scope.rows(frame) for frame in (lanes.administrations, lanes.adverse_events,
                                                                      lanes.assessments)),
                             study.dlt_window_days, dose.as_of,
                             **lane_stage_options(dose)))


def _read_log(log: Path, study_id: str) -> tuple[list[ledger.Decision], list[ledger.Broken]]:
    """The study's records in the decision log and what is broken in it; an unreadable log is one break."""
    try:
        return ledger.study_log(log, study_id)
    except ledger.LogUnreadable as exc:
        return [], [ledger.Broken(None, None, f"the log cannot be read: {exc}")]


def _section_history(out: _Packet, dose: DoseDecision, lanes: pd.DataFrame, records: list[ledger.Decision],
                     labels: dict[int, str], as_of: dt.date, scope: SubjectScope) -> None:
    # The rule's steps and the SMC's decisions are the study's; the enrollment and DLT marks are per subject.
    for stage in dose.stages:
        _stage_title(out, dose.study, stage)
        history = stage_history(dose, stage.stage.name, lanes)
        out.figure(escalation_history(history.steps, scope.rows(history.entries), scope.rows(history.dlts), labels,
                                      as_of, ledger.in_force(ledger.of_stage(records, dose.study, stage.stage.name),
                                                             as_of), entry=history.entry))
    if not scope.whole_study:
        out.para(f"Enrollment and DLT marks: {scope.description}; the rule's steps are of every subject.", "note")


def _section_safety(out: _Packet, data: safety.SafetyData) -> None:
    totals = safety.tally(data)
    out.para(f"{totals['teae']} treatment-emergent AEs in {totals['subjects_with_teae']} of {totals['dosed']} dosed "
             f"subjects; {totals['baseline']} baseline (pre-dose) events are not counted.")
    cells = safety.heatmap_cells(data, "DLTs")
    if cells.empty:
        out.para("No DLT by this date.")
    else:
        rows = safety.heatmap_rows(safety.term_order(data.teae), cells)
        out.figure(ae_heatmap(cells, rows, data.columns(), f"{safety.HEATMAP_TITLES['DLTs']}, by term and dose level",
                              "count"))
    for title, table in (("TEAEs by term: subjects at any grade and at grade ≥3", safety.ae_summary_table(data)),
                         ("TEAEs by worst CTCAE grade", safety.grade_summary_table(data))):
        out.heading(title)
        out.table(table.drop(columns=["soc", "term"]))
    out.para("A subject counts once per term and SOC, at their worst grade; % of subjects dosed at the level.", "note")


def _section_efficacy(out: _Packet, data: efficacy.Efficacy, labels: dict[int, str], min_sd_days: int,
                      scope: SubjectScope) -> None:
    out.para("Best overall response, RECIST 1.1 as the investigator assessed it. "
             + recist.rule_text(min_sd_days), "note")
    out.table(efficacy.response_table_display(efficacy.response_table(data)))
    if not data.subjects["best_pct_change"].notna().any():
        out.para("No post-baseline tumor measurement by this date.")
    elif (shown := _scoped(out, scope, data.subjects[data.subjects["best_pct_change"].notna()])) is not None:
        out.figure(waterfall(shown, labels, "Best change in target-lesion sum per subject, coloured by best response"))


def _section_biomarkers(out: _Packet, data: biomarkers.Biomarkers, labels: dict[int, str], agent: str,
                        scope: SubjectScope) -> None:
    shown = 0
    fold = biomarkers.t_cell_fold_changes(data)
    if not fold.empty:
        out.figure(subset_panels(fold, labels, agent, "Geometric mean fold change from baseline per subset and "
                                                      "dose level"))
        shown += 1
    exposure = biomarkers.exposure(data)
    if not exposure.empty:
        test, specimen = exposure[["test", "specimen"]].iloc[0]
        mine = exposure[(exposure["test"] == test) & (exposure["specimen"] == specimen)]
        fit = biomarkers.power_model(mine["dose"], mine["auc"])  # of every subject; a point per subject in scope
        if (points := _scoped(out, scope, mine)) is not None:
            out.figure(exposure_vs_dose(points, "auc", "AUClast", fit, labels, data.dose_unit,
                                        f"{mine['unit'].iloc[0]} × h",
                                        f"AUClast of {test} against dose, per subject (log–log)"))
        shown += 1
    shed = biomarkers.shedding(data)
    if not shed.empty:
        out.figure(shedding_chart(shed, labels, "Subjects with detectable virus by specimen, day and level"))
        out.table(biomarkers.shedding_by_level(data).drop(columns="level"))
        shown += 1
    immunity = biomarkers.immunogenicity(data)
    if not immunity.empty:
        test = immunity["test"].iloc[0]
        out.figure(immunogenicity_chart(immunity, test, labels, f"{test}: subjects positive by day and level"))
        shown += 1
    if not shown:
        out.para("No T-cell, exposure, shedding or immunogenicity result by this date.")


def _section_survival(out: _Packet, data: survival.Survival, levels: list[int], scope: SubjectScope) -> None:
    out.para("Kaplan–Meier estimates from the first dose, by dose level; 95% CIs with the log(−log) transform. "
             "NR: not reached.", "note")
    for endpoint, name in survival.ENDPOINTS.items():
        out.heading(name)
        if data.endpoint(endpoint).empty:
            out.para(f"No subject in the {name.lower()} analysis by this date.")
            continue
        # The curves are of every subject; a censor tick names its subject only when the scope admits it.
        named = None if scope.whole_study else tuple(sorted(scope.rows(data.endpoint(endpoint))["subject_id"]))
        out.figure(endpoint_plot(data, endpoint, "level", "months", False, levels, named))
        out.table(survival.survival_table_display(survival.survival_table(data, endpoint, "level"), "months"))


def _section_decisions(out: _Packet, records: list[ledger.Decision], broken: list[ledger.Broken],
                  labels: dict[int, str], log) -> None:
    out.para("Every record in the log when the packet was made, including decisions on data after the as-of "
             "date; the chart above shows those on data up to it.", "note")
    if broken:
        out.add('<div class="box alert"><b>The decision log has been altered outside the dashboard:</b><ul>'
                + "".join(f"<li>{_text(b)}</li>" for b in broken) + "</ul></div>")
    if not records:
        out.para(f"No decision recorded for this study in {log.name}.")
        return
    if not broken:
        head = records[-1]
        sealed = ("HMAC-SHA-256 under the log's key" if head.hash_kind in (ledger.KEYED, ledger.SIGNED)
                  else "SHA-256: written before the log was keyed")
        out.para(f"{len(records)} record(s), chain verified. Chain head: {head.hash} (record #{head.id}, {sealed}); "
                 "quote it in the minutes: any later change to the log changes it or breaks the chain.", "note")
    out.table(ledger.log_table(records, labels))
