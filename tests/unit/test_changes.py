"""Tests for what changed between two data cuts (smc.analysis.changes), the registry of cuts (smc.store.cuts,
smc.ingest.register) and the `diff`, `cuts list`, `import --cuts` and `build-demo --cuts` commands.

Two small cuts of study S1 are built by hand with one change of every kind (``older_tables``/``newer_tables``);
every difference ``load_changes`` reports is checked against an independent comparison in plain SQL over the
two files (``sql_diff``: EXCEPT on the record key for added and removed records, a join on the key with
IS DISTINCT FROM per column for changed fields) and against the changes written down by hand. The demo
registry's corrections between transfer 2 and 3 are checked the same two ways.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from smc import cli
from smc.analysis.changes import load_changes, record_changes, summarise
from smc.ingest import load
from smc.ingest.problems import ImportFailed
from smc.ingest.register import add_cut
from smc.store.cuts import Registry, cut_of, file_sha256, list_cuts
from smc.store.db import Database
from tests.helpers import ROOT, STUDIES, one_study_db

# The record key of each table as docs/data-contract.md defines it (an AE's ae_spid where every AE has one).
KEYS = {
    "studies": ("study_id",),
    "dose_levels": ("study_id", "level"),
    "stages": ("study_id", "stage"),
    "subjects": ("study_id", "subject_id"),
    "subject_stages": ("study_id", "subject_id", "stage"),
    "administrations": ("study_id", "subject_id", "agent", "admin_date", "admin_time"),
    "adverse_events": ("study_id", "subject_id", "ae_spid"),
    "tumor_assessments": ("study_id", "subject_id", "assessment_date"),
    "lab_results": ("study_id", "subject_id", "test", "specimen", "collected_at"),
}
AE_SEQ_KEY = ("study_id", "subject_id", "ae_seq")
D = dt.date.fromisoformat
T = dt.datetime.fromisoformat

# --------------------------------------------------------------------------- the hand-built pair of cuts


def _subject(subject_id, enrolled, level, study_id="S1", **more):
    return dict(study_id=study_id, subject_id=subject_id, sex="F", age="60", screening_date="2025-01-02",
                enrollment_date=enrolled, dose_level=level, phase="escalation", death_date="", **more)


def _ae(subject_id, seq, spid, term, onset, grade, dlt="N", end=""):
    return dict(study_id="S1", subject_id=subject_id, ae_seq=seq, ae_spid=spid, term=term, onset_date=onset,
                end_date=end, grade=grade, serious="N", related="Y", dlt=dlt)


def older_tables() -> dict[str, list[dict]]:
    """The older cut: study S1 (three subjects) and study S2 (one subject), as row dicts of text."""
    return {
        "studies": [dict(study_id="S1", design="3+3", agent="VIRUS", dlt_window_days="28", data_cut_date="2025-03-15"),
                    dict(study_id="S2", design="3+3", agent="PILL", dlt_window_days="21",
                         data_cut_date="2025-03-15")],
        "dose_levels": [dict(study_id="S1", level="1", label="1e8 PFU"), dict(study_id="S1", level="2", label="1e9 PFU"),
                        dict(study_id="S1", level="3", label="1e10 PFU"), dict(study_id="S2", level="1", label="5 mg")],
        "subjects": [_subject("001", "2025-01-10", "1"), _subject("002", "2025-01-20", "1"),
                     _subject("003", "2025-02-01", "2"), _subject("101", "2025-01-15", "1", study_id="S2")],
        "administrations": [
            dict(study_id="S1", subject_id=s, agent="VIRUS", admin_date=d, admin_time="09:00", dose="1")
            for s, d in (("001", "2025-01-10"), ("002", "2025-01-20"), ("003", "2025-02-01"))],
        "adverse_events": [
            _ae("001", "1", "001-AE1", "Fatigue", "2025-01-12", "1"),
            _ae("001", "2", "001-AE2", "Nausea", "2025-01-15", "2"),
            _ae("002", "1", "002-AE1", "Neutropenia", "2025-01-25", "3"),
            _ae("003", "1", "003-AE1", "Rash", "2025-02-05", "1"),
        ],
        "tumor_assessments": [dict(study_id="S1", subject_id="001", assessment_date="2025-01-05",
                                   target_sum_mm="50", overall_response="")],
        "lab_results": [
            dict(study_id="S1", subject_id="001", collected_at="2025-01-10T08:00:00", category="hematology",
                 test="Hemoglobin", specimen="whole blood", value="125", unit="g/dL"),
            dict(study_id="S1", subject_id="002", collected_at="2025-01-20T08:00:00", category="chemistry",
                 test="ALT", specimen="serum", value="30", unit="U/L"),
        ],
    }


def newer_tables() -> dict[str, list[dict]]:
    """The newer cut: the older one with one change of every kind in S1, and one subject enrolled in S2."""
    t = copy.deepcopy(older_tables())
    t["studies"][0]["data_cut_date"] = "2025-04-12"
    t["dose_levels"][1]["label"] = "1e9 PFU (revised)"
    t["subjects"][1]["death_date"] = "2025-03-20"  # 002 died
    t["subjects"].append(_subject("004", "2025-03-25", "2"))  # enrolled
    t["subjects"].append(_subject("102", "2025-03-01", "1", study_id="S2"))  # another study's change
    t["administrations"].append(dict(study_id="S1", subject_id="004", agent="VIRUS", admin_date="2025-03-25",
                                     admin_time="10:00", dose="1"))
    ae = {r["ae_spid"]: r for r in t["adverse_events"]}
    ae["001-AE1"]["end_date"] = "2025-01-20"  # resolved
    ae["001-AE2"]["grade"] = "3"  # upgraded 2 → 3
    ae["002-AE1"]["dlt"] = "Y"  # adjudicated a DLT
    t["adverse_events"].remove(ae["003-AE1"])  # removed in cleaning
    t["adverse_events"].append(_ae("003", "2", "003-AE2", "Fever", "2025-03-01", "1"))  # new
    t["tumor_assessments"].append(dict(study_id="S1", subject_id="001", assessment_date="2025-03-01",
                                       target_sum_mm="45", overall_response="SD"))
    t["lab_results"][0]["value"] = "12.5"  # corrected
    return t


# What the newer cut changed in S1, by hand: {table: (added keys, removed keys, {key: {column: (old, new)}})}.
EXPECTED = {
    "studies": ([], [], {("S1",): {"data_cut_date": (D("2025-03-15"), D("2025-04-12"))}}),
    "dose_levels": ([], [], {("S1", 2): {"label": ("1e9 PFU", "1e9 PFU (revised)")}}),
    "subjects": ([("S1", "004")], [], {("S1", "002"): {"death_date": (None, D("2025-03-20"))}}),
    "administrations": ([("S1", "004", "VIRUS", D("2025-03-25"), "10:00")], [], {}),
    "adverse_events": ([("S1", "003", "003-AE2")], [("S1", "003", "003-AE1")], {
        ("S1", "001", "001-AE1"): {"end_date": (None, D("2025-01-20"))},
        ("S1", "001", "001-AE2"): {"grade": (2, 3)},
        ("S1", "002", "002-AE1"): {"dlt": ("N", "Y")},
    }),
    "tumor_assessments": ([("S1", "001", D("2025-03-01"))], [], {}),
    "lab_results": ([], [], {("S1", "001", "Hemoglobin", "whole blood", T("2025-01-10 08:00:00")):
                             {"value": (125.0, 12.5)}}),
}


def write_cut(path: Path, tables: dict[str, list[dict]]) -> Path:
    one_study_db(path, **tables)
    return path


def write_csv_set(directory: Path, tables: dict[str, list[dict]]) -> Path:
    directory.mkdir(parents=True)
    for table, rows in tables.items():
        load.as_text(pd.DataFrame(rows)).to_csv(directory / f"{table}.csv", index=False)
    return directory


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("pair")
    return write_cut(folder / "older.duckdb", older_tables()), write_cut(folder / "newer.duckdb", newer_tables())


@pytest.fixture(scope="module")
def demo_pair(demo_cuts) -> tuple[Path, Path]:
    registry = Registry.of_folder(demo_cuts)
    return Path(registry.find("demo transfer 2").path), Path(registry.find("demo transfer 3").path)


# --------------------------------------------------------------------------- the independent comparison in SQL


def _q(name: str) -> str:
    return '"' + name + '"'


@dataclass
class SqlDiff:
    columns: dict[str, str]  # column -> DuckDB type, from the newer file
    added: dict[tuple, dict]  # key -> the newer cut's record
    removed: dict[tuple, dict]  # key -> the older cut's record
    changed: dict[tuple, dict]  # key -> {column: (old, new)}
    old: dict[tuple, dict]  # every record of the study, by key
    new: dict[tuple, dict]


def attached(path_from: Path, path_to: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"ATTACH '{path_from}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{path_to}' AS b (READ_ONLY)")
    return con


def sql_diff(path_from: Path, path_to: Path, study_id: str, table: str, key: tuple[str, ...]) -> SqlDiff:
    con = attached(path_from, path_to)
    params = {"s": study_id}
    k = ", ".join(map(_q, key))
    try:
        columns = dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = 'b' "
                                   "AND table_name = ? ORDER BY column_index", [table]).fetchall())
        for side in "ab":  # a record key repeated in one cut is another test's business
            assert not con.execute(f"SELECT {k} FROM {side}.{table} WHERE study_id = $s GROUP BY ALL "
                                   "HAVING count(*) > 1", params).fetchall()

        def only_in(first: str, second: str) -> set[tuple]:
            return set(con.execute(f"SELECT {k} FROM {first}.{table} WHERE study_id = $s EXCEPT "
                                   f"SELECT {k} FROM {second}.{table} WHERE study_id = $s", params).fetchall())

        def records(side: str) -> dict[tuple, dict]:
            cursor = con.execute(f"SELECT * FROM {side}.{table} WHERE study_id = $s", params)
            names = [d[0] for d in cursor.description]
            rows = [dict(zip(names, r)) for r in cursor.fetchall()]
            return {tuple(r[c] for c in key): r for r in rows}

        old, new = records("a"), records("b")
        on = " AND ".join(f"o.{_q(c)} IS NOT DISTINCT FROM n.{_q(c)}" for c in key)
        changed: dict[tuple, dict] = {}
        for column in columns:
            rows = con.execute(f"SELECT {', '.join('n.' + _q(c) for c in key)}, o.{_q(column)}, n.{_q(column)} "
                               f"FROM a.{table} o JOIN b.{table} n ON {on} WHERE n.study_id = $s "
                               f"AND o.{_q(column)} IS DISTINCT FROM n.{_q(column)}", params).fetchall()
            for *record_key, before, after in rows:
                changed.setdefault(tuple(record_key), {})[column] = (before, after)
        added, removed = only_in("b", "a"), only_in("a", "b")
    finally:
        con.close()
    return SqlDiff(columns, {x: new[x] for x in added}, {x: old[x] for x in removed}, changed, old, new)


def typed(record: dict, columns: dict[str, str]) -> dict:
    """A record as load_changes gives it (dates and times as ISO text) with its dates and times parsed back."""
    def value(column, v):
        if v is None or not isinstance(v, str):
            return v
        return {"DATE": D, "TIMESTAMP": T}.get(columns[column], lambda x: x)(v)
    return {c: value(c, v) for c, v in record.items()}


def code_diff(tc, columns: dict[str, str]):
    """load_changes' TableChanges in the shape of SqlDiff: (added, removed, changed, old, new) by key."""
    def key(record):
        return tuple(typed(record, columns)[c] for c in tc.key_columns)
    added = {key(r): typed(r, columns) for r in tc.added}
    removed = {key(r): typed(r, columns) for r in tc.removed}
    changed = {key(c["key"]): {col: tuple(typed({col: v}, columns)[col] for v in pair)
                               for col, pair in c["fields"].items()} for c in tc.changed}
    old = {key(c["key"]): typed(c["old"], columns) for c in tc.changed}
    new = {key(c["key"]): typed(c["new"], columns) for c in tc.changed}
    return added, removed, changed, old, new


