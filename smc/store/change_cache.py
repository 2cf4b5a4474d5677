"""Comparisons of two data cuts, kept once computed: cuts never change, so neither does what changed between them.

A registry keeps each study's comparison of a pair of cuts in ``.changes/<from>_<to>/<study>.duckdb`` (the cuts'
short ids; the study's id hashed, so any id makes a file name): the added, removed and changed records of every
table, their record keys and the duplicate keys. An import computes its cut's comparison with the previous one
(``smc.ingest.register``); a server computes any other pair on first request and keeps it for every server
reading the folder. A file is written privately and renamed into place: a reader sees it whole or not at all.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import duckdb
import pyarrow as pa

from smc.store.db import READ_ONLY_CONFIG

CACHE_DIR = ".changes"
PARTS = ("added", "removed", "changed_old", "changed_new")
log = logging.getLogger("smc")

# table -> {"key": [...], "duplicates": [...], part: Arrow table}
Stored = dict[str, dict]


def path(folder: Path, from_sha: str, to_sha: str, study_id: str) -> Path:
    study = hashlib.sha256(study_id.encode()).hexdigest()[:16]
    return folder / CACHE_DIR / f"{from_sha[:16]}_{to_sha[:16]}" / f"{study}.duckdb"


def read(file: Path, study_id: str) -> Stored | None:
    """The stored comparison, or None when there is none (or it cannot be read: it is computed again)."""
    if not file.is_file():
        return None
    try:
        with contextlib.closing(duckdb.connect(str(file), read_only=True, config=READ_ONLY_CONFIG)) as con:
            rows = con.execute("SELECT study_id, tables FROM meta").fetchall()  # fetched to the end: DuckDB 2.0
            if len(rows) != 1 or rows[0][0] != study_id:                     # refuses the next query otherwise
                return None
            meta = rows[0]
            stored: Stored = {}
            for table, info in json.loads(meta[1]).items():
                stored[table] = {"key": tuple(info["key"]), "duplicates": tuple(info["duplicates"]),
                                 **{part: con.sql(f'SELECT * FROM "{part}__{table}"').to_arrow_table()
                                    for part in PARTS}}
            return stored
    except (duckdb.Error, OSError, ValueError, KeyError) as exc:
        log.warning("stored comparison %s is unreadable (%s); computing it again", file, exc)
        return None


def write(file: Path, study_id: str, stored: Stored) -> None:
    """Keep a comparison; a failure to write is logged, never raised (it is only a cache)."""
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, private = tempfile.mkstemp(prefix=".", suffix=".duckdb", dir=file.parent)
        os.close(fd)
        os.unlink(private)  # DuckDB creates the file itself
        with contextlib.closing(duckdb.connect(private)) as con:
            tables = {t: {"key": list(s["key"]), "duplicates": list(s["duplicates"])} for t, s in stored.items()}
            con.execute("CREATE TABLE meta AS SELECT ? AS study_id, ? AS tables", [study_id, json.dumps(tables)])
            for table, parts in stored.items():
                for part in PARTS:
                    rows: pa.Table = parts[part]
                    con.register("rows", rows)
                    con.execute(f'CREATE TABLE "{part}__{table}" AS SELECT * FROM rows')
                    con.unregister("rows")
            con.execute("CHECKPOINT")
        os.replace(private, file)
    except (duckdb.Error, OSError) as exc:
        log.warning("could not keep the comparison %s (%s)", file, exc)
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(private)
