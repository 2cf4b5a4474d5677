"""The small SQLite stores written beside the data cuts, append-only by their triggers (the access log, the
review marks): each opened the same way. The decision log has its own, stricter opening (smc.decision_log)."""
from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from smc import settings


@contextlib.contextmanager
def appending(path: Path, schema: str) -> Iterator[sqlite3.Connection]:
    """A connection to write rows with (made with ``schema``, written ``IF NOT EXISTS`` throughout, if new), in
    autocommit and WAL mode; a writer waits ``decision_log_busy_timeout_s`` for another."""
    with contextlib.closing(sqlite3.connect(path, timeout=settings.DECISION_LOG_BUSY_TIMEOUT_S,
                                            isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(schema)
        yield con


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection (it never creates the file), rows as ``sqlite3.Row``."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as con:
        con.row_factory = sqlite3.Row
        yield con


def utc_text(moment: dt.datetime | None) -> str | None:
    """A moment as these stores keep it: ISO 8601 in UTC, to the microsecond, ending in Z."""
    return None if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
