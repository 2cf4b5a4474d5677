"""The investigator's SQL console (smc.console) and the Explore helpers (smc.explore).

Console safety: a list of hostile or broken inputs must each come back as a result with ok == False and a
message (never an exception), leave the database file byte-identical, create no file, and leave the next
ordinary query working. They run on a private copy of the demo database (opened through smc.store.db.Database,
the app's read-only configuration), so the session database is never at risk.

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
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from smc import settings
from smc.analysis import console, explore
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


def test_a_runaway_query_does_not_disturb_other_queries(demo, n_subjects):
    """One thread's runaway is interrupted; queries of another thread (one of them in flight at the very
    moment of the interrupt, the others back to back) all succeed with the right values."""
    times: dict[str, float] = {}
    results: dict[str, console.ConsoleResult] = {}

    def runaway():
        results["runaway"] = run_console(demo, CROSS_JOIN, time_limit=0.6)
        times["runaway_end"] = time.perf_counter()

    def straddling():  # 1.5 s of sleep: still running when the runaway is interrupted at 0.6 s
        times["slow_start"] = time.perf_counter()
        results["slow"] = run_console(demo, "SELECT 42 AS answer, sleep_ms(1500) IS NULL AS slept", time_limit=10)
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
