"""The investigator's SQL console (smc.analysis.console) and the Explore helpers (smc.analysis.explore).

Console safety: a list of hostile or broken inputs must each come back as a result with ok == False and a
message (never an exception), leave the database file byte-identical, create no file, and leave the next
ordinary query working. They run on a private copy of the demo database (opened through smc.store.db.Database,
the app's read-only configuration), so the session database is never at risk.

Resources: each query runs in a worker process of its own; a list of resource hogs (huge scalar values, unbounded
aggregates, runaway scans and joins, results far past the byte budget) must each stop at the time limit or a
memory fence, or come back cut at the row cap or byte budget, within the limit plus a grace, with this (the
server's) process's peak memory bounded; and at most CONSOLE_CONCURRENT_QUERIES run at once.

Explore: the schema browser is checked against the data contract document itself
(docs/data-contract.md, parsed here), the example queries against SQL written here, and the pivot
against a tiny hand-made study (PIVOT_TRIAL) whose counts are worked out by hand in the comments.
"""
from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smc import settings
from smc.analysis import console, console_worker, explore
from smc.analysis.console import run_console
from smc.analysis.explore import EMPTY, PivotSpec
from smc.store.contract import columns
from smc.store.db import Database
from tests.helpers import ROOT, one_study_db

CONTRACT = ROOT / "docs" / "data-contract.md"  # the data contract, the source of truth
EXAMPLES = ROOT / "queries" / "examples"

# A runaway cross join: 3 * 10^10 pairs, about 150 s here (minutes on most machines), far beyond any time limit
# below. An aggregate, since a bare SELECT * would stop early at the row cap. Finite on purpose: were the time
# limit broken, the tests fail after a few minutes instead of hanging.
CROSS_JOIN = "SELECT count(*) AS n FROM range(200000) a, range(150000) b WHERE a.range + b.range >= 0"
COUNT_SUBJECTS = "SELECT count(*) AS n FROM subjects"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def contract_tables() -> dict[str, list[tuple[str, str, str]]]:
    """{table: [(column, req, meaning)]} in the order of the contract document."""
    tables: dict[str, list[tuple[str, str, str]]] = {}
    current = None
    for line in CONTRACT.read_text().splitlines():
        heading = re.match(r"## (\w+)\s*$", line)
        if heading:
            current = heading.group(1)
            tables[current] = []
        elif line.startswith("## "):  # a section that is not a table (Record keys)
            current = None
        elif current and line.startswith("|") and not re.match(r"\|\s*(column|-)", line):
            name, req, meaning = (c.strip() for c in line.strip().strip("|").split("|"))
            tables[current] += [(col.strip(), req, meaning) for col in name.split(",")]
    return tables


def keeps_contract_order(columns: list[str], contract_columns: list[str]) -> bool:
    """Every contract column is there, in the contract's order; the project may add columns between them
    (the contract allows additions, and the contract document need not list ours)."""
    positions = [columns.index(c) if c in columns else -1 for c in contract_columns]
    return -1 not in positions and positions == sorted(positions)


@pytest.fixture(scope="module")
def demo(demo_db) -> Database:
    """The session demo database, read through the app's class (only SELECTs go to it)."""
    return Database(demo_db)


@pytest.fixture(scope="module")
def n_subjects(sql) -> int:
    return sql("SELECT count(*) FROM subjects")[0][0]


# --------------------------------------------------------------------------- hostile and broken inputs