def assert_same_as_sql(path_from: Path, path_to: Path, study_id: str, keys: dict[str, tuple[str, ...]]) -> None:
    """load_changes of the study equals the SQL comparison, table by table, record by record, field by field."""
    changes = load_changes(Database(path_from), Database(path_to), study_id)
    assert set(changes.tables) == set(keys)
    for table, key in keys.items():
        tc = changes.tables[table]
        assert tc.key_columns == key, table
        assert tc.duplicate_keys == (), table
        expected = sql_diff(path_from, path_to, study_id, table, key)
        added, removed, changed, old, new = code_diff(tc, expected.columns)
        assert len(added) == len(tc.added) and len(removed) == len(tc.removed), f"{table}: a key reported twice"
        assert added == expected.added, table
        assert removed == expected.removed, table
        assert changed == expected.changed, table
        assert old == {k: expected.old[k] for k in changed} and new == {k: expected.new[k] for k in changed}, table
        for record in [*tc.added, *tc.removed, *(c["old"] for c in tc.changed), *(c["new"] for c in tc.changed)]:
            assert list(record) == list(expected.columns), table  # every contract column, in schema order
            assert all(not isinstance(v, dt.date) for v in record.values()), table  # dates as text


# --------------------------------------------------------------------------- load_changes on the hand-built pair


