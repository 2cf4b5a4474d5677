"""What changed in a study between two data cuts: records added, removed and changed, field by field.

Records are matched on the data contract's record key of each table (``contract.RECORD_KEYS``); a key that
appears twice in one cut is reported in ``duplicate_keys`` and its records are matched with nothing. The
comparison runs in DuckDB over both cuts' rows of the study (``queries/changes/``); only the differing records
reach Python. :func:`load_changes` is what the Changes page, the banner, the packet, ``python -m smc diff`` and
the review status all read.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import pandas as pd

from smc.store import contract
from smc.store.db import Database, query_text, rows_over_tables

TABLES = tuple(t for t in contract.TABLES if t in contract.RECORD_KEYS)
ADDED, REMOVED, CHANGED = "added", "removed", "changed"
KINDS = (ADDED, REMOVED, CHANGED)


@dataclass(frozen=True)
class TableChanges:
    table: str
    key_columns: tuple[str, ...]
    added: tuple[dict, ...] = ()  # whole records of the newer cut, by contract column
    removed: tuple[dict, ...] = ()  # whole records of the older cut
    changed: tuple[dict, ...] = ()  # {"key": {column: value}, "fields": {column: [old, new]}, "old":…, "new":…}
    duplicate_keys: tuple[dict, ...] = ()  # {"cut": "from" | "to", "key": {…}, "records": n}

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


def _columns_in(db: Database, table: str) -> set[str]:
    return {r[0] for r in db.sql("SELECT column_name FROM duckdb_columns() WHERE table_name = $t",
                                 t=table).itertuples(index=False)}


def _records(db: Database, table: str, study_id: str):
    """The study's records of ``table`` in one cut as Arrow, every contract column (NULL where the file
    predates it)."""
    present = _columns_in(db, table)
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
    """A value of a record as JSON shows it: dates and times as ISO text, NaN as None."""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _plain_record(record: dict | None) -> dict | None:
    return None if record is None else {k: _plain(v) for k, v in record.items()}


def table_changes(db_from: Database, db_to: Database, study_id: str, table: str) -> TableChanges:
    old, new = _records(db_from, table, study_id), _records(db_to, table, study_id)
    key = _key_columns(table, old, new)
    key_sql = "struct_pack(" + ", ".join(f"{_quoted(c)} := r.{_quoted(c)}" for c in key) + ")"
    frames = {"cut_from": old, "cut_to": new}
    text = query_text("changes/table_diff").format(key=key_sql)
    rows = rows_over_tables(text, frames)
    added, removed, changed = [], [], []
    for kind, _, before, after in rows:
        before, after = _plain_record(before), _plain_record(after)
        if kind == ADDED:
            added.append(after)
        elif kind == REMOVED:
            removed.append(before)
        else:
            fields = {c: [before[c], after[c]] for c in before if before[c] != after[c]}
            changed.append({"key": {c: after[c] for c in key}, "fields": fields, "old": before, "new": after})
    duplicates = []
    for side, rows_of_cut in (("from", old), ("to", new)):
        for record_key, n in rows_over_tables(query_text("changes/duplicate_keys").format(key=key_sql), {"cut_rows": rows_of_cut}):
            duplicates.append({"cut": side, "key": _plain_record(record_key), "records": n})
    order = _sort_key(key)
    return TableChanges(table, key, tuple(sorted(added, key=order)), tuple(sorted(removed, key=order)),
                        tuple(sorted(changed, key=lambda c: order(c["key"]))), tuple(duplicates))


def _sort_key(key: tuple[str, ...]):
    return lambda record: tuple((record[c] is None, str(record[c])) for c in key)


def load_changes(db_from: Database, db_to: Database, study_id: str) -> Changes:
    """Every contract table's changes for one study from ``db_from``'s cut to ``db_to``'s."""
    return Changes(study_id, {t: table_changes(db_from, db_to, study_id, t) for t in TABLES})


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
    return pd.DataFrame(rows, columns=["table", "change", "subject_id", "key", "field", "old", "new"])


def _row(table: str, kind: str, key: tuple[str, ...], record: dict) -> dict:
    return {"table": table, "change": kind, "subject_id": record.get("subject_id"),
            "key": ", ".join(f"{c} {record[c]}" for c in key if c != "study_id"), "field": None, "old": None,
            "new": None}
