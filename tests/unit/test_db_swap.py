"""A new data cut swapped in while other sessions query: no query fails, every answer comes from one cut, and a
superseded connection closes when its last query ends."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smc.demo.build import build_demo
from smc.ingest.load import as_text, import_tables
from smc.store.db import READ_ONLY_CONFIG, Database, query_text
from tests.helpers import ROOT

# One statement reading two tables: a mix of cuts would pair one cut's source with the other's lab total.
IDENTITY_SQL = """
SELECT (SELECT source FROM load_info) AS source,
       (SELECT round(sum(value), 3) FROM lab_results) AS lab_total,
       (SELECT count(*) FROM range(300000) t(i) WHERE i % 7 = 0) AS busy  -- a few ms, so swaps land mid-query
"""
TWO_TABLES_SQL = "SELECT (SELECT count(*) FROM adverse_events) AS events, (SELECT count(*) FROM subjects) AS subjects"
SIZES = "table_sizes"  # a named query (queries/table_sizes.sql): rows per contract table


def _read(path: Path) -> dict:
    """What each kind of query should answer on the cut at ``path``, read on a connection of its own."""
    con = duckdb.connect(str(path), read_only=True, config=READ_ONLY_CONFIG)
    try:
        return {
            "identity": tuple(con.execute(IDENTITY_SQL).fetchone()[:2]),
            "two_tables": con.execute(TWO_TABLES_SQL).fetchone(),
            "sizes": tuple(con.execute(query_text(SIZES)).fetchall()),
        }
    finally:
        con.close()


@pytest.fixture(scope="module")
def cuts(demo_db, tmp_path_factory) -> dict[str, Path]:
    """Two data cuts, A and B (demo seeds 2024 and 7), each told apart by every query the tests run."""
    other = tmp_path_factory.mktemp("cut_b") / "b.duckdb"
    build_demo(other, seed=7)
    cuts = {"A": demo_db, "B": other}
    answers = {name: _read(path) for name, path in cuts.items()}
    for kind in answers["A"]:
        assert answers["A"][kind] != answers["B"][kind], kind
    return cuts


@pytest.fixture(scope="module")
def expected(cuts) -> dict[str, dict]:
    return {name: _read(path) for name, path in cuts.items()}


def swap_in(source: Path, live: Path) -> None:
    """As the loader does (smc.ingest.load.write_database): a new file beside the live one, then os.replace."""
    tmp = live.with_name(f".{live.name}.swap.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, live)


def open_files(directory: Path) -> set[int]:
    """Inodes of the files under ``directory`` this process holds open, read from /proc/self/fd: what a DuckDB
    connection keeps open, whatever name it was opened by."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(f"{directory}/"):
                inodes.add(os.stat(f"/proc/self/fd/{fd}").st_ino)
        except OSError:  # the fd of the listing itself, or one closed meanwhile
            continue
    return inodes


def cut_of(answer, kind: str, expected: dict) -> str:
    """Which cut ``answer`` comes from; fails on an answer from neither."""
    found = [name for name, reading in expected.items() if reading[kind] == answer]
    assert found, f"{kind} answer {answer!r} is from neither cut"
    return found[0]


def ask(db: Database, kind: str):
    """One query through one of the adapter's ways in, as comparable values."""
    if kind == "sql":
        row = db.sql(IDENTITY_SQL).iloc[0]
        return "identity", (row.source, float(row.lab_total))
    if kind == "query":
        return "sizes", tuple(db.query(SIZES).itertuples(index=False, name=None))
    if kind == "rows":
        return "sizes", tuple((r["table_name"], r["rows"]) for r in db.rows(SIZES))
    if kind == "arrow":
        table = db.arrow(SIZES)
        return "sizes", tuple(zip(table["table_name"].to_pylist(), table["rows"].to_pylist()))
    # Two statements on one leased cursor: both must read the same cut.
    with db.cursor() as cursor:
        first = cursor.execute(IDENTITY_SQL).fetchone()[:2]
        second = cursor.execute(TWO_TABLES_SQL).fetchone()
    return "cursor", (tuple(first), second)


