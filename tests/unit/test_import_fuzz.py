"""Fuzz the imports: random and mutated contract CSV sets, SDTM sets (CSV and .xpt), mappings and uploads.

Whatever the input, an import ends in one of two ways: ``ImportFailed`` whose problems each say in words what is
wrong (and at least one is an error), or a database that opens and passes the contract again when read back.
Never another exception. Either way a served database in the same folder stays byte-identical, a target that
was refused stays byte-identical, and nothing is left behind in the folder or in the temp dir.

The examples start from real data: a few subjects of the demo (``demo_tables`` through ``as_text``) and the
synthetic SDTM study of the import benchmark. Hypothesis's example database is off (``database=None``), and
``max_examples`` keeps the whole file within about a minute.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from smc.demo.build import demo_tables
from smc.ingest import limits, load
from smc.ingest.load import ERROR, WARNING, ImportFailed, Problem
from smc.ingest.sdtm import import_sdtm, synthetic
from smc.ingest.sdtm.mapping import Mapping, parse_mapping
from smc.ingest.sdtm.upload import import_uploads
from smc.store import contract

# Hypothesis keeps caches (its Unicode tables, constants) in its home directory, .hypothesis/ in the working
# directory unless told: under .pytest_cache, which git ignores. Its example database is off in every test.
set_hypothesis_home_dir(Path(__file__).resolve().parents[2] / ".pytest_cache" / "hypothesis")


def fuzz(examples: int):
    """Hypothesis settings for an import per example (a fraction of a second each on a shared 2-core machine)."""
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# --------------------------------------------------------------------------- the arena


class Arena:
    """A folder holding a served database and an earlier import (the target), and a private temp dir."""

    def __init__(self, root: Path):
        self.root = root
        self.folder = root / "cuts"
        self.tmp = root / "tmp"
        self.inputs = root / "inputs"
        for path in (self.folder, self.tmp, self.inputs):
            path.mkdir()
        self.served = self.folder / "served.duckdb"
        self.target = self.folder / "cut.duckdb"

    def snapshot(self) -> dict:
        return {"served": digest(self.served), "target": digest(self.target),
                "folder": sorted(os.listdir(self.folder)), "tmp": sorted(os.listdir(self.tmp))}

    def fresh_input(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.inputs))

    def check(self, before: dict, outcome) -> None:
        """After an import: nothing stored lost or half-written, nothing left behind."""
        after = self.snapshot()
        assert after["served"] == before["served"], "the served database changed"
        assert after["folder"] == before["folder"], "files were left in (or taken from) the folder"
        assert after["tmp"] == before["tmp"], "files were left in the temp dir"
        if isinstance(outcome, ImportFailed):
            assert_worded(outcome.problems)
            assert after["target"] == before["target"], "a refused import changed its target"
        else:
            assert_good_database(self.target)


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def assert_worded(problems: list[Problem]) -> None:
    assert any(p.severity == ERROR for p in problems)
    for p in problems:
        assert isinstance(p, Problem) and p.severity in (ERROR, WARNING)
        assert isinstance(p.message, str) and p.message.strip(), p
        text = str(p)
        assert text.strip() and "Traceback" not in text, text


def assert_good_database(path: Path) -> None:
    """The file opens, has every contract table with its columns, one load_info row, and its data read back as
    text passes the contract's validator without an error."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        raw = {}
        for table, columns in contract.columns().items():
            names = [c.name for c in columns]
            found = [r[0] for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
                [table]).fetchall()]
            assert found == names, (table, found)
            select = ", ".join(f'CAST("{n}" AS VARCHAR) AS "{n}"' for n in names)
            frame = con.execute(f"SELECT {select} FROM {table}").fetchdf().fillna("")
            if len(frame) or table in contract.REQUIRED_FILES:  # an optional file left out is an empty table
                raw[table] = frame
        assert con.execute("SELECT count(*) FROM load_info").fetchone()[0] == 1
    finally:
        con.close()
    result = load.validate(raw)
    assert result.errors == [], [str(p) for p in result.errors[:5]]


def attempt(call):
    try:
        call()
    except ImportFailed as failed:
        return failed
    return None


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """The arena, with Python's and the C libraries' temp dir pointed at its private one for the module."""
    root = tmp_path_factory.mktemp("fuzz")
    place = Arena(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(place.tmp))
        mp.setenv("TMPDIR", str(place.tmp))
        yield place


# --------------------------------------------------------------------------- contract CSV sets