def test_every_change_of_the_hand_built_pair_matches_sql(pair):
    assert_same_as_sql(*pair, "S1", KEYS)
    assert_same_as_sql(*pair, "S2", KEYS)


def test_the_hand_built_pair_has_exactly_the_changes_made(pair):
    changes = load_changes(Database(pair[0]), Database(pair[1]), "S1")
    for table, (want_added, want_removed, want_changed) in EXPECTED.items():
        by_sql = sql_diff(*pair, "S1", table, KEYS[table])  # the SQL comparison finds what was made, too
        assert (sorted(by_sql.added), sorted(by_sql.removed), by_sql.changed) == (want_added, want_removed,
                                                                                 want_changed), table
        added, removed, changed, _, _ = code_diff(changes.tables[table], by_sql.columns)
        assert sorted(added) == want_added, table
        assert sorted(removed) == want_removed, table
        assert changed == want_changed, table
    ae = changes.tables["adverse_events"]
    assert ae.added[0]["term"] == "Fever" and ae.added[0]["ae_seq"] == 2 and ae.added[0]["onset_date"] == "2025-03-01"
    assert ae.removed[0]["term"] == "Rash" and ae.removed[0]["grade"] == 1
    upgraded = next(c for c in ae.changed if c["key"]["ae_spid"] == "001-AE2")
    assert upgraded["fields"] == {"grade": [2, 3]}
    assert upgraded["old"]["grade"] == 2 and upgraded["new"]["grade"] == 3 and upgraded["new"]["term"] == "Nausea"
    death = changes.tables["subjects"].changed[0]
    assert death["key"] == {"study_id": "S1", "subject_id": "002"}
    assert death["fields"] == {"death_date": [None, "2025-03-20"]}
    lab = changes.tables["lab_results"].changed[0]
    assert lab["fields"] == {"value": [125.0, 12.5]} and lab["new"]["test"] == "Hemoglobin"
    assert not any(r.get("study_id") == "S2" for tc in changes.tables.values()
                   for r in [*tc.added, *tc.removed, *(c["new"] for c in tc.changed)])


