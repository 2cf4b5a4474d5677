"""The Explore page's helpers: the schema with the contract's descriptions, the
example queries, and a no-code pivot of one contract table.

The pivot builds its SQL from names picked in the page, each checked against the
table's real columns and double-quoted; filter values travel as parameters. It
reads the study's raw rows (no as-of masking), as the SQL console does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from smc import settings
from smc.store.contract import TABLES
from smc.store.db import Database

EXAMPLES_DIR = settings.QUERIES_DIR / "examples"
AGGREGATES = {"count": "Rows", "subjects": "Subjects (distinct)", "mean": "Mean", "max": "Maximum"}
NUMERIC_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")
EMPTY = "(empty)"


def load_schema(db: Database) -> pd.DataFrame:
    """table_name, table_comment, column_name, data_type, column_comment: contract tables first, in load order."""
    columns = db.query("schema_columns")
    order = {name: i for i, name in enumerate(TABLES)}
    rank = columns["table_name"].map(lambda t: order.get(t, len(order)))
    return columns.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(
        drop=True)


@dataclass(frozen=True)
class Example:
    name: str  # the file stem
    title: str  # its first comment line
    sql: str

    @property
    def label(self) -> str:
        """The title up to its colon, for a button."""
        return self.title.split(":")[0]


def examples(directory: Path = EXAMPLES_DIR) -> list[Example]:
    out = []
    for path in sorted(directory.glob("*.sql")):
        text = path.read_text()
        first = text.splitlines()[0] if text else ""
        out.append(Example(path.stem, first.removeprefix("--").strip() or path.stem, text))
    return out


def pivot_tables() -> list[str]:
    """Contract tables that belong to a study (every one but sites)."""
    return [t for t in TABLES if t != "sites"]


def load_table_columns(db: Database, table: str) -> dict[str, str]:
    """{column: DuckDB type} of a pivot table; ValueError for any other name."""
    if table not in pivot_tables():
        raise ValueError(f"{table!r} is not a table the pivot can read ({', '.join(pivot_tables())})")
    cols = load_schema(db)
    cols = cols[cols["table_name"] == table]
    return dict(zip(cols["column_name"], cols["data_type"]))


def _identifier(name: str, columns: dict[str, str], what: str) -> str:
    if name not in columns:
        raise ValueError(f"{what}: {name!r} is not a column of this table")
    return '"' + name.replace('"', '""') + '"'


def load_filter_values(db: Database, study_id: str, table: str, column: str) -> list[str]:
    """The column's distinct values in the study, as text (the first settings.PIVOT_FILTER_CHOICES_VALUES, sorted)."""
    quoted = _identifier(column, load_table_columns(db, table), "Filter")
    rows = db.sql(f"SELECT DISTINCT CAST({quoted} AS VARCHAR) AS v FROM {table} WHERE study_id = $study_id "
                  f"AND {quoted} IS NOT NULL ORDER BY v LIMIT {settings.PIVOT_FILTER_CHOICES_VALUES}", study_id=study_id)
    return rows["v"].tolist()


@dataclass(frozen=True)
class PivotSpec:
    table: str
    rows: str
    columns: str | None = None
    aggregate: str = "count"
    value: str | None = None  # the column averaged or maximised
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (column, allowed values as text)


def pivot_sql(db: Database, spec: PivotSpec) -> tuple[str, dict]:
    """The checked SQL and its parameters for ``spec`` (long form: row, [column], value)."""
    columns = load_table_columns(db, spec.table)
    if spec.aggregate not in AGGREGATES:
        raise ValueError(f"Aggregate: {spec.aggregate!r} is not one of {', '.join(AGGREGATES)}")
    keys = [_identifier(spec.rows, columns, "Rows")]
    if spec.columns == spec.rows:
        raise ValueError("Columns: pick a different column from Rows, or none")
    if spec.columns:
        keys.append(_identifier(spec.columns, columns, "Columns"))
    if spec.aggregate == "count":
        measure = "count(*)"
    elif spec.aggregate == "subjects":
        if "subject_id" not in columns:
            raise ValueError(f"Aggregate: {spec.table} has no subject_id to count")
        measure = "count(DISTINCT subject_id)"
    else:
        if not spec.value:
            raise ValueError(f"Aggregate: {AGGREGATES[spec.aggregate].lower()} needs a value column")
        value = _identifier(spec.value, columns, "Value")
        if spec.aggregate == "mean" and not columns[spec.value].startswith(NUMERIC_TYPES):
            raise ValueError(f"Value: {spec.value!r} is {columns[spec.value]}, not a number; a mean needs numbers")
        measure = f"{'avg' if spec.aggregate == 'mean' else 'max'}({value})"
    where, params = ["study_id = $study_id"], {}
    for i, (column, allowed) in enumerate(spec.filters):
        if allowed:
            where.append(f"CAST({_identifier(column, columns, 'Filter')} AS VARCHAR) IN (SELECT unnest($f{i}))")
            params[f"f{i}"] = list(allowed)
    key_list = ", ".join(keys)
    text = (f"SELECT {key_list}, {measure} AS value FROM {spec.table} WHERE {' AND '.join(where)} "
            f"GROUP BY {key_list} ORDER BY {key_list}")
    return text, params


def load_pivot(db: Database, study_id: str, spec: PivotSpec) -> pd.DataFrame:
    """The aggregate per row value (and column value), long form with columns rows, [columns], value."""
    text, params = pivot_sql(db, spec)
    long = db.sql(text, study_id=study_id, **params)
    for key in filter(None, (spec.rows, spec.columns)):  # an empty cell is a group of its own, named
        long[key] = long[key].astype(object).where(long[key].notna(), EMPTY)
    return long


def pivot_wide(long: pd.DataFrame, spec: PivotSpec) -> pd.DataFrame:
    """Rows down, column values across (the page's table)."""
    if not spec.columns or long.empty:
        return long.rename(columns={"value": AGGREGATES[spec.aggregate]})
    wide = long.pivot(index=spec.rows, columns=spec.columns, values="value")
    wide.columns = [str(c) for c in wide.columns]
    return wide.reset_index()
