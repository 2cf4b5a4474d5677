"""The SMC decision log (smc.decision_log.ledger and ``python -m smc decisions``).

The hand-made trial has S1 (3+3, levels 1-3, cut 2025-03-15) and S2 (same levels, nobody enrolled).
S1: 101-103 at level 1 dosed 2025-01-06 (DLT window ends 02-03), no DLT; 201-203 at level 2 dosed 2025-02-06
(window ends 03-06), 201 with a DLT on 02-16. So the 3+3 rule says, worked out by hand:
  as of 2025-01-20: wait at level 1 (3 subjects still in the window)
  as of 2025-02-05: escalate to level 2 (0 DLT in 3 evaluable at level 1)
  as of 2025-03-15: enroll (3 more) at level 2 (1 DLT in 3 evaluable at level 2)
  S2, any date: enroll at level 1 (nobody enrolled yet: the starting dose)
Hashes and chains are recomputed here from the SQLite file with hashlib, hmac and json, not with the module:
a keyed record's hash is the HMAC-SHA-256, under the key file's bytes, of the canonical JSON of every other
column; a record written before keying has the SHA-256 of the 17 columns the log had then. Every test has its own
key file (SMC_DECISION_LOG_KEY_FILE), which the first append creates.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import getpass
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smc import settings
from smc.access.identity import Identity
from smc.analysis.dose_decision import load_dose_decision
from smc.cli import main
from smc.decision_log.ledger import (
    Draft,
    KeyUnavailable,
    Refused,
    append,
    approve,
    in_force,
    log_path,
    log_table,
    read_log,
    verify,
)
from smc.outputs.packet import build_packet
from smc.rules.escalation import recommended_level
from smc.store.db import Database
from smc.store.study import load_study
from tests.helpers import ROOT, one_study_db

D = dt.date.fromisoformat
CUT, ESCALATE_CUT, WAIT_CUT = D("2025-03-15"), D("2025-02-05"), D("2025-01-20")
NOW = dt.datetime(2025, 4, 1, 12, 0, tzinfo=dt.UTC)  # "today" is 2025-04-01 UTC
MEETING, GENESIS = D("2025-03-20"), "0" * 64
SCHEMA = (settings.QUERIES_DIR / "sqlite" / "decision_log_schema.sql").read_text()
SIGNED, KEYED, UNKEYED = "hmac-sha256-signed", "hmac-sha256", "sha256"
# The columns a log gained with sign-in: a record keyed before it (KEYED) sealed none of them.
SIGNER_COLUMNS = ("kind", "approves", "signer_issuer", "signer_subject", "signer_email", "signer_role",
                  "signature_meaning", "signer_auth_time_utc")


@pytest.fixture(autouse=True)
def key_file(demo_db, tmp_path_factory, monkeypatch) -> Path:
    """This test's key file (not there until the first append), in a folder of its own. The session's demo
    database is built first, with the default key, so that it never takes a test's."""
    path = tmp_path_factory.mktemp("key") / "decision_log.key"
    monkeypatch.setenv("SMC_DECISION_LOG_KEY_FILE", str(path))
    return path