@pytest.fixture(scope="module")
def csv_base(arena) -> dict[str, pd.DataFrame]:
    """Four subjects of the demo's first study with their records, as contract text; the served database and
    the earlier import are this set."""
    tables = {t: load.as_text(f) for t, f in demo_tables(seed=11).items()}
    study = tables["studies"]["study_id"].iloc[0]
    subjects = tables["subjects"][tables["subjects"]["study_id"] == study].head(4)
    kept = set(subjects["subject_id"])
    base = {"studies": tables["studies"][tables["studies"]["study_id"] == study],
            "dose_levels": tables["dose_levels"][tables["dose_levels"]["study_id"] == study],
            "sites": tables["sites"][tables["sites"]["site_id"].isin(set(subjects["site_id"]))],
            "subjects": subjects}
    for table in ("administrations", "adverse_events", "tumor_assessments", "lab_results"):
        frame = tables[table]
        base[table] = frame[(frame["study_id"] == study) & frame["subject_id"].isin(kept)].head(12)
    base = {t: f.reset_index(drop=True) for t, f in base.items()}
    folder = arena.fresh_input()
    write_frames(folder, base)
    assert load.import_csv_dir(folder, arena.served) == []
    assert load.import_csv_dir(folder, arena.target) == []
    shutil.rmtree(folder)
    return base


