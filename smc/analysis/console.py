"""The investigator's SQL console: one read-only SELECT at a time on the data cut.

This is patient-level data on a shared server, so four layers stand between a
typed statement and harm:
1. DuckDB's own parser must find exactly one statement, of type SELECT (which
   covers WITH … SELECT, ``FROM x``, VALUES, DESCRIBE, SUMMARIZE and SHOW), and it
   may call no table function outside :data:`ALLOWED_TABLE_FUNCTIONS` (checked
   against DuckDB's own catalogue: every file reader, ``query``, ``read_duckdb`` …)
   nor name a file as a table.
2. It runs in a worker process of its own (:mod:`smc.analysis.console_worker`) on
   its own read-only connection: external access disabled and configuration locked
   (:data:`smc.store.db.READ_ONLY_CONFIG`), so no file, network, ATTACH,
   INSTALL/LOAD, COPY, SET or PRAGMA can work even if 1. were fooled; DuckDB's
   memory, threads and temp space are the console's settings, and the process has
   an address-space limit on top.
3. The worker is killed at the time limit, whatever DuckDB is doing (a long
   scalar function cannot be interrupted from inside), and the result is fetched
   up to a row cap and a byte budget, so the server never holds more.
4. At most ``CONSOLE_CONCURRENT_QUERIES`` run at once; the next is told to wait.
Every outcome is a :class:`ConsoleResult` with a message; nothing raises.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from smc import settings
from smc.analysis import console_worker
from smc.store.db import READ_ONLY_CONFIG, Database

# Names of file and database readers, also when DuckDB here does not know them (an extension not loaded) and in
# scalar position (glob); the catalogue check below catches every other table function.
FILE_READERS = re.compile(r"read_\w+|glob|sniff_csv|parquet_\w+|iceberg_\w+|delta_\w+|\w+_scan", re.IGNORECASE)
# Table functions that run SQL given as text: the statement inside escapes every check.
SQL_FROM_TEXT = frozenset({"query", "query_table", "json_execute_serialized_sql"})
# The only table functions the console may call: generators and the catalogue of this data cut. Every other one
# of DuckDB's catalogue (duckdb_functions() with function_type 'table' or 'table_macro') is refused, so a table
# function added by a new DuckDB is refused until it is added here.
ALLOWED_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree",
    "duckdb_columns", "duckdb_tables", "duckdb_views", "duckdb_schemas", "duckdb_constraints", "duckdb_indexes",
    "duckdb_types", "duckdb_functions", "duckdb_keywords", "pragma_table_info", "pragma_show", "pragma_version",
    "pg_timezone_names", "icu_calendar_names"})
# Characters of a file name (a table named by a path is DuckDB's replacement scan of that file).
_PATH_CHARACTERS = re.compile(r"[/\\.:*?~]")
ALLOWED = "one SELECT statement (WITH … SELECT, FROM table, VALUES, DESCRIBE, SUMMARIZE and SHOW count)"
_IPC_SLACK_BYTES = 16 * 2**20  # an Arrow stream's schema and padding on top of the result's own bytes
_KILL_WAIT_S = 5.0  # a killed worker is gone within milliseconds; never wait on it longer than this


@dataclass(frozen=True)
class ConsoleResult:
    status: str  # "ok", "truncated", "refused", "timeout", "busy" (too many queries at once) or "error"
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
    _check_sources(statement, code)
    return _without_trailing_semicolon(statement, code)


def _code_tokens(statement: str) -> list[tuple[int, str, duckdb.token_type]]:
    """(start, text, kind) of each token that is not a comment."""
    tokens = duckdb.tokenize(statement)
    ends = [start for start, _ in tokens[1:]] + [len(statement)]
    return [(start, statement[start:end].strip(), kind) for (start, kind), end in zip(tokens, ends)
            if kind != duckdb.token_type.comment]


def _check_sources(statement: str, code: list[tuple[int, str, duckdb.token_type]]) -> None:
    """:class:`Refused` when the statement calls a table function other than :data:`ALLOWED_TABLE_FUNCTIONS` or
    names a file as a table. Two readings, each catching what the other might miss: every name followed by '('
    in the code (quoted or not, comments skipped, not in a string), and DuckDB's own parse tree of the statement
    (which tells a table function from a scalar or aggregate of the same name, e.g. ``histogram``)."""
    table_functions, other_functions = _catalogue()
    tree = _parse_tree(statement)
    called = _names_called(code)
    for name in called:
        if FILE_READERS.fullmatch(name):
            _refuse_function(name)
    # a name that is also a scalar or aggregate is refused by its call alone only when the parse tree is not there
    # to tell which it is (DuckDB serialises no PIVOT statement)
    suspects = [n for n in called if n in table_functions and (tree is None or n not in other_functions)]
    if tree is not None:
        suspects += tree.table_functions
    for name in suspects:
        if name not in ALLOWED_TABLE_FUNCTIONS:
            _refuse_function(name)
    for name in _files_named_as_tables(code) + (tree.file_tables if tree else []):
        shown = name if len(name) <= 80 else name[:77] + "…"
        raise Refused(f"Table {shown} does not exist in the data cut, and files cannot be read here; query the "
                      "tables of the data cut.")


def _refuse_function(name: str) -> None:
    if FILE_READERS.fullmatch(name) or name == "read_duckdb":
        raise Refused(f"Reading files is not allowed here ({name}); query the tables of the data cut.")
    if name in SQL_FROM_TEXT:
        raise Refused(f"Running SQL from a string ({name}) is not allowed here; write the SELECT itself.")
    raise Refused(f"The table function {name} is not available in the console; query the tables of the data cut "
                  f"(allowed table functions: {', '.join(sorted(ALLOWED_TABLE_FUNCTIONS))}).")


def _names_called(code: list[tuple[int, str, duckdb.token_type]]) -> list[str]:
    """Each name (quoted or not, lower case) followed by '(' in the code: a function call, or a keyword."""
    names = (duckdb.token_type.identifier, duckdb.token_type.keyword)
    return [text.strip('"').lower() for (_, text, kind), (_, following, _) in zip(code, code[1:])
            if kind in names and following.startswith("(")]


def _files_named_as_tables(code: list[tuple[int, str, duckdb.token_type]]) -> list[str]:
    """A string, or a quoted name that looks like a path, right after FROM or JOIN: DuckDB would read that file."""
    found = []
    for (_, before, kind_before), (_, text, kind) in zip(code, code[1:]):
        if kind_before == duckdb.token_type.keyword and before.lower() in ("from", "join"):
            if kind == duckdb.token_type.string_const or (
                    kind == duckdb.token_type.identifier and text.startswith('"') and _PATH_CHARACTERS.search(text)):
                found.append(text)
    return found


@dataclass(frozen=True)
class _Tree:
    table_functions: list[str]
    file_tables: list[str]


def _parse_tree(statement: str) -> _Tree | None:
    """Table functions called and tables named by a path, from DuckDB's serialised parse tree; None when DuckDB
    cannot serialise the statement."""
    cursor = _memory().cursor()
    try:
        serialised = cursor.execute("SELECT json_serialize_sql($statement)", {"statement": statement}).fetchall()
        tree = json.loads(serialised[0][0])
    except (duckdb.Error, ValueError, RecursionError):
        return None
    finally:
        cursor.close()
    if not isinstance(tree, dict) or tree.get("error"):
        return None
    found = _Tree([], [])
    stack = [tree]
    while stack:  # iterative: a deeply nested statement must not exhaust Python's recursion
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "TABLE_FUNCTION" and isinstance(node.get("function"), dict):
                found.table_functions.append(str(node["function"].get("function_name", "")).lower())
            elif node.get("type") == "BASE_TABLE" and _PATH_CHARACTERS.search(str(node.get("table_name", ""))):
                found.file_tables.append(str(node["table_name"]))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


@functools.cache
def _memory() -> duckdb.DuckDBPyConnection:
    """An empty in-memory database of the server's, for DuckDB's catalogue and parser and for turning a fetched
    result into a frame."""
    return duckdb.connect(":memory:", config={"threads": 1, **READ_ONLY_CONFIG})


@functools.cache
def _catalogue() -> tuple[frozenset[str], frozenset[str]]:
    """(the names of DuckDB's table functions, the names of its other functions), lower case."""
    cursor = _memory().cursor()
    try:
        rows = cursor.execute("SELECT DISTINCT lower(function_name), function_type FROM duckdb_functions()").fetchall()
    finally:
        cursor.close()
    tables = frozenset(name for name, kind in rows if kind in ("table", "table_macro"))
    # a pragma is no function a SELECT can call
    return tables, frozenset(name for name, kind in rows if kind not in ("table", "table_macro", "pragma"))


def _without_trailing_semicolon(statement: str, code: list[tuple[int, str, duckdb.token_type]]) -> str:
    """The statement up to a final ';' (and any comment after it), so it can be wrapped in a LIMIT."""
    if code and code[-1][2] == duckdb.token_type.operator and code[-1][1].startswith(";"):
        return statement[:code[-1][0]].rstrip()
    return statement


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


class _Slots:
    """How many console queries run now in this server; the limit is read at each query, so a test (or a
    settings change) can set it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0

    def take(self) -> bool:
        with self._lock:
            if self.running >= settings.CONSOLE_CONCURRENT_QUERIES:
                return False
            self.running += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.running -= 1


SLOTS = _Slots()


def run_console(db: Database, text: str | None, time_limit: float = settings.CONSOLE_TIME_LIMIT_S,
                row_cap: int = settings.CONSOLE_ROW_CAP_ROWS) -> ConsoleResult:
    """Check one statement and run it in a worker process with the time limit, row cap and byte budget."""
    try:
        statement = check_statement(text)
    except Refused as exc:
        return ConsoleResult("error" if isinstance(exc, Unparsable) else "refused", str(exc))
    if not SLOTS.take():
        n = settings.CONSOLE_CONCURRENT_QUERIES
        return ConsoleResult("busy", f"{n} console quer{'ies are' if n != 1 else 'y is'} already running on this "
                                     f"server, the most it runs at once. Wait a few seconds and run yours again.")
    try:
        started = time.perf_counter()
        outcome = _run_in_worker(Path(db.path), statement, time_limit, row_cap)
        return _result(outcome, time_limit, row_cap, (time.perf_counter() - started) * 1000)
    finally:
        SLOTS.give_back()


def _result(outcome: tuple, time_limit: float, row_cap: int, elapsed: float) -> ConsoleResult:
    kind = outcome[0]
    if kind == "timeout":
        return ConsoleResult("timeout", f"Stopped after the {time_limit:g} s time limit. Narrow the query (filter "
                                        "early, avoid cross joins) and run it again.")
    if kind == "memory":
        return ConsoleResult("error", f"The query needed more memory than the console's "
                                      f"{settings.CONSOLE_MEMORY_LIMIT_MB:,} MB and was stopped. Filter early, "
                                      f"aggregate, or select fewer or shorter values ({outcome[1]}).")
    if kind == "disk":
        return ConsoleResult("error", f"The query needed more temporary disk space than the console's "
                                      f"{settings.CONSOLE_TEMP_LIMIT_MB:,} MB and was stopped. Filter early or "
                                      f"aggregate ({outcome[1]}).")
    if kind == "refused":
        return ConsoleResult("refused", f"Refused by the database (files, network and settings are off here): "
                                        f"{outcome[1]}")
    if kind == "died":
        return ConsoleResult("error", f"The query stopped the console's worker ({outcome[1]}), most likely by "
                                      f"needing more than the console's {settings.CONSOLE_MEMORY_LIMIT_MB:,} MB of "
                                      "memory. Narrow the query and run it again.")
    if kind == "no-start":
        return ConsoleResult("error", f"The console could not start its worker ({outcome[1]}); the server is "
                                      "overloaded. Run the query again in a moment.")
    if kind == "error":
        return ConsoleResult("error", f"The query failed: {outcome[1]}")
    fetched, rows = outcome[1], outcome[2]
    if fetched.truncated_by == "rows":
        return ConsoleResult("truncated", f"Showing the first {row_cap:,} rows (the row cap); the result has more. "
                                          "Add a LIMIT or aggregate.", rows, elapsed)
    if fetched.truncated_by == "bytes":
        budget = settings.CONSOLE_RESULT_MAX_MB
        shown = (f"Showing the first {len(rows):,} row{'s' if len(rows) != 1 else ''}" if len(rows) else
                 "Showing no rows: the first row alone is too large")
        return ConsoleResult("truncated", f"{shown}; the result is larger than the console's {budget:,} MB result "
                                          "limit. Select fewer or shorter columns, or aggregate.", rows, elapsed)
    return ConsoleResult("ok", f"{len(rows):,} row{'s' if len(rows) != 1 else ''} in {elapsed:,.0f} ms.", rows,
                         elapsed)


class _ForkServer:
    """The process the workers are forked from (:func:`smc.analysis.console_worker.serve`), started once per server
    and again if it died. A fork there costs ~10 ms (DuckDB and pyarrow are imported; no thread of the server's is
    caught mid-lock by the fork, only pyarrow's jemalloc thread runs, and jemalloc prepares its own forks); a fresh
    interpreter per query costs ~0.4 s. (multiprocessing's fork server would do, but on Python 3.11 each of its
    children runs the main script again: under ``streamlit run``, 1-2 s per query.)"""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._control: socket.socket | None = None

    def channel(self) -> Connection:
        """A channel to a new worker, which is told nothing yet."""
        ours, theirs = socket.socketpair()
        try:
            with self._lock:
                for attempt in (1, 2):  # a fork server that died is started again, once
                    self._start()
                    try:
                        socket.send_fds(self._control, [b"w"], [theirs.fileno()])
                        break
                    except OSError:
                        if attempt == 2:
                            raise
                        self._stop()
            return Connection(ours.detach())
        finally:
            theirs.close()
            ours.close()  # a no-op once detached

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        """With the lock held."""
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        ours, theirs = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", console_worker.__name__, str(theirs.fileno())], pass_fds=[theirs.fileno()],
                # `python -m` puts its working directory first on sys.path: the worker imports smc from ROOT
                cwd=settings.ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._control = ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # the fork server ends when it sees this
            self._control = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(_KILL_WAIT_S)
            self._process = None


FORK_SERVER = _ForkServer()


def warm_up() -> None:
    """Start the fork server in the background, so that the first query of a server does not wait for it
    (~0.5-1 s)."""
    threading.Thread(target=FORK_SERVER.start, name="console-warm-up", daemon=True).start()


class _Worker:
    """One worker seen from the server: its channel, and a pidfd to kill it by (a pid could be reused)."""

    def __init__(self, channel: Connection, pidfd: int) -> None:
        self.channel, self.pidfd = channel, pidfd

    def stop(self) -> None:
        """Kill the worker if it still runs and wait (briefly) until it is gone."""
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone
        waiting = select.poll()
        waiting.register(self.pidfd, select.POLLIN)  # readable once the process has exited
        waiting.poll(_KILL_WAIT_S * 1000)

    def close(self) -> None:
        self.channel.close()
        os.close(self.pidfd)


def _run_in_worker(db_path: Path, statement: str, time_limit: float, row_cap: int) -> tuple:
    """("ok", Fetched, frame), ("timeout",) or (kind, text) with kind "memory", "disk", "refused", "error", "died"
    or "no-start". The worker is killed at the time limit and its temp directory removed, whatever happened."""
    FORK_SERVER.start()  # once per server; not counted in any query's time
    # The worker gets the console's own time limit to start (tens of milliseconds, unless the machine is
    # swamped), then the query's time limit to run.
    start_allowance = settings.CONSOLE_TIME_LIMIT_S
    temp_dir = tempfile.mkdtemp(prefix="smc-console-")
    try:
        try:
            worker = _start_worker(start_allowance)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
            return ("no-start", _first_line(exc))
        try:
            job = console_worker.Job(
                db_path=str(db_path.resolve()), statement=statement, row_cap=row_cap,
                result_max_bytes=settings.CONSOLE_RESULT_MAX_MB * 2**20,
                memory_limit_mb=settings.CONSOLE_MEMORY_LIMIT_MB, threads=settings.CONSOLE_THREADS,
                temp_limit_mb=settings.CONSOLE_TEMP_LIMIT_MB, temp_dir=temp_dir,
                alarm_s=start_allowance + time_limit + 5)
            worker.channel.send_bytes(json.dumps(dataclasses.asdict(job)).encode())
            return _receive(worker.channel, start_allowance, time_limit, job.result_max_bytes)
        finally:
            worker.stop()
            worker.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def _start_worker(allowance: float) -> _Worker:
    channel = FORK_SERVER.channel()
    try:
        if not channel.poll(allowance):
            raise OSError(f"not started after {allowance:g} s")
        pid = console_worker.receive(channel)["pid"]
        return _Worker(channel, os.pidfd_open(pid))  # the worker waits for its job: it is alive
    except BaseException:
        channel.close()
        raise


def _receive(channel: Connection, start_allowance: float, time_limit: float, max_bytes: int) -> tuple:
    try:
        if not channel.poll(start_allowance):
            return ("no-start", f"not ready after {start_allowance:g} s")
        message = console_worker.receive(channel)
        if message["kind"] == "error":
            return (message["error"], message["message"])
        if not channel.poll(time_limit):
            return ("timeout",)
        message = console_worker.receive(channel)
        if message["kind"] == "error":
            return (message["error"], message["message"])
        payload = channel.recv_bytes(max_bytes + _IPC_SLACK_BYTES)
        fetched = console_worker.Fetched(**{k: v for k, v in message.items() if k != "kind"})
        table = pa.ipc.open_stream(payload).read_all()
        table.validate(full=True)  # the worker ran untrusted SQL: its bytes are checked before they are read
        return ("ok", fetched, _frame(table))
    except (EOFError, OSError):  # the worker died without a word: the kernel or a limit killed it
        return ("died", "it ended without answering")
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:  # an answer that is not one
        return ("error", f"the console's worker answered in a way the server does not understand ({exc})")


def _frame(table: pa.Table) -> pd.DataFrame:
    """The fetched result as DuckDB itself turns a result into pandas (dates, decimals, NULLs as the console
    always showed them)."""
    cursor = _memory().cursor()
    try:
        return cursor.from_arrow(table).df()
    finally:
        cursor.close()