@pytest.fixture(scope="module")
def trial(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("decisions") / "trial.duckdb"
    subjects = [(f"{lv}0{i}", lv, day) for lv, day in ((1, "2025-01-06"), (2, "2025-02-06")) for i in (1, 2, 3)]
    one_study_db(
        path, studies=[dict(study_id=s, design="3+3", agent="VIRUS", dlt_window_days=28, data_cut_date="2025-03-15")
                       for s in ("S1", "S2")],
        dose_levels=[dict(study_id=s, level=lv, label=f"1e{7 + lv} PFU") for s in ("S1", "S2") for lv in (1, 2, 3)],
        subjects=[dict(study_id="S1", subject_id=s, dose_level=lv, phase="escalation", enrollment_date=d)
                  for s, lv, d in subjects],
        administrations=[dict(study_id="S1", subject_id=s, agent="VIRUS", admin_date=d) for s, _, d in subjects],
        adverse_events=[dict(study_id="S1", subject_id="201", ae_seq=1, term="CRS", onset_date="2025-02-16",
                             grade=3, dlt="Y")])
    return path


@pytest.fixture(scope="module")
def dose(trial):
    """(study_id, as_of) -> the rule's DoseDecision on the hand-made trial."""
    db = Database(trial)
    return functools.cache(lambda study_id, as_of: load_dose_decision(db, load_study(db, study_id), as_of))


def signer(name="Dr Ada", role="smc_chair", signed_in_s_before=60.0, now=NOW) -> Identity:
    """A signed-in identity as the provider's token gives it, signed in ``signed_in_s_before`` seconds before ``now``."""
    return Identity(issuer="https://idp.test", subject=name.lower().replace(" ", "-")[:40], name=name,
                    email="ada@smc.example", role=role, sites=frozenset(),
                    auth_time=now - dt.timedelta(seconds=signed_in_s_before))


def draft(study="S1", cut=CUT, level=2, decision="enroll", meeting=MEETING, by="Dr Ada", role="smc_chair",
          signed_in_s_before=60.0, **kw) -> Draft:
    kw.setdefault("signer", signer(by, role, signed_in_s_before))
    return Draft(study_id=study, meeting_date=meeting, data_cut_date=cut, level=level, decision=decision, **kw)


def add(log, dose, **kw):
    d = draft(**kw)
    return append(log, d, dose(d.study_id, d.data_cut_date), "trial.duckdb (test)", now=NOW)


def refusal(log, dose, **kw) -> list[str]:
    with pytest.raises(Refused) as caught:
        add(log, dose, **kw)
    return caught.value.errors


def rows(log) -> list[dict]:
    """The stored records, read with the sqlite3 module directly."""
    with contextlib.closing(sqlite3.connect(log)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM decisions ORDER BY id")]


def canonical(values: dict) -> bytes:
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def the_key() -> bytes:
    return Path(os.environ["SMC_DECISION_LOG_KEY_FILE"]).read_bytes()


def independent_hash(row: dict, key: bytes | None = None) -> str:
    """What the row's hash must be: HMAC-SHA-256 of every other column for a signed row (under ``key``, default this
    test's key file); for a row keyed before sign-in, the same without the signer's columns; for a row from before
    keying, SHA-256 of its columns without the keying and signing ones."""
    kind = row.get("hash_kind", UNKEYED)
    if row.get("stage") is None:  # a stage is sealed where there is one: records from before stages have none
        row = {k: v for k, v in row.items() if k != "stage"}
    if kind == UNKEYED:
        old = {k: v for k, v in row.items() if k not in ("hash", "hash_kind", "prev_file_hash", *SIGNER_COLUMNS)}
        return hashlib.sha256(canonical(old)).hexdigest()
    sealed = {k: v for k, v in row.items() if k != "hash" and (kind == SIGNED or k not in SIGNER_COLUMNS)}
    return hmac.new(key or the_key(), canonical(sealed), hashlib.sha256).hexdigest()


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``python -m smc decisions ARGV`` in this process: (exit code, stdout, stderr)."""
    code = main(["decisions", *map(str, argv)])
    return code, *capsys.readouterr()


# --------------------------------------------------------------------------- validation


def test_the_rule_recommends_what_the_data_says(dose):
    """Premise of the tests below: the rule's action and level on each cut, as worked out in the docstring."""
    got = {(s, c): (dose(s, c).assessment.recommendation.action, recommended_level(dose(s, c).assessment))
           for s, c in (("S1", WAIT_CUT), ("S1", ESCALATE_CUT), ("S1", CUT), ("S2", CUT))}
    assert got == {("S1", WAIT_CUT): ("wait", 1), ("S1", ESCALATE_CUT): ("escalate", 2),
                   ("S1", CUT): ("enroll", 2), ("S2", CUT): ("enroll", 1)}


@pytest.mark.parametrize("cut, decision, level", [
    (CUT, "enroll", 2), (CUT, "stay", 2), (WAIT_CUT, "wait", 1), (WAIT_CUT, "stay", 1), (ESCALATE_CUT, "escalate", 2)])
def test_a_decision_that_matches_the_rule_follows_it_and_needs_no_rationale(tmp_path, dose, cut, decision, level):
    """Follows = same action (or stay for enroll/wait) at the recommended level; no rationale needed."""
    record = add(tmp_path / "log.sqlite", dose, cut=cut, decision=decision, level=level, follows_recommendation=True)
    assert (record.follows_recommendation, record.rationale) == (1, "")
    assert rows(tmp_path / "log.sqlite")[0]["follows_recommendation"] == 1


@pytest.mark.parametrize("cut, decision, level", [
    (CUT, "enroll", 1), (CUT, "stay", 3), (CUT, "escalate", 3), (ESCALATE_CUT, "escalate", 3),
    (ESCALATE_CUT, "stay", 1), (WAIT_CUT, "enroll", 1), (CUT, "other", 2)])
def test_a_deviation_needs_a_rationale_and_is_stored_as_one(tmp_path, dose, cut, decision, level):
    """A wrong word, or the right word at another level, or "other", is a deviation: rationale required."""
    log = tmp_path / "log.sqlite"
    for blank in ("", "  \n "):
        errors = refusal(log, dose, cut=cut, decision=decision, level=level, rationale=blank)
        assert len(errors) == 1 and errors[0].startswith("rationale:")
    assert not log.exists()
    record = add(log, dose, cut=cut, decision=decision, level=level, rationale="  SMC judged otherwise  ")
    assert (record.follows_recommendation, record.rationale) == (0, "SMC judged otherwise")
    expected_action = dose("S1", cut).assessment.recommendation.action
    assert (rows(log)[0]["recommended_action"], rows(log)[0]["follows_recommendation"]) == (expected_action, 0)


def test_the_follows_flag_marks_a_deviation_but_cannot_claim_one_away(tmp_path, dose):
    """follows_recommendation=False: the recommended decision as a deviation (rationale needed);
    True on a decision that does not match: refused, naming the recommendation."""
    assert refusal(tmp_path / "log", dose, follows_recommendation=False)[0].startswith("rationale:")
    assert add(tmp_path / "log", dose, follows_recommendation=False, rationale="capacity").follows_recommendation == 0
    assert refusal(tmp_path / "log", dose, level=1, follows_recommendation=True, rationale="why") == [
        '"enroll" at level 1 is not the recommendation (enroll at level 2): record it as a deviation, with a rationale']


@pytest.mark.parametrize("change, words", [
    (dict(decision="postpone"), ['decision "postpone" is not one of', "stay, other"]),
    (dict(level=4), ["level 4 is not a dose level of S1", "1, 2, 3"]),
    (dict(level=None), ["level None is not a dose level of S1"]),
    (dict(cut=D("2025-03-16")), ["data cut 2025-03-16 is after the database's data cut 2025-03-15"]),
    (dict(meeting=D("2025-03-14")), ["meeting date 2025-03-14 is before the data cut 2025-03-15"]),
    (dict(meeting=D("2025-04-03")), ["meeting date 2025-04-03 is in the future (today is 2025-04-01 UTC)"]),
    (dict(rationale="bad \udcff byte"), ["rationale holds characters that are not valid text"]),
    (dict(signer=None), ["signer: a decision is signed by a signed-in identity, never a typed name"]),
    (dict(role="sponsor"), ["signer: the sponsor role may not record a decision (only: SMC chair, SMC member)"]),
    (dict(role="investigator"), ["signer: the investigator role may not record a decision"]),
    (dict(role="data_manager"), ["signer: the data manager role may not record a decision"]),
    # 5 minutes is settings.SIGNATURE_MAX_AUTH_AGE_S: one second past it, the signer must sign in again
    (dict(signed_in_s_before=301), ["signature: sign in again first", "within the last 5 minute(s)",
                                     "yours was 5 minute(s) ago"]),
    (dict(signer=Identity("https://idp.test", "ada", "Dr Ada", "", "smc_chair", frozenset(), None)),
     ["signature: sign in again first", "at an unknown time"]),
    (dict(rationale="x" * 5001), ["rationale is longer than 5000 characters"]),
    (dict(attendees="x" * 5001), ["attendees is longer than 5000 characters"]),
    (dict(by="x" * 5001), ["signer: the name is longer than 5000 characters"]),
])
def test_each_rule_refuses_with_a_message_naming_the_problem(tmp_path, dose, change, words):
    """One broken rule, one message naming it (with a rationale so that deviation is not the reason)."""
    errors = refusal(tmp_path / "log", dose, **({"rationale": "r"} | change))
    assert len(errors) == 1 and all(w in errors[0] for w in words), errors
    assert not (tmp_path / "log").exists()


def test_limits_are_inclusive(tmp_path, dose):
    """5000 characters, a meeting on the data cut, and one on the UTC date + 1 (already today east of UTC)."""
    add(tmp_path / "log", dose, rationale="r" * 5000, attendees="a" * 5000, by="b" * 5000, meeting=CUT,
        follows_recommendation=False)
    assert add(tmp_path / "log", dose, meeting=NOW.date() + dt.timedelta(days=1)).id == 2


def test_every_problem_is_reported_together_and_nothing_is_written(tmp_path, dose):
    """Several problems: all reported in one refusal; a refused draft leaves the row count unchanged."""
    log = tmp_path / "log"
    add(log, dose)
    errors = refusal(log, dose, decision="postpone", level=9, meeting=D("2025-05-01"), role="sponsor")
    assert [e.split(" ")[0] for e in errors] == ["decision", "level", "meeting", "signer:", "rationale:"]
    assert len(rows(log)) == 1


def test_the_future_is_judged_from_the_utc_date(tmp_path, dose):
    """At 01:00 on 2025-04-02 in UTC+5 it is still 2025-04-01 in UTC: 04-02 is accepted, 04-03 refused."""
    now = dt.datetime(2025, 4, 2, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    append(tmp_path / "log", draft(meeting=D("2025-04-02"), signer=signer(now=now)), dose("S1", CUT), "test", now=now)
    with pytest.raises(Refused, match="in the future"):
        append(tmp_path / "log", draft(meeting=D("2025-04-03"), signer=signer(now=now)), dose("S1", CUT), "test",
               now=now)


# --------------------------------------------------------------------------- chain and append-only


@pytest.fixture()
def chain(tmp_path, dose) -> Path:
    """Five records, ids 1-5: S1, S2, S1, S2, S1 (so S1 has seq 1-3 at ids 1, 3, 5; S2 seq 1-2 at ids 2, 4)."""
    log = log_path(tmp_path / "t.duckdb")
    for i, study in enumerate(["S1", "S2", "S1", "S2", "S1"]):
        add(log, dose, study=study, level=2 if study == "S1" else 1, attendees=f"A{i}, Bé", rationale=f"note {i}")
    return log


def test_records_chain_per_study_with_hashes_of_every_column(chain):
    """hash = SHA-256 of the canonical JSON of every other column; prev_hash links; seq per study; id global."""
    stored = rows(chain)
    assert [(r["id"], r["study_id"], r["seq"]) for r in stored] == [
        (1, "S1", 1), (2, "S2", 1), (3, "S1", 2), (4, "S2", 2), (5, "S1", 3)]
    assert all(r["hash"] == independent_hash(r) for r in stored)
    assert [r["prev_hash"] for r in stored] == [GENESIS, GENESIS] + [r["hash"] for r in stored[:3]]
    assert [r["hash_kind"] for r in stored] == [SIGNED] * 5
    assert [(r["kind"], r["signer_subject"], r["signer_role"], r["signature_meaning"]) for r in stored] == [
        ("decision", "dr-ada", "smc_chair", "approved as SMC chair")] * 5
    assert stored[0]["signer_auth_time_utc"] == "2025-04-01T11:59:00Z"  # NOW less the signer's 60 s
    assert [r["prev_file_hash"] for r in stored] == [GENESIS] + [r["hash"] for r in stored[:4]]
    assert stored[0]["recorded_at_utc"] == "2025-04-01T12:00:00.000000Z"
    assert stored[0]["attendees"] == "A0, Bé" and stored[0]["data_source"] == "trial.duckdb (test)"
    assert [r.__dict__ for r in read_log(chain)] == stored
    with contextlib.closing(sqlite3.connect(chain)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert verify(chain) == []


@pytest.mark.parametrize("statement", ["UPDATE decisions SET rationale = 'x' WHERE id = 2",
                                       "DELETE FROM decisions WHERE id = 5"])
def test_the_file_refuses_updates_and_deletes(chain, statement):
    """Triggers make the table append-only for any SQLite client."""
    with contextlib.closing(sqlite3.connect(chain)) as con, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute(statement)
    assert len(rows(chain)) == 5 and verify(chain) == []


def _tamper(log: Path, statement: str, rehash: int | None = None):
    """Change the file as another SQLite client could: drop the guards, run the statement (optionally
    recomputing the changed record's hash), put the guards back. A DROP TRIGGER statement runs alone."""
    with contextlib.closing(sqlite3.connect(log, isolation_level=None)) as con:
        if statement.startswith("DROP"):
            con.execute(statement)
            return
        con.executescript("DROP TRIGGER decisions_no_update; DROP TRIGGER decisions_no_delete;")
        con.execute(statement)
        if rehash is not None:
            con.row_factory = sqlite3.Row
            row = dict(con.execute("SELECT * FROM decisions WHERE id = ?", (rehash,)).fetchone())
            con.execute("UPDATE decisions SET hash = ? WHERE id = ?", (independent_hash(row), rehash))
        con.executescript(SCHEMA)


TAMPERING = {  # name: (statement, re-hash record, the record ids verify must name, words in a message)
    "edit a middle record": ("UPDATE decisions SET level = 3 WHERE id = 3", None, {3}, "does not match its hash"),
    # Re-sealed with the key (an insider): #3 looks intact, but the next record of its study (#5) and of the file
    # (#4) sealed its old hash.
    "edit and re-hash it": ("UPDATE decisions SET rationale = 'edited' WHERE id = 3", 3, {4, 5}, "does not chain"),
    "delete a middle record": ("DELETE FROM decisions WHERE id = 3", None, {3, 5}, "is missing"),
    "delete the file's last record": ("DELETE FROM decisions WHERE id = 5", None, {5}, "is missing"),
    "delete a study's last record, not the file's": ("DELETE FROM decisions WHERE id = 4", None, {4}, "is missing"),
    "drop a guard": ("DROP TRIGGER decisions_no_delete", None, set(), "guard decisions_no_delete was removed"),
}


@pytest.mark.parametrize("case", TAMPERING)
def test_tampering_is_found_by_verify_and_the_cli(chain, capsys, case):
    """verify names the altered or missing record; the CLI exits 3 and names it on stderr."""
    statement, rehash, named, words = TAMPERING[case]
    _tamper(chain, statement, rehash)
    broken = verify(chain)
    assert {b.record_id for b in broken if b.record_id} == named
    assert any(words in b.message for b in broken), broken
    code, _, err = cli(capsys, "verify", "--db", chain.parent / "t.duckdb")
    assert code == 3 and all(f"record #{i}" in err for i in named) and words in err


def test_verify_through_python_m_smc(chain):
    """The real entry point: exit 0 on the intact log with each study's head to quote, 3 once a record is deleted."""
    run = [sys.executable, "-m", "smc", "decisions", "verify", "--db", str(chain.parent / "t.duckdb")]
    intact = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert (intact.returncode, "intact (5 record(s))" in intact.stderr) == (0, True)
    stored = rows(chain)
    heads = {s: [r for r in stored if r["study_id"] == s] for s in ("S1", "S2")}
    assert sorted(intact.stdout.splitlines()) == [f"{s}: {len(rs)} record(s), chain head {rs[-1]['hash']}"
                                                  for s, rs in heads.items()]
    _tamper(chain, "DELETE FROM decisions WHERE id = 2")
    broken = subprocess.run(run, cwd=ROOT, capture_output=True, text=True)
    assert broken.returncode == 3 and "record #2: is missing" in broken.stderr


# --------------------------------------------------------------------------- the key: forgeries, downgrades, old logs

OLD_COLUMNS = ("id", "study_id", "seq", "recorded_at_utc", "meeting_date", "data_cut_date", "level", "decision",
               "follows_recommendation", "recommended_action", "recommended_level", "rationale", "attendees",
               "recorded_by", "supersedes", "data_source", "prev_hash", "hash")
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, study_id TEXT NOT NULL, seq INTEGER NOT NULL,
    recorded_at_utc TEXT NOT NULL, meeting_date TEXT NOT NULL, data_cut_date TEXT NOT NULL, level INTEGER NOT NULL,
    decision TEXT NOT NULL, follows_recommendation INTEGER NOT NULL CHECK (follows_recommendation IN (0, 1)),
    recommended_action TEXT NOT NULL, recommended_level INTEGER, rationale TEXT NOT NULL, attendees TEXT NOT NULL,
    recorded_by TEXT NOT NULL, supersedes INTEGER REFERENCES decisions (id), data_source TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL, UNIQUE (study_id, seq));
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only: record a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only: record a correction instead'); END;
"""  # the log's layout before keying, as that code created it


def insert(log: Path, row: dict) -> None:
    """Add a row as any SQLite client can: the guards refuse UPDATE and DELETE, not INSERT."""
    with contextlib.closing(sqlite3.connect(log, isolation_level=None)) as con:
        con.execute(f"INSERT INTO decisions ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                    list(row.values()))


def old_log(log: Path, studies=("S1", "S2", "S1")) -> list[dict]:
    """A log as the code before keying wrote it: the old schema, each hash the SHA-256 of the row's other
    columns, chained per study."""
    written, heads = [], {}
    with contextlib.closing(sqlite3.connect(log, isolation_level=None)) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(OLD_SCHEMA)
    for i, study in enumerate(studies, 1):
        level = 2 if study == "S1" else 1
        row = dict(id=i, study_id=study, seq=studies[:i].count(study), recorded_at_utc=f"2025-03-2{i}T10:00:00.000000Z",
                   meeting_date="2025-03-20", data_cut_date="2025-03-15", level=level, decision="enroll",
                   follows_recommendation=1, recommended_action="enroll", recommended_level=level,
                   rationale=f"old {i}", attendees="Ada, Bé", recorded_by="Dr Old", supersedes=None,
                   data_source="trial.duckdb (old)", prev_hash=heads.get(study, GENESIS))
        row["hash"] = hashlib.sha256(canonical(row)).hexdigest()
        insert(log, row)
        heads[study] = row["hash"]
        written.append(row)
    return written


def next_record(log: Path, study: str = "S1", **change) -> dict:
    """A plausible next record of ``study``: its newest one with the next id and seq, chained to it and to the
    file's newest record, deciding something else (no hash computed yet)."""
    stored = rows(log)
    last = [r for r in stored if r["study_id"] == study][-1]
    return last | dict(id=stored[-1]["id"] + 1, seq=last["seq"] + 1, prev_hash=last["hash"],
                       prev_file_hash=stored[-1]["hash"], decision="escalate", level=3, rationale="forged") | change


def as_before_keying(row: dict) -> dict:
    """The reproduction: the record as the old code would have written it, with the SHA-256 of its columns."""
    old = {k: v for k, v in row.items() if k in OLD_COLUMNS and k != "hash"}
    return old | {"hash": hashlib.sha256(canonical(old)).hexdigest()}


def sha256_of_all(row: dict) -> dict:
    return row | {"hash": hashlib.sha256(canonical({k: v for k, v in row.items() if k != "hash"})).hexdigest()}


def sealed_with(key: bytes):
    return lambda row: row | {"hash": independent_hash(row | {"hash_kind": SIGNED}, key)}


FORGERIES = {  # name: (how the forged next S1 record is made, record ids verify must name, words in a message)
    "the reproduction: unkeyed, SHA-256 as before keying": (as_before_keying, {6}, "is not keyed, yet record #1"),
    "unkeyed, SHA-256 of every column": (lambda r: sha256_of_all(r | {"hash_kind": UNKEYED}), {6}, "is not keyed"),
    "claims to be keyed, SHA-256 as its hash": (lambda r: sha256_of_all(r | {"hash_kind": SIGNED}), {6},
                                                "does not match its hash"),
    "keyed as before sign-in, with the right key": (
        lambda r: r | {"hash": independent_hash(r | {"hash_kind": KEYED})} | {"hash_kind": KEYED}, {6},
        "is not signed, yet record #1 before it is"),
    "keyed with another key": (sealed_with(secrets.token_bytes(32)), {6}, "does not match its hash"),
    "keyed with a wrong kind's name": (lambda r: sha256_of_all(r | {"hash_kind": "HMAC-SHA256"}), {6},
                                       "hash kind 'HMAC-SHA256'"),
    "squeezed in below the first id, as a new study": (
        lambda r: as_before_keying(r | dict(id=0, study_id="S3", seq=1, prev_hash=GENESIS)), {0}, "id below 1"),
    "squeezed in below the first id, as a middle record": (
        lambda r: as_before_keying(r | dict(id=-1)), {-1}, "id below 1"),
}


@pytest.mark.parametrize("case", FORGERIES)
def test_a_record_forged_without_the_key_is_found(chain, capsys, case):
    """Anyone who can write the file can INSERT a record chained to the study's head: without the key it fails."""
    forge, named, words = FORGERIES[case]
    insert(chain, forge(next_record(chain)))
    broken = verify(chain)
    assert {b.record_id for b in broken if b.record_id is not None} == named, broken
    assert any(words in b.message for b in broken), broken
    code, out, err = cli(capsys, "verify", "--db", chain.parent / "t.duckdb")
    assert (code, out) == (3, "") and words in err and all(f"record #{i}:" in err for i in named)


def test_a_record_sealed_with_the_key_verifies(chain):
    """The control of the forgeries: with the key (and both links right) a record verifies, so the tests'
    independent HMAC is the ledger's, and each forgery above fails only for what it lacks."""
    insert(chain, sealed_with(the_key())(next_record(chain)))
    assert verify(chain) == []
    insert(chain, sealed_with(the_key())(next_record(chain, prev_file_hash=GENESIS)))  # the file's link wrong
    assert [(b.record_id, b.message.split(":")[0]) for b in verify(chain)] == [
        (7, "does not chain to the file's previous record #6")]


def test_reordered_records_are_found(chain):
    """S1's records 2 and 3 (ids 3 and 5) swapped by their seq: neither matches its hash, neither chains."""
    with contextlib.closing(sqlite3.connect(chain, isolation_level=None)) as con:
        con.executescript("""DROP TRIGGER decisions_no_update; UPDATE decisions SET seq = 99 WHERE id = 3;
            UPDATE decisions SET seq = 2 WHERE id = 5; UPDATE decisions SET seq = 3 WHERE id = 3;""")
        con.executescript(SCHEMA)
    assert [(r["id"], r["seq"]) for r in rows(chain) if r["study_id"] == "S1"] == [(1, 1), (3, 3), (5, 2)]
    broken = verify(chain)
    assert {b.record_id for b in broken} == {3, 5}
    assert {(b.record_id, b.message.split(":")[0]) for b in broken} >= {
        (3, "does not match its hash"), (5, "does not match its hash"),
        (3, "does not chain to the study's previous record"), (5, "does not chain to the study's previous record")}


def test_a_keyed_record_rewritten_as_unkeyed_is_a_downgrade(chain):
    """S1's newest record (#5) edited and re-hashed as before keying: it is unkeyed after keyed records."""
    _tamper(chain, "UPDATE decisions SET hash_kind = 'sha256', prev_file_hash = NULL, rationale = 'forged' "
                   "WHERE id = 5", rehash=5)
    assert [(b.record_id, b.message.split(",")[0]) for b in verify(chain)] == [(5, "is not keyed")]


def test_the_first_keyed_records_rewritten_as_unkeyed_break_the_files_chain(tmp_path, dose):
    """Old log (#1-3), then S2's #4 and S1's #5 keyed. #4 rewritten as an old record passes as one (it is before
    every keyed record left, and its study's chain holds); #5 sealed #4's hash as the file's previous record."""
    log = tmp_path / "log.sqlite"
    old_log(log)
    add(log, dose, study="S2", level=1)
    add(log, dose)
    _tamper(log, "UPDATE decisions SET hash_kind = 'sha256', prev_file_hash = NULL, decision = 'escalate', level = 3, "
                 "rationale = 'forged' WHERE id = 4", rehash=4)
    assert [(b.study_id, b.record_id, b.message.split(":")[0]) for b in verify(log)] == [
        (None, 5, "does not chain to the file's previous record #4")]


def test_a_replaced_key_file_is_found_and_appends_stop(chain, key_file, dose, db_copy, capsys):
    """Every keyed record fails under another key, and verify says the key is not the log's; a new record is
    refused rather than sealed with that key (it would not verify with the right one)."""
    key_file.write_bytes(secrets.token_bytes(32))
    broken = verify(chain)
    assert {b.record_id for b in broken if b.record_id} == {1, 2, 3, 4, 5}
    assert all("the key file is not the one it was written with" in b.message for b in broken if b.record_id)
    assert f"none of the 5 keyed record(s) matches the key {key_file}" in [b.message for b in broken][-1]
    assert cli(capsys, "verify", "--db", db_copy)[0] == 3
    with pytest.raises(KeyUnavailable, match="record #5 does not match the key"):
        add(chain, dose)
    code, _, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "enroll",
                       "--by", "me")
    assert code == 1 and "record #5 does not match the key" in err and "decision not recorded" in err
    assert len(rows(chain)) == 5


def test_a_missing_key_is_a_clear_error_and_no_new_key_is_made(chain, key_file, dose, db_copy, capsys):
    """Keyed records and no key: verify and head exit 3 with one error line, add exits 1; none makes a new key
    (records sealed with it would split the chain); the packet says the log cannot be checked."""
    key_file.unlink()
    with pytest.raises(KeyUnavailable, match="is missing; the chain cannot be verified"):
        verify(chain)
    for action in ("verify", "head"):
        code, out, err = cli(capsys, action, "--db", db_copy)
        assert (code, out) == (3, "") and err == (
            f"error: the key {key_file} is missing; the chain cannot be verified (5 record(s) of "
            f"{chain.name}, from #1 on, are keyed with it)\n")
    code, _, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "enroll",
                       "--by", "me")
    assert code == 1 and f"the key {key_file} is missing" in err and "Traceback" not in err
    assert not key_file.exists() and len(rows(chain)) == 5
    packet = build_packet(Database(db_copy), "S1")
    assert f"the log cannot be read: the key {key_file} is missing; the chain cannot be verified" in packet


@pytest.mark.parametrize("content, words", [(b"", "holds 0 byte(s)"), (b"short", "holds 5 byte(s)")])
def test_a_damaged_key_file_is_a_clear_error(chain, key_file, db_copy, capsys, content, words):
    key_file.write_bytes(content)
    code, _, err = cli(capsys, "verify", "--db", db_copy)
    assert code == 3 and err.startswith(f"error: the key {key_file} {words}")


def test_a_key_that_cannot_be_made_is_a_clear_error(db_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SMC_DECISION_LOG_KEY_FILE", str(tmp_path / "no-such-folder" / "k"))
    code, _, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "enroll",
                       "--by", "me")
    assert code == 1 and f"its folder {tmp_path / 'no-such-folder'} does not exist" in err
    assert rows(log_path(db_copy)) == []


def test_an_old_unkeyed_log_verifies_without_a_key_and_continues_keyed(tmp_path, dose, key_file, capsys):
    """A log written before keying: intact, its heads printed, no key needed or made. The first append adds the
    two columns in place (old rows untouched, the layout then a new log's) and is keyed, chained to the old
    records; an unkeyed record after it is a downgrade."""
    log = log_path(tmp_path / "t.duckdb")
    old = old_log(log)
    assert verify(log) == [] and not key_file.exists()
    code, out, err = cli(capsys, "head", "--db", tmp_path / "t.duckdb")
    assert (code, out.splitlines()) == (0, [f"S1: 2 record(s), chain head {old[2]['hash']}",
                                            f"S2: 1 record(s), chain head {old[1]['hash']}"])
    assert "none keyed yet" in err and not key_file.exists()
    assert [r.hash_kind for r in read_log(log)] == [UNKEYED] * 3

    new = add(log, dose)
    stored = rows(log)
    assert [{k: r[k] for k in OLD_COLUMNS} for r in stored[:3]] == old
    assert [(r["hash_kind"], r["prev_file_hash"]) for r in stored] == [(UNKEYED, None)] * 3 + [(SIGNED, old[2]["hash"])]
    assert (new.id, new.seq, new.prev_hash) == (4, 3, old[2]["hash"])
    assert stored[3]["hash"] == independent_hash(stored[3]) == new.hash
    assert len(key_file.read_bytes()) == 32 and key_file.stat().st_mode & 0o777 == 0o600
    assert verify(log) == []
    fresh = tmp_path / "new.sqlite"
    with contextlib.closing(sqlite3.connect(fresh)) as con:
        con.executescript(SCHEMA)
    layouts = []
    for path in (log, fresh):
        with contextlib.closing(sqlite3.connect(path)) as con:
            layouts.append(con.execute("PRAGMA table_info(decisions)").fetchall())
    assert layouts[0] == layouts[1]

    insert(log, as_before_keying(next_record(log, "S2")))
    assert [(b.record_id, b.message.split(",")[0]) for b in verify(log)] == [(5, "is not keyed")]


def test_an_old_record_altered_after_keying_is_found(tmp_path, dose):
    """An old record edited and re-hashed: the keyed record after it in its study sealed the old hash."""
    log = tmp_path / "log.sqlite"
    old_log(log)
    add(log, dose)
    _tamper(log, "UPDATE decisions SET rationale = 'edited' WHERE id = 3", rehash=3)
    assert {(b.record_id, b.message.split(":")[0]) for b in verify(log)} == {
        (4, "does not chain to the study's previous record"), (4, "does not chain to the file's previous record #3")}


FIRST_APPENDS = """
import datetime as dt, sys, time, pathlib
from smc.access.identity import Identity
from smc.decision_log import ledger
from smc.store import db as smc_db
from smc.analysis import dose_decision as dd
from smc.store import study as smc_study
db_path, log, folder, proc = sys.argv[1:5]
SIGNER = Identity("https://idp.test", "worker", "worker", "", "smc_member", frozenset(), dt.datetime.now(dt.UTC))
db, folder = smc_db.Database(db_path), pathlib.Path(folder)
study = smc_study.load_study(db, "IX001")
dose = dd.load_dose_decision(db, study, study.data_cut_date)
(folder / f"ready{proc}").touch()
while not (folder / "start").exists():
    time.sleep(0.001)
ledger.append(log, ledger.Draft(study_id="IX001", meeting_date=dose.as_of, data_cut_date=dose.as_of,
    level=study.level_order[0], decision="other", rationale=f"process {proc}", signer=SIGNER), dose, "test")
"""


def test_first_appends_in_several_processes_at_once_make_one_key(tmp_path, demo_db, key_file):
    """Four processes append the first record of four logs at the same moment, with no key yet: one key file
    (32 bytes, owner-only), every log sealed with it, no temporary file left."""
    procs = 4
    workers = [subprocess.Popen([sys.executable, "-c", FIRST_APPENDS, str(demo_db), str(tmp_path / f"log{p}.sqlite"),
                                 str(tmp_path), str(p)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for p in range(procs)]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"ready{p}").exists() for p in range(procs)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not key_file.exists()
    (tmp_path / "start").touch()
    results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0] * procs, [err for _, err in results]
    key = key_file.read_bytes()
    assert len(key) == 32 and key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == [key_file.name]
    for p in range(procs):
        (row,) = rows(tmp_path / f"log{p}.sqlite")
        assert (row["rationale"], row["hash_kind"], row["hash"]) == (f"process {p}", SIGNED, independent_hash(row, key))
        assert verify(tmp_path / f"log{p}.sqlite") == []


def test_head_is_the_hmac_of_each_studys_newest_record_and_the_packet_quotes_it(chain, db_copy, key_file, capsys):
    """``decisions head``: each study's count and the HMAC of its newest record, computed here with hmac.new from
    the key file's bytes; --study one study; the meeting packet shows the same head; a broken log no head."""
    key, stored = key_file.read_bytes(), rows(chain)

    def mac(row: dict) -> str:
        sealed = {k: v for k, v in row.items() if k != "hash" and not (k == "stage" and v is None)}
        return hmac.new(key, canonical(sealed), hashlib.sha256).hexdigest()

    s1, s2 = ([r for r in stored if r["study_id"] == s] for s in ("S1", "S2"))
    code, out, err = cli(capsys, "head", "--db", db_copy)
    assert (code, out.splitlines()) == (0, [f"S1: 3 record(s), chain head {mac(s1[-1])}",
                                            f"S2: 2 record(s), chain head {mac(s2[-1])}"])
    assert f"intact (5 record(s)); 5 keyed with {key_file}" in err
    assert cli(capsys, "head", "--db", db_copy, "--study", "S2")[:2] == (
        0, f"S2: 2 record(s), chain head {mac(s2[-1])}\n")
    assert cli(capsys, "head", "--db", db_copy, "--study", "NOPE")[0] == 1
    assert cli(capsys, "verify", "--db", db_copy)[1] == out  # verify prints the same heads

    packet = build_packet(Database(db_copy), "S1")
    assert f"3 record(s), chain verified. Chain head: {mac(s1[-1])} (record #5, HMAC-SHA-256" in packet

    _tamper(chain, "UPDATE decisions SET level = 3 WHERE id = 2")
    code, out, err = cli(capsys, "head", "--db", db_copy)
    assert (code, out) == (3, "") and "S2 record #2: does not match its hash" in err
    code, out, err = cli(capsys, "head", "--db", db_copy, "--study", "S1")  # S1's own chain and the file's hold
    assert (code, out) == (0, f"S1: 3 record(s), chain head {mac(s1[-1])}\n")
    assert "does not chain" not in build_packet(Database(db_copy), "S1")


def test_head_of_a_study_with_no_record_and_of_no_log(db_copy, dose, capsys):
    assert cli(capsys, "head", "--db", db_copy) == (0, "", f"no decision log at {log_path(db_copy)}: nothing "
                                                          "recorded yet\n")
    add(log_path(db_copy), dose)
    assert cli(capsys, "head", "--db", db_copy, "--study", "S2")[:2] == (0, "S2: 0 record(s), no chain head yet\n")



# --------------------------------------------------------------------------- corrections


def test_a_record_is_corrected_once_and_only_within_its_study(chain, dose):
    """supersedes names an earlier id of the same study; a record can be superseded only once."""
    fix = add(chain, dose, decision="stay", supersedes=3, rationale="typo")
    assert (fix.id, fix.supersedes, fix.seq, fix.signature_meaning) == (6, 3, 4, "corrected as SMC chair")
    assert refusal(chain, dose, supersedes=3, rationale="typo") == [
        "supersedes: record #3 is already superseded by #6; correct #6 instead"]
    assert refusal(chain, dose, supersedes=2, rationale="typo") == ["supersedes: S1 has no record #2"]  # S2's
    assert refusal(chain, dose, supersedes=99, rationale="typo") == ["supersedes: S1 has no record #99"]
    assert add(chain, dose, supersedes=6, rationale="typo").supersedes == 6  # a correction can itself be corrected


def test_only_the_chair_supersedes_and_says_why(chain, dose):
    """A member may record, not correct; the chair corrects with a rationale (who and why are in the record)."""
    assert add(chain, dose, role="smc_member").signature_meaning == "recorded as SMC member"
    assert refusal(chain, dose, role="smc_member", supersedes=6, rationale="typo") == [
        "signer: the SMC member role may not supersede a decision (only: SMC chair)"]
    assert refusal(chain, dose, supersedes=6) == ["rationale: a correction says why the record it supersedes was wrong"]
    fix = add(chain, dose, by="Dr Chair", supersedes=6, rationale="the member chose the wrong level")
    assert (fix.recorded_by, fix.signer_role, fix.rationale) == ("Dr Chair", "smc_chair",
                                                                "the member chose the wrong level")
    assert len(rows(chain)) == 7 and verify(chain) == []


def test_a_bad_supersedes_is_reported_with_the_other_problems(chain, dose):
    errors = refusal(chain, dose, role="sponsor", supersedes=99)
    assert any("sponsor role" in e for e in errors) and any("#99" in e for e in errors)
    assert any(e.startswith("rationale: a correction") for e in errors)


# --------------------------------------------------------------------------- several processes at once

WORKER = """
import datetime as dt, sys, time, pathlib
from smc.access.identity import Identity
from smc.decision_log import ledger
from smc.store import db as smc_db
from smc.analysis import dose_decision as dd
from smc.store import study as smc_study
db_path, log, folder, proc, n = sys.argv[1:6]
db, folder = smc_db.Database(db_path), pathlib.Path(folder)
doses = [dd.load_dose_decision(db, s, s.data_cut_date) for s in map(lambda i: smc_study.load_study(db, i),
                                                                ("IDOV-SAFE", "BIOTTT001"))]
(folder / f"ready{proc}").touch()
while not (folder / "start").exists():
    time.sleep(0.002)
for i in range(int(n)):  # alternate studies so both chains grow from every process
    dose = doses[(int(proc) + i) % 2]
    ledger.append(log, ledger.Draft(
        study_id=dose.study.study_id, meeting_date=dose.as_of, data_cut_date=dose.as_of, level=dose.study.level_order[0],
        decision="other", rationale=f"marker {proc}:{i}", attendees=f"process {proc}",
        stage="monotherapy" if dose.study.staged else None,
        signer=Identity("https://idp.test", f"w{proc}", f"worker {proc}", "", "smc_member", frozenset(),
                        dt.datetime.now(dt.UTC))),
        dose, ledger.data_source(db))
"""


def test_several_processes_append_at_once_without_losing_or_forking_records(tmp_path, demo_db):
    """4 processes x 12 appends to one log at the same moment: 48 records, ids 1-48, chains intact."""
    procs, per = 4, 12
    log = tmp_path / "demo.decisions.sqlite"
    with contextlib.closing(sqlite3.connect(log, isolation_level=None)) as con:  # an empty log, as the first
        con.execute("PRAGMA journal_mode=WAL")  # append makes it (creating it at once: the test below)
        con.executescript(SCHEMA)
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(demo_db), str(log), str(tmp_path), str(p),
                                 str(per)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for p in range(procs)]
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready{p}").exists() for p in range(procs)) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "start").touch()
    results = [w.communicate(timeout=60) for w in workers]
    assert [w.returncode for w in workers] == [0] * procs, [err for _, err in results]
    stored = rows(log)
    assert [r["id"] for r in stored] == list(range(1, procs * per + 1))
    assert sorted(r["rationale"] for r in stored) == sorted(f"marker {p}:{i}" for p in range(procs) for i in range(per))
    assert all(r["attendees"] == "process " + r["rationale"].removeprefix("marker ").split(":")[0] for r in stored)
    for study in ("IDOV-SAFE", "BIOTTT001"):
        chain = [r for r in stored if r["study_id"] == study]
        assert [r["seq"] for r in chain] == list(range(1, len(chain) + 1))
        assert [r["prev_hash"] for r in chain] == [GENESIS] + [r["hash"] for r in chain[:-1]]
        assert all(r["hash"] == independent_hash(r) for r in chain)
    assert verify(log) == []