def test_another_study_sees_only_its_own_change(pair):
    changes = load_changes(Database(pair[0]), Database(pair[1]), "S2")
    assert [(r["study_id"], r["subject_id"]) for r in changes.tables["subjects"].added] == [("S2", "102")]
    others = [(t, k) for t, tc in changes.tables.items() for k in ("added", "removed", "changed") if getattr(tc, k)]
    assert others == [("subjects", "added")]


def test_a_cut_compared_with_itself_has_no_change(pair):
    changes = load_changes(Database(pair[1]), Database(pair[1]), "S1")
    assert changes.empty
    assert record_changes(changes).empty and summarise(record_changes(changes)) == []


def test_compared_the_other_way_the_changes_turn_round(pair):
    forward = load_changes(Database(pair[0]), Database(pair[1]), "S1")
    back = load_changes(Database(pair[1]), Database(pair[0]), "S1")
    for table, tc in forward.tables.items():
        assert back.tables[table].added == tc.removed and back.tables[table].removed == tc.added, table
        assert [{c: v[::-1] for c, v in x["fields"].items()} for x in back.tables[table].changed] == [
            x["fields"] for x in tc.changed], table


# --------------------------------------------------------------------------- record keys of adverse events


def _ae_pair(tmp_path: Path, old_aes: list[dict], new_aes: list[dict]) -> tuple[Path, Path]:
    """Two cuts that differ only in S1's adverse events."""
    older, newer = older_tables(), older_tables()
    older["adverse_events"], newer["adverse_events"] = old_aes, new_aes
    return write_cut(tmp_path / "older.duckdb", older), write_cut(tmp_path / "newer.duckdb", newer)


def _renumbered(spid: bool) -> tuple[list[dict], list[dict]]:
    """Nausea's ae_seq 2 becomes 5 in the newer cut; Fatigue is unchanged. ae_spid given, or empty for all."""
    old = [_ae("001", "1", "001-F", "Fatigue", "2025-01-12", "1"), _ae("001", "2", "001-N", "Nausea", "2025-01-15", "2")]
    new = [dict(old[0]), dict(old[1], ae_seq="5")]
    if not spid:
        for record in old + new:
            record["ae_spid"] = ""
    return old, new


def test_a_renumbered_ae_seq_with_a_stable_ae_spid_is_a_change(tmp_path):
    path_from, path_to = _ae_pair(tmp_path, *_renumbered(spid=True))
    ae = load_changes(Database(path_from), Database(path_to), "S1").tables["adverse_events"]
    assert ae.key_columns == ("study_id", "subject_id", "ae_spid")
    assert ae.added == () and ae.removed == ()
    assert [(c["key"], c["fields"]) for c in ae.changed] == [
        ({"study_id": "S1", "subject_id": "001", "ae_spid": "001-N"}, {"ae_seq": [2, 5]})]
    assert_same_as_sql(path_from, path_to, "S1", KEYS)


def test_without_ae_spid_a_renumbered_ae_seq_is_a_removal_and_an_addition(tmp_path):
    path_from, path_to = _ae_pair(tmp_path, *_renumbered(spid=False))
    ae = load_changes(Database(path_from), Database(path_to), "S1").tables["adverse_events"]
    assert ae.key_columns == AE_SEQ_KEY
    assert ae.changed == ()
    assert [(r["ae_seq"], r["term"], r["ae_spid"]) for r in ae.added] == [(5, "Nausea", None)]
    assert [(r["ae_seq"], r["term"]) for r in ae.removed] == [(2, "Nausea")]
    assert_same_as_sql(path_from, path_to, "S1", {**KEYS, "adverse_events": AE_SEQ_KEY})


def test_one_ae_without_ae_spid_in_either_cut_keys_the_study_on_ae_seq(tmp_path):
    old, new = _renumbered(spid=True)
    new[0]["ae_spid"] = ""  # Fatigue lost its sponsor id in the newer cut
    path_from, path_to = _ae_pair(tmp_path, old, new)
    ae = load_changes(Database(path_from), Database(path_to), "S1").tables["adverse_events"]
    assert ae.key_columns == AE_SEQ_KEY
    assert [r["ae_seq"] for r in ae.added] == [5] and [r["ae_seq"] for r in ae.removed] == [2]
    assert [(c["key"]["ae_seq"], c["fields"]) for c in ae.changed] == [(1, {"ae_spid": ["001-F", None]})]


@pytest.mark.parametrize("side", ["to", "from"])
def test_a_repeated_record_key_is_reported_and_not_matched(tmp_path, side):
    """Two AEs of subject 001 with one ae_spid in one cut (entered twice); the other cut has it once, graded
    differently: the pair is listed as a duplicate key and is neither a change nor an addition."""
    fatigue = _ae("001", "1", "001-F", "Fatigue", "2025-01-12", "1")
    once = [fatigue, _ae("001", "2", "001-N", "Nausea", "2025-01-15", "2")]
    twice = [dict(fatigue, end_date="2025-01-30"), _ae("001", "2", "001-N", "Nausea", "2025-01-15", "3"),
             _ae("001", "3", "001-N", "Nausea", "2025-01-15", "3")]
    path_from, path_to = _ae_pair(tmp_path, *((once, twice) if side == "to" else (twice, once)))
    ae = load_changes(Database(path_from), Database(path_to), "S1").tables["adverse_events"]
    assert ae.key_columns == ("study_id", "subject_id", "ae_spid")
    assert ae.duplicate_keys == ({"cut": side, "key": {"study_id": "S1", "subject_id": "001", "ae_spid": "001-N"},
                                  "records": 2},)
    assert all(c["key"]["ae_spid"] != "001-N" for c in ae.changed)
    assert [(c["key"]["ae_spid"], c["fields"]) for c in ae.changed] == [
        ("001-F", {"end_date": [None, "2025-01-30"] if side == "to" else ["2025-01-30", None]})]
    duplicated = ae.added if side == "to" else ae.removed
    assert all(r["ae_spid"] != "001-N" for r in duplicated)


