"""Read-only access to one data cut: named queries from ``queries/*.sql``.

One process-wide connection, a cursor per query (sharing the bare connection
across Streamlit sessions fails under load). The file is replaced atomically
by the loader; each query checks the file's identity and reopens when it
changed, so a new data cut shows without a restart.
"""
from __future__ import annotations

import datetime as dt
import functools
import os
import re
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from smc import settings

# Patient-level data on a shared server: no files, network, extensions or SET.
READ_ONLY_CONFIG = {"enable_external_access": False, "lock_configuration": True}


def as_date(value) -> dt.date | None:
    """A date from a query's DATE or TIMESTAMP value; None for NULL (None, NaN or NaT)."""
    return None if value is None or pd.isna(value) else pd.Timestamp(value).date()


# A line of a query that is only ``-- include: <name>`` stands for ``queries/shared/<name>.sql``, a fragment
# written once for several queries (queries/README.md).
_INCLUDE = re.compile(r"^([ \t]*)-- include: (\w+)[ \t]*$", re.MULTILINE)


@functools.cache
def query_text(name: str) -> str:
    """The text of ``queries/<name>.sql``, each ``-- include:`` line replaced by its shared fragment."""
    path = settings.QUERIES_DIR / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no query named {name!r} in {settings.QUERIES_DIR}")
    return _INCLUDE.sub(_fragment, path.read_text())


def _fragment(include: re.Match) -> str:
    indent, name = include.groups()
    path = settings.QUERIES_DIR / "shared" / f"{name}.sql"
    if not path.is_file():
        raise KeyError(f"no shared fragment named {name!r} in {path.parent}")
    return "\n".join(indent + line if line else line for line in path.read_text().rstrip("\n").split("\n"))


class QueryClock:
    """Wall time spent inside DuckDB across all sessions of the process, read by ``python -m smc bench``
    to tell a page's SQL time from the rest of its code."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds = 0.0

    def add(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


QUERY_CLOCK = QueryClock()


@functools.cache
def _memory() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:", config=READ_ONLY_CONFIG)


def query_tables(name: str, tables: dict[str, pa.Table], **params) -> pd.DataFrame:
    """Run ``queries/<name>.sql`` over Arrow tables already fetched (from :meth:`Database.arrow`), each
    visible under its key to this query only: several summaries of one large fetch without a refetch."""
    cursor, started = _memory().cursor(), time.perf_counter()
    try:
        for table_name, table in tables.items():
            cursor.register(table_name, table)
        return cursor.execute(query_text(name), params or None).df()
    finally:
        cursor.close()
        QUERY_CLOCK.add(time.perf_counter() - started)


class Database:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = None
        self._identity: tuple | None = None

    def file_identity(self) -> tuple:
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def connection(self) -> duckdb.DuckDBPyConnection:
        identity = self.file_identity()
        with self._lock:
            if self._con is None or identity != self._identity:
                # Close first: DuckDB caches database instances by path, so while the
                # old connection lives, connect() would hand back the replaced file.
                if self._con is not None:
                    self._con.close()
                self._con = duckdb.connect(str(self.path), read_only=True, config=READ_ONLY_CONFIG)
                self._identity = identity
            return self._con

    def query(self, name: str, **params) -> pd.DataFrame:
        """Run ``queries/<name>.sql`` with named parameters ($study_id, $as_of, …)."""
        return self.sql(query_text(name), **params)

    def rows(self, name: str, **params) -> list[dict]:
        """Like :meth:`query`, as dicts of Python values (DATE -> datetime.date) for rule code."""
        cursor, started = self.connection().cursor(), time.perf_counter()
        try:
            cursor.execute(query_text(name), params or None)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        finally:
            cursor.close()
            QUERY_CLOCK.add(time.perf_counter() - started)

    def arrow(self, name: str, **params) -> pa.Table:
        """Like :meth:`query`, as an Arrow table: no Python object per value, for the hundreds of thousands
        of rows that :func:`query_tables` then summarises."""
        cursor, started = self.connection().cursor(), time.perf_counter()
        try:
            return cursor.sql(query_text(name), params=params or None).to_arrow_table()
        finally:
            cursor.close()
            QUERY_CLOCK.add(time.perf_counter() - started)

    def sql(self, text: str, **params) -> pd.DataFrame:
        cursor, started = self.connection().cursor(), time.perf_counter()
        try:
            return cursor.execute(text, params or None).df()
        finally:
            cursor.close()
            QUERY_CLOCK.add(time.perf_counter() - started)

    @property
    def loaded_at(self) -> str:
        info = self.sql("SELECT source, loaded_at_utc FROM load_info")
        return "" if info.empty else f"{info.loaded_at_utc[0]:%Y-%m-%d %H:%M} UTC from {info.source[0]}"