REFUSED, FAILED, TIMEOUT = {"refused"}, {"refused", "error"}, {"timeout"}
# (id, text, allowed statuses). {db} is the private copy's path, {out} a directory that must stay empty.
HOSTILE = [
    # writes and DDL
    ("insert", "INSERT INTO sites VALUES ('X', 'evil', 'nowhere')", REFUSED),
    ("update", "UPDATE subjects SET age = 1", REFUSED),
    ("delete", "DELETE FROM subjects", REFUSED),
    ("truncate", "TRUNCATE subjects", REFUSED),
    ("merge", "MERGE INTO sites USING sites s ON true WHEN MATCHED THEN DELETE", REFUSED),
    ("drop-table", "DROP TABLE subjects", REFUSED),
    ("drop-unicode-name", "DROP TABLE sübjects", REFUSED),
    ("create-table", "CREATE TABLE t AS SELECT * FROM subjects", REFUSED),
    ("create-temp-table", "CREATE TEMP TABLE t AS SELECT 1 AS x", REFUSED),
    ("create-view", "CREATE VIEW v AS SELECT 1 AS x", REFUSED),
    ("create-macro", "CREATE MACRO plus1(x) AS x + 1", REFUSED),
    ("create-secret", "CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", REFUSED),
    ("create-sequence", "CREATE SEQUENCE seq", REFUSED),
    ("alter-table", "ALTER TABLE subjects ADD COLUMN x INTEGER", REFUSED),
    ("comment-on", "COMMENT ON TABLE subjects IS 'pwned'", REFUSED),
    ("data-modifying-cte", "WITH d AS (DELETE FROM subjects RETURNING *) SELECT * FROM d", FAILED),
    ("select-into", "SELECT * INTO newt FROM subjects", FAILED),
    # more than one statement
    ("select-then-drop", "SELECT 1; DROP TABLE subjects", REFUSED),
    ("two-selects", "SELECT 1; SELECT 2", REFUSED),
    ("comment-hides-second", "SELECT 1 /* ; harmless */ ; -- really?\n DROP TABLE subjects", REFUSED),
    ("line-comment-then-delete", "SELECT 1 -- one statement\n; DELETE FROM subjects", REFUSED),
    ("select-then-attach", "SELECT count(*) FROM subjects; ATTACH '{out}/evil.duckdb' AS evil", REFUSED),
    ("transaction-block", "BEGIN TRANSACTION; DROP TABLE subjects; COMMIT", REFUSED),
    ("nul-then-drop", "SELECT 1\x00; DROP TABLE subjects", REFUSED),
    ("rtl-override-then-drop", "SELECT 1\u202e; DROP TABLE subjects", REFUSED),
    ("fullwidth-semicolon", "SELECT 1；DROP TABLE subjects", FAILED),
    # files and network through table functions
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", FAILED),
    ("read_csv_auto", "SELECT * FROM read_csv_auto('/etc/hosts')", FAILED),
    ("read_csv-list", "SELECT * FROM read_csv(['/etc/passwd'])", FAILED),
    ("read_text", "SELECT * FROM read_text('/etc/passwd')", FAILED),
    ("read_blob", "SELECT * FROM read_blob('/etc/passwd')", FAILED),
    ("read_blob-own-database-file", "SELECT * FROM read_blob('{db}')", FAILED),
    ("read_blob-quoted-name-own-file", "SELECT * FROM \"read_blob\"('{db}')", FAILED),
    ("read_blob-comment-before-paren", "SELECT size FROM read_blob/* just a comment */('{db}')", FAILED),
    ("read_blob-newline-comment-own-file", "SELECT content FROM read_blob -- c\n('{db}')", FAILED),
    ("read_blob-schema-qualified", "SELECT * FROM system.main.read_blob('{db}')", FAILED),
    ("glob-quoted-name-own-file", "SELECT * FROM \"glob\"('{db}')", FAILED),
    ("parquet_metadata", "SELECT * FROM parquet_metadata('{db}')", FAILED),
    ("glob", "SELECT * FROM glob('/etc/*')", FAILED),
    ("read_parquet", "SELECT * FROM read_parquet('/tmp/x.parquet')", FAILED),
    ("parquet_scan", "SELECT * FROM parquet_scan('/tmp/x.parquet')", FAILED),
    ("read_json_auto", "SELECT * FROM read_json_auto('/etc/hosts')", FAILED),
    ("read_ndjson", "SELECT * FROM read_ndjson('/etc/hosts')", FAILED),
    ("sniff_csv", "SELECT * FROM sniff_csv('/etc/passwd')", FAILED),
    ("file-url", "SELECT * FROM read_text('file:///etc/passwd')", FAILED),
    ("https-url", "SELECT * FROM read_csv('https://example.com/data.csv')", FAILED),
    ("s3-url", "SELECT * FROM read_parquet('s3://bucket/data.parquet')", FAILED),
    ("replacement-scan-file", "SELECT * FROM '/etc/passwd'", FAILED),
    ("replacement-scan-csv", "SELECT * FROM 'subjects.csv'", FAILED),
    ("replacement-scan-url", "SELECT * FROM 'http://169.254.169.254/latest/meta-data'", FAILED),
    ("from-first-read_text", "FROM read_text('/etc/passwd')", FAILED),
    ("cte-read_text", "WITH x AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM x", FAILED),
    ("describe-read_csv", "DESCRIBE SELECT * FROM read_csv('/etc/passwd')", FAILED),
    ("read_duckdb-other-file", "SELECT * FROM read_duckdb('/tmp/other.duckdb', table_name='subjects')", FAILED),
    ("sqlite_scan", "SELECT * FROM sqlite_scan('/tmp/x.db', 't')", FAILED),
    ("secrets", "SELECT * FROM duckdb_secrets()", FAILED),
    ("getenv", "SELECT getenv('HOME')", FAILED),
    # the query() table function with statements inside
    ("query-drop", "SELECT * FROM query('DROP TABLE subjects')", FAILED),
    ("query-create", "SELECT * FROM query('CREATE TABLE t AS SELECT 1')", FAILED),
    ("query-two-statements", "SELECT * FROM query('SELECT 1; DROP TABLE subjects')", FAILED),
    ("query-in-subquery", "SELECT * FROM range(3) t(x) WHERE x IN (SELECT * FROM query('DELETE FROM subjects'))",
     FAILED),
    ("query_table-injection", "SELECT * FROM query_table('subjects; DROP TABLE sites')", FAILED),
    # databases, extensions, settings, maintenance
    ("attach-file", "ATTACH '{out}/evil.duckdb' AS evil", REFUSED),
    ("attach-memory", "ATTACH ':memory:' AS m", REFUSED),
    ("detach", "DETACH m", REFUSED),
    ("use", "USE memory", REFUSED),
    ("copy-table-to-file", "COPY subjects TO '{out}/subjects.csv'", REFUSED),
    ("copy-query-to-file", "COPY (SELECT * FROM subjects) TO '{out}/subjects.parquet' (FORMAT parquet)", REFUSED),
    ("copy-from-file", "COPY sites FROM '/etc/passwd'", REFUSED),
    ("copy-from-database", "COPY FROM DATABASE memory TO m", REFUSED),
    ("export-database", "EXPORT DATABASE '{out}/export'", REFUSED),
    ("import-database", "IMPORT DATABASE '{out}/export'", REFUSED),
    ("install", "INSTALL httpfs", REFUSED),
    ("load", "LOAD httpfs", REFUSED),
    ("load-path", "LOAD '{out}/evil.duckdb_extension'", REFUSED),
    ("update-extensions", "UPDATE EXTENSIONS", REFUSED),
    ("set", "SET threads = 1", REFUSED),
    ("set-external-access", "SET enable_external_access = true", REFUSED),
    ("set-global", "SET GLOBAL lock_configuration = false", REFUSED),
    ("set-variable", "SET VARIABLE x = 1", REFUSED),
    ("reset", "RESET threads", REFUSED),
    ("pragma", "PRAGMA database_size", REFUSED),
    ("pragma-assign", "PRAGMA threads = 1", REFUSED),
    ("call", "CALL pragma_version()", REFUSED),
    ("enable_logging-table-function", "SELECT * FROM enable_logging()", FAILED),
    ("checkpoint", "CHECKPOINT", REFUSED),
    ("force-checkpoint", "FORCE CHECKPOINT", REFUSED),
    ("call-checkpoint", "CALL checkpoint()", REFUSED),
    ("vacuum", "VACUUM", REFUSED),
    ("analyze", "ANALYZE", REFUSED),
    ("begin", "BEGIN", REFUSED),
    ("rollback", "ROLLBACK", REFUSED),
    ("explain-analyze", "EXPLAIN ANALYZE SELECT * FROM subjects", REFUSED),
    # more file and database readers: every spelling and place a call can take
    ("read_text-upper-case", "SELECT * FROM READ_TEXT('/etc/passwd')", REFUSED),
    ("read_text-quoted-upper-case", "SELECT * FROM \"READ_TEXT\"('/etc/passwd')", REFUSED),
    ("read_text-own-file", "SELECT content FROM read_text('{db}')", REFUSED),
    ("read_blob-lateral", "SELECT * FROM range(1) r, LATERAL (SELECT size FROM read_blob('{db}'))", REFUSED),
    ("read_blob-scalar-subquery", "SELECT (SELECT max(size) FROM read_blob('{db}')) AS s", REFUSED),
    ("read_blob-in-order-by", "SELECT 1 AS x ORDER BY (SELECT count(*) FROM read_blob('{db}'))", REFUSED),
    ("read_text-in-named-window",
     "SELECT row_number() OVER w AS n FROM range(3) WINDOW w AS (ORDER BY (SELECT count(*) FROM read_text('{db}')))",
     REFUSED),
    ("read_blob-in-filter-clause",
     "SELECT count(*) FILTER (WHERE range IN (SELECT size FROM read_blob('{db}'))) AS n FROM range(3)", REFUSED),
    ("read_csv_auto-own-file", "SELECT * FROM read_csv_auto('{db}', all_varchar=true)", REFUSED),
    ("sniff_csv-own-file", "SELECT * FROM sniff_csv('{db}')", REFUSED),
    ("glob-beside-own-file", "SELECT * FROM glob('{db}*')", REFUSED),
    ("parquet_scan-own-file", "SELECT * FROM parquet_scan('{db}')", REFUSED),
    ("read_json_objects", "SELECT * FROM read_json_objects('/etc/hosts')", REFUSED),
    ("read_duckdb-own-file", "SELECT * FROM read_duckdb('{db}', table_name='subjects')", REFUSED),
    ("postgres_scan-unknown-extension", "SELECT * FROM postgres_scan('host=x', 'public', 't')", REFUSED),
    ("query-read_blob-own-file", "SELECT * FROM query('SELECT size FROM read_blob(''{db}'')')", REFUSED),
    ("query-quoted-name", "SELECT * FROM \"query\"('SELECT 1')", REFUSED),
    ("query-schema-qualified", "SELECT * FROM system.main.query('SELECT 1')", REFUSED),
    ("query_table-own-file", "SELECT * FROM query_table('{db}')", REFUSED),
    ("query_table-list", "SELECT * FROM query_table(['subjects', 'sites'])", REFUSED),
    ("json_execute_serialized_sql",
     "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))", REFUSED),
    ("replacement-scan-own-file", "SELECT * FROM '{db}'", REFUSED),
    ("replacement-scan-own-file-quoted-name", "SELECT * FROM \"{db}\"", REFUSED),
    ("replacement-scan-own-file-after-comma", "SELECT * FROM sites, '{db}'", REFUSED),
    ("replacement-scan-own-file-join", "SELECT * FROM sites JOIN '{db}' ON true", REFUSED),
    ("duckdb_databases-shows-paths", "SELECT * FROM duckdb_databases()", REFUSED),
    ("duckdb_settings", "SELECT * FROM duckdb_settings()", REFUSED),
    ("duckdb_external_file_cache", "SELECT * FROM duckdb_external_file_cache()", REFUSED),
    ("which_secret", "SELECT * FROM which_secret('s3://bucket/x', 's3')", REFUSED),
    ("table-macro-histogram", "SELECT * FROM histogram(subjects, age)", REFUSED),
    ("checkpoint-table-function", "SELECT * FROM checkpoint()", REFUSED),
    ("enable_profiling-table-function", "SELECT * FROM enable_profiling()", REFUSED),
    ("pivot-read_text", "PIVOT (FROM read_text('/etc/passwd')) ON content", REFUSED),
    # more statements that reach files, databases, extensions or settings
    ("attach-sqlite", "ATTACH '{out}/x.sqlite' AS s (TYPE sqlite)", REFUSED),
    ("attach-own-file-again", "ATTACH '{db}' AS again (READ_ONLY)", REFUSED),
    ("copy-to-stdout", "COPY (SELECT * FROM subjects) TO '/dev/stdout'", REFUSED),
    ("export-database-parquet", "EXPORT DATABASE '{out}/export' (FORMAT parquet)", REFUSED),
    ("pragma-enable-profiling", "PRAGMA enable_profiling", REFUSED),
    ("pragma-memory-limit", "PRAGMA memory_limit = '100GB'", REFUSED),
    ("set-memory-limit", "SET memory_limit = '100GB'", REFUSED),
    ("set-temp-directory", "SET temp_directory = '{out}'", REFUSED),
    ("set-max-temp-directory-size", "SET max_temp_directory_size = '1TB'", REFUSED),
    ("install-from-community", "INSTALL sqlite FROM community", REFUSED),
    ("force-install", "FORCE INSTALL httpfs", REFUSED),
    ("load-sqlite", "LOAD sqlite", REFUSED),
    # runaway and broken
    ("runaway-cross-join", CROSS_JOIN, TIMEOUT),
    ("runaway-recursive-cte",
     "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", TIMEOUT),
    ("syntax-error", "SELEC * FROM subjects", FAILED),
    ("select-nothing", "SELECT", FAILED),
    ("unterminated-string", "SELECT 'unterminated", FAILED),
    ("unterminated-comment", "SELECT 1 /* unterminated", FAILED),
    ("unknown-table", "SELECT * FROM no_such_table", FAILED),
    ("missing-parameter", "SELECT $1", FAILED),
    ("nul-only", "\x00", FAILED),
    ("empty", "", REFUSED),
    ("none", None, REFUSED),
    ("whitespace-only", " \n\t  \r\n ", REFUSED),
    ("comment-only", "-- nothing to see\n/* here */", REFUSED),
    ("semicolons-only", " ; ; ", REFUSED),
    ("very-long-input", "SELECT " + "1 + " * 10_000 + "1", REFUSED),
    ("very-long-string-literal", "SELECT '" + "x" * 50_000 + "'", REFUSED),
    ("deep-nesting", "SELECT " + "(" * 3000 + "1" + ")" * 3000, FAILED),
]