def test_the_first_append_waits_for_another_process_creating_the_log(tmp_path, dose):
    """Two first appends at once: the one that finds the new file locked must wait, not fail."""
    log = tmp_path / "log"
    other = sqlite3.connect(log, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # as another process's first append does while it switches the file to WAL
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    try:
        assert add(log, dose).id == 1
    finally:
        release.join()
        other.close()


# --------------------------------------------------------------------------- command line


@pytest.fixture()
def db_copy(trial, tmp_path) -> Path:
    return Path(shutil.copy(trial, tmp_path / "t.duckdb"))


def test_cli_add_list_and_json(db_copy, capsys):
    """add records (follows / deviation / correction); list and list --json show exactly what was added."""
    base = ("add", "--db", db_copy, "--study", "S1", "--by", "Dr Ada", "--meeting-date", "2025-03-20")
    code, out, _ = cli(capsys, *base, "--level", 2, "--decision", "enroll", "--attendees", "Ada, Bob")
    assert (code, "record #1: enroll at level 2 (follows the protocol recommendation" in out) == (0, True)
    code, out, _ = cli(capsys, *base, "--level", 2, "--decision", "escalate", "--as-of", "2025-02-05",
                       "--deviation", "--rationale", "waited for PK")
    assert (code, "record #2: escalate at level 2 (a deviation; the rule said escalate)" in out) == (0, True)
    assert cli(capsys, *base, "--level", 2, "--decision", "stay", "--supersedes", 1, "--rationale", "")[0] == 2
    assert cli(capsys, *base, "--level", 2, "--decision", "stay", "--supersedes", 1)[0] == 2  # a member may not
    assert cli(capsys, *base, "--level", 2, "--decision", "stay", "--supersedes", 1, "--role", "smc_chair",
               "--rationale", "stay says it")[0] == 0
    code, out, _ = cli(capsys, "list", "--db", db_copy, "--study", "S1", "--json")
    listed = json.loads(out)
    assert [(r["id"], r["seq"], r["decision"], r["level"], r["follows_recommendation"], r["recommended_action"],
             r["recommended_level"], r["data_cut_date"], r["meeting_date"], r["supersedes"]) for r in listed] == [
        (1, 1, "enroll", 2, 1, "enroll", 2, "2025-03-15", "2025-03-20", None),
        (2, 2, "escalate", 2, 0, "escalate", 2, "2025-02-05", "2025-03-20", None),
        (3, 3, "stay", 2, 1, "enroll", 2, "2025-03-15", "2025-03-20", 1)]
    assert [(r["rationale"], r["attendees"], r["recorded_by"]) for r in listed] == [
        ("", "Ada, Bob", "Dr Ada"), ("waited for PK", "", "Dr Ada"), ("stay says it", "", "Dr Ada")]
    account = getpass.getuser()
    assert [(r["signer_subject"], r["signer_role"], r["signature_meaning"]) for r in listed] == [
        (account, "smc_member", "recorded as SMC member")] * 2 + [(account, "smc_chair", "corrected as SMC chair")]
    assert all(r["signer_issuer"] == f"urn:smc:command-line:{socket.gethostname()}" for r in listed)
    assert listed == rows(log_path(db_copy))
    code, out, err = cli(capsys, "list", "--db", db_copy, "--study", "S1")
    assert code == 0 and "superseded by #3" in out and "supersedes #1" in out and "3 record(s) for S1" in err
    assert cli(capsys, "verify", "--db", db_copy)[0] == 0


def test_cli_refusal_prints_every_reason_and_writes_nothing(db_copy, capsys):
    """Exit 2, one 'error:' line per reason, no log file."""
    code, _, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 7, "--decision", "postpone",
                       "--by", " ", "--meeting-date", "2025-03-01", "--supersedes", 5)
    assert [line.split(" ")[:2] for line in err.splitlines()] == [
        ["error:", w] for w in ("decision", "level", "meeting", "signer:", "rationale:", "rationale:", "supersedes:")
    ] + [["decision", "not"]]
    assert code == 2
    assert not log_path(db_copy).exists()


