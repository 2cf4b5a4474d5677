"""What changed in a study between two data cuts: records added, removed and changed, field by field.

Records are matched on the data contract's record key of each table (``contract.RECORD_KEYS``); a key that
appears twice in one cut is reported in ``duplicate_keys`` and its records are matched with nothing. The
comparison runs in DuckDB over both cuts' rows of the study (``queries/changes/``); only the differing records
reach Python. :func:`load_changes` is what the Changes page, the banner, the packet, ``python -m smc diff`` and
the review status all read (the pages through :func:`load_changes_kept`: a comparison of two cuts of a registry
is computed once and kept beside them, :mod:`smc.store.change_cache`).
"""
from __future__ import annotations

import datetime as dt
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from smc.store import change_cache, contract, cuts
from smc.store.db import Database, query_text, rows_over_tables

TABLES = tuple(t for t in contract.TABLES if t in contract.RECORD_KEYS)
TABLE_NAMES = {"studies": "study", "dose_levels": "dose level", "stages": "stage",
               "subjects": "subject", "subject_stages": "subject's stage",
               "administrations": "administration", "adverse_events": "adverse event",
               "tumor_assessments": "tumor assessment", "lab_results": "lab result"}  # how a listing names a record
ADDED, REMOVED, CHANGED = "added", "removed", "changed"
KINDS = (ADDED, REMOVED, CHANGED)


@dataclass(frozen=True)
class TableChanges:
    """One table's changes, as Arrow tables of every contract column in key order; row i of ``changed_old`` and
    ``changed_new`` is the same record in each cut. ``added``, ``removed`` and ``changed`` give them as JSON-ready
    dicts (computed when first asked: a page reads the tables)."""

    table: str
    key_columns: tuple[str, ...]
    added_rows: pa.Table
    removed_rows: pa.Table
    changed_old: pa.Table
    changed_new: pa.Table
    duplicate_keys: tuple[dict, ...] = ()  # {"cut": "from" | "to", "key": {…}, "records": n}

    @functools.cached_property
    def added(self) -> tuple[dict, ...]:
        """Whole records of the newer cut, by contract column (dates as ISO text)."""
        return _dicts(self.added_rows)

    @functools.cached_property
    def removed(self) -> tuple[dict, ...]:
        return _dicts(self.removed_rows)

    @functools.cached_property
    def changed(self) -> tuple[dict, ...]:
        """Each ``{"key": {column: value}, "fields": {column: [old, new]}, "old": {…}, "new": {…}}``."""
        return tuple({"key": {c: new[c] for c in self.key_columns}, "fields": {c: [old[c], new[c]] for c in old
                                                                                 if old[c] != new[c]},
                      "old": old, "new": new} for old, new in zip(_dicts(self.changed_old), _dicts(self.changed_new)))

    def as_json(self) -> dict:
        return {"added": list(self.added), "removed": list(self.removed),
                "changed": [{"key": c["key"], "fields": c["fields"]} for c in self.changed],
                "key": list(self.key_columns), "duplicate_keys": list(self.duplicate_keys)}


@dataclass(frozen=True)
class Changes:
    study_id: str
    tables: dict[str, TableChanges] = field(default_factory=dict)

    def as_json(self) -> dict:
        """``python -m smc diff --json``: ``{"tables": {table: {"added", "removed", "changed", …}}}``."""
        return {"study_id": self.study_id, "tables": {t: c.as_json() for t, c in self.tables.items()}}

    @property
    def empty(self) -> bool:
        return not any(c.added or c.removed or c.changed for c in self.tables.values())


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _columns_in(db: Database) -> dict[str, set[str]]:
    """Each table's columns in this cut's file (an older file may lack a column added to the contract since)."""
    present: dict[str, set[str]] = {}
    for r in db.rows("schema_columns"):
        present.setdefault(r["table_name"], set()).add(r["column_name"])
    return present


def _records(db: Database, present: set[str], table: str, study_id: str):
    """The study's records of ``table`` in one cut as Arrow, every contract column (NULL where the file
    predates it)."""
    columns = ", ".join(_quoted(c.name) if c.name in present else f"NULL::{c.sql_type} AS {_quoted(c.name)}"
                        for c in contract.columns()[table])
    text = query_text("changes/table_records").format(columns=columns, table=_quoted(table))
    with db.cursor() as cursor:
        return cursor.sql(text, params={"study_id": study_id}).to_arrow_table()