KINDS = ("sql", "query", "rows", "arrow", "cursor")


def check(kind: str, answer, expected: dict) -> str:
    if kind != "cursor":
        return cut_of(answer, kind, expected)
    first, second = answer
    cut = cut_of(first, "identity", expected)
    assert cut_of(second, "two_tables", expected) == cut, f"one cursor read two cuts: {answer}"
    return cut


class Swapper:
    """Swaps cuts in at ``live`` as an operator would: ``file`` replaces the file (as the loader does),
    ``symlink`` re-points a symbolic link at a new file, the file before last then deleted."""

    def __init__(self, cuts: dict[str, Path], live: Path, style: str):
        self.cuts, self.live, self.style, self.swaps, self.files = cuts, live, style, 0, []

    def swap(self, name: str) -> None:
        if self.style == "file":
            swap_in(self.cuts[name], self.live)
        else:
            target = self.live.with_name(f"cut-{self.swaps}.duckdb")
            shutil.copyfile(self.cuts[name], target)
            link = self.live.with_name(".cut.link.tmp")
            link.symlink_to(target.name)
            os.replace(link, self.live)
            self.files.append(target)
            if len(self.files) > 2:
                self.files.pop(0).unlink()  # a query may still read it: the open file stays until closed
        self.swaps += 1

    def left(self) -> list[str]:
        """What the directory should hold once swaps are over."""
        return sorted(["cut.duckdb"] + [f.name for f in self.files])


@pytest.mark.parametrize("style", ["file", "symlink"])
@pytest.mark.parametrize("threads, swap_every", [(4, (0.05, 0.2)), (8, (0.05, 0.2)), (6, (0.0, 0.02))],
                         ids=["4-threads", "8-threads", "6-threads-back-to-back-swaps"])
def test_continuous_swaps_under_concurrent_queries_never_fail_nor_mix(cuts, expected, tmp_path, threads,
                                                                      swap_every, style):
    live = tmp_path / "cut.duckdb"
    swapper = Swapper(cuts, live, style)
    swapper.swap("A")
    db = Database(live)
    stop = time.monotonic() + 4
    failures, seen, most_open = [], [], [1]

    def swap():
        rng = random.Random(26)
        while time.monotonic() < stop:
            time.sleep(rng.uniform(*swap_every))
            swapper.swap("AB"[swapper.swaps % 2])
            most_open[0] = max(most_open[0], db.open_connections)

    def querier(index: int):
        n = index
        while time.monotonic() < stop:
            kind = KINDS[n % len(KINDS)]
            n += 1
            try:
                seen.append(ask(db, kind))
            except Exception as exc:  # any failure is what this test is about: count it, keep querying
                failures.append(f"{kind}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=swap)] + [threading.Thread(target=querier, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == [], f"{len(failures)} failed queries, e.g. {failures[:3]}"
    assert swapper.swaps >= 15
    assert {check(*answer, expected) for answer in seen} == {"A", "B"}
    assert most_open[0] >= 2, "no swap landed while a query ran: the test did not exercise the leases"
    # Quiet now: the next query reads the cut in place, and only its connection is open.
    assert check(*ask(db, "sql"), expected) == "AB"[(swapper.swaps - 1) % 2]
    assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}
    assert sorted(p.name for p in tmp_path.iterdir()) == swapper.left()  # no link, WAL or temp file left