def test_cli_missing_database_unknown_study_and_no_log(db_copy, tmp_path, capsys):
    """Exit 1 for no database or an unknown study; verify and list never create a log."""
    add = ("add", "--level", 1, "--decision", "enroll", "--by", "me")
    code, _, err = cli(capsys, *add, "--db", tmp_path / "none.duckdb", "--study", "S1")
    assert code == 1 and "no database at" in err
    code, _, err = cli(capsys, *add, "--db", db_copy, "--study", "NOPE")
    assert code == 1 and "NOPE" in err
    assert cli(capsys, "verify", "--db", db_copy) == (0, "", f"no decision log at {log_path(db_copy)}: "
                                                              "nothing recorded yet\n")
    assert cli(capsys, "list", "--db", db_copy, "--study", "S1") == (0, "", "0 record(s) for S1\n")
    assert cli(capsys, "list", "--db", db_copy, "--study", "S1", "--json")[:2] == (0, "[]\n")
    assert list(tmp_path.iterdir()) == [db_copy]  # no log, nor anything else, was created


def test_cli_unreadable_log(db_copy, capsys):
    """A log file that is not SQLite: verify exits 3 and list exits 1, each with an error line."""
    log_path(db_copy).write_text("not a database")
    assert cli(capsys, "verify", "--db", db_copy)[::2] == (3, f"error: {log_path(db_copy)} is not a readable "
                                                             "decision log: file is not a database\n")
    assert cli(capsys, "list", "--db", db_copy, "--study", "S1")[0] == 1