def _key_columns(table: str, old, new) -> tuple[str, ...]:
    """The first of the table's keys that every record of both cuts has in full, else its last."""
    keys = contract.RECORD_KEYS[table]
    for key in keys[:-1]:
        if all(rows.column(c).null_count == 0 for rows in (old, new) for c in key if c != "study_id"):
            return key
    return keys[-1]


def _plain(value):
    """A value of a record as JSON shows it: dates and times as ISO text, NaN and NaT as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _plain_record(record: dict | None) -> dict | None:
    return None if record is None else {k: _plain(v) for k, v in record.items()}


def _dicts(rows: pa.Table) -> tuple[dict, ...]:
    return tuple(_plain_record(r) for r in rows.to_pylist())


def table_changes(db_from: Database, db_to: Database, study_id: str, table: str,
                  columns: tuple[dict[str, set[str]], dict[str, set[str]]]) -> TableChanges:
    """One table's changes; ``columns``: each file's columns per table (:func:`_columns_in`). The matching runs
    in DuckDB and returns row numbers; only the records that differ are taken from Arrow."""
    present_from, present_to = columns
    old = _records(db_from, present_from.get(table, set()), table, study_id)
    new = _records(db_to, present_to.get(table, set()), table, study_id)
    key = _key_columns(table, old, new)
    others = [c.name for c in contract.columns()[table] if c.name not in key]
    frames = {"cut_from": _numbered(old), "cut_to": _numbered(new)}
    text = query_text("changes/table_diff").format(
        keys=", ".join(map(_quoted, key)),
        same_key=" AND ".join(f"o.{_quoted(c)} IS NOT DISTINCT FROM n.{_quoted(c)}" for c in key),
        differs=" OR ".join(f"o.{_quoted(c)} IS DISTINCT FROM n.{_quoted(c)}" for c in others) or "false")
    rows = {kind: ([], []) for kind in KINDS}
    for kind, old_row, new_row in rows_over_tables(text, frames):
        rows[kind][0].append(old_row)
        rows[kind][1].append(new_row)
    key_sql = "struct_pack(" + ", ".join(f"{_quoted(c)} := r.{_quoted(c)}" for c in key) + ")"
    duplicates = tuple({"cut": side, "key": _plain_record(record_key), "records": n} for side, record_key, n in
                       rows_over_tables(query_text("changes/duplicate_keys").format(key=key_sql), frames))
    order = [(c, "ascending", "at_end") for c in key]

    def take(rows_of: pa.Table, numbers: list[int]) -> pa.Table:
        return rows_of.take(pa.array(numbers, pa.int64()))

    changed_old, changed_new = take(old, rows[CHANGED][0]), take(new, rows[CHANGED][1])
    by_key = pc.sort_indices(changed_new, sort_keys=order)
    return TableChanges(table, key, take(new, rows[ADDED][1]).sort_by(order), take(old, rows[REMOVED][0]).sort_by(order),
                        changed_old.take(by_key), changed_new.take(by_key), duplicates)


def _numbered(rows: pa.Table) -> pa.Table:
    """The rows with their position as ``_row``: what the diff returns instead of the records themselves."""
    return rows.append_column("_row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))


def load_changes(db_from: Database, db_to: Database, study_id: str) -> Changes:
    """Every contract table's changes for one study from ``db_from``'s cut to ``db_to``'s."""
    columns = (_columns_in(db_from), _columns_in(db_to))
    return Changes(study_id, {t: table_changes(db_from, db_to, study_id, t, columns) for t in TABLES})


def _stored(changes: Changes) -> change_cache.Stored:
    return {t: {"key": tc.key_columns, "duplicates": tc.duplicate_keys, "added": tc.added_rows,
                "removed": tc.removed_rows, "changed_old": tc.changed_old, "changed_new": tc.changed_new}
            for t, tc in changes.tables.items()}


def _from_stored(study_id: str, stored: change_cache.Stored) -> Changes:
    return Changes(study_id, {t: TableChanges(t, s["key"], s["added"], s["removed"], s["changed_old"],
                                              s["changed_new"], s["duplicates"]) for t, s in stored.items()})