def test_cuts_written_by_the_loader_under_concurrent_queries_never_fail_nor_mix(tmp_path):
    """Small cuts written by smc.ingest.load.import_tables itself, each naming itself in three tables."""
    live = tmp_path / "cut.duckdb"

    def write_cut(n: int) -> None:
        tables = dict(
            studies=[dict(study_id="S1", design="3+3", agent=f"AGENT-{n}", dlt_window_days=28,
                          data_cut_date="2025-03-15")],
            dose_levels=[dict(study_id="S1", level=lv, label=f"level {lv} of cut {n}") for lv in (1, 2, 3)],
            subjects=[dict(study_id="S1", subject_id=f"S1-{n:03d}", enrollment_date="2025-01-02", dose_level=1)])
        import_tables({name: as_text(pd.DataFrame(rows)) for name, rows in tables.items()}, live, f"cut {n}")

    def cut_named(row) -> int:
        agent, labels, subject, source = row
        n = int(source.removeprefix("cut "))
        assert (agent, labels, subject) == (f"AGENT-{n}", f"level 1 of cut {n}|level 2 of cut {n}|level 3 of cut {n}",
                                            f"S1-{n:03d}"), f"a mix of cuts: {row}"
        return n

    statement = ("SELECT (SELECT agent FROM studies), (SELECT string_agg(label, '|' ORDER BY level) FROM dose_levels), "
                 "(SELECT subject_id FROM subjects), (SELECT source FROM load_info), "
                 "(SELECT count(*) FROM range(300000) t(i) WHERE i % 7 = 0)")
    write_cut(0)
    db = Database(live)
    failures, seen, written, done = [], [], 8, threading.Event()

    def loader():
        for n in range(1, written + 1):
            write_cut(n)
        done.set()

    def querier():
        while not done.is_set():
            try:
                with db.cursor() as cursor:
                    seen.append(cursor.execute(statement).fetchone()[:4])
            except Exception as exc:  # any failure is what this test is about
                failures.append(f"{type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=loader)] + [threading.Thread(target=querier) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert failures == [], f"{len(failures)} failed queries, e.g. {failures[:3]}"
    assert len({cut_named(row) for row in seen}) >= 3
    assert cut_named(db.sql(statement).iloc[0, :4].tolist()) == written
    assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}


def _read_in_another_session(db: Database, expected) -> str:
    """The cut a query of another session (another thread) reads now."""
    out = []
    thread = threading.Thread(target=lambda: out.append(check(*ask(db, "sql"), expected)))
    thread.start()
    thread.join()
    return out[0]


def test_a_query_across_a_swap_finishes_on_its_cut_while_new_queries_read_the_new_one(cuts, expected, tmp_path):
    live = tmp_path / "cut.duckdb"
    swap_in(cuts["A"], live)
    db = Database(live)
    with db.cursor() as cursor:
        assert cut_of(tuple(cursor.execute(IDENTITY_SQL).fetchone()[:2]), "identity", expected) == "A"
        swap_in(cuts["B"], live)
        # The new connection reads the new file although the old one, on the same path, is still open.
        assert _read_in_another_session(db, expected) == "B"
        assert cut_of(tuple(cursor.execute(IDENTITY_SQL).fetchone()[:2]), "identity", expected) == "A"
        assert cut_of(cursor.execute(TWO_TABLES_SQL).fetchone(), "two_tables", expected) == "A"
        # A query nested in the block reads the block's cut, not half of each.
        assert check(*ask(db, "sql"), expected) == "A"
        assert db.open_connections == 2
        assert len(open_files(tmp_path)) == 2
        swap_in(cuts["A"], live)  # and again, while the first is still leased
        assert _read_in_another_session(db, expected) == "A"
        assert db.open_connections == 2  # B had no query running: it closed when A's new file replaced it
    assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}
    assert check(*ask(db, "sql"), expected) == "A"


def test_many_swaps_with_leases_held_across_them_leave_one_connection_open(cuts, expected, tmp_path):
    live = tmp_path / "cut.duckdb"
    swap_in(cuts["A"], live)
    db = Database(live)
    for _ in range(40):
        # A session holds a cursor across the swap; another session's query opens the new cut.
        with db.cursor() as cursor:
            swap_in(cuts["B"], live)
            assert _read_in_another_session(db, expected) == "B"
            assert cut_of(cursor.execute(TWO_TABLES_SQL).fetchone(), "two_tables", expected) == "A"
            assert db.open_connections == 2
        assert db.open_connections == 1
        swap_in(cuts["A"], live)  # and a swap no query was running across
        assert check(*ask(db, "rows"), expected) == "A"
        assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}