def test_cli_add_to_an_unreadable_log_says_so(db_copy, capsys):
    log_path(db_copy).write_text("not a database")
    code, _, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "enroll",
                       "--by", "me")
    assert code == 1 and "is not a readable decision log" in err


# --------------------------------------------------------------------------- history table and chart markers


def test_log_table_flags_corrections_and_in_force_drops_them_and_later_cuts(tmp_path, dose):
    """Superseded records show 'Superseded by' and leave in_force; so do records on data after as_of and the
    chair's approvals (a signature on a decision, not a decision)."""
    log = tmp_path / "log"
    add(log, dose, cut=ESCALATE_CUT, decision="escalate", by="Dr Ben", role="smc_member")  # 1
    add(log, dose, level=1, rationale="hold", attendees="Ada")           # 2: deviation
    add(log, dose, decision="stay", supersedes=2, rationale="typo")      # 3
    approve(log, "S1", 1, signer(), now=NOW)                             # 4: the chair approves #1
    records = read_log(log)
    table = log_table(records, {1: "1e8 PFU", 2: "1e9 PFU", 3: "1e10 PFU"})
    assert table["Record"].tolist() == [4, 3, 2, 1]
    assert table["Kind"].tolist() == ["approval of #1", "decision", "decision", "decision"]
    assert table["Superseded by"].tolist() == ["", "", "#3", ""]
    assert table["Supersedes"].tolist() == ["", "#2", "", ""]
    assert table["Dose level"].tolist() == ["1e9 PFU (level 2)", "1e9 PFU (level 2)", "1e8 PFU (level 1)",
                                            "1e9 PFU (level 2)"]
    assert table["Follows the rule"].tolist() == ["yes", "yes", "no (deviation)", "yes"]
    assert table["Rule recommended"].tolist() == ["escalate at level 2", "enroll at level 2", "enroll at level 2",
                                                  "escalate at level 2"]
    assert table["Signed by"].tolist() == ["Dr Ada", "Dr Ada", "Dr Ada", "Dr Ben"]
    assert table["Role"].tolist() == ["SMC chair", "SMC chair", "SMC chair", "SMC member"]
    assert table["Meaning"].tolist() == ["approved as SMC chair", "corrected as SMC chair", "approved as SMC chair",
                                         "recorded as SMC member"]
    assert table["Status"].tolist() == ["", "approved by the chair", "superseded by #3", "approved by the chair (#4)"]
    assert table["Signer ID"].tolist()[-1] == "dr-ben at https://idp.test <ada@smc.example>"
    assert table["Hash"].tolist() == [r["hash"][:12] for r in reversed(rows(log))]
    assert [r.id for r in in_force(records, CUT)] == [1, 3]
    assert [r.id for r in in_force(records, D("2025-03-14"))] == [1]
    assert in_force(records, D("2025-02-04")) == []