def _kept_at(db_from: Database, db_to: Database, study_id: str) -> Path | None:
    """Where a registry keeps this comparison: both files cuts of one registry; else None (not kept)."""
    if not (cuts.is_registered(db_from.path) and cuts.is_registered(db_to.path)):
        return None
    if db_from.path.resolve().parent != db_to.path.resolve().parent:
        return None
    return change_cache.path(db_to.path.resolve().parent, cuts.cut_of(db_from.path).sha256,
                             cuts.cut_of(db_to.path).sha256, study_id)


def load_changes_kept(db_from: Database, db_to: Database, study_id: str) -> Changes:
    """:func:`load_changes`, read from the registry when it was computed before (by an import, or by any server
    reading the folder), else computed and kept there. Two cuts outside one registry are compared afresh."""
    kept = _kept_at(db_from, db_to, study_id)
    stored = change_cache.read(kept, study_id) if kept is not None else None
    if stored is not None:
        return _from_stored(study_id, stored)
    changes = load_changes(db_from, db_to, study_id)
    if kept is not None:
        change_cache.write(kept, study_id, _stored(changes))
    return changes


def keep_comparisons(folder: str | Path, cut: cuts.Cut) -> int:
    """After a cut is added: compare each of its studies with the study's previous cut and keep the result, so
    the first page to ask reads it instead of computing it. Returns how many were kept."""
    registry = cuts.Registry.of_folder(folder)
    kept = 0
    for study_id in cut.studies:
        previous = registry.previous(cut, study_id)
        if previous is not None:
            load_changes_kept(Database(previous.path), Database(cut.path), study_id)
            kept += 1
    return kept


def as_frame(changes: Changes) -> pd.DataFrame:
    """One row per changed field (an added or removed record: one row, no field), for listings and CSV."""
    rows = []
    for table, tc in changes.tables.items():
        for record in tc.added:
            rows.append(_row(table, ADDED, tc.key_columns, record))
        for record in tc.removed:
            rows.append(_row(table, REMOVED, tc.key_columns, record))
        for c in tc.changed:
            for column, (before, after) in c["fields"].items():
                rows.append({**_row(table, CHANGED, tc.key_columns, c["new"]), "field": column,
                             "old": before, "new": after})
    frame = pd.DataFrame(rows, columns=["table", "change", "subject_id", "key", "field", "old", "new"])
    return frame.astype({"old": object, "new": object})


def _row(table: str, kind: str, key: tuple[str, ...], record: dict) -> dict:
    return {"table": table, "change": kind, "subject_id": record.get("subject_id"),
            "key": ", ".join(f"{c} {record[c]}" for c in key if c != "study_id"), "field": None, "old": None,
            "new": None}


# What the banner counts, in its order: (category, how one is named, how several are). A record may count in
# several (a new AE of grade 3 that is a DLT); every added, removed or changed record is in "all".
CATEGORIES = (
    ("new_subject", "subject enrolled", "subjects enrolled"),
    ("new_ae", "new AE", "new AEs"),
    ("grade_change", "grade change", "grade changes"),
    ("new_dlt", "new DLT", "new DLTs"),
    ("death", "death", "deaths"),
    ("new_scan", "new tumor assessment", "new tumor assessments"),
    ("new_dose", "new administration", "new administrations"),
    ("new_lab", "new lab result", "new lab results"),
    ("removed", "record removed", "records removed"),
    ("updated", "other change", "other changes"),
)
GRADE_3 = 3  # "of grade ≥3" in the banner
_ADDED_CATEGORY = {"tumor_assessments": "new_scan", "administrations": "new_dose", "lab_results": "new_lab"}


def _categories(table: str, kind: str, old: dict | None, new: dict | None) -> list[str]:
    if kind == REMOVED:
        return ["removed"]
    tags = []
    if table == "subjects":
        if new.get("enrollment_date") is not None and (old is None or old.get("enrollment_date") is None):
            tags.append("new_subject")
        if new.get("death_date") is not None and (old is None or old.get("death_date") is None):
            tags.append("death")
    elif table == "adverse_events":
        if kind == ADDED:
            tags.append("new_ae")
        elif old["grade"] != new["grade"]:
            tags.append("grade_change")
        if new["dlt"] == "Y" and (old is None or old["dlt"] != "Y"):
            tags.append("new_dlt")
    elif kind == ADDED and table in _ADDED_CATEGORY:
        tags.append(_ADDED_CATEGORY[table])
    return tags or ["updated"]