def write_frames(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    for table, frame in frames.items():
        frame.to_csv(folder / f"{table}.csv", index=False)


SPECIAL = st.sampled_from([
    "", " ", "\x00", "NUL\x00inside", "NaN", "null", "1e309", "-1", "0", "1.5", "2024-02-30", "9999-99-99",
    "2024-13-01", "24:61", "Y", "maybe", "🙂 unicode ✓", "\ufeff", "=cmd|' /C calc'!A0", "'; DROP TABLE studies; --",
    '"', '""', "a,b", "line\nbreak", "cr\rreturn", "x" * 100_000, "-" * 3, "\\", "ATD+3+3", "3+3",
])
VALUE = st.one_of(SPECIAL, st.text(max_size=30), st.integers().map(str), st.floats().map(str))
TABLE = st.sampled_from(contract.TABLES)
FRACTION = st.floats(min_value=0, max_value=1)

FRAME_EDIT = st.one_of(
    st.tuples(st.just("drop_table"), TABLE),
    st.tuples(st.just("drop_column"), TABLE, st.integers(0, 30)),
    st.tuples(st.just("duplicate_column"), TABLE, st.integers(0, 30)),
    st.tuples(st.just("rename_column"), TABLE, st.integers(0, 30), st.one_of(st.text(max_size=12), SPECIAL)),
    st.tuples(st.just("set_cell"), TABLE, st.integers(0, 20), st.integers(0, 30), VALUE),
    st.tuples(st.just("duplicate_row"), TABLE, st.integers(0, 20)),
    st.tuples(st.just("drop_row"), TABLE, st.integers(0, 20)),
    st.tuples(st.just("dangling"), TABLE, st.integers(0, 20),
              st.sampled_from(["study_id", "subject_id", "site_id", "dose_level"])),
)
BYTE_EDIT = st.one_of(
    st.tuples(st.just("truncate"), TABLE, FRACTION),
    st.tuples(st.just("bom"), TABLE, st.integers(1, 2)),
    st.tuples(st.just("newlines"), TABLE, st.sampled_from([b"\r\n", b"\r", b"mixed"])),
    st.tuples(st.just("extra_delimiters"), TABLE, st.integers(0, 20), st.integers(1, 4)),
    st.tuples(st.just("insert"), TABLE, FRACTION, st.binary(max_size=24)),
    st.tuples(st.just("insert"), TABLE, FRACTION, st.sampled_from([b"\xff\xfe", b'"', b"\r,\n", b"\n\n", b","])),
    st.tuples(st.just("empty"), TABLE),
)


def edit_frames(frames: dict[str, pd.DataFrame], edits) -> dict[str, pd.DataFrame]:
    frames = {t: f.copy() for t, f in frames.items()}
    for edit in edits:
        kind, table = edit[0], edit[1]
        frame = frames.get(table)
        if frame is None:
            continue
        cols = list(frame.columns)
        if kind == "drop_table":
            del frames[table]
        elif kind == "drop_column" and cols:
            frames[table] = frame.drop(columns=cols[edit[2] % len(cols)])
        elif kind == "duplicate_column" and cols:
            col = cols[edit[2] % len(cols)]
            frames[table] = pd.concat([frame, frame[[col]]], axis=1)
        elif kind == "rename_column" and cols:
            frames[table] = frame.set_axis([edit[3] if i == edit[2] % len(cols) else c
                                            for i, c in enumerate(cols)], axis=1)
        elif kind == "set_cell" and len(frame) and cols:
            col = cols[edit[3] % len(cols)]
            frame[col] = frame[col].astype(object)  # text into a number column (the SDTM frames hold numbers)
            frame.iat[edit[2] % len(frame), edit[3] % len(cols)] = edit[4]
        elif kind == "duplicate_row" and len(frame):
            frames[table] = pd.concat([frame, frame.iloc[[edit[2] % len(frame)]]], ignore_index=True)
        elif kind == "drop_row" and len(frame):
            frames[table] = frame.drop(index=frame.index[edit[2] % len(frame)])
        elif kind == "dangling" and len(frame) and edit[3] in cols:
            frame.iat[edit[2] % len(frame), cols.index(edit[3])] = "NOT-THERE"
    return frames


def edit_bytes(files: dict[str, bytes], edits) -> dict[str, bytes]:
    files = dict(files)
    for edit in edits:
        kind, name = edit[0], f"{edit[1]}.csv"
        data = files.get(name)
        if data is None:
            continue
        if kind == "truncate":
            data = data[:int(len(data) * edit[2])]
        elif kind == "bom":
            data = b"\xef\xbb\xbf" * edit[2] + data
        elif kind == "newlines":
            if edit[2] == b"mixed":
                lines = data.split(b"\n")
                data = b"".join(line + (b"\r\n", b"\n", b"\r")[i % 3] for i, line in enumerate(lines))
            else:
                data = data.replace(b"\n", edit[2])
        elif kind == "extra_delimiters":
            lines = data.split(b"\n")
            i = edit[2] % len(lines)
            lines[i] += b"," * edit[3]
            data = b"\n".join(lines)
        elif kind == "insert":
            at = int(len(data) * edit[2])
            data = data[:at] + edit[3] + data[at:]
        elif kind == "empty":
            data = b""
        files[name] = data
    return files


def csv_bytes(frames: dict[str, pd.DataFrame]) -> dict[str, bytes]:
    return {f"{t}.csv": f.to_csv(index=False).encode("utf-8") for t, f in frames.items()}


@fuzz(40)
@given(frame_edits=st.lists(FRAME_EDIT, max_size=4), byte_edits=st.lists(BYTE_EDIT, max_size=2))
def test_a_mutated_contract_csv_set_is_refused_in_words_or_imported_whole(arena, csv_base, frame_edits,
                                                                          byte_edits):
    files = edit_bytes(csv_bytes(edit_frames(csv_base, frame_edits)), byte_edits)
    folder = arena.fresh_input()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    before = arena.snapshot()
    outcome = attempt(lambda: load.import_csv_dir(folder, arena.target))
    arena.check(before, outcome)
    shutil.rmtree(folder)


CSV_CELL = st.text(alphabet=st.sampled_from(list('ab,"\n\r \t1-')), max_size=12)


@fuzz(30)
@given(tables=st.dictionaries(TABLE, st.lists(st.lists(CSV_CELL, max_size=25), max_size=6), max_size=8))
def test_a_random_csv_set_is_refused_in_words_or_imported_whole(arena, csv_base, tables):
    folder = arena.fresh_input()
    for table, rows in tables.items():
        (folder / f"{table}.csv").write_text("\n".join(",".join(row) for row in rows), encoding="utf-8")
    before = arena.snapshot()
    outcome = attempt(lambda: load.import_csv_dir(folder, arena.target))
    arena.check(before, outcome)
    shutil.rmtree(folder)


# --------------------------------------------------------------------------- the column count before parsing


@settings(max_examples=400, deadline=None, database=None)
@given(text=st.text(alphabet=st.sampled_from(list('ab,"\n\r \t')), max_size=40),
       chunk=st.sampled_from([1, 2, 3, 7, 1 << 20]), bom=st.booleans())
def test_the_first_row_scan_counts_the_columns_pandas_reads(text, chunk, bom):
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    size, limits._CHUNK = limits._CHUNK, chunk  # small chunks put every boundary inside quotes, CRLFs, blanks
    try:
        counted = limits._first_row_fields(io.BytesIO(data), 1_000)
    finally:
        limits._CHUNK = size
    try:
        read = pd.read_csv(io.BytesIO(data), header=None, dtype=str, keep_default_na=False,
                           encoding="utf-8-sig").shape[1]
    except (pd.errors.ParserError, pd.errors.EmptyDataError):
        return  # pandas refuses the file itself
    assert counted == read


# --------------------------------------------------------------------------- SDTM sets and mappings


N_SDTM = 6


@pytest.fixture(scope="module")
def sdtm_base(arena) -> dict[str, pd.DataFrame]:
    domains = synthetic.build(N_SDTM, seed=3)
    domains = {name: frame.head(25).reset_index(drop=True) for name, frame in domains.items()}
    return domains


SDTM_DOMAIN = st.sampled_from(["DM", "EX", "AE", "SUPPAE", "DS", "TR", "RS", "LB"])
SDTM_EDIT = st.one_of(
    st.tuples(st.just("drop_table"), SDTM_DOMAIN),
    st.tuples(st.just("drop_column"), SDTM_DOMAIN, st.integers(0, 30)),
    st.tuples(st.just("rename_column"), SDTM_DOMAIN, st.integers(0, 30),
              st.sampled_from(["USUBJID", "DOMAIN", "AESEQ", "X", "", "usubjid", "RDOMAIN", "ARMCD"])),
    st.tuples(st.just("set_cell"), SDTM_DOMAIN, st.integers(0, 30), st.integers(0, 30), VALUE),
    st.tuples(st.just("duplicate_row"), SDTM_DOMAIN, st.integers(0, 30)),
    st.tuples(st.just("drop_row"), SDTM_DOMAIN, st.integers(0, 30)),
    st.tuples(st.just("dangling"), SDTM_DOMAIN, st.integers(0, 30),
              st.sampled_from(["USUBJID", "ARMCD", "ACTARMCD", "EXTRT", "IDVARVAL"])),
)
TOML_SCALAR = st.one_of(st.text(max_size=10).map(json.dumps), st.integers(-10**20, 10**20).map(str),
                        st.floats(allow_nan=False, allow_infinity=False).map(repr), st.sampled_from(
                            ["true", "false", "[]", "{}", '["L1", 2]', "{a = 1}", "2024-01-01", "inf", "nan",
                             "[" * 60 + "]" * 60, "{a = " * 60 + "1" + "}" * 60, '"""x"""', "'x'"]))
MAPPING_EDIT = st.one_of(
    st.tuples(st.just("drop_line"), st.integers(0, 80)),
    st.tuples(st.just("duplicate_line"), st.integers(0, 80)),
    st.tuples(st.just("set_value"), st.integers(0, 80), TOML_SCALAR),
    st.tuples(st.just("insert"), st.integers(0, 80), st.one_of(st.text(max_size=30), st.sampled_from(
        ["[study]", "[[levels]]", "[bogus]", "x" + ".a" * 300 + " = 1", "[[levels]]\nlevel = 1\nlabel = 'x'",
         "levels = 3", "study = 1", "\x00", "[ae]\ndlt_qnam = 'NOPE'"]))),
)


def edit_mapping(text: str, edits) -> str:
    lines = text.splitlines()
    for kind, at, *rest in edits:
        i = at % (len(lines) + 1)
        if kind == "drop_line" and i < len(lines):
            del lines[i]
        elif kind == "duplicate_line" and i < len(lines):
            lines.insert(i, lines[i])
        elif kind == "set_value" and i < len(lines) and "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + rest[0]
        elif kind == "insert":
            lines.insert(i, rest[0])
    return "\n".join(lines) + "\n"


def write_sdtm(folder: Path, domains: dict[str, pd.DataFrame], fmt: str) -> None:
    for name, frame in domains.items():
        path = folder / f"{name.lower()}.{fmt}"
        if fmt == "xpt":
            try:
                pyreadstat.write_xport(frame, str(path), table_name=name[:8], file_format_version=5)
                continue
            except Exception:  # noqa: BLE001 - a value transport cannot hold (too long, not Latin-1): write CSV
                path.unlink(missing_ok=True)
                path = path.with_suffix(".csv")
        frame.to_csv(path, index=False)


@fuzz(30)
@given(edits=st.lists(SDTM_EDIT, max_size=3), fmt=st.sampled_from(["csv", "xpt"]),
       mapping_edits=st.lists(MAPPING_EDIT, max_size=2),
       byte_edit=st.one_of(st.none(), st.tuples(SDTM_DOMAIN, FRACTION, st.binary(max_size=16)),
                           st.tuples(SDTM_DOMAIN, FRACTION, st.none())))
def test_a_mutated_sdtm_set_is_refused_in_words_or_imported_whole(arena, csv_base, sdtm_base, edits, fmt,
                                                                  mapping_edits, byte_edit):
    folder = arena.fresh_input()
    write_sdtm(folder, edit_frames(sdtm_base, edits), fmt)
    if byte_edit is not None:  # truncate (None) or insert bytes into one file, whichever its format
        domain, where, inserted = byte_edit
        for path in folder.glob(f"{domain.lower()}.*"):
            data = path.read_bytes()
            at = int(len(data) * where)
            path.write_bytes(data[:at] if inserted is None else data[:at] + inserted + data[at:])
    (folder / "mapping.toml").write_text(edit_mapping(synthetic.mapping_text(N_SDTM), mapping_edits),
                                         encoding="utf-8")
    before = arena.snapshot()
    outcome = attempt(lambda: import_sdtm(folder, arena.target))
    arena.check(before, outcome)
    shutil.rmtree(folder)


@fuzz(25)
@given(uploads=st.lists(st.tuples(
    st.one_of(st.sampled_from(["dm.csv", "ex.csv", "ae.csv", "DM.CSV", "../dm.csv", "/etc/passwd", "", ".csv",
                               ".cut.duckdb.x.import", "lb.xpt", "notes.txt", "a" * 300 + ".csv"]),
              st.text(max_size=12).map(lambda t: t + ".csv")),
    st.one_of(st.binary(max_size=60), st.sampled_from([b"USUBJID\nS-1\n", b"\xef\xbb\xbfSTUDYID,USUBJID\nX,1\n"]))),
    max_size=4),
    mapping=st.one_of(st.none(), st.binary(max_size=40), st.just(synthetic.mapping_text(N_SDTM).encode())),
    replace=st.booleans())
def test_random_uploads_are_refused_in_words_or_imported_whole(arena, csv_base, sdtm_base, uploads, mapping,
                                                               replace):
    folder = arena.fresh_input()
    write_sdtm(folder, sdtm_base, "csv")
    files = [(p.name, p.read_bytes()) for p in sorted(folder.iterdir())] + uploads
    before = arena.snapshot()
    upload = None if mapping is None else ("map.toml", mapping)
    outcome = attempt(lambda: import_uploads(files, synthetic.mapping_text(N_SDTM), arena.target, replace=replace,
                                             mapping_file=upload))
    if not replace:  # the target exists: refused before anything is read
        assert isinstance(outcome, ImportFailed) and "already exists" in outcome.problems[0].message
    arena.check(before, outcome)
    shutil.rmtree(folder)


def toml_key(text: str) -> str:
    return text if text and all(c.isalnum() and c.isascii() or c in "_-" for c in text) else json.dumps(text)


TOML_VALUE = st.recursive(
    st.one_of(st.text(max_size=8).map(json.dumps), st.integers(-1000, 1000).map(str), st.booleans().map(
        lambda b: "true" if b else "false"), st.floats(allow_nan=False, allow_infinity=False).map(repr)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.text(max_size=6).map(toml_key), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f"{k} = {v}" for k, v in d.items()) + "}")),
    max_leaves=12)
