"""Who has reviewed what: review marks on data cuts, and what "since the last review" compares with.

A mark says that a signed-in SMC member reviewed a subject (or one of its records) on a cut. On a later cut the
subject stays reviewed unless one of its records changed between the cut it was marked on and this one; then it
needs re-review, with what changed. Marks are stored append-only in the decision log's file (the registry's
writable store), with who, when and on which cut.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smc import settings
from smc.access import permissions
from smc.access.identity import Identity
from smc.analysis.changes import subject_changes
from smc.decision_log import ledger
from smc.store import cuts
from smc.store.append_only import appending, reading, utc_text
from smc.store.cuts import Cut, Registry

SCHEMA = (settings.QUERIES_DIR / "sqlite" / "review_marks_schema.sql").read_text()
REVIEWED, NEEDS_REREVIEW, NEVER_REVIEWED = "reviewed", "needs re-review", "never reviewed"
STATUSES = (REVIEWED, NEEDS_REREVIEW, NEVER_REVIEWED)


class MarkRefused(Exception):
    """The mark was not stored: why, in words for the reviewer."""


@dataclass(frozen=True)
class Mark:
    id: int
    study_id: str
    subject_id: str
    record_table: str
    record_key: str
    cut_sha256: str
    cut_file: str
    reviewer_issuer: str
    reviewer_subject: str
    reviewer_name: str
    reviewer_role: str
    marked_at_utc: str


def record_key_text(key: dict) -> str:
    """A record's key as stored in a mark: canonical JSON of its contract columns."""
    return json.dumps(key, sort_keys=True, default=str, ensure_ascii=False)