def test_the_chair_approves_a_members_record_once_with_a_fresh_sign_in(tmp_path, dose):
    """An approval is a record of the study's chain restating what it approves, signed by the chair; members may
    not approve, a stale sign-in may not, and a record is approved once, never once superseded."""
    log = tmp_path / "log"
    member = add(log, dose, by="Dr Ben", role="smc_member")  # 1
    with pytest.raises(Refused) as caught:
        approve(log, "S1", 1, signer("Dr Ben", "smc_member"), now=NOW)
    assert caught.value.errors == ["signer: the SMC member role may not approve a decision (only: SMC chair)"]
    with pytest.raises(Refused, match="sign in again first"):
        approve(log, "S1", 1, signer(signed_in_s_before=301), now=NOW)
    approval = approve(log, "S1", 1, signer(), now=NOW)
    assert (approval.id, approval.seq, approval.kind, approval.approves, approval.prev_hash) == (
        2, 2, "approval", 1, member.hash)
    assert (approval.decision, approval.level, approval.data_cut_date) == (member.decision, member.level,
                                                                           member.data_cut_date)
    assert (approval.signer_role, approval.signature_meaning) == ("smc_chair", "approved as SMC chair")
    stored = rows(log)[1]
    assert stored["hash"] == independent_hash(stored) and stored["hash_kind"] == SIGNED
    with pytest.raises(Refused, match=r"record #1 is already approved \(#2"):
        approve(log, "S1", 1, signer(), now=NOW)
    with pytest.raises(Refused, match="there is no decision record #2"):
        approve(log, "S1", 2, signer(), now=NOW)  # an approval is not a decision
    add(log, dose, by="Dr Ben", role="smc_member")  # 3
    add(log, dose, supersedes=3, rationale="wrong level")  # 4, the chair's own: approved by itself
    with pytest.raises(Refused, match="record #3 is superseded by #4"):
        approve(log, "S1", 3, signer(), now=NOW)
    with pytest.raises(Refused, match="already approved"):
        approve(log, "S1", 4, signer(), now=NOW)
    assert verify(log) == [] and len(rows(log)) == 4