def test_a_failed_query_releases_its_lease(cuts, expected, tmp_path):
    live = tmp_path / "cut.duckdb"
    swap_in(cuts["A"], live)
    db = Database(live)
    for statement in ("SELECT * FROM no_such_table", "SELECT * FROM read_csv('/etc/passwd')", "SELECT 1/"):
        with pytest.raises(duckdb.Error):
            db.sql(statement)
    with pytest.raises(LookupError), db.cursor() as cursor:  # the caller's own code fails inside the block
        cursor.execute("SELECT 1").fetchone()
        raise LookupError("the caller's own failure")
    swap_in(cuts["B"], live)
    assert check(*ask(db, "arrow"), expected) == "B"
    assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}


def test_a_file_that_is_not_a_database_fails_its_queries_and_the_next_good_cut_is_read(cuts, expected, tmp_path):
    live = tmp_path / "cut.duckdb"
    swap_in(cuts["A"], live)
    db = Database(live)
    assert check(*ask(db, "query"), expected) == "A"
    broken = tmp_path / "broken"
    broken.write_bytes(b"not a database" * 1000)
    swap_in(broken, live)
    with pytest.raises(duckdb.Error):
        db.sql(IDENTITY_SQL)
    swap_in(cuts["B"], live)
    assert check(*ask(db, "query"), expected) == "B"
    assert db.open_connections == 1
    assert open_files(tmp_path) == {live.stat().st_ino}


# A server that may only read the data files (they belong to another user) cannot make the hard link the adapter
# opens a new cut through: it waits for the running queries to end and opens the path itself. The server runs as
# root without capabilities (setpriv), since root may link anything.
_READ_ONLY_SERVER = """
import json, sys, threading, time
from smc.store.db import Database
live, seconds, sql = sys.argv[1], float(sys.argv[2]), sys.argv[3]
db = Database(live)
stop, failures, seen = time.monotonic() + seconds, [], []
def querier():
    while time.monotonic() < stop:
        try:
            row = db.sql(sql).iloc[0]
            seen.append([row.source, float(row.lab_total)])
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
workers = [threading.Thread(target=querier) for _ in range(4)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
print(json.dumps({"failures": failures, "seen": seen, "open": db.open_connections}))
"""
NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv")
                    or Path("/proc/sys/fs/protected_hardlinks").read_text().strip() != "1",
                    reason="needs root, setpriv and protected hard links to run a server that cannot link the file")
def test_a_server_that_cannot_link_the_data_file_still_swaps_without_failures(cuts, expected, tmp_path):
    live = tmp_path / "cut.duckdb"

    def swap_in_as_other_user(source: Path) -> None:
        tmp = live.with_name(".cut.swap.tmp")
        shutil.copyfile(source, tmp)
        os.chown(tmp, NOBODY, NOBODY)
        tmp.chmod(0o444)
        os.replace(tmp, live)

    swap_in_as_other_user(cuts["A"])
    server = subprocess.Popen(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", sys.executable, "-c", _READ_ONLY_SERVER,
         str(live), "4", IDENTITY_SQL], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng, swaps, started = random.Random(7), 0, time.monotonic()
    while server.poll() is None and time.monotonic() - started < 60:
        time.sleep(rng.uniform(0.05, 0.2))
        swaps += 1
        swap_in_as_other_user(cuts["AB"[swaps % 2]])
    out, err = server.communicate(timeout=60)
    assert server.returncode == 0, err
    assert "cannot link" in err and "Operation not permitted" in err  # it said why new cuts wait
    report = json.loads(out)
    assert report["failures"] == [], report["failures"][:3]
    assert swaps >= 15
    assert {cut_of(tuple(answer), "identity", expected) for answer in report["seen"]} == {"A", "B"}
    assert report["open"] == 1