def _describe(table: str, record: dict) -> str:
    """A record in words, for a listing: what it is, not its key."""
    r = {k: "" if v is None else v for k, v in record.items()}
    if table == "adverse_events":
        return f"{r['term']} (grade {r['grade']}{', DLT' if r['dlt'] == 'Y' else ''}), onset {r['onset_date']}"
    if table == "lab_results":
        return f"{r['test']} {_number(r['value']) if r['value'] != '' else '<LLOQ'} {r['unit']} at {r['collected_at']}"
    if table == "tumor_assessments":
        return f"assessment {r['assessment_date']}: {r['overall_response'] or 'baseline'}"
    if table == "administrations":
        return f"{r['agent']} {_number(r['dose'])} {r['unit']} on {r['admin_date']}"
    if table == "subjects":
        return f"subject {record['subject_id']}"
    if table == "dose_levels":
        return f"level {record['level']} ({record['label']})"
    return table


def _number(value) -> str:
    """A dose or a result as people write it: 3,000,000,000 not 3000000000.0; 12.5 as it is."""
    if isinstance(value, float) and value.is_integer():
        return f"{int(value):,}"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def _value(value) -> str:
    return "—" if value is None else str(value)


def record_changes(changes: Changes) -> pd.DataFrame:
    """One row per added, removed or changed record: its table, subject, what it is, what changed (old → new),
    and the categories it counts in (``CATEGORIES``). The Changes page's listing and the banner's counts."""
    rows = []
    for table, tc in changes.tables.items():
        # Python values straight from Arrow (dates as datetime.date, printed as ISO text): no JSON conversion.
        items = [(ADDED, None, r) for r in tc.added_rows.to_pylist()] + [
            (REMOVED, r, None) for r in tc.removed_rows.to_pylist()] + [
            (CHANGED, o, n) for o, n in zip(tc.changed_old.to_pylist(), tc.changed_new.to_pylist())]
        for kind, old, new in items:
            record = new if new is not None else old
            fields = {c: (old[c], new[c]) for c in old if old[c] != new[c]} if kind == CHANGED else {}
            rows.append({
                "table": table, "change": kind, "subject_id": record.get("subject_id"),
                "record": _describe(table, record),
                "what_changed": "; ".join(f"{c} {_value(a)} → {_value(b)}" for c, (a, b) in fields.items()),
                "categories": tuple(_categories(table, kind, old, new)),
                "key": record_key(tc.key_columns, record),
                "grade_change": f"{old['grade']}→{new['grade']}" if "grade" in fields and table == "adverse_events"
                else "",
                "grade": record.get("grade") if table == "adverse_events" else None,
            })
    return pd.DataFrame(rows, columns=["table", "change", "subject_id", "record", "what_changed", "categories", "key",
                                       "grade_change", "grade"])


def record_key(key_columns: tuple[str, ...], record: dict) -> dict:
    return {c: record[c] for c in key_columns}


@dataclass(frozen=True)
class ChangeCount:
    category: str
    n: int
    text: str  # "7 new AEs (2 of grade ≥3)"


def summarise(records: pd.DataFrame) -> list[ChangeCount]:
    """The banner's counts over :func:`record_changes`, in :data:`CATEGORIES` order."""
    counts = []
    tagged = records["categories"].explode()  # one row per record and category, indexed by record
    by_category = {c: idx for c, idx in tagged.groupby(tagged, sort=False).groups.items()}
    for category, one, several in CATEGORIES:
        if category not in by_category:
            continue
        mine = records.loc[by_category[category]]
        n = len(mine)
        text = f"+{n} {one if n == 1 else several}" if category == "new_subject" else f"{n} {one if n == 1 else several}"
        if category == "new_ae":
            severe = int((mine["grade"] >= GRADE_3).sum())
            text += f" ({severe} of grade ≥{GRADE_3})" if severe else ""
        if category == "grade_change":
            moves = mine["grade_change"].value_counts()
            text = ", ".join(f"{k} {'grade change' if k == 1 else 'grade changes'} {move}" for move, k in moves.items())
        counts.append(ChangeCount(category, n, text))
    return counts


