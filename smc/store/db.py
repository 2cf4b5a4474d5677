"""Read-only access to one data cut: named queries from ``queries/*.sql``.

One process-wide connection per data cut file, a cursor per query (sharing the
bare connection across Streamlit sessions fails under load). The file is
replaced atomically by the loader; each query checks the file's identity and
opens the new file when it changed, so a new data cut shows without a restart,
while queries already running finish on the old one.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from smc import settings

# Patient-level data on a shared server: no files, network, extensions or SET.
READ_ONLY_CONFIG = {"enable_external_access": False, "lock_configuration": True}
log = logging.getLogger("smc")


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
    with _over_tables(tables) as cursor:
        return cursor.execute(query_text(name), params or None).df()


def rows_over_tables(text: str, tables: dict[str, pa.Table], **params) -> list[tuple]:
    """SQL text (a query of ``queries/`` already filled in) over Arrow tables, as Python tuples: a STRUCT is a
    dict, a DATE a datetime.date."""
    with _over_tables(tables) as cursor:
        return cursor.execute(text, params or None).fetchall()


@contextlib.contextmanager
def _over_tables(tables: dict[str, pa.Table]) -> Iterator[duckdb.DuckDBPyConnection]:
    cursor, started = _memory().cursor(), time.perf_counter()
    try:
        for table_name, table in tables.items():
            cursor.register(table_name, table)
        yield cursor
    finally:
        cursor.close()
        QUERY_CLOCK.add(time.perf_counter() - started)


class _Connection:
    """One connection to one data cut file, and how many queries are using it now."""

    def __init__(self, con: duckdb.DuckDBPyConnection, identity: tuple):
        self.con, self.identity, self.leases = con, identity, 0


def _identity(st: os.stat_result) -> tuple:
    return st.st_ino, st.st_mtime_ns, st.st_size


# Names for the hard links a connection is opened through, unique within the process.
_LINK_NUMBERS = itertools.count()


class Database:
    """The data cut at ``path``, read through one connection per file identity.

    Each query leases the current connection and releases it when its cursor closes. When the file is replaced, the
    next query opens the new file and publishes it; the old connection closes when its last query ends, so a query
    running across a swap finishes on the cut it started on and none is cut off.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Condition()
        self._current: _Connection | None = None
        self._retired: list[_Connection] = []  # superseded, still leased by a running query
        self._held = threading.local()  # the connections this thread holds leases on, innermost last

    def file_identity(self) -> tuple:
        return _identity(os.stat(self.path))

    @property
    def open_connections(self) -> int:
        """Connections not yet closed: the current one and any superseded one a query still uses."""
        with self._lock:
            return (self._current is not None) + len(self._retired)

    @contextlib.contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the current data cut, leased for the block: a swap meanwhile does not close it. Queries
        nested in the block read the same cut. Its time counts in :data:`QUERY_CLOCK`."""
        leased, started = self._lease(), time.perf_counter()
        try:
            cursor = leased.con.cursor()
            try:
                yield cursor
            finally:
                cursor.close()
        finally:
            self._release(leased)
            QUERY_CLOCK.add(time.perf_counter() - started)

    def query(self, name: str, **params) -> pd.DataFrame:
        """Run ``queries/<name>.sql`` with named parameters ($study_id, $as_of, …)."""
        return self.sql(query_text(name), **params)

    def rows(self, name: str, **params) -> list[dict]:
        """Like :meth:`query`, as dicts of Python values (DATE -> datetime.date) for rule code."""
        with self.cursor() as cursor:
            cursor.execute(query_text(name), params or None)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def rows_since_contract_had(self, name: str, **params) -> list[dict]:
        """Like :meth:`rows`, for a query of a table the contract added later (stages): a data cut written
        before it has none, so no rows."""
        try:
            return self.rows(name, **params)
        except duckdb.CatalogException:
            return []

    def arrow(self, name: str, **params) -> pa.Table:
        """Like :meth:`query`, as an Arrow table: no Python object per value, for the hundreds of thousands
        of rows that :func:`query_tables` then summarises."""
        with self.cursor() as cursor:
            return cursor.sql(query_text(name), params=params or None).to_arrow_table()

    def sql(self, text: str, **params) -> pd.DataFrame:
        with self.cursor() as cursor:
            return cursor.execute(text, params or None).df()

    @property
    def loaded_at(self) -> str:
        info = self.sql("SELECT source, loaded_at_utc FROM load_info")
        return "" if info.empty else f"{info.loaded_at_utc[0]:%Y-%m-%d %H:%M} UTC from {info.source[0]}"

    # ----------------------------------------------------------------------------------------------- leases

    def _lease(self) -> _Connection:
        held = getattr(self._held, "connections", None)
        if held is None:
            held = self._held.connections = []
        identity = None if held else self.file_identity()  # outside the lock: a query's usual cost is one stat
        with self._lock:
            if held:
                leased = held[-1]
            elif self._current is not None and self._current.identity == identity:
                leased = self._current
            else:
                leased = self._reopen()
            leased.leases += 1
        held.append(leased)
        return leased

    def _release(self, leased: _Connection) -> None:
        self._held.connections.remove(leased)
        with self._lock:
            leased.leases -= 1
            if leased.leases == 0 and leased is not self._current:
                self._retired.remove(leased)
                leased.con.close()
                self._lock.notify_all()

    def _retire_current(self) -> None:
        """With the lock held: the current connection is superseded; it closes now if no query uses it."""
        old, self._current = self._current, None
        if old is None:
            return
        if old.leases:
            self._retired.append(old)
        else:
            old.con.close()

    def _reopen(self) -> _Connection:
        """With the lock held: a connection to the file now at the path, published as the current one."""
        while True:
            identity = self.file_identity()
            if self._current is not None and self._current.identity == identity:
                return self._current  # another query opened it while this one waited for the lock
            try:
                fresh = self._connect_through_link()
            except FileNotFoundError:
                continue  # replaced (or gone: the next file_identity says so) while linking
            if fresh is None:
                # No link could be made (a read-only directory, a file of another user): DuckDB would hand back
                # the old instance of this path, so every old connection must close first; queries wait for the
                # running ones to end.
                self._retire_current()
                if self._retired:
                    self._lock.wait()
                    continue
                fresh = self._connect_by_path()
                if fresh is None:
                    continue
            self._retire_current()
            self._current = fresh
            return fresh

    def _connect_through_link(self) -> _Connection | None:
        """The file opened through a hard link of its own, or None if none can be made. DuckDB caches database
        instances by resolved path (symbolic links and /proc/self/fd included, measured on DuckDB 2.0): while an
        old connection lives, connect() on the path hands back the replaced file. The link's stat is exactly the
        file opened; the link goes as soon as the file is open. FileNotFoundError: replaced while linking."""
        target = Path(os.path.realpath(self.path))  # the link must be on the file's own file system
        link = target.with_name(f".{target.name}.{os.getpid()}.{next(_LINK_NUMBERS)}.open")
        link.unlink(missing_ok=True)  # left by a process of the same id that stopped between link and unlink
        try:
            os.link(target, link)
        except FileNotFoundError:
            raise
        except OSError as exc:
            log.warning("cannot link %s beside itself (%s); a new data cut waits for running queries", target,
                        exc.strerror)
            return None
        try:
            identity = _identity(os.stat(link))
            return _Connection(duckdb.connect(str(link), read_only=True, config=READ_ONLY_CONFIG), identity)
        finally:
            link.unlink(missing_ok=True)

    def _connect_by_path(self) -> _Connection | None:
        """With no other connection open: the file at the path, or None if it was replaced while opening."""
        identity = self.file_identity()
        con = duckdb.connect(str(self.path), read_only=True, config=READ_ONLY_CONFIG)
        if self.file_identity() == identity:
            return _Connection(con, identity)
        con.close()
        return None