def mark(log: Path, study_id: str, subject_ids: list[str], cut: Cut, reviewer: Identity,
         record_table: str = "", record_key: dict | None = None, now: dt.datetime | None = None) -> int:
    """Store one mark per subject (or one record's mark) as reviewed on ``cut``; returns how many."""
    if not permissions.may(reviewer.role, "review_subjects"):
        raise MarkRefused(f"the {reviewer.role_title} role may not mark subjects as reviewed")
    if not subject_ids:
        raise MarkRefused("no subject was chosen")
    at = utc_text(now or dt.datetime.now(dt.UTC))
    key = record_key_text(record_key) if record_key else ""
    rows = [(study_id, s, record_table, key, cut.sha256, Path(cut.path).name, reviewer.issuer, reviewer.subject,
             reviewer.name, reviewer.role, at) for s in subject_ids]
    with appending(log, SCHEMA) as con:
        con.execute("BEGIN IMMEDIATE")  # every subject's mark, or none
        con.executemany("INSERT INTO review_marks (study_id, subject_id, record_table, record_key, cut_sha256, "
                        "cut_file, reviewer_issuer, reviewer_subject, reviewer_name, reviewer_role, marked_at_utc) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        con.execute("COMMIT")
    return len(rows)


def read_marks(log: Path, study_id: str) -> list[Mark]:
    """The study's marks, oldest first; none when nothing was marked yet."""
    if not log.is_file():
        return []
    with reading(log) as con:
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_marks'").fetchone():
            return []
        return [Mark(**dict(r)) for r in con.execute(
            "SELECT * FROM review_marks WHERE study_id = ? ORDER BY id", (study_id,))]


def last_review_cut(registry: Registry, cut: Cut, study_id: str) -> Cut | None:
    """The latest cut before ``cut`` on which the SMC recorded a decision for the study."""
    log = ledger.log_path(cut.path)
    try:
        records = ledger.read_log(log, study_id) if log.is_file() else []
    except ledger.LogUnreadable:
        return None
    taken_on = {cuts.named_cut_sha256(r.data_source) for r in records}
    reviewed = [c for c in registry.before(cut) if c.sha256 in taken_on and study_id in c.studies]
    return reviewed[-1] if reviewed else None


def comparison_cut(registry: Registry, cut: Cut, study_id: str) -> Cut | None:
    """What "since the last review" compares ``cut`` with: the last review's cut, else the previous cut."""
    return last_review_cut(registry, cut, study_id) or registry.previous(cut, study_id)


def marks_up_to(marks: list[Mark], registry: Registry, cut: Cut) -> list[Mark]:
    """The marks that can speak for ``cut``: those made on it or on an earlier cut (or on one no longer in the
    registry); a mark made on a later cut says nothing about what an earlier one held."""
    later = {c.sha256 for c in registry.cuts if c.sha256 != cut.sha256 and c not in registry.before(cut)}
    return [m for m in marks if m.cut_sha256 not in later]


def review_status(subject_ids: list[str], marks: list[Mark], cut: Cut,
                  changes_since: Callable[[str], pd.DataFrame | None]) -> pd.DataFrame:
    """Each subject's status on ``cut``: reviewed (on this cut, or on an earlier one and nothing of theirs
    changed since), needs re-review (with what changed), or never reviewed. ``changes_since(sha256)`` is the
    study's changed records (:func:`smc.analysis.changes.record_changes`) from that cut to ``cut`` (None: that
    cut is no longer in the registry), asked once per cut however many subjects were marked on it."""
    latest = {m.subject_id: m for m in marks if not m.record_table}
    since = functools.cache(changes_since)
    rows = []
    for subject_id in subject_ids:
        m = latest.get(subject_id)
        if m is None:
            rows.append(_status_row(subject_id, NEVER_REVIEWED, None, ""))
            continue
        if m.cut_sha256 == cut.sha256:
            rows.append(_status_row(subject_id, REVIEWED, m, ""))
            continue
        records = since(m.cut_sha256)
        if records is None:
            rows.append(_status_row(subject_id, NEEDS_REREVIEW, m, "reviewed on a cut no longer in the registry"))
            continue
        what = subject_changes(records, subject_id)
        rows.append(_status_row(subject_id, NEEDS_REREVIEW if what else REVIEWED, m, what))
    return pd.DataFrame(rows, columns=["subject_id", "status", "reviewed_by", "reviewed_on_cut", "reviewed_at_utc",
                                       "changed_since"])


def record_status(marks: list[Mark], subject_id: str, cut: Cut,
                  changes_since: Callable[[str], pd.DataFrame | None]) -> pd.DataFrame:
    """The subject's records marked one by one (an AE, a tumor assessment): for each, its latest mark and whether
    the record changed (or was removed) since the cut it was marked on."""
    latest = {(m.record_table, m.record_key): m for m in marks if m.subject_id == subject_id and m.record_table}
    rows = []
    for (table, key_text), m in latest.items():
        status, what = REVIEWED, ""
        if m.cut_sha256 != cut.sha256:
            records = changes_since(m.cut_sha256)
            if records is None:
                status, what = NEEDS_REREVIEW, "reviewed on a cut no longer in the registry"
            else:
                key = json.loads(key_text)
                mine = records[(records["table"] == table) & (records["subject_id"] == subject_id)]
                hit = [r for r in mine.itertuples() if all(str(r.key.get(k)) == str(v) for k, v in key.items())]
                if hit:
                    status = NEEDS_REREVIEW
                    what = "; ".join(f"{r.change}: {r.what_changed}" if r.what_changed else r.change for r in hit)
        named = ", ".join(f"{k} {v}" for k, v in json.loads(key_text).items())
        rows.append({"record": f"{table.replace('_', ' ')} {named}", "status": status, "reviewed_by": m.reviewer_name, "reviewed_on_cut": m.cut_file,
                     "changed_since": what})
    return pd.DataFrame(rows, columns=["record", "status", "reviewed_by", "reviewed_on_cut", "changed_since"])


def _status_row(subject_id: str, status: str, m: Mark | None, what: str) -> dict:
    return {"subject_id": subject_id, "status": status, "reviewed_by": m.reviewer_name if m else "",
            "reviewed_on_cut": m.cut_file if m else "", "reviewed_at_utc": m.marked_at_utc if m else "",
            "changed_since": what}


def progress(status: pd.DataFrame) -> dict[str, int]:
    """Subjects per status, in :data:`STATUSES` order."""
    counts = status["status"].value_counts()
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def progress_by_reviewer(status: pd.DataFrame) -> pd.DataFrame:
    """Per reviewer: subjects whose latest mark is theirs, still reviewed or needing re-review."""
    marked = status[status["reviewed_by"] != ""]
    table = pd.crosstab(marked["reviewed_by"], marked["status"]) if len(marked) else pd.DataFrame()
    return table.reindex(columns=[REVIEWED, NEEDS_REREVIEW], fill_value=0).reset_index().rename(
        columns={"reviewed_by": "reviewer"}) if len(marked) else pd.DataFrame(columns=["reviewer", REVIEWED,
                                                                                          NEEDS_REREVIEW])