@pytest.mark.parametrize("side", ["to", "from"])
def test_the_other_cuts_record_of_a_repeated_key_is_not_added_or_removed(tmp_path, side):
    """docs/data-contract.md#record-keys: only a key in one cut only is added or removed; a repeated key is left
    out of the comparison. 001-N is once in one cut and twice (entered twice, unchanged) in the other."""
    once = [_ae("001", "2", "001-N", "Nausea", "2025-01-15", "2")]
    twice = [*once, _ae("001", "3", "001-N", "Nausea", "2025-01-15", "2")]
    path_from, path_to = _ae_pair(tmp_path, *((once, twice) if side == "to" else (twice, once)))
    changes = load_changes(Database(path_from), Database(path_to), "S1")
    ae = changes.tables["adverse_events"]
    assert len(ae.duplicate_keys) == 1
    assert (ae.added, ae.removed, ae.changed) == ((), (), ())
    assert summarise(record_changes(changes)) == []  # no "1 record removed" in the banner


# --------------------------------------------------------------------------- what the banner counts


def test_the_counts_are_the_changes_made(pair):
    records = record_changes(load_changes(Database(pair[0]), Database(pair[1]), "S1"))
    counts = {c.category: c for c in summarise(records)}
    # studies (cut date), dose level label, AE end date and the lab correction are the other changes.
    assert {k: c.n for k, c in counts.items()} == {
        "new_subject": 1, "new_ae": 1, "grade_change": 1, "new_dlt": 1, "death": 1, "new_scan": 1, "new_dose": 1,
        "removed": 1, "updated": 4}
    assert "2→3" in counts["grade_change"].text and "grade ≥" not in counts["new_ae"].text  # the new AE is grade 1
    assert len(records) == 12  # one row per record: 1 + 1 + 2 + 1 + 5 + 1 + 1
    by_record = {(r.table, tuple(r.key.values())): r for r in records.itertuples()}
    assert by_record[("subjects", ("S1", "004"))].categories == ("new_subject",)
    assert by_record[("subjects", ("S1", "002"))].categories == ("death",)
    assert by_record[("adverse_events", ("S1", "001", "001-AE2"))].categories == ("grade_change",)
    assert by_record[("adverse_events", ("S1", "001", "001-AE2"))].grade_change == "2→3"
    assert by_record[("adverse_events", ("S1", "002", "002-AE1"))].categories == ("new_dlt",)
    assert by_record[("adverse_events", ("S1", "003", "003-AE1"))].categories == ("removed",)
    assert by_record[("adverse_events", ("S1", "001", "001-AE1"))].categories == ("updated",)
    assert by_record[("dose_levels", ("S1", 2))].categories == ("updated",)
    assert set(records.loc[records.table == "lab_results", "categories"]) == {("updated",)}
    assert set(records.subject_id.dropna()) == {"001", "002", "003", "004"}