def test_a_guard_replaced_by_one_that_does_nothing_is_found(chain):
    with contextlib.closing(sqlite3.connect(chain)) as con:
        con.executescript("DROP TRIGGER decisions_no_delete; CREATE TRIGGER decisions_no_delete BEFORE DELETE ON "
                          "decisions BEGIN SELECT 1; END;")
    assert [b.message for b in verify(chain)] == ["the append-only guard decisions_no_delete was removed or changed"]


def test_a_value_of_the_wrong_type_is_an_altered_record(chain):
    _tamper(chain, "UPDATE decisions SET rationale = CAST('x' AS BLOB) WHERE id = 3")
    assert [(b.record_id, b.message.split(":")[0]) for b in verify(chain)
            if b.record_id] == [(3, "does not match its hash")]


def test_an_empty_or_foreign_file_is_not_a_traceback(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert verify(empty) == [] and read_log(empty) == []  # as while another process creates it
    foreign = tmp_path / "foreign.sqlite"
    with contextlib.closing(sqlite3.connect(foreign)) as con:
        con.execute("CREATE TABLE notes (x)")
    assert [b.message for b in verify(foreign)] == ["foreign.sqlite holds no decision log"]


def test_a_correction_is_on_the_data_cut_of_the_record_it_corrects(tmp_path, dose, db_copy, capsys):
    """Corrected on other data it would be judged against another recommendation: refused, naming the cut.
    The CLI takes the corrected record's cut when --as-of is not given."""
    log = tmp_path / "log"
    add(log, dose, cut=ESCALATE_CUT, decision="escalate", level=2)  # follows: escalate to 2 on 02-05
    assert refusal(log, dose, cut=CUT, decision="escalate", level=2, rationale="typo", supersedes=1) == [
        "supersedes: record #1 was decided on the data cut 2025-02-05; record its correction on that data cut, "
        "not 2025-03-15"]

    assert cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "escalate", "--by", "me",
               "--as-of", ESCALATE_CUT, "--meeting-date", "2025-02-06")[0] == 0
    code, out, err = cli(capsys, "add", "--db", db_copy, "--study", "S1", "--level", 2, "--decision", "escalate",
                         "--by", "me", "--meeting-date", "2025-02-07", "--supersedes", 1, "--role", "smc_chair",
                         "--rationale", "the level was mistyped")
    assert code == 0, err
    stored = rows(log_path(db_copy))
    assert [(r["data_cut_date"], r["follows_recommendation"], r["supersedes"]) for r in stored] == [
        ("2025-02-05", 1, None), ("2025-02-05", 1, 1)]