SECTION = st.sampled_from(["study", "levels", "subjects", "ae", "lab_categories", "findings", "tumor", "other"])
KEY = st.one_of(st.sampled_from(["design", "agent", "dlt_window_days", "level", "label", "dose", "arms",
                                 "exclude_arms", "dlt_qnam", "not_related", "domains", "evaluator", "ALT"]),
                st.text(max_size=6).map(toml_key))


@settings(max_examples=300, deadline=None, database=None)
@given(sections=st.lists(st.tuples(SECTION, st.booleans(), st.dictionaries(KEY, TOML_VALUE, max_size=5)),
                         max_size=6),
       noise=st.one_of(st.none(), st.text(max_size=40)))
def test_a_random_mapping_is_read_or_refused_with_problems_never_raised(sections, noise):
    text = "\n".join(f"{'[[' + name + ']]' if many else '[' + name + ']'}\n"
                     + "\n".join(f"{k} = {v}" for k, v in keys.items()) for name, many, keys in sections)
    for candidate in (text, text + "\n" + (noise or "")):
        mapping, problems = parse_mapping(candidate)
        if mapping is None:
            assert problems and all(p.table == "mapping file" and p.severity == ERROR and str(p) for p in problems)
        else:
            assert isinstance(mapping, Mapping) and problems == []