# --------------------------------------------------------------------------- the command line


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_diff_json_has_the_documented_shape_and_the_changes(pair):
    done = subprocess.run([sys.executable, "-m", "smc", "diff", "--db-from", str(pair[0]), "--db-to", str(pair[1]),
                           "--study", "S1", "--json"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert set(printed) == {"study_id", "tables"} and printed["study_id"] == "S1"
    assert set(printed["tables"]) == set(KEYS)
    for table, body in printed["tables"].items():
        assert set(body) == {"added", "removed", "changed", "key", "duplicate_keys"}, table
        assert body["key"] == list(KEYS[table]) and body["duplicate_keys"] == []
        for change in body["changed"]:
            assert set(change) == {"key", "fields"} and list(change["key"]) == list(KEYS[table])
            assert all(isinstance(v, list) and len(v) == 2 for v in change["fields"].values())
    changes = load_changes(Database(pair[0]), Database(pair[1]), "S1")
    assert printed == json.loads(json.dumps(changes.as_json(), default=str))
    ae = printed["tables"]["adverse_events"]
    assert [c["fields"] for c in ae["changed"] if c["key"]["ae_spid"] == "001-AE2"] == [{"grade": [2, 3]}]
    assert [r["ae_spid"] for r in ae["added"]] == ["003-AE2"] and [r["ae_spid"] for r in ae["removed"]] == ["003-AE1"]
    assert printed["tables"]["lab_results"]["changed"][0]["key"]["collected_at"].startswith("2025-01-10")


def test_diff_of_an_unknown_study_or_a_missing_file_is_a_usage_error(pair, capsys, tmp_path):
    code, out, err = run_cli(capsys, "diff", "--db-from", str(pair[0]), "--db-to", str(pair[1]), "--study", "NOPE")
    assert code == 1 and "NOPE" in err and out == ""
    code, _, _ = run_cli(capsys, "diff", "--db-from", str(tmp_path / "none.duckdb"), "--db-to", str(pair[1]),
                         "--study", "S1")
    assert code == 1


def test_cuts_list_json_of_the_demo_registry(demo_cuts, capsys):
    code, out, _ = run_cli(capsys, "cuts", "list", "--cuts", str(demo_cuts), "--json")
    assert code == 0
    listed = json.loads(out)
    assert len(listed) == 3
    assert [c["label"] for c in listed] == ["demo transfer 1", "demo transfer 2", "demo transfer 3"]
    dates = [c["cut_date"] for c in listed]
    assert dates == sorted(dates) and len(set(dates)) == 3
    for c in listed:
        assert {"path", "cut_date", "label", "source", "sha256", "loaded_at_utc"} <= set(c)
        assert c["sha256"] == file_sha256(c["path"]) == hashlib.sha256(Path(c["path"]).read_bytes()).hexdigest()
        con = duckdb.connect(c["path"], read_only=True)
        try:  # the cut date is the latest of its studies' data cut dates
            assert c["cut_date"] == con.execute("SELECT max(data_cut_date) FROM studies").fetchone()[0].isoformat()
        finally:
            con.close()


def test_the_registry_finds_orders_and_pairs_the_demo_cuts(demo_cuts):
    registry = Registry.of_folder(demo_cuts)
    first, second, third = registry.cuts
    assert registry.latest == third and [c.label for c in registry.before(third)] == [first.label, second.label]
    assert registry.find(second.short_id) == registry.find(Path(second.path).name) == second
    assert registry.find(second.sha256) == registry.find("demo transfer 2") == second and registry.find("x") is None
    for study_id in STUDIES:
        assert registry.previous(third, study_id) == second and registry.previous(first, study_id) is None
    assert cut_of(second.path) == second


def test_import_twice_adds_a_second_cut_and_keeps_the_first(tmp_path, capsys):
    registry = tmp_path / "registry"
    first_csv, second_csv = write_csv_set(tmp_path / "one", older_tables()), write_csv_set(tmp_path / "two",
                                                                                          newer_tables())
    code, _, err = run_cli(capsys, "import", "--csv", str(first_csv), "--cuts", str(registry), "--label", "first")
    assert code == 0, err
    [first] = list_cuts(registry)
    before = file_sha256(first.path)
    assert before == first.sha256 and stat.S_IMODE(os.stat(first.path).st_mode) == 0o444
    code, _, err = run_cli(capsys, "import", "--csv", str(second_csv), "--cuts", str(registry), "--label", "second")
    assert code == 0, err
    cuts = list_cuts(registry)
    assert [c.label for c in cuts] == ["first", "second"] and [c.cut_date for c in cuts] == ["2025-03-15", "2025-04-12"]
    assert cuts[0] == first and file_sha256(first.path) == before
    assert stat.S_IMODE(os.stat(first.path).st_mode) == 0o444
    assert stat.S_IMODE(os.stat(cuts[1].path).st_mode) == 0o444 and cuts[1].sha256 == file_sha256(cuts[1].path)
    # the two imported cuts differ by exactly the hand-made changes
    changes = load_changes(Database(cuts[0].path), Database(cuts[1].path), "S1")
    assert [r["ae_spid"] for r in changes.tables["adverse_events"].added] == ["003-AE2"]
    assert_same_as_sql(Path(cuts[0].path), Path(cuts[1].path), "S1", KEYS)


def test_a_refused_import_leaves_the_registry_as_it_was(tmp_path, capsys):
    registry = tmp_path / "registry"
    code, _, _ = run_cli(capsys, "import", "--csv", str(write_csv_set(tmp_path / "ok", older_tables())),
                         "--cuts", str(registry))
    assert code == 0
    listed, files = list_cuts(registry), sorted(p.name for p in registry.iterdir())
    bad = newer_tables()
    bad["adverse_events"][0]["grade"] = "7"  # not a CTCAE grade
    code, _, err = run_cli(capsys, "import", "--csv", str(write_csv_set(tmp_path / "bad", bad)), "--cuts",
                           str(registry))
    assert code == 2 and "grade" in err
    assert list_cuts(registry) == listed and sorted(p.name for p in registry.iterdir()) == files


def test_the_same_file_twice_is_refused_and_a_failed_write_registers_nothing(tmp_path, pair):
    registry = tmp_path / "registry"
    cut, _ = add_cut(registry, lambda path: shutil.copyfile(pair[0], path), "original")
    assert cut.sha256 == file_sha256(pair[0])
    with pytest.raises(ImportFailed):
        add_cut(registry, lambda path: shutil.copyfile(pair[0], path), "again")

    def failing(path):
        shutil.copyfile(pair[1], path)
        raise ImportFailed([])

    with pytest.raises(ImportFailed):
        add_cut(registry, failing, "failed")
    assert list_cuts(registry) == [cut]
    assert sorted(p.name for p in registry.iterdir()) == sorted([Path(cut.path).name, Path(cut.path).stem + ".cut.json"])


def test_build_demo_refuses_a_registry_that_holds_cuts(demo_cuts, tmp_path, capsys):
    registry = tmp_path / "registry"
    shutil.copytree(demo_cuts, registry)
    before = {p.name: p.stat().st_mtime_ns for p in registry.iterdir()}
    code, _, err = run_cli(capsys, "build-demo", "--cuts", str(registry))
    assert code == 1 and "holds data cuts" in err
    assert {p.name: p.stat().st_mtime_ns for p in registry.iterdir()} == before


# --------------------------------------------------------------------------- the demo's corrections


# BIOTTT001 has no grade-3 AE that is not a DLT: its correction is a grade 2 that was 1.
UPGRADE = {"IDOV-SAFE": (2, 3), "BIOTTT001": (1, 2), "IX001": (2, 3)}


@pytest.mark.parametrize("study_id", STUDIES)
def test_demo_transfer_3_upgrades_one_ae_by_one_grade(demo_pair, study_id):
    path_from, path_to = demo_pair
    changes = load_changes(Database(path_from), Database(path_to), study_id)
    ae = changes.tables["adverse_events"]
    con = attached(path_from, path_to)
    try:
        graded = con.execute("SELECT o.ae_spid, o.grade, n.grade FROM a.adverse_events o JOIN b.adverse_events n "
                             "USING (study_id, subject_id, ae_spid) WHERE o.study_id = $s AND o.grade <> n.grade",
                             {"s": study_id}).fetchall()
    finally:
        con.close()
    assert [(c["key"]["ae_spid"], *c["fields"]["grade"]) for c in ae.changed if "grade" in c["fields"]] == graded
    assert len(graded) == 1 and graded[0][1:] == UPGRADE[study_id]
    moves = [c for c in summarise(record_changes(changes)) if c.category == "grade_change"]
    assert [(c.n, "{}→{}".format(*UPGRADE[study_id]) in c.text) for c in moves] == [(1, True)]


@pytest.mark.parametrize("study_id", STUDIES)
def test_demo_transfer_3_corrects_transfer_2(demo_pair, study_id):
    path_from, path_to = demo_pair
    changes = load_changes(Database(path_from), Database(path_to), study_id)
    ae, labs = changes.tables["adverse_events"], changes.tables["lab_results"]
    assert ae.key_columns == KEYS["adverse_events"]
    assert len(ae.removed) == 1 and ae.removed[0]["ae_spid"].endswith("-DUP")
    counts = {c.category: c.n for c in summarise(record_changes(changes))}
    assert counts.get("new_dlt", 0) >= 1
    [lab] = labs.changed
    assert lab["key"]["test"] == "Hemoglobin" and list(lab["fields"]) == ["value"]
    old, new = lab["fields"]["value"]
    assert old == pytest.approx(10 * new)

    con = attached(path_from, path_to)
    try:
        params = {"s": study_id}
        removed = con.execute("SELECT ae_spid FROM a.adverse_events WHERE study_id = $s EXCEPT "
                              "SELECT ae_spid FROM b.adverse_events WHERE study_id = $s", params).fetchall()
        assert removed == [(ae.removed[0]["ae_spid"],)]
        new_dlts = con.execute("SELECT count(*) FROM b.adverse_events n LEFT JOIN a.adverse_events o USING "
                               "(study_id, subject_id, ae_spid) WHERE n.study_id = $s AND n.dlt = 'Y' "
                               "AND (o.dlt IS NULL OR o.dlt <> 'Y')", params).fetchone()[0]
        assert new_dlts == counts["new_dlt"] >= 1
        corrected = con.execute(
            "SELECT o.test, o.value, n.value FROM a.lab_results o JOIN b.lab_results n ON "
            + " AND ".join(f"o.{_q(c)} IS NOT DISTINCT FROM n.{_q(c)}" for c in KEYS["lab_results"])
            + " WHERE o.study_id = $s AND o.value IS DISTINCT FROM n.value", params).fetchall()
    finally:
        con.close()
    assert len(corrected) == 1 and corrected[0][0] == "Hemoglobin"
    assert corrected[0][1] == pytest.approx(10 * corrected[0][2]) and (old, new) == corrected[0][1:]


@pytest.mark.parametrize("study_id", STUDIES)
def test_every_demo_change_matches_sql(demo_pair, study_id):
    assert_same_as_sql(*demo_pair, study_id, KEYS)


# --------------------------------------------------------------------------- comparisons kept beside the cuts


def _registry_of_pair(tmp_path) -> tuple[Path, Registry]:
    folder = tmp_path / "registry"
    for tables in (older_tables(), newer_tables()):
        add_cut(folder, lambda path, tables=tables: write_cut(path, tables))
    return folder, Registry.of_folder(folder)


def test_a_kept_comparison_is_the_computed_one_and_is_read_back(tmp_path):
    from smc.analysis.changes import load_changes_kept
    from smc.store import change_cache

    folder, registry = _registry_of_pair(tmp_path)
    older, newer = registry.cuts
    computed = load_changes(Database(older.path), Database(newer.path), "S1")
    first = load_changes_kept(Database(older.path), Database(newer.path), "S1")
    kept = change_cache.path(folder, older.sha256, newer.sha256, "S1")
    assert kept.is_file()
    again = load_changes_kept(Database(older.path), Database(newer.path), "S1")
    for changes in (first, again):
        assert changes.as_json() == computed.as_json()
    # What is read back is the file, not a recomputation: a kept comparison of another study is not used.
    assert change_cache.read(kept, "S2") is None


def test_an_unreadable_kept_comparison_is_computed_again(tmp_path):
    from smc.analysis.changes import load_changes_kept
    from smc.store import change_cache

    folder, registry = _registry_of_pair(tmp_path)
    older, newer = registry.cuts
    kept = change_cache.path(folder, older.sha256, newer.sha256, "S1")
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"not a database")
    changes = load_changes_kept(Database(older.path), Database(newer.path), "S1")
    assert changes.as_json() == load_changes(Database(older.path), Database(newer.path), "S1").as_json()


def test_an_import_keeps_its_comparison_with_the_previous_cut(tmp_path, capsys):
    from smc.store import change_cache

    folder = tmp_path / "registry"
    for name, tables in (("older", older_tables()), ("newer", newer_tables())):
        code, _, _ = run_cli(capsys, "import", "--csv", str(write_csv_set(tmp_path / name, tables)), "--cuts", str(folder))
        assert code == 0
    older, newer = Registry.of_folder(folder).cuts
    for study_id in ("S1", "S2"):
        assert change_cache.path(folder, older.sha256, newer.sha256, study_id).is_file(), study_id


# --------------------------------------------------------------------------- the swimlanes' rings


def test_swimlanes_ring_each_new_or_changed_ae_where_its_mark_is(demo_pair):
    """IDOV-SAFE, transfer 2 → 3: a ring on every AE added or changed (by its sponsor id, in SQL), none elsewhere;
    a DLT's ring on its star (on the lane), another AE's on its dot (0.22 above)."""
    from smc.analysis.changes import load_review_changes, mark_rows
    from smc.analysis.dose_decision import load_dose_decision
    from smc.analysis.swimlanes import load_swimlanes
    from smc.charts.escalation import swimlanes
    from smc.store.study import load_study

    path_from, path_to = demo_pair
    con = attached(path_from, path_to)
    try:
        touched = {r[0] for r in con.execute(
            "SELECT n.ae_spid FROM b.adverse_events n LEFT JOIN a.adverse_events o USING (study_id, ae_spid) "
            "WHERE n.study_id = 'IDOV-SAFE' AND (o.ae_spid IS NULL OR o.grade <> n.grade OR o.dlt <> n.dlt "
            "OR o.related IS DISTINCT FROM n.related OR o.end_date IS DISTINCT FROM n.end_date "
            "OR o.outcome IS DISTINCT FROM n.outcome)").fetchall()}
    finally:
        con.close()
    db = Database(path_to)
    study = load_study(db, "IDOV-SAFE")
    dose = load_dose_decision(db, study, study.data_cut_date)
    lanes = load_swimlanes(db, study, study.data_cut_date, dose.assessment.states)
    records = load_review_changes(Database(path_from), db, "IDOV-SAFE").records
    aes = lanes.adverse_events
    ringed = aes[mark_rows(aes, records, "adverse_events") != ""]
    assert set(ringed["ae_spid"]) == touched and touched
    figure = swimlanes(lanes.lanes, lanes.administrations, aes, lanes.assessments, study.dlt_window_days,
                       study.data_cut_date, changed_events=ringed)
    rings = next(t for t in figure.data if t.name == "New or changed since the compared cut")
    lane_of = {s: i for i, s in enumerate(lanes.lanes.sort_values(
        ["level", "phase", "enrollment_date", "subject_id"], ascending=[True, False, True, True]).subject_id)}
    expected = sorted((float(r.day), round(lane_of[r.subject_id] + (0.0 if r.dlt == "Y" else 0.22), 6))
                      for r in ringed.itertuples())
    assert sorted(zip(map(float, rings.x), (round(float(y), 6) for y in rings.y))) == expected


@pytest.mark.parametrize("manifest", ['{"path": 1}', "not json", '{"path": "x.duckdb", "cut_date": "2025-01-01", '
                                      '"label": "<b>x</b>", "source": "csv", "sha256": "zz", "loaded_at_utc": "", '
                                      '"studies": {}}', "[]"])
def test_a_malformed_manifest_is_left_out_and_hides_no_other_cut(tmp_path, manifest):
    folder, registry = _registry_of_pair(tmp_path)
    stray = folder / "stray.duckdb"
    shutil.copy(registry.cuts[0].path, stray)
    (folder / "stray.cut.json").write_text(manifest)
    assert [c.path for c in list_cuts(folder)] == [c.path for c in registry.cuts]


def test_diff_of_a_file_that_is_no_data_cut_says_so(tmp_path, capsys, pair):
    not_a_cut = tmp_path / "notes.duckdb"
    not_a_cut.write_text("minutes of the meeting")
    code, out, err = run_cli(capsys, "diff", "--db-from", str(not_a_cut), "--db-to", str(pair[1]), "--study", "S1")
    assert code == 1 and out == ""
    assert "must both be data cuts" in err and "Traceback" not in err