def in_category(records: pd.DataFrame, category: str | None) -> pd.DataFrame:
    return records if not category else records[[category in tags for tags in records["categories"]]]


def subject_changes(records: pd.DataFrame, subject_id: str) -> str:
    """What changed in one subject's records (of :func:`record_changes`), in a few words ("" when nothing did): why
    they need re-review."""
    mine = records[records["subject_id"] == subject_id]
    if mine.empty:
        return ""
    parts = [f"{len(g)} {table.replace('_', ' ')} {change}" for (table, change), g in mine.groupby(["table", "change"])]
    details = [w for w in mine.loc[mine["change"] == CHANGED, "what_changed"] if w][:3]
    return "; ".join(parts) + (f" ({' / '.join(details)})" if details else "")


NEW, UPDATED = "new", "changed"  # how a listing marks a row since the compared cut


def mark_rows(frame: pd.DataFrame, records: pd.DataFrame, table: str) -> pd.Series:
    """For each row of a listing of ``table`` (holding the table's key columns): "new" if the record was added
    since the compared cut, "changed" if it changed, else ""."""
    mine = records[(records["table"] == table) & (records["change"] != REMOVED)]
    if mine.empty or frame.empty:
        return pd.Series("", index=frame.index, dtype=object)
    key = [c for c in mine["key"].iloc[0] if c != "study_id"]
    if not set(key) <= set(frame.columns):
        return pd.Series("", index=frame.index, dtype=object)
    marks = {tuple(str(r.key[c]) for c in key): NEW if r.change == ADDED else UPDATED for r in mine.itertuples()}
    values = frame[key].astype(str).itertuples(index=False, name=None)
    return pd.Series([marks.get(tuple(v), "") for v in values], index=frame.index, dtype=object)


@dataclass(frozen=True)
class ReviewChanges:
    """A study's changes between two cuts, with their record listing and its counts (the whole study's: the
    banner's, for every role): what the pages and the packet read."""

    changes: Changes
    records: pd.DataFrame  # record_changes(changes)
    summary: tuple[ChangeCount, ...]


def load_review_changes(db_from: Database, db_to: Database, study_id: str) -> ReviewChanges:
    changes = load_changes_kept(db_from, db_to, study_id)
    records = record_changes(changes)
    return ReviewChanges(changes, records, tuple(summarise(records)))


def recommendation_since(before, now, records: pd.DataFrame, shown: pd.DataFrame,
                         stage: str | None = None) -> tuple[bool, str]:
    """Whether the protocol rule's recommendation for ``stage`` (default: the first) changed from ``before`` (a
    DoseDecision on the compared cut, at its data cut) to ``now``, and why in words: the old and new calls, and the
    changes that feed the rule (new DLTs, grade changes, subjects enrolled, AEs removed), counted over ``records``
    (the whole study's); the new DLTs named by subject among ``shown`` (the records the reader may see)."""
    def call(d) -> str:
        rec = d.of_stage(stage).assessment.recommendation
        level = rec.to_level if rec.to_level is not None else rec.mtd_level
        return rec.action + (f" {d.study.label(level)}" if level is not None else "")

    new = call(now)
    dlts = "; ".join(f"{r.subject_id}: {r.record}" for r in in_category(shown, "new_dlt").itertuples())
    why = ", ".join(c.text + (f" ({dlts})" if c.category == "new_dlt" and dlts else "") for c in summarise(records)
                    if c.category in ("new_dlt", "grade_change", "new_subject", "removed"))
    what = f" What changed: {why}." if why else ""
    if stage is not None and stage not in {s.stage.name for s in before.stages}:
        return True, f"The compared cut had no stage {stage}; it is now {new}.{what}"
    old = call(before)
    if old == new:
        return False, f"Unchanged since the compared cut: {new}." + (f" Changes since: {why}." if why else "")
    return True, (f"Changed since the compared cut: it was {old} "
                  f"({before.of_stage(stage).assessment.recommendation.reason}); it is now {new}.{what}")