def fill(text: str | None, db_path: Path, out: Path) -> str | None:
    return None if text is None else text.replace("{db}", str(db_path)).replace("{out}", str(out))


@pytest.fixture(scope="module")
def hostile_target(demo_db, tmp_path_factory):
    """A private copy of the demo database (the session one stays untouched) and an empty directory."""
    base = tmp_path_factory.mktemp("hostile")
    copy = base / "copy.duckdb"
    shutil.copyfile(demo_db, copy)
    out = base / "out"
    out.mkdir()
    return Database(copy), copy, out, sha256(copy)


def test_the_hostile_list_is_long_and_varied():
    assert len(HOSTILE) >= 30
    assert len({case[0] for case in HOSTILE}) == len(HOSTILE)  # readable, unique ids


@pytest.mark.parametrize("text, statuses", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_input_is_refused_harmlessly(hostile_target, n_subjects, text, statuses):
    db, path, out, original = hostile_target
    result = run_console(db, fill(text, path, out), time_limit=1.0)
    assert not result.ok
    assert result.status in statuses, result.message
    assert result.message.strip()
    assert result.rows is None
    assert sha256(path) == original  # byte-identical after this input
    assert list(out.iterdir()) == []  # nothing written
    after = run_console(db, COUNT_SUBJECTS)
    assert after.status == "ok", after.message
    assert int(after.rows["n"].iloc[0]) == n_subjects


def test_the_whole_hostile_list_leaves_the_file_byte_identical(demo_db, tmp_path, n_subjects):
    copy = tmp_path / "copy.duckdb"
    shutil.copyfile(demo_db, copy)
    out = tmp_path / "out"
    out.mkdir()
    before = sha256(copy)
    db = Database(copy)
    for _, text, _ in HOSTILE:
        try:
            run_console(db, fill(text, copy, out), time_limit=0.3)
        except Exception:  # noqa: BLE001, S110 - an exception is reported by the parametrized test above
            pass
    assert sha256(copy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.duckdb", "out"]  # no WAL, no export
    assert list(out.iterdir()) == []
    after = run_console(db, COUNT_SUBJECTS)
    assert after.status == "ok" and int(after.rows["n"].iloc[0]) == n_subjects


@pytest.mark.parametrize("text, words", [
    ("DROP TABLE subjects", ["DROP", "SELECT"]),
    ("DELETE FROM subjects", ["DELETE", "SELECT"]),
    ("ATTACH ':memory:' AS m", ["ATTACH", "SELECT"]),
    ("SELECT 1; DROP TABLE subjects", ["2 statements"]),
    ("SELECT 1; SELECT 2; SELECT 3", ["3 statements"]),
    ("", ["empty"]),
    ("   ", ["empty"]),
    ("SELECT '" + "x" * 30_000 + "'", [f"{settings.CONSOLE_STATEMENT_MAX_CHARS:,}"]),
    ("SELEC 1", ["syntax"]),
], ids=["drop", "delete", "attach", "two-statements", "three-statements", "empty", "blank", "too-long", "syntax"])
def test_refusal_messages_name_the_problem(demo, text, words):
    result = run_console(demo, text)
    assert not result.ok
    for word in words:
        assert word.lower() in result.message.lower(), result.message


def test_the_database_configuration_is_read_only_and_locked(demo):
    """Layer 2, seen through the console itself: external access off and configuration locked."""
    result = run_console(demo, "SELECT current_setting('enable_external_access') AS ext, "
                               "current_setting('lock_configuration') AS locked")
    assert result.status == "ok", result.message
    assert (bool(result.rows["ext"].iloc[0]), bool(result.rows["locked"].iloc[0])) == (False, True)


# --------------------------------------------------------------------------- time limit and row cap


def test_named_settings_have_the_documented_defaults():
    if "SMC_CONSOLE_TIME_LIMIT_SECONDS" not in os.environ:
        assert settings.CONSOLE_TIME_LIMIT_S == 5
    if "SMC_CONSOLE_ROW_CAP" not in os.environ:
        assert settings.CONSOLE_ROW_CAP_ROWS == 10_000
    defaults = inspect.signature(run_console).parameters
    assert defaults["time_limit"].default == settings.CONSOLE_TIME_LIMIT_S
    assert defaults["row_cap"].default == settings.CONSOLE_ROW_CAP_ROWS


def test_runaway_cross_join_stops_at_the_time_limit_and_says_so(demo, n_subjects):
    started = time.perf_counter()
    result = run_console(demo, CROSS_JOIN, time_limit=0.5)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout" and not result.ok
    assert result.rows is None
    assert 0.4 <= elapsed < 5, elapsed  # it ran until the limit, then stopped promptly
    assert "time limit" in result.message.lower() and "0.5 s" in result.message
    after = run_console(demo, COUNT_SUBJECTS)
    assert after.status == "ok" and int(after.rows["n"].iloc[0]) == n_subjects


def test_default_time_limit_is_used_when_none_is_given(demo):
    if "SMC_CONSOLE_TIME_LIMIT_SECONDS" in os.environ:
        pytest.skip("time limit overridden by the environment")
    started = time.perf_counter()
    result = run_console(demo, CROSS_JOIN)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout"
    assert 4.5 <= elapsed < 10, elapsed
    assert "5 s" in result.message


def test_row_cap_truncates_and_says_so(demo):
    result = run_console(demo, "SELECT * FROM range(25)", row_cap=10)
    assert result.status == "truncated" and result.ok
    assert result.rows["range"].tolist() == list(range(10))
    assert re.search(r"\b10\b", result.message) and re.search(r"first|more|truncat", result.message.lower())


def test_result_of_exactly_the_row_cap_is_complete(demo):
    result = run_console(demo, "SELECT * FROM range(10)", row_cap=10)
    assert result.status == "ok"
    assert result.rows["range"].tolist() == list(range(10))
    assert "10 rows" in result.message


def test_default_row_cap_is_ten_thousand(demo):
    if "SMC_CONSOLE_ROW_CAP" in os.environ:
        pytest.skip("row cap overridden by the environment")
    over = run_console(demo, "SELECT * FROM range(10001)")
    assert over.status == "truncated" and len(over.rows) == 10_000
    assert over.rows["range"].tolist() == list(range(10_000))
    exact = run_console(demo, "SELECT * FROM range(10000)")
    assert exact.status == "ok" and len(exact.rows) == 10_000


def test_a_runaway_query_does_not_disturb_other_queries(demo, n_subjects, monkeypatch):
    """One thread's runaway is killed; queries of another thread (one of them in flight at the very
    moment of the kill, the others back to back) all succeed with the right values. Three run at once here, so
    the console may run three (its cap is tested on its own below); each query starts a worker process (~0.1-0.3 s
    on this machine), so the runaway runs 2 s to leave room for several queries beside it."""
    monkeypatch.setattr(settings, "CONSOLE_CONCURRENT_QUERIES", 3)
    times: dict[str, float] = {}
    results: dict[str, console.ConsoleResult] = {}

    def runaway():
        results["runaway"] = run_console(demo, CROSS_JOIN, time_limit=2)
        times["runaway_end"] = time.perf_counter()

    def straddling():  # 4 s of sleep: still running when the runaway is killed at 2 s
        times["slow_start"] = time.perf_counter()
        results["slow"] = run_console(demo, "SELECT 42 AS answer, sleep_ms(4000) IS NULL AS slept", time_limit=10)
        times["slow_end"] = time.perf_counter()

    threads = [threading.Thread(target=runaway), threading.Thread(target=straddling)]
    for t in threads:
        t.start()
    ordinary = []
    while threads[0].is_alive():
        ordinary.append(run_console(demo, "SELECT count(*) AS n, sum(range) AS s FROM range(100000)"))
        ordinary.append(run_console(demo, COUNT_SUBJECTS))
    for t in threads:
        t.join(timeout=30)
    assert results["runaway"].status == "timeout"
    assert times["slow_start"] < times["runaway_end"] < times["slow_end"]
    assert results["slow"].status == "ok", results["slow"].message
    assert results["slow"].rows["answer"].tolist() == [42]
    assert len(ordinary) >= 4
    assert all(r.status == "ok" for r in ordinary), [r.message for r in ordinary if r.status != "ok"]
    for r in ordinary:
        if "s" in r.rows:
            assert (int(r.rows["n"].iloc[0]), int(r.rows["s"].iloc[0])) == (100_000, 100_000 * 99_999 // 2)
        else:
            assert int(r.rows["n"].iloc[0]) == n_subjects


# --------------------------------------------------------------------------- the worker: memory, time, bytes, load

HOG_TIME_LIMIT_S = 2.0
HOG_GRACE_S = 1.5  # a worker's start (~0.1-0.3 s on this shared machine) and its kill and removal
# What a hog may cost this (the server's) process: at most the byte budget of a result, as Arrow and as pandas.
# The console before workers held 2-5 GB for these (docs/performance.md, "SQL console under hostile queries").
SERVER_BOUND_MB = 256
STOPPED, CUT = {"timeout", "error"}, {"truncated"}
# (id, text, allowed statuses): each would hold gigabytes, or run for minutes, in the server's own DuckDB
RESOURCE_HOGS = [
    # the red-team pass's three
    ("repeat-2-gb", "SELECT length(repeat('x', 2000000000)) AS n", STOPPED),
    ("repeat-10-mb-times-300", "SELECT repeat('x', 10000000) AS s FROM range(300)", STOPPED),
    ("list-of-400-m", "SELECT length(list(range(400000000))) AS n", STOPPED),
    # other heavy scalar functions: one call, no chunk boundary for DuckDB to stop at
    ("lpad-2-gb", "SELECT length(lpad('x', 2000000000, 'y')) AS n", STOPPED),
    ("repeat-then-concat", "SELECT length(repeat('ab', 1000000000) || 'c') AS n", STOPPED),
    ("md5-of-1.5-gb", "SELECT md5(repeat('x', 1500000000)) AS h", STOPPED),
    ("levenshtein-200k", "SELECT levenshtein(repeat('a', 200000), repeat('b', 200000)) AS d", STOPPED),
    ("scalar-range-500-m", "SELECT length(range(500000000)) AS n", STOPPED),
    ("list_concat-400-m", "SELECT length(list_concat(range(200000000), range(200000000))) AS n", STOPPED),
    ("scalar-generate_series-1-g", "SELECT length(generate_series(1, 1000000000)) AS n", STOPPED),
    ("unnest-of-100-m", "SELECT unnest(range(100000000)) AS u", STOPPED | CUT),
    # aggregates that grow one value without bound
    ("string_agg-10-gb", "SELECT length(string_agg(repeat('x', 1000), ',')) AS n FROM range(10000000)", STOPPED),
    ("array_agg-400-m", "SELECT length(array_agg(range)) AS n FROM range(400000000)", STOPPED),
    ("list-per-group", "SELECT length(list(range)) AS n FROM range(100000000) GROUP BY range % 3", STOPPED),
    # long and wide scans, joins and aggregates
    ("generate_series-count-10^11", "SELECT count(*) AS n FROM generate_series(1, 100000000000)", STOPPED),
    ("hash-sum-10^10", "SELECT sum(hash(range)) AS s FROM range(10000000000)", STOPPED),
    ("cross-join-3x10^10", CROSS_JOIN, STOPPED),
    ("hash-join-10^8", "SELECT count(*) AS n FROM range(100000000) a JOIN range(100000000) b USING (range)", STOPPED),
    ("distinct-300-m", "SELECT count(DISTINCT range) AS n FROM range(300000000)", STOPPED),
    # results far over the byte budget or the row cap
    ("wide-rows-1-gb", "SELECT repeat('x', 100000) AS s, range AS i FROM range(10000)", CUT),
    ("two-wide-columns", "SELECT repeat('y', 3000) AS a, repeat('z', 3000) AS b FROM range(10000)", CUT),
    ("one-row-over-budget", f"SELECT repeat('x', {(settings.CONSOLE_RESULT_MAX_MB + 1) * 2**20}) AS s", CUT),
    ("generate_series-10^11-rows", "SELECT * FROM generate_series(1, 100000000000)", CUT),
]


def status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


def reset_peak_memory() -> None:
    """VmHWM starts again from the current resident size (Linux: 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pytest.skip("cannot reset this process's peak memory here (/proc/self/clear_refs)")


def test_the_resource_hog_list_is_long_and_varied():
    assert len(RESOURCE_HOGS) >= 20
    assert len({case[0] for case in RESOURCE_HOGS}) == len(RESOURCE_HOGS)


@pytest.mark.parametrize("text, statuses", [case[1:] for case in RESOURCE_HOGS], ids=[c[0] for c in RESOURCE_HOGS])
def test_a_resource_hog_is_stopped_or_cut_in_time_without_the_server_paying(hostile_target, n_subjects, text,
                                                                           statuses):
    db, path, out, original = hostile_target
    idle = status_mb("VmRSS")
    reset_peak_memory()
    started = time.perf_counter()
    result = run_console(db, text, time_limit=HOG_TIME_LIMIT_S)
    elapsed = time.perf_counter() - started
    peak_above_idle = status_mb("VmHWM") - idle
    assert result.status in statuses, result.message
    assert elapsed < HOG_TIME_LIMIT_S + HOG_GRACE_S, (elapsed, result.message)
    assert peak_above_idle < SERVER_BOUND_MB, (peak_above_idle, result.message)
    if result.status == "timeout":
        assert f"{HOG_TIME_LIMIT_S:g} s time limit" in result.message and result.rows is None
    elif result.status == "error":  # stopped by a memory or temp-space fence, and the message names it
        assert result.rows is None
        assert (f"console's {settings.CONSOLE_MEMORY_LIMIT_MB:,} MB" in result.message
                or f"console's {settings.CONSOLE_TEMP_LIMIT_MB:,} MB" in result.message), result.message
    else:
        assert result.rows is not None and len(result.rows) <= settings.CONSOLE_ROW_CAP_ROWS
        assert "row cap" in result.message or f"{settings.CONSOLE_RESULT_MAX_MB:,} MB result limit" in result.message
    assert sha256(path) == original
    assert list(out.iterdir()) == []
    after = run_console(db, COUNT_SUBJECTS)
    assert after.status == "ok" and int(after.rows["n"].iloc[0]) == n_subjects


def test_a_long_scalar_function_is_stopped_at_the_time_limit(demo):
    """levenshtein of two 200,000-character strings is one call of ~100 s inside DuckDB, with no point where an
    interrupt is seen: only killing the worker stops it."""
    started = time.perf_counter()
    result = run_console(demo, "SELECT levenshtein(repeat('a', 200000), repeat('b', 200000)) AS d", time_limit=1)
    elapsed = time.perf_counter() - started
    assert result.status == "timeout", result.message
    assert 1 <= elapsed < 1 + HOG_GRACE_S, elapsed
    assert "1 s time limit" in result.message


def test_the_worker_runs_with_the_console_limits(demo):
    result = run_console(demo, "SELECT current_setting('memory_limit') AS memory, current_setting('threads') AS threads, "
                               "current_setting('max_temp_directory_size') AS temp, "
                               "current_setting('temp_directory') AS temp_dir, "
                               "current_setting('enable_external_access') AS ext, "
                               "current_setting('lock_configuration') AS locked")
    assert result.status == "ok", result.message
    row = result.rows.iloc[0]
    assert row["memory"] == f"{settings.CONSOLE_MEMORY_LIMIT_MB:.1f} MiB"
    assert int(row["threads"]) == settings.CONSOLE_THREADS
    assert row["temp"] == f"{settings.CONSOLE_TEMP_LIMIT_MB:.1f} MiB"
    assert (bool(row["ext"]), bool(row["locked"])) == (False, True)
    # a private temp directory, not the default one beside the served file, and gone after the query
    assert not row["temp_dir"].startswith(str(demo.path))
    assert not Path(row["temp_dir"]).exists()


def test_workers_leave_no_temp_directory_behind(demo, tmp_path, monkeypatch):
    """Every outcome (a result, an error, a kill at the time limit, a memory fence) removes the worker's temp
    directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = run_console(demo, "SELECT current_setting('temp_directory') AS d")
    assert seen.status == "ok" and Path(seen.rows["d"].iloc[0]).parent == tmp_path
    assert run_console(demo, "SELECT * FROM no_such_table").status == "error"
    assert run_console(demo, CROSS_JOIN, time_limit=0.5).status == "timeout"
    assert run_console(demo, "SELECT length(repeat('x', 2000000000)) AS n").status == "error"
    assert list(tmp_path.iterdir()) == []


def worker_pids() -> set[int]:
    """The console's workers now: the children of its fork server."""
    server = console.FORK_SERVER._process
    if server is None:
        return set()
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[1]) == server.pid:
                        children.add(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return children


def test_no_worker_outlives_its_query(demo):
    assert run_console(demo, COUNT_SUBJECTS).status == "ok"
    assert run_console(demo, CROSS_JOIN, time_limit=0.5).status == "timeout"
    assert run_console(demo, "SELECT length(repeat('x', 2000000000)) AS n").status == "error"
    assert worker_pids() == set()  # killed or ended, each was gone before run_console returned


def test_a_worker_killed_from_outside_is_reported_not_raised(demo, n_subjects):
    """The kernel's OOM killer (here: a SIGKILL) ends a worker mid-query: the console says so."""
    results = []
    thread = threading.Thread(target=lambda: results.append(
        run_console(demo, "SELECT sleep_ms(5000) IS NULL AS slept", time_limit=10)))
    thread.start()
    deadline = time.monotonic() + 10
    while not worker_pids() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # connected and sleeping
    for pid in worker_pids():
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=30)
    (result,) = results
    assert result.status == "error" and result.rows is None
    assert "worker" in result.message and f"{settings.CONSOLE_MEMORY_LIMIT_MB:,} MB" in result.message
    after = run_console(demo, COUNT_SUBJECTS)
    assert after.status == "ok" and int(after.rows["n"].iloc[0]) == n_subjects


def test_a_fork_server_that_died_is_started_again(demo, n_subjects):
    assert run_console(demo, COUNT_SUBJECTS).status == "ok"
    server = console.FORK_SERVER._process
    server.kill()
    server.wait(10)
    after = run_console(demo, COUNT_SUBJECTS)
    assert after.status == "ok", after.message
    assert int(after.rows["n"].iloc[0]) == n_subjects
    assert console.FORK_SERVER._process.pid != server.pid


def test_a_result_over_the_byte_budget_is_cut_there_and_says_so(demo):
    """100,000-byte strings and an integer: each row is the string, its 4-byte offset and 8 bytes; the rows shown
    fit in the budget and one more would not."""
    budget = settings.CONSOLE_RESULT_MAX_MB * 2**20
    result = run_console(demo, "SELECT repeat('x', 100000) AS s, range AS i FROM range(1000)")
    assert result.status == "truncated" and result.ok
    shown, row_bytes = len(result.rows), 100_000 + 4 + 8
    assert shown * row_bytes <= budget < (shown + 1) * row_bytes
    assert result.rows["i"].tolist() == list(range(shown))  # the first rows, in order
    assert set(result.rows["s"].str.len()) == {100_000}
    assert f"first {shown:,} rows" in result.message
    assert f"{settings.CONSOLE_RESULT_MAX_MB:,} MB result limit" in result.message and "row cap" not in result.message


def test_the_byte_budget_counts_across_batches(demo):
    """5,000-byte strings: about 4,190 rows fit, over several of the worker's batches of rows."""
    budget = settings.CONSOLE_RESULT_MAX_MB * 2**20
    result = run_console(demo, "SELECT repeat('x', 5000) AS s FROM range(10000)")
    assert result.status == "truncated"
    shown = len(result.rows)
    assert shown > console_worker.BATCH_ROWS  # more than one batch was counted
    # each row: 5,000 bytes and a 4-byte offset; each batch adds one more offset (at most 10 batches here)
    assert shown * 5_004 <= budget < (shown + 1) * 5_004 + 10 * 4
    assert "result limit" in result.message


def test_a_first_row_over_the_byte_budget_shows_no_rows_and_says_so(demo):
    size = (settings.CONSOLE_RESULT_MAX_MB + 1) * 2**20
    result = run_console(demo, f"SELECT repeat('x', {size}) AS s")
    assert result.status == "truncated"
    assert result.rows is not None and result.rows.empty and list(result.rows.columns) == ["s"]
    assert "first row alone" in result.message and f"{settings.CONSOLE_RESULT_MAX_MB:,} MB" in result.message


def test_the_row_cap_message_names_the_row_cap_not_the_byte_budget(demo):
    result = run_console(demo, "SELECT * FROM range(30)", row_cap=20)
    assert result.status == "truncated" and len(result.rows) == 20
    assert "row cap" in result.message and "result limit" not in result.message


def test_one_query_more_than_the_cap_at_once_is_told_to_wait(demo, n_subjects):
    """N + 1 queries start together: N run (each sleeps 3 s), one is told at once to wait and retry."""
    cap = settings.CONSOLE_CONCURRENT_QUERIES
    start = threading.Barrier(cap + 1)
    results: list[console.ConsoleResult] = []
    times: list[float] = []

    def query():
        start.wait()
        began = time.perf_counter()
        results.append(run_console(demo, "SELECT sleep_ms(3000) IS NULL AS slept", time_limit=10))
        times.append(time.perf_counter() - began)

    threads = [threading.Thread(target=query) for _ in range(cap + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    statuses = Counter(r.status for r in results)
    assert statuses == {"ok": cap, "busy": 1}, [r.message for r in results]
    busy = next(r for r in results if r.status == "busy")
    assert not busy.ok and busy.rows is None
    assert "wait" in busy.message.lower() and str(cap) in busy.message
    assert min(times) < 1  # told at once, not after the others
    after = run_console(demo, COUNT_SUBJECTS)  # the slots are free again
    assert after.status == "ok" and int(after.rows["n"].iloc[0]) == n_subjects


def test_while_the_slots_are_full_a_refusal_is_still_a_refusal(demo):
    """The statement check runs before a slot is taken: a refused statement is told why, not to wait."""
    cap = settings.CONSOLE_CONCURRENT_QUERIES
    threads = [threading.Thread(target=run_console, args=(demo, "SELECT sleep_ms(2000) AS s"), kwargs={
        "time_limit": 10}) for _ in range(cap)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while console.SLOTS.running < cap and time.monotonic() < deadline:
        time.sleep(0.01)
    assert console.SLOTS.running == cap
    assert run_console(demo, "DROP TABLE subjects").status == "refused"
    assert run_console(demo, "SELECT * FROM read_text('/etc/passwd')").status == "refused"
    assert run_console(demo, COUNT_SUBJECTS).status == "busy"
    for t in threads:
        t.join(timeout=30)
    assert console.SLOTS.running == 0


def test_every_table_function_but_the_allowed_ones_is_refused():
    """DuckDB's own catalogue, read here: each table function outside the allowed list is refused when called,
    plainly or quoted, and the refusal names it."""
    con = duckdb.connect(":memory:")
    try:
        catalogue = {name for (name,) in con.execute(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type IN ('table', 'table_macro')"
        ).fetchall()}
    finally:
        con.close()
    assert console.ALLOWED_TABLE_FUNCTIONS <= catalogue  # no misspelt name that would allow nothing
    refused = sorted(catalogue - console.ALLOWED_TABLE_FUNCTIONS)
    assert {"read_blob", "read_text", "query", "query_table", "read_duckdb", "glob", "sniff_csv"} <= set(refused)
    for name in refused:
        for call in (f"SELECT * FROM {name}()", f'SELECT * FROM "{name}"()'):
            with pytest.raises(console.Refused) as why:
                console.check_statement(call)
            assert name in str(why.value), call


@pytest.mark.parametrize("text, expected", [
    ("SELECT * FROM range(3)", [[0], [1], [2]]),
    ("SELECT * FROM generate_series(1, 3)", [[1], [2], [3]]),
    ("SELECT * FROM unnest([4, 5])", [[4], [5]]),
    ("SELECT unnest([6, 7]) AS u", [[6], [7]]),
    ("SELECT range(3) = [0, 1, 2] AS same", [[True]]),
    ("SELECT histogram(x) = MAP {1: 2, 2: 1} AS same FROM (VALUES (1), (1), (2)) t(x)", [[True]]),
    ("SELECT key FROM json_each('{\"a\": 1, \"b\": 2}') ORDER BY key", [["a"], ["b"]]),
    ("SELECT name FROM pragma_table_info('sites') ORDER BY cid", [[c.name] for c in columns()["sites"]]),
    ("SELECT count(*) > 0 AS some FROM duckdb_tables() WHERE table_name = 'subjects'", [[True]]),
], ids=["range", "generate_series", "unnest-table", "unnest-scalar", "range-scalar", "histogram-aggregate",
        "json_each", "pragma_table_info", "duckdb_tables"])
def test_allowed_table_functions_and_same_named_scalars_run(demo, text, expected):
    result = run_console(demo, text)
    assert result.status == "ok", result.message
    assert result.rows.values.tolist() == expected


# --------------------------------------------------------------------------- allowed statements


def test_with_cte(demo, sql):
    result = run_console(demo, "WITH per AS (SELECT study_id, count(*) AS n FROM subjects GROUP BY study_id) "
                               "SELECT study_id, n FROM per ORDER BY study_id")
    assert result.status == "ok", result.message
    expected = Counter(study for (study,) in sql("SELECT study_id FROM subjects"))
    assert dict(zip(result.rows["study_id"], result.rows["n"].astype(int))) == expected
    assert result.rows["study_id"].tolist() == sorted(expected)


def test_from_first(demo, sql, n_subjects):
    result = run_console(demo, "FROM subjects")
    assert result.status == "ok", result.message
    assert len(result.rows) == n_subjects
    assert sorted(result.rows["subject_id"]) == sorted(s for (s,) in sql("SELECT subject_id FROM subjects"))


def test_describe_lists_the_contract_columns_of_subjects(demo):
    result = run_console(demo, "DESCRIBE subjects")
    assert result.status == "ok", result.message
    assert keeps_contract_order(result.rows["column_name"].tolist(), [c for c, _, _ in contract_tables()["subjects"]])


def test_summarize(demo, sql, n_subjects):
    result = run_console(demo, "SUMMARIZE subjects")
    assert result.status == "ok", result.message
    assert result.rows["column_name"].tolist() == [c.name for c in columns()["subjects"]]
    age = result.rows.set_index("column_name").loc["age"]
    low, high, n_null = sql("SELECT min(age), max(age), count(*) FILTER (WHERE age IS NULL) FROM subjects")[0]
    assert (age["min"], age["max"]) == (str(low), str(high))
    assert int(age["count"]) == n_subjects
    assert float(age["null_percentage"]) == pytest.approx(100 * n_null / n_subjects, abs=0.01)


def test_values(demo):
    result = run_console(demo, "VALUES (1, 'a'), (2, 'b'), (3, NULL)")
    assert result.status == "ok", result.message
    assert result.rows.iloc[:, 0].tolist() == [1, 2, 3]
    assert result.rows.iloc[:2, 1].tolist() == ["a", "b"] and pd.isna(result.rows.iloc[2, 1])


def test_show_tables_lists_the_contract_tables(demo):
    result = run_console(demo, "SHOW TABLES")
    assert result.status == "ok", result.message
    assert set(contract_tables()) <= set(result.rows["name"])


@pytest.mark.parametrize("text", [
    "SELECT count(*) AS n FROM subjects;",
    "-- how many subjects?\nSELECT count(*) AS n FROM subjects;",
    "SELECT count(*) AS n /* every row */ FROM subjects -- screen failures too\n;",
    "SELECT count(*) AS n FROM subjects; -- how many?",
    "SELECT count(*) AS n FROM subjects;\n/* a note at the end */",
    "  \n  SELECT count(*) AS n FROM subjects ;  \n  ",
], ids=["semicolon", "leading-comment", "inline-comments", "semicolon-then-comment", "semicolon-then-block-comment",
        "surrounding-whitespace"])
def test_trailing_semicolon_and_comments(demo, n_subjects, text):
    """A pasted query often ends in '; -- note'. DuckDB's parser calls it one SELECT, so it should run."""
    result = run_console(demo, text)
    assert result.status == "ok", result.message
    assert int(result.rows["n"].iloc[0]) == n_subjects


@pytest.mark.parametrize("text, expected", [
    ("SELECT 'glob (x)' AS s", "glob (x)"),
    ("SELECT 'please read_csv(it)' AS s", "please read_csv(it)"),
    ("-- never call read_text('/etc/passwd') here\nSELECT 'fine' AS s", "fine"),
    ("SELECT 'a' AS s /* read_blob(x) is refused */", "a"),
], ids=["literal-glob", "literal-read_csv", "comment-read_text", "comment-read_blob"])
def test_a_reader_name_inside_text_or_a_comment_is_not_a_call(demo, text, expected):
    """Only calls of file readers are refused; a SELECT whose string or comment mentions one reads no file.
    (An investigator may well search adverse event terms or notes for any text.)"""
    result = run_console(demo, text)
    assert result.status == "ok", result.message
    assert result.rows["s"].tolist() == [expected]


def test_unicode_in_a_select(demo):
    result = run_console(demo, "SELECT 'Grüße, 日本, ✓' AS greeting")
    assert result.status == "ok" and result.rows["greeting"].tolist() == ["Grüße, 日本, ✓"]


def test_the_statement_length_limit_boundary(demo):
    limit = settings.CONSOLE_STATEMENT_MAX_CHARS
    head = "SELECT 1 AS one -- "
    at_limit = head + "x" * (limit - len(head))
    assert len(at_limit) == limit
    assert run_console(demo, at_limit).status == "ok"
    assert run_console(demo, at_limit + "x").status == "refused"


# --------------------------------------------------------------------------- schema browser


def test_schema_lists_every_contract_table_and_column_with_its_description(demo):
    contract = contract_tables()
    columns = explore.load_schema(demo)
    for table, cols in contract.items():
        mine = columns[columns["table_name"] == table]
        assert not mine.empty, table
        assert mine["table_comment"].notna().all() and mine["table_comment"].iloc[0].strip(), table
        assert keeps_contract_order(mine["column_name"].tolist(), [c for c, _, _ in cols]), table
        comments = dict(zip(mine["column_name"], mine["column_comment"]))
        assert all(isinstance(c, str) and c.strip() for c in comments.values()), table  # additions too
        for column, req, meaning in cols:
            comment = comments[column]
            assert isinstance(comment, str) and comment.strip(), (table, column)
            assert meaning.replace("`", "") in comment, (table, column)  # the contract's own words
            assert ("(required)" in comment) == (req == "yes"), (table, column)
    death = columns[(columns["table_name"] == "subjects") & (columns["column_name"] == "death_date")]
    assert len(death) == 1 and death["data_type"].iloc[0] == "DATE"


def test_schema_puts_contract_tables_first_in_load_order(demo):
    contract = list(contract_tables())  # document order: a table only references tables before it
    order = list(dict.fromkeys(explore.load_schema(demo)["table_name"]))
    assert order[:len(contract)] == contract
    assert "load_info" in order[len(contract):]


# --------------------------------------------------------------------------- example queries


def test_examples_are_found_with_their_titles():
    found = explore.examples()
    assert [e.name for e in found] == sorted(p.stem for p in EXAMPLES.glob("*.sql"))
    assert len(found) >= 3
    by_name = {e.name: e for e in found}
    assert by_name["dlts_by_level"].title.startswith("DLTs by dose level")
    assert by_name["dlts_by_level"].label == "DLTs by dose level"
    assert by_name["dlts_by_level"].sql == (EXAMPLES / "dlts_by_level.sql").read_text()


def test_examples_title_falls_back_to_the_file_name(tmp_path):
    (tmp_path / "a_empty.sql").write_text("")
    (tmp_path / "c_titled.sql").write_text("-- Counts: per level\nSELECT 1")
    (tmp_path / "notes.txt").write_text("-- not a query")
    found = explore.examples(tmp_path)
    assert [(e.name, e.title, e.label) for e in found] == [
        ("a_empty", "a_empty", "a_empty"), ("c_titled", "Counts: per level", "Counts")]


@pytest.mark.parametrize("name", sorted(p.stem for p in EXAMPLES.glob("*.sql")))
def test_every_example_runs_in_the_console(demo, name):
    result = run_console(demo, (EXAMPLES / f"{name}.sql").read_text())
    assert result.status == "ok", result.message
    assert not result.rows.empty


def test_dlt_example_counts_equal_an_independent_count(demo, sql):
    example = {e.name: e for e in explore.examples()}["dlts_by_level"]
    result = run_console(demo, example.sql)
    assert result.status == "ok", result.message
    expected = Counter((study, level) for study, level in sql(
        "SELECT s.study_id, s.dose_level FROM subjects s WHERE EXISTS (SELECT 1 FROM adverse_events a "
        "WHERE a.study_id = s.study_id AND a.subject_id = s.subject_id AND a.dlt = 'Y')"))
    assert expected  # the demo has DLTs
    got = {(r.study_id, int(r.level)): int(r.subjects_with_dlt) for r in result.rows.itertuples()}
    assert got == dict(expected)
    terms = {}
    for study, level, term in sql("SELECT a.study_id, s.dose_level, a.term FROM adverse_events a JOIN subjects s "
                                  "ON a.study_id = s.study_id AND a.subject_id = s.subject_id WHERE a.dlt = 'Y'"):
        terms.setdefault((study, level), set()).add(term)
    assert {(r.study_id, int(r.level)): set(r.dlt_terms.split("; ")) for r in result.rows.itertuples()} == terms


# --------------------------------------------------------------------------- pivot on a hand-made study


def subject(sid, level, phase="escalation", sex="M", enrolled="2025-01-02"):
    return dict(study_id="S1", subject_id=sid, dose_level=level, phase=phase, sex=sex,
                enrollment_date=enrolled if level is not None else None)


def ae(sid, seq, term, grade, dlt="N"):
    return dict(study_id="S1", subject_id=sid, ae_seq=seq, term=term, onset_date="2025-01-10", grade=grade, dlt=dlt)


def lab(sid, day, test, value, category, lloq=None):
    return dict(study_id="S1", subject_id=sid, collected_at=f"2025-01-{day:02d}", test=test, value=value,
                category=category, lloq=lloq)


PIVOT_TRIAL = dict(
    subjects=[
        # level 1: 101, 102 escalation, 103 expansion; level 2: 201 escalation, 202, 203 expansion;
        # level 3: 301 escalation; 901 a screen failure (no level); sex empty for 203 and 901
        subject("101", 1), subject("102", 1, sex="F"), subject("103", 1, "expansion"),
        subject("201", 2, sex="F"), subject("202", 2, "expansion"), subject("203", 2, "expansion", sex=None),
        subject("301", 3, sex="F"), subject("901", None, sex=None),
    ],
    adverse_events=[
        # grade 1: 3 rows, subjects {101, 102}; grade 2: 1 row {202}; grade 3: 3 rows {101, 201}; grade 4: {203}
        ae("101", 1, "Pyrexia", 1), ae("101", 2, "Nausea", 1), ae("101", 3, "Cytokine release syndrome", 3, "Y"),
        ae("102", 1, "Pyrexia", 1), ae("201", 1, "Sepsis", 3, "Y"), ae("201", 2, "Pyrexia", 3),
        ae("202", 1, "Nausea", 2), ae("203", 1, "Neutropenia", 4),
    ],
    lab_results=[
        # ALT 30, 50, 70: mean 50, max 70; Neutrophils 2.0, 1.0, 0.6: mean 1.2, max 2.0;
        # CA19-9: one result below the LLOQ (no value) and 100: mean 100, max 100, 2 rows
        lab("101", 3, "ALT", 30, "chemistry"), lab("101", 10, "ALT", 50, "chemistry"),
        lab("102", 3, "ALT", 70, "chemistry"),
        lab("101", 3, "Neutrophils", 2.0, "hematology"), lab("201", 3, "Neutrophils", 1.0, "hematology"),
        lab("202", 3, "Neutrophils", 0.6, "hematology"),
        lab("101", 4, "CA19-9", None, "tumor_marker", lloq=5), lab("102", 4, "CA19-9", 100, "tumor_marker"),
    ],
)


@pytest.fixture(scope="module")
def pivot_db(tmp_path_factory) -> Database:
    db, _ = one_study_db(tmp_path_factory.mktemp("pivot") / "pivot.duckdb", **PIVOT_TRIAL)
    return db


def as_dict(long: pd.DataFrame, *keys: str) -> dict:
    """{key or (key, key): value} with dose levels as ints and values as plain numbers."""
    def norm(v):
        return v if isinstance(v, str) else int(v)
    out = {}
    for row in long.to_dict("records"):
        key = tuple(norm(row[k]) for k in keys)
        out[key[0] if len(key) == 1 else key] = row["value"]
    return out


def test_pivot_tables_are_the_study_tables():
    assert explore.pivot_tables() == [t for t in contract_tables() if t != "sites"]


def test_pivot_counts_rows_by_dose_level_and_phase(pivot_db):
    spec = PivotSpec("subjects", rows="dose_level", columns="phase")
    long = explore.load_pivot(pivot_db, "S1", spec)
    assert as_dict(long, "dose_level", "phase") == {
        (1, "escalation"): 2, (1, "expansion"): 1, (2, "escalation"): 1, (2, "expansion"): 2,
        (3, "escalation"): 1, (EMPTY, "escalation"): 1}


def test_pivot_wide_puts_phases_across(pivot_db):
    spec = PivotSpec("subjects", rows="phase", columns="sex")
    wide = explore.pivot_wide(explore.load_pivot(pivot_db, "S1", spec), spec)
    # escalation: 101 M, 102 F, 201 F, 301 F, 901 empty; expansion: 103 M, 202 M, 203 empty
    assert wide.columns[0] == "phase" and sorted(wide.columns[1:]) == sorted(["F", "M", EMPTY])
    table = wide.set_index("phase")
    assert table.loc["escalation", ["F", "M", EMPTY]].tolist() == [3, 1, 1]
    assert table.loc["expansion", "M"] == 2 and table.loc["expansion", EMPTY] == 1
    assert pd.isna(table.loc["expansion", "F"])  # no such subject


def test_pivot_wide_column_headings_of_dose_levels_are_the_levels(pivot_db):
    """Dose levels across: headings '1', '2', '3' and '(empty)' for the screen failure, as the data say
    (not '1.0', which is how a NULL in an integer column can come back from pandas)."""
    spec = PivotSpec("subjects", rows="phase", columns="dose_level")
    wide = explore.pivot_wide(explore.load_pivot(pivot_db, "S1", spec), spec)
    assert wide.columns.tolist() == ["phase", "1", "2", "3", EMPTY]
    assert wide.set_index("phase").loc["escalation"].tolist() == [2, 1, 1, 1]


def test_pivot_rows_only_is_renamed_for_the_page(pivot_db):
    spec = PivotSpec("adverse_events", rows="grade")
    wide = explore.pivot_wide(explore.load_pivot(pivot_db, "S1", spec), spec)
    assert wide.columns.tolist() == ["grade", explore.AGGREGATES["count"]]
    assert dict(zip(wide["grade"].astype(int), wide[explore.AGGREGATES["count"]])) == {1: 3, 2: 1, 3: 3, 4: 1}


def test_pivot_counts_distinct_subjects_of_adverse_events_by_grade(pivot_db):
    long = explore.load_pivot(pivot_db, "S1", PivotSpec("adverse_events", rows="grade", aggregate="subjects"))
    assert as_dict(long, "grade") == {1: 2, 2: 1, 3: 2, 4: 1}
    rows = explore.load_pivot(pivot_db, "S1", PivotSpec("adverse_events", rows="grade"))
    assert as_dict(rows, "grade") == {1: 3, 2: 1, 3: 3, 4: 1}


def test_pivot_mean_and_max_of_lab_values_by_test(pivot_db):
    mean = as_dict(explore.load_pivot(pivot_db, "S1", PivotSpec("lab_results", rows="test", aggregate="mean",
                                                            value="value")), "test")
    assert mean == pytest.approx({"ALT": 50.0, "CA19-9": 100.0, "Neutrophils": 1.2})
    high = as_dict(explore.load_pivot(pivot_db, "S1", PivotSpec("lab_results", rows="test", aggregate="max",
                                                            value="value")), "test")
    assert high == pytest.approx({"ALT": 70.0, "CA19-9": 100.0, "Neutrophils": 2.0})
    count = as_dict(explore.load_pivot(pivot_db, "S1", PivotSpec("lab_results", rows="test")), "test")
    assert count == {"ALT": 3, "CA19-9": 2, "Neutrophils": 3}


def test_pivot_filters_keep_only_the_chosen_values(pivot_db):
    expansion = explore.load_pivot(pivot_db, "S1", PivotSpec("subjects", rows="dose_level",
                                                         filters=(("phase", ("expansion",)),)))
    assert as_dict(expansion, "dose_level") == {1: 1, 2: 2}
    # numbers are filtered by their text; two filters combine (levels 1 and 3, women: 102, 301)
    spec = PivotSpec("subjects", rows="phase", filters=(("dose_level", ("1", "3")), ("sex", ("F",))))
    assert as_dict(explore.load_pivot(pivot_db, "S1", spec), "phase") == {"escalation": 2}
    # lab results of one category: chemistry only
    spec = PivotSpec("lab_results", rows="test", filters=(("category", ("chemistry",)),))
    assert as_dict(explore.load_pivot(pivot_db, "S1", spec), "test") == {"ALT": 3}


def test_pivot_filter_values_are_parameters(pivot_db):
    evil = "x' OR '1'='1"
    spec = PivotSpec("subjects", rows="dose_level", filters=(("sex", (evil,)),))
    assert explore.load_pivot(pivot_db, "S1", spec).empty
    text, params = explore.pivot_sql(pivot_db, spec)
    assert evil not in text and ["x' OR '1'='1"] in params.values()
    # a value with quotes that does exist is matched exactly
    assert as_dict(explore.load_pivot(pivot_db, "S1", PivotSpec("adverse_events", rows="grade", filters=(
        ("term", ("Cytokine release syndrome", "it's")),))), "grade") == {3: 1}


def test_pivot_reads_only_the_chosen_study(pivot_db):
    assert explore.load_pivot(pivot_db, "NO-SUCH-STUDY", PivotSpec("subjects", rows="dose_level")).empty


def test_filter_values_are_the_distinct_texts(pivot_db):
    assert explore.load_filter_values(pivot_db, "S1", "subjects", "sex") == ["F", "M"]
    assert explore.load_filter_values(pivot_db, "S1", "subjects", "dose_level") == ["1", "2", "3"]
    with pytest.raises(ValueError, match="nope"):
        explore.load_filter_values(pivot_db, "S1", "subjects", "nope")


@pytest.mark.parametrize("spec, named", [
    (PivotSpec("subjects", rows="nope"), "nope"),
    (PivotSpec("subjects", rows="dose_level; DROP TABLE subjects"), "dose_level; DROP TABLE subjects"),
    (PivotSpec("subjects", rows='dose_level" FROM subjects; DROP TABLE subjects; --'), "DROP TABLE"),
    (PivotSpec("subjects", rows="dose_level", columns="phase) FROM sites --"), "phase) FROM sites --"),
    (PivotSpec("lab_results", rows="test", aggregate="max", value="value) FROM load_info --"), "load_info"),
    (PivotSpec("subjects", rows="dose_level", filters=(("1=1 OR sex", ("M",)),)), "1=1 OR sex"),
    (PivotSpec("sites", rows="country"), "sites"),
    (PivotSpec("load_info", rows="source"), "load_info"),
    (PivotSpec("pg_catalog.pg_tables", rows="tablename"), "pg_catalog.pg_tables"),
    (PivotSpec("subjects; DROP TABLE subjects", rows="dose_level"), "subjects; DROP TABLE subjects"),
    (PivotSpec("subjects", rows="dose_level", aggregate="mean", value="sex"), "sex"),
    (PivotSpec("lab_results", rows="test", aggregate="mean", value="collected_at"), "collected_at"),
    (PivotSpec("subjects", rows="phase", columns="phase"), "Columns"),
    (PivotSpec("subjects", rows="phase", aggregate="sum", value="age"), "sum"),
    (PivotSpec("subjects", rows="phase", aggregate="mean"), "value"),
    (PivotSpec("dose_levels", rows="level", aggregate="subjects"), "subject_id"),
], ids=["unknown-column", "injection-in-rows", "quote-injection-in-rows", "injection-in-columns",
        "injection-in-value", "injection-in-filter-column", "sites", "load_info", "pg_catalog", "injection-in-table",
        "mean-of-text", "mean-of-timestamp", "rows-equal-columns", "unknown-aggregate", "mean-without-value",
        "subjects-without-subject_id"])
def test_pivot_refuses_bad_specs_with_a_message(pivot_db, spec, named):
    with pytest.raises(ValueError) as refused:
        explore.pivot_sql(pivot_db, spec)
    assert named.lower() in str(refused.value).lower()
    with pytest.raises(ValueError):
        explore.load_pivot(pivot_db, "S1", spec)
    # nothing was dropped
    assert int(pivot_db.sql("SELECT count(*) AS n FROM subjects")["n"].iloc[0]) == len(PIVOT_TRIAL["subjects"])
