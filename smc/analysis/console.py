"""The investigator's SQL console: one read-only SELECT at a time on the data cut.

This is patient-level data on a shared server, so three layers stand between a
typed statement and harm:
1. DuckDB's own parser must find exactly one statement, of type SELECT (which
   covers WITH … SELECT, ``FROM x``, VALUES, DESCRIBE, SUMMARIZE and SHOW).
2. It runs on the app's connection: read-only, external access disabled and
   configuration locked (:data:`smc.store.db.READ_ONLY_CONFIG`), so no file, network,
   ATTACH, INSTALL/LOAD, COPY, SET or PRAGMA can work even if 1. were fooled.
3. A time limit interrupts the query (its own cursor only; other sessions go on)
   and a row cap truncates the result. Both say so.
Every outcome is a :class:`ConsoleResult` with a message; nothing raises.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass

import duckdb
import pandas as pd

from smc import settings
from smc.store.db import Database

# External access is off, but DuckDB still lets a connection read its own database file; no file reader at all.
FILE_READERS = re.compile(r"read_\w+|glob|sniff_csv|parquet_\w+|iceberg_\w+|delta_scan", re.IGNORECASE)
ALLOWED = "one SELECT statement (WITH … SELECT, FROM table, VALUES, DESCRIBE, SUMMARIZE and SHOW count)"


@dataclass(frozen=True)
class ConsoleResult:
    status: str  # "ok", "truncated", "refused", "timeout" or "error"
    message: str
    rows: pd.DataFrame | None = None
    elapsed_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "truncated")


class Refused(ValueError):
    """The statement may not run; the message says why."""


class Unparsable(Refused):
    """DuckDB's parser could not read the statement."""


def check_statement(text: str | None) -> str:
    """The statement to run, stripped, or :class:`Refused` naming what is wrong."""
    statement = (text or "").strip()
    if not statement:
        raise Refused(f"The box is empty. Write {ALLOWED}.")
    if len(statement) > settings.CONSOLE_STATEMENT_MAX_CHARS:
        raise Refused(f"The statement is {len(statement):,} characters long; the limit is "
                      f"{settings.CONSOLE_STATEMENT_MAX_CHARS:,}.")
    try:
        statements = duckdb.extract_statements(statement)
    except duckdb.Error as exc:
        raise Unparsable(f"Syntax error: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise Refused(f"Found {len(statements)} statements; run exactly {ALLOWED}.")
    try:
        kind = statements[0].type.name
    except ValueError:  # a statement type this Python binding has no name for: certainly not a SELECT
        kind = "non-SELECT"
    if kind != "SELECT":
        raise Refused(f"Only {ALLOWED} can run here; this is a {kind} statement. The data cut is read-only.")
    code = _code_tokens(statement)
    if _calls_file_reader(code):
        raise Refused("Reading files is not allowed here; query the tables of the data cut.")
    return _without_trailing_semicolon(statement, code)


def _code_tokens(statement: str) -> list[tuple[int, str, duckdb.token_type]]:
    """(start, text, kind) of each token that is not a comment."""
    tokens = duckdb.tokenize(statement)
    ends = [start for start, _ in tokens[1:]] + [len(statement)]
    return [(start, statement[start:end].strip(), kind) for (start, kind), end in zip(tokens, ends)
            if kind != duckdb.token_type.comment]


def _calls_file_reader(code: list[tuple[int, str, duckdb.token_type]]) -> bool:
    """A name (quoted or not, comments skipped) of a file-reading function followed by '(' in the code, not in
    a string or a comment."""
    names = (duckdb.token_type.identifier, duckdb.token_type.keyword)
    return any(kind in names and following.startswith("(") and FILE_READERS.fullmatch(text.strip('"'))
               for (_, text, kind), (_, following, _) in zip(code, code[1:]))


def _without_trailing_semicolon(statement: str, code: list[tuple[int, str, duckdb.token_type]]) -> str:
    """The statement up to a final ';' (and any comment after it), so it can be wrapped in a LIMIT."""
    if code and code[-1][2] == duckdb.token_type.operator and code[-1][1].startswith(";"):
        return statement[:code[-1][0]].rstrip()
    return statement


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def run_console(db: Database, text: str | None, time_limit: float = settings.CONSOLE_TIME_LIMIT_S,
                row_cap: int = settings.CONSOLE_ROW_CAP_ROWS) -> ConsoleResult:
    """Check and run one statement with the time limit and row cap."""
    try:
        statement = check_statement(text)
    except Refused as exc:
        return ConsoleResult("error" if isinstance(exc, Unparsable) else "refused", str(exc))
    cursor = db.connection().cursor()
    timer = threading.Timer(time_limit, cursor.interrupt)
    started = time.perf_counter()
    try:
        timer.start()
        rows = cursor.sql(statement).limit(row_cap + 1).df()
    except duckdb.InterruptException:
        return ConsoleResult("timeout", f"Stopped after the {time_limit:g} s time limit. Narrow the query (filter "
                                        "early, avoid cross joins) and run it again.")
    except duckdb.PermissionException as exc:
        return ConsoleResult("refused", f"Refused by the database (files, network and settings are off here): "
                                        f"{_first_line(exc)}")
    except (duckdb.Error, ValueError, TypeError, MemoryError) as exc:
        return ConsoleResult("error", f"The query failed: {_first_line(exc)}")
    finally:
        timer.cancel()
        cursor.close()
    elapsed = (time.perf_counter() - started) * 1000
    if len(rows) > row_cap:
        return ConsoleResult("truncated", f"Showing the first {row_cap:,} rows; the result has more. Add a LIMIT or "
                                          "aggregate.", rows.iloc[:row_cap], elapsed)
    return ConsoleResult("ok", f"{len(rows):,} row{'s' if len(rows) != 1 else ''} in {elapsed:,.0f} ms.", rows,
                         elapsed)
