"""The SMC's decision log: what the committee decided, why, and who signed it.

One small SQLite file beside the trial database (``demo.duckdb`` ->
``demo.decisions.sqlite``), in WAL mode so several server processes can
append at once while the trial DuckDB stays read-only. Records are only ever
appended (triggers refuse UPDATE and DELETE); a correction is a new record
that supersedes an earlier one. Each record carries a UTC timestamp and an
HMAC-SHA-256 of its contents under a key kept outside the log
(``settings.decision_log_key_file``), chained to the study's previous record
and to the file's previous record, so an edit, a deletion or a record added to
the file by other means is found by :func:`verify`: writing to the file is not
enough to forge one. Records written before the log was keyed keep their plain
SHA-256 and verify as before (``hash_kind``).

Every record since sign-in is signed: its signer is the signed-in identity (the
provider's issuer and subject, name, e-mail, role), with what the signature
means ("recorded as SMC member", "approved as SMC chair") and when they last
typed their password at the provider, all sealed in the record. SMC members
and the chair record decisions; the chair approves a member's record with an
approval record of its own, and only the chair supersedes (``permissions``).

The Escalation page, ``python -m smc decisions`` and the meeting packet all go
through this module; :func:`validate` is the one set of rules for a new record.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import tempfile
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path

import pandas as pd

from smc import settings
from smc.access import audit, permissions
from smc.access.identity import Identity
from smc.analysis.dose_decision import DoseDecision
from smc.rules.escalation import ACTIONS, Assessment, recommended_level
from smc.store import cuts
from smc.store.db import Database
from smc.store.study import Study

VOCABULARY = (*ACTIONS, "stay", "other")
STAYING_ACTIONS = ("enroll", "wait")  # the rule's actions that keep the current level: "stay" follows them
LOG_SUFFIX = ".decisions.sqlite"
GENESIS_HASH = "0" * 64
# hash_kind: a record written before the log was keyed; keyed before sign-in; keyed and signed (every column sealed)
UNKEYED, KEYED, SIGNED = "sha256", "hmac-sha256", "hmac-sha256-signed"
DECISION, APPROVAL = "decision", "approval"  # kind: a decision, or the chair's approval of one
KEY_BYTES = 32


class Refused(Exception):
    """A decision that may not be recorded; ``errors`` says every reason."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


class LogUnreadable(Exception):
    """The log file exists but is not a decision log SQLite can read."""


class KeyUnavailable(LogUnreadable):
    """The log's key is missing, unreadable or not the one its records were written with: they cannot be checked,
    and no record is added (one under another key would split the chain)."""


@dataclass(frozen=True)
class Draft:
    """A decision as the form or the command line gives it, before validation."""

    study_id: str
    meeting_date: dt.date
    data_cut_date: dt.date  # the as-of date of the data the SMC reviewed
    level: int | None
    decision: str
    rationale: str = ""
    attendees: str = ""
    signer: Identity | None = None  # the signed-in identity: never a typed name
    follows_recommendation: bool | None = None  # None: work it out from the recommendation
    supersedes: int | None = None
    stage: str | None = None  # the stage decided on, in a staged study (docs/rules.md#staged-regimens); else None


@dataclass(frozen=True)
class Decision:
    """One stored record, exactly as in the file (dates as ISO text)."""

    id: int
    study_id: str
    seq: int
    recorded_at_utc: str
    meeting_date: str
    data_cut_date: str
    level: int
    decision: str
    follows_recommendation: int
    recommended_action: str
    recommended_level: int | None
    rationale: str
    attendees: str
    recorded_by: str
    supersedes: int | None
    data_source: str
    prev_hash: str
    hash: str
    hash_kind: str  # SIGNED; KEYED before sign-in; UNKEYED for a record written before the log was keyed
    prev_file_hash: str | None  # the hash of the file's previous record, any study (None before keying)
    kind: str = DECISION  # or APPROVAL: the chair's signature on the record ``approves``
    approves: int | None = None
    signer_issuer: str | None = None  # None on records written before sign-in
    signer_subject: str | None = None
    signer_email: str | None = None
    signer_role: str | None = None
    signature_meaning: str | None = None
    signer_auth_time_utc: str | None = None  # when the signer last typed their password at the provider
    stage: str | None = None  # the stage of a staged study the decision is about; None: the study's one stage

    @property
    def signed(self) -> bool:
        return self.signer_subject is not None


COLUMNS = tuple(f.name for f in fields(Decision))
UNKEYED_COLUMNS = COLUMNS[:COLUMNS.index("hash")]  # what a record written before keying hashed
KEYED_COLUMNS = tuple(c for c in COLUMNS[:COLUMNS.index("kind")] if c != "hash")  # a keyed record before sign-in
SEALED_COLUMNS = tuple(c for c in COLUMNS if c != "hash")  # what a signed record's HMAC covers, hash_kind included
SIGNER_COLUMNS = COLUMNS[COLUMNS.index("signer_issuer"):COLUMNS.index("signer_auth_time_utc") + 1]
# A log made before keying or sign-in gets the new columns in place: SQLite adds a column without rewriting a row,
# and the old rows read as they were written. (The same columns as in the schema file: a test compares the two.)
MIGRATIONS = {"hash_kind": f"ALTER TABLE decisions ADD COLUMN hash_kind TEXT NOT NULL DEFAULT '{UNKEYED}'",
              "prev_file_hash": "ALTER TABLE decisions ADD COLUMN prev_file_hash TEXT",
              "kind": f"ALTER TABLE decisions ADD COLUMN kind TEXT NOT NULL DEFAULT '{DECISION}'",
              "approves": "ALTER TABLE decisions ADD COLUMN approves INTEGER",
              **{c: f"ALTER TABLE decisions ADD COLUMN {c} TEXT" for c in SIGNER_COLUMNS},
              "stage": "ALTER TABLE decisions ADD COLUMN stage TEXT"}
SCHEMA = (settings.QUERIES_DIR / "sqlite" / "decision_log_schema.sql").read_text()
# The append-only triggers as SQLite stores them (it drops IF NOT EXISTS and the final ";"), whitespace folded,
# so a guard removed or replaced by one that does nothing is found.
GUARDS = {name: " ".join(f"CREATE TRIGGER {name}{body}".split())
          for name, body in re.findall(r"CREATE TRIGGER IF NOT EXISTS (\w+)(.*?END);", SCHEMA, flags=re.S)}


@dataclass(frozen=True)
class Broken:
    """A place where the log's chain does not hold."""

    study_id: str | None
    record_id: int | None
    message: str

    def __str__(self) -> str:
        where = " ".join(part for part in (self.study_id,
                                           f"record #{self.record_id}" if self.record_id is not None else None)
                         if part)
        return f"{where}: {self.message}" if where else self.message


def log_path(db_path: str | Path) -> Path:
    """The decision log of a data cut: its registry's ``decisions.sqlite`` (decisions stay with the study from
    cut to cut), or for a single file beside it, same name, ``.decisions.sqlite``."""
    return cuts.store_file(db_path, cuts.DECISIONS_FILE, LOG_SUFFIX)


def data_source(db: Database) -> str:
    """What a record names as the data it was decided on: the cut's file, its SHA-256 and its load."""
    return f"{db.path.name} sha256:{cuts.cut_of(db.path).sha256} (loaded {db.loaded_at})"


def record_hash(values: dict, key: bytes | None = None) -> str:
    """What a record's ``hash`` must be: for a signed record, the HMAC-SHA-256 under ``key`` of every other column
    (``hash_kind``, ``prev_file_hash`` and the signer included) as canonical JSON; for one keyed before sign-in, of
    the columns it had then; for one written before the log was keyed, the SHA-256 of the columns it had then."""
    kind = values.get("hash_kind", UNKEYED)
    if kind == UNKEYED:
        return hashlib.sha256(_canonical(values, UNKEYED_COLUMNS)).hexdigest()
    if kind in (KEYED, SIGNED) and key is not None:
        columns = SEALED_COLUMNS if kind == SIGNED else KEYED_COLUMNS
        if values.get("stage") is None:
            # Sealed only when it holds a stage, so records from before stages verify as they were signed; a stage
            # added to such a record, or removed from one, breaks its seal.
            columns = tuple(c for c in columns if c != "stage")
        return hmac.new(key, _canonical(values, columns), hashlib.sha256).hexdigest()
    raise ValueError(f"a record of hash kind {kind!r} cannot be sealed"
                     + (" without the key" if kind in (KEYED, SIGNED) else ""))


def _canonical(values: dict, columns: tuple[str, ...]) -> bytes:
    payload = {name: values[name] for name in columns}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def read_key(key_file: Path) -> bytes | None:
    """The log's key, or None when its file does not exist."""
    try:
        key = key_file.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyUnavailable(f"the key {key_file} cannot be read: {exc.strerror or exc}") from None
    if len(key) < KEY_BYTES:
        raise KeyUnavailable(f"the key {key_file} holds {len(key)} byte(s), fewer than a key's {KEY_BYTES}; "
                             "the chain cannot be verified")
    return key


def _missing_key(key_file: Path) -> str:
    return f"the key {key_file} is missing; the chain cannot be verified"


def _create_key(key_file: Path) -> bytes:
    """32 random bytes, readable by their owner only. Written to a private temporary file and linked into place,
    which fails if the name exists: when several processes make a first append at once, one key wins and every
    process uses it, and none ever reads half a key."""
    try:
        # mkstemp makes the file 0600 whatever the umask; in the key's folder, so the link stays on one filesystem.
        fd, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=f".{key_file.name.lstrip('.')}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(secrets.token_bytes(KEY_BYTES))
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(FileExistsError):  # another process linked its key first: use that one
                os.link(temporary, key_file)
        finally:
            os.unlink(temporary)
        folder = os.open(key_file.parent, os.O_RDONLY)
        try:  # the key's name survives a power cut, as the records sealed with it do (synchronous=FULL)
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        why = f"its folder {key_file.parent} does not exist" if not key_file.parent.is_dir() else exc.strerror or exc
        raise KeyUnavailable(f"the key {key_file} cannot be created: {why}") from None
    key = read_key(key_file)
    if key is None:
        raise KeyUnavailable(f"the key {key_file} was removed as it was created")
    return key


def _rule(dose: DoseDecision, stage: str | None) -> Assessment:
    """The rule's assessment of the stage decided on (the first, or only, stage when None)."""
    return dose.of_stage(stage).assessment


def follows(decision: str, level: int | None, dose: DoseDecision, stage: str | None = None) -> bool:
    """Whether a decision is the protocol rule's recommendation on the reviewed data (for ``stage``, in a staged
    study).

    ``stay`` follows an ``enroll`` or ``wait`` at the same level: both keep the current dose.
    """
    rule = _rule(dose, stage)
    action, target = rule.recommendation.action, recommended_level(rule)
    same_action = decision == action or (decision == "stay" and action in STAYING_ACTIONS)
    return same_action and (target is None or level == target)


def signer_problems(signer: Identity | None, action: str, now: dt.datetime) -> list[str]:
    """Why ``signer`` may not sign for ``action`` now: no signed-in identity, a role without the right, or a
    sign-in at the provider older than ``settings.SIGNATURE_MAX_AUTH_AGE_S`` (the token's auth_time)."""
    if signer is None:
        return ["signer: a decision is signed by a signed-in identity, never a typed name"]
    errors = []
    if not permissions.may(signer.role, action):
        allowed = [permissions.ROLE_TITLES[r] for r in permissions.ROLES if permissions.may(r, action)]
        errors.append(f"signer: the {signer.role_title} role may not {action.replace('_', ' ').replace(' decision', '')}"
                      f" a decision (only: {', '.join(allowed)})")
    age = signer.signed_in_for_s(now)
    limit = settings.SIGNATURE_MAX_AUTH_AGE_S
    if age is None or age > limit:
        when = "at an unknown time" if age is None else f"{age / 60:.0f} minute(s) ago"
        errors.append(f"signature: sign in again first; a signature needs a sign-in at the provider within the last "
                      f"{limit // 60} minute(s), and yours was {when}")
    for name in ("name", "email", "issuer", "subject"):
        if len(getattr(signer, name)) > settings.DECISION_TEXT_MAX_CHARS:
            errors.append(f"signer: the {name} is longer than {settings.DECISION_TEXT_MAX_CHARS} characters")
    return errors


def validate(draft: Draft, dose: DoseDecision, now: dt.datetime, records: list[Decision] = ()) -> list[str]:
    """Every reason the draft may not be recorded (empty when it may). ``dose``: the rule on the reviewed data;
    ``records``: the study's log so far; ``now``: the server's time."""
    study, errors, today = dose.study, [], now.astimezone(dt.UTC).date()
    if draft.study_id != study.study_id or dose.as_of != draft.data_cut_date:
        raise ValueError("the dose decision must be the study's on the draft's data cut")
    if draft.decision not in VOCABULARY:
        errors.append(f'decision "{draft.decision}" is not one of: {", ".join(VOCABULARY)}')
    names = [s.name for s in study.regimen]
    if study.staged and draft.stage not in names:
        errors.append(f"stage: {study.study_id} has stages ({', '.join(names)}): say which one the decision is about"
                      if draft.stage is None else f'stage "{draft.stage}" is not a stage of {study.study_id} '
                                                  f"(it has {', '.join(names)})")
        draft = replace(draft, stage=None)  # judged against the first stage's rule below
    elif not study.staged and draft.stage is not None:
        errors.append(f'stage "{draft.stage}": {study.study_id} has one stage; leave the stage empty')
        draft = replace(draft, stage=None)
    if draft.level not in study.level_order:
        errors.append(f"level {draft.level} is not a dose level of {study.study_id} "
                      f"(it has {', '.join(map(str, study.level_order))})")
    if study.data_cut_date and draft.data_cut_date > study.data_cut_date:
        errors.append(f"data cut {draft.data_cut_date} is after the database's data cut {study.data_cut_date}")
    if draft.meeting_date < draft.data_cut_date:
        errors.append(f"meeting date {draft.meeting_date} is before the data cut {draft.data_cut_date} it reviewed")
    # "Today" somewhere on Earth: up to a day ahead of UTC, so an SMC east of Greenwich can record today's meeting.
    if draft.meeting_date > today + dt.timedelta(days=1):
        errors.append(f"meeting date {draft.meeting_date} is in the future (today is {today} UTC)")
    errors += signer_problems(draft.signer, "supersede_decision" if draft.supersedes is not None
                              else "record_decision", now)
    for name in ("rationale", "attendees"):
        text = getattr(draft, name)
        if len(text) > settings.DECISION_TEXT_MAX_CHARS:
            errors.append(f"{name.replace('_', ' ')} is longer than {settings.DECISION_TEXT_MAX_CHARS} characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            errors.append(f"{name.replace('_', ' ')} holds characters that are not valid text (UTF-8)")
    if draft.follows_recommendation and not follows(draft.decision, draft.level, dose, draft.stage):
        rule = _rule(dose, draft.stage)
        errors.append(f'"{draft.decision}" at level {draft.level} is not the recommendation ({rule.recommendation.action}'
                      f"{_at(recommended_level(rule))}): record it as a deviation, with a rationale")
    # "other" is never the rule's word, so it is always a deviation and always needs a rationale.
    if _deviates(draft, dose) and not draft.rationale.strip():
        errors.append("rationale: a decision that deviates from the protocol recommendation needs one")
    if draft.supersedes is not None:
        if not draft.rationale.strip():
            errors.append("rationale: a correction says why the record it supersedes was wrong")
        errors.extend(_supersede_problems(draft, [(r.id, r.supersedes, r.data_cut_date) for r in records
                                                  if r.kind == DECISION]))
    return errors


def _supersede_problems(draft: Draft, study_log: list[tuple[int, int | None, str]]) -> list[str]:
    """Why ``draft`` may not supersede its record, given the (id, supersedes, data_cut_date) of the study's decision
    records (approvals are not decisions: they are never superseded)."""
    cuts = {record_id: cut for record_id, _, cut in study_log}
    if draft.supersedes not in cuts:
        return [f"supersedes: {draft.study_id} has no record #{draft.supersedes}"]
    later = next((record_id for record_id, old, _ in study_log if old == draft.supersedes), None)
    if later is not None:
        return [f"supersedes: record #{draft.supersedes} is already superseded by #{later}; correct #{later} instead"]
    # A correction restates the decision on the same data, so it is judged against the same recommendation.
    if cuts[draft.supersedes] != draft.data_cut_date.isoformat():
        return [f"supersedes: record #{draft.supersedes} was decided on the data cut {cuts[draft.supersedes]}; "
                f"record its correction on that data cut, not {draft.data_cut_date}"]
    return []


def _deviates(draft: Draft, dose: DoseDecision) -> bool:
    """Not the recommendation, or declared a deviation by whoever records it."""
    return not follows(draft.decision, draft.level, dose, draft.stage) or draft.follows_recommendation is False


def _at(level: int | None) -> str:
    return "" if level is None else f" at level {level}"


def _connect(path: Path, create: bool) -> sqlite3.Connection:
    if not create and not path.is_file():
        raise FileNotFoundError(path)
    # mode=rw never creates a file: reading a log that is not there must not make one.
    con = sqlite3.connect(f"file:{path}?mode={'rwc' if create else 'rw'}", uri=True, timeout=settings.DECISION_LOG_BUSY_TIMEOUT_S,
                          isolation_level=None)
    con.row_factory = sqlite3.Row
    if create:
        _use_wal(con)
        con.execute("PRAGMA synchronous=FULL")  # a recorded decision survives a power cut
        # Only a new file gets the schema: re-running it would silently restore a trigger someone removed.
        if con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'decisions'").fetchone()[0] == 0:
            con.executescript(SCHEMA)
    return con


def _use_wal(con: sqlite3.Connection) -> None:
    """Switch to WAL; the switch does not wait on the busy timeout, so retry while another process
    is creating the same new file."""
    deadline = time.monotonic() + settings.DECISION_LOG_BUSY_TIMEOUT_S
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def append(path: str | Path, draft: Draft, dose: DoseDecision, data_source: str,
           now: dt.datetime | None = None, key_file: Path | None = None) -> Decision:
    """Validate and append one decision, sealed with the key (``key_file``, default
    ``settings.decision_log_key_file()``; made on the first append if there is none); raises :class:`Refused` with
    every reason when it may not be stored, :class:`KeyUnavailable` when the key is missing or not the log's."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    errors = validate(draft, dose, now, read_log(path, draft.study_id))
    if errors:
        raise Refused(errors)
    try:
        return _append(Path(path), draft, dose, data_source, now, key_file or settings.decision_log_key_file(Path(path)))
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise  # busy for longer than settings.DECISION_LOG_BUSY_TIMEOUT_S: not a damaged file
        raise LogUnreadable(f"{path} cannot be written as a decision log: {exc}") from None


def _insert_sealed(con: sqlite3.Connection, values: dict, key: bytes) -> None:
    """Give a new record (``values``, every column but these) its id and its link to the file's previous record,
    seal it with the key, and insert it: under the caller's write lock, so no other writer shares either."""
    top = con.execute("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'decisions'), 0), "
                      "coalesce((SELECT max(id) FROM decisions), 0))").fetchone()[0]
    before = con.execute("SELECT hash FROM decisions ORDER BY id DESC LIMIT 1").fetchone()
    values.update(id=top + 1, hash_kind=SIGNED, prev_file_hash=before["hash"] if before else GENESIS_HASH)
    values["hash"] = record_hash(values, key)
    con.execute(f"INSERT INTO decisions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [values[c] for c in COLUMNS])


def _signature(signer: Identity, meaning: str) -> dict:
    """The signer's columns of a record: who (issuer and subject name them for good), as which role, meaning what."""
    auth_time = signer.auth_time.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if signer.auth_time else None
    return dict(signer_issuer=signer.issuer, signer_subject=signer.subject, signer_email=signer.email,
                signer_role=signer.role, signature_meaning=meaning, signer_auth_time_utc=auth_time)


def _log_signature(path: Path, record: Decision, signer: Identity) -> None:
    """The signature in the access log too; the record is already stored, so a log that cannot be written is no
    reason to report the signature as failed (the record itself names its signer)."""
    with contextlib.suppress(OSError, sqlite3.Error):
        audit.append(audit.beside_decision_log(path), "signature", signer,
                     f"{record.study_id} record #{record.id}", record.signature_meaning or "")


def _append(path: Path, draft: Draft, dose: DoseDecision, data_source: str, now: dt.datetime,
            key_file: Path) -> Decision:
    signer = draft.signer
    with contextlib.closing(_connect(path, create=True)) as con:
        # IMMEDIATE takes the write lock before reading the chain's end, so two writers never share a predecessor.
        con.execute("BEGIN IMMEDIATE")
        try:
            _migrate(con)
            key = _key_to_append(con, key_file)
            last = con.execute("SELECT seq, hash FROM decisions WHERE study_id = ? ORDER BY seq DESC LIMIT 1",
                               (draft.study_id,)).fetchone()
            if draft.supersedes is not None:  # again under the lock: another process may have corrected it
                study_log = con.execute("SELECT id, supersedes, data_cut_date FROM decisions WHERE study_id = ? "
                                        "AND kind = ?", (draft.study_id, DECISION)).fetchall()
                if problems := _supersede_problems(draft, [tuple(row) for row in study_log]):
                    raise Refused(problems)
            values = dict(
                study_id=draft.study_id, seq=(last["seq"] if last else 0) + 1,
                recorded_at_utc=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                meeting_date=draft.meeting_date.isoformat(), data_cut_date=draft.data_cut_date.isoformat(),
                level=draft.level, decision=draft.decision,
                follows_recommendation=int(not _deviates(draft, dose)),
                recommended_action=_rule(dose, draft.stage).recommendation.action,
                recommended_level=recommended_level(_rule(dose, draft.stage)), stage=draft.stage,
                rationale=draft.rationale.strip(), attendees=draft.attendees.strip(),
                recorded_by=signer.name, supersedes=draft.supersedes, data_source=data_source,
                prev_hash=last["hash"] if last else GENESIS_HASH, kind=DECISION, approves=None,
                **_signature(signer, permissions.CORRECTION_MEANING if draft.supersedes is not None
                             else permissions.MEANINGS[signer.role]))
            _insert_sealed(con, values, key)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    record = Decision(**values)
    _log_signature(path, record, signer)
    return record


def approve(path: str | Path, study_id: str, record_id: int, signer: Identity, now: dt.datetime | None = None,
            key_file: Path | None = None) -> Decision:
    """The chair's approval of a member's decision record: a record of its own in the study's chain, restating what
    it approves and sealed with the chair's signature. :class:`Refused` with every reason when it may not be."""
    now = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    path = Path(path)
    errors = signer_problems(signer, "approve_decision", now)
    if errors:
        raise Refused(errors)
    key_file = key_file or settings.decision_log_key_file(Path(path))
    try:
        with contextlib.closing(_connect(path, create=True)) as con:
            con.execute("BEGIN IMMEDIATE")  # the approval problems are judged under the write lock
            try:
                _migrate(con)
                key = _key_to_append(con, key_file)
                study_log = [_decision(_row(r)) for r in con.execute(
                    "SELECT * FROM decisions WHERE study_id = ? ORDER BY seq", (study_id,))]
                if problems := approval_problems(study_log, record_id):
                    raise Refused(problems)
                approved = next(r for r in study_log if r.id == record_id)
                values = {c: getattr(approved, c) for c in COLUMNS} | dict(
                    seq=study_log[-1].seq + 1, recorded_at_utc=now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    rationale="", attendees="", recorded_by=signer.name, supersedes=None,
                    prev_hash=study_log[-1].hash, kind=APPROVAL, approves=record_id,
                    **_signature(signer, permissions.APPROVAL_MEANING))
                _insert_sealed(con, values, key)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        raise LogUnreadable(f"{path} cannot be written as a decision log: {exc}") from None
    record = Decision(**values)
    _log_signature(path, record, signer)
    return record


def approval_problems(study_log: list[Decision], record_id: int) -> list[str]:
    """Why the chair may not approve record ``record_id`` of this study's log (empty when they may)."""
    record = next((r for r in study_log if r.id == record_id), None)
    if record is None or record.kind != DECISION:
        return [f"approve: there is no decision record #{record_id} in this study's log"]
    if (by := approved_by(study_log).get(record_id)) is not None:
        return [f"approve: record #{record_id} is already approved (#{by.id}, {by.signature_meaning})"]
    if (later := superseded_by(study_log).get(record_id)) is not None:
        return [f"approve: record #{record_id} is superseded by #{later}; approve that one"]
    return []


def approved_by(records: list[Decision]) -> dict[int, Decision]:
    """Decision record id -> the record that approves it: the chair's approval, or the record itself when the chair
    signed it."""
    approvals = {r.approves: r for r in records if r.kind == APPROVAL}
    approvals.update({r.id: r for r in records if r.kind == DECISION and r.signer_role == permissions.SMC_CHAIR})
    return approvals


def _migrate(con: sqlite3.Connection) -> None:
    """Add the columns a log made before keying lacks (under the append's write lock: one process does it)."""
    present = {row["name"] for row in con.execute("PRAGMA table_info(decisions)")}
    for column, statement in MIGRATIONS.items():
        if column not in present:
            con.execute(statement)


def _key_to_append(con: sqlite3.Connection, key_file: Path) -> bytes:
    """The key to seal a new record with: the log's, checked against its newest keyed record; a new one only for a
    log with no keyed record yet (a new key for a keyed log would leave its records unverifiable)."""
    key = read_key(key_file)
    newest = con.execute("SELECT * FROM decisions WHERE hash_kind IN (?, ?) ORDER BY id DESC LIMIT 1",
                         (KEYED, SIGNED)).fetchone()
    if newest is None:
        return key if key is not None else _create_key(key_file)
    if key is None:
        raise KeyUnavailable(f"{_missing_key(key_file)} (records up to #{newest['id']} are keyed with it)")
    if not _sealed(dict(newest), key):
        raise KeyUnavailable(f"record #{newest['id']} does not match the key {key_file}: the key file was replaced or "
                             "the record altered (python -m smc decisions verify names every break)")
    return key


def _sealed(row: dict, key: bytes | None) -> bool:
    try:
        return hmac.compare_digest(record_hash(row, key), str(row["hash"]))
    except (TypeError, ValueError):  # a value no append writes (e.g. bytes), or an unknown hash kind
        return False


def read_log(path: str | Path, study_id: str | None = None) -> list[Decision]:
    """The stored records (of one study, or all), oldest first; none when there is no log yet."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with contextlib.closing(_connect(path, create=False)) as con:
            if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
                return []  # another process has just created the file and is writing the schema
            rows = con.execute("SELECT * FROM decisions WHERE ? IS NULL OR study_id = ? ORDER BY id",
                               (study_id, study_id)).fetchall()
    except sqlite3.DatabaseError as exc:
        raise LogUnreadable(f"{path} is not a readable decision log: {exc}") from None
    return [_decision(_row(row)) for row in rows]


def _row(row: sqlite3.Row) -> dict:
    """A stored row with every column: a log not yet migrated lacks the later ones."""
    values = dict(row)
    values.setdefault("hash_kind", UNKEYED)
    values.setdefault("kind", DECISION)
    for column in ("prev_file_hash", "approves", *SIGNER_COLUMNS, "stage"):
        values.setdefault(column, None)
    return values


def _decision(row: dict) -> Decision:
    return Decision(**{c: row[c] for c in COLUMNS})


def verify(path: str | Path, key_file: Path | None = None) -> list[Broken]:
    """Every break in the log's chains: altered, forged or deleted records, changed guards. Empty: intact."""
    return check(path, key_file)[1]


def check(path: str | Path, key_file: Path | None = None) -> tuple[list[Decision], list[Broken]]:
    """The log's records and every break in its chains, from one snapshot (an append between two reads
    is not a deletion); none of either when there is no log. Raises :class:`KeyUnavailable` when the log has
    keyed records and the key (``key_file``, default ``settings.decision_log_key_file()``) is missing.

    Every record from the first keyed one on must be keyed, and its HMAC covers its study's previous record and
    the file's, so without the key no record can be added, changed or removed there. Records written before the
    log was keyed keep the plain SHA-256 chain they had. Not detectable here: deleting the newest records and
    rewinding SQLite's id counter, or rewriting every keyed record as an unkeyed one. Comparing
    :func:`chain_heads` with the head quoted in the minutes catches those.
    """
    path = Path(path)
    if not path.is_file():
        return [], []
    try:
        with contextlib.closing(_connect(path, create=False)) as con:
            con.execute("BEGIN")
            tables = {r[0]: r[1] for r in con.execute("SELECT name, sql FROM sqlite_master")}
            if not tables:
                return [], []  # created a moment ago by another process's first append
            if "decisions" not in tables:
                return [], [Broken(None, None, f"{path.name} holds no decision log")]
            rows = [_row(r) for r in con.execute("SELECT * FROM decisions ORDER BY id")]
            sequence = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'decisions'").fetchone() \
                if "sqlite_sequence" in tables else None
            con.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise LogUnreadable(f"{path} is not a readable decision log: {exc}") from None
    keyed = [r for r in rows if r["hash_kind"] in (KEYED, SIGNED)]
    key_file = key_file or settings.decision_log_key_file(Path(path))
    key = read_key(key_file) if keyed else None
    if keyed and key is None:
        raise KeyUnavailable(f"{_missing_key(key_file)} ({len(keyed)} record(s) of {path.name}, from "
                             f"#{keyed[0]['id']} on, are keyed with it)")
    problems: list[Broken] = []
    by_id = {r["id"]: r for r in rows}
    top = max([*by_id, sequence[0] if sequence else 0])
    for missing in sorted(set(range(1, top + 1)) - set(by_id)):
        problems.append(Broken(None, missing, "is missing: it was deleted from the file"))
    first_signed = next((r["id"] for r in rows if r["hash_kind"] == SIGNED), None)
    problems += _keying_problems(rows, keyed[0]["id"] if keyed else None, first_signed, by_id)
    sealed = {r["id"]: _sealed(r, key) for r in rows}
    for study_id in dict.fromkeys(r["study_id"] for r in rows):
        previous_hash, expected_seq = GENESIS_HASH, 1
        for r in sorted((r for r in rows if r["study_id"] == study_id), key=lambda r: r["seq"]):
            if r["seq"] != expected_seq:
                problems.append(Broken(study_id, r["id"], f"is the study's record {r['seq']} but {expected_seq} "
                                       "was expected: a record before it was deleted"))
            if r["prev_hash"] != previous_hash:
                problems.append(Broken(study_id, r["id"], "does not chain to the study's previous record: "
                                       "that record was altered or deleted"))
            if not sealed[r["id"]]:
                problems.append(Broken(study_id, r["id"], "does not match its hash: it was altered after it was "
                                       "recorded" + (", or the key file is not the one it was written with"
                                                     if r["hash_kind"] != UNKEYED else "")))
            previous_hash, expected_seq = r["hash"], r["seq"] + 1
    if keyed and not any(sealed[r["id"]] for r in keyed):
        problems.append(Broken(None, None, f"none of the {len(keyed)} keyed record(s) matches the key {key_file}: "
                               "the key file was replaced, or every keyed record altered"))
    for name, sql in GUARDS.items():
        if " ".join(str(tables.get(name)).split()) != sql:
            problems.append(Broken(None, None, f"the append-only guard {name} was removed or changed"))
    return [_decision(r) for r in rows], problems


def _keying_problems(rows: list[dict], first_keyed: int | None, first_signed: int | None,
                     by_id: dict[int, dict]) -> list[Broken]:
    """Records that are unkeyed (or unsigned) where they must be keyed (signed), or whose link to the file's previous
    record is broken."""
    problems = []
    for r in rows:
        where = (r["study_id"], r["id"])
        if r["id"] < 1:  # no append writes one, and below every keyed id it would pass for a record from before keying
            problems.append(Broken(*where, "has an id below 1: it was inserted into the file"))
        if r["hash_kind"] not in (SIGNED, KEYED, UNKEYED):
            problems.append(Broken(*where, f"has the hash kind {r['hash_kind']!r}, which no append writes"))
        elif r["hash_kind"] == UNKEYED and first_keyed is not None and r["id"] > first_keyed:
            problems.append(Broken(*where, f"is not keyed, yet record #{first_keyed} before it is: it was added or "
                                   "rewritten without the key"))
        elif r["hash_kind"] == KEYED and first_signed is not None and r["id"] > first_signed:
            problems.append(Broken(*where, f"is not signed, yet record #{first_signed} before it is: it was added or "
                                   "rewritten without a signer"))
        if r["hash_kind"] in (KEYED, SIGNED):
            # A deleted previous record is reported as missing; there is nothing to compare with then.
            previous = GENESIS_HASH if r["id"] == 1 else by_id.get(r["id"] - 1, {}).get("hash")
            if previous is not None and r["prev_file_hash"] != previous:  # about two records, maybe two studies
                problems.append(Broken(None, r["id"], f"does not chain to the file's previous record "
                                       f"#{r['id'] - 1}: that record was altered, or rewritten without the key"))
    return problems


def chain_heads(records: list[Decision]) -> dict[str, tuple[int, str]]:
    """Study -> (number of records, hash of its newest record): what the minutes should quote."""
    heads: dict[str, tuple[int, str]] = {}
    for r in records:
        heads[r.study_id] = (heads.get(r.study_id, (0, ""))[0] + 1, r.hash)
    return heads


def study_log(path: str | Path, study_id: str, key_file: Path | None = None) -> tuple[list[Decision], list[Broken]]:
    """One study's records, and the breaks that concern it: its own, and those no study can be named for."""
    records, problems = check(path, key_file)
    return ([r for r in records if r.study_id == study_id],
            [b for b in problems if b.study_id in (None, study_id)])


def superseded_by(records: list[Decision]) -> dict[int, int]:
    """Decision record id -> the id of the record that corrects it."""
    return {r.supersedes: r.id for r in records if r.supersedes is not None and r.kind == DECISION}


LOG_TABLE_COLUMNS = ["Record", "Kind", "Meeting", "Data cut", "Stage", "Dose level", "Decision", "Follows the rule",
                     "Rule recommended", "Rationale", "Attendees", "Signed by", "Role", "Meaning", "Signed (UTC)",
                     "Signer ID", "Status", "Supersedes", "Superseded by", "Hash"]


def log_table(records: list[Decision], labels: dict[int, str]) -> pd.DataFrame:
    """The history table the page, its CSV and the meeting packet show (newest first): every record, approvals
    included, with its signer, role, meaning and time. A record from before sign-in shows the name typed then."""
    corrected, approvals = superseded_by(records), approved_by(records)
    rows = [{
        "Record": r.id, "Kind": r.kind if r.kind == DECISION else f"approval of #{r.approves}",
        "Meeting": r.meeting_date, "Data cut": r.data_cut_date, "Stage": r.stage or "",
        "Dose level": f"{labels.get(r.level, r.level)} (level {r.level})", "Decision": r.decision,
        "Follows the rule": "yes" if r.follows_recommendation else "no (deviation)",
        "Rule recommended": r.recommended_action + _at(r.recommended_level),
        "Rationale": r.rationale, "Attendees": r.attendees,
        "Signed by": r.recorded_by if r.signed else f"{r.recorded_by} (typed, not signed)",
        "Role": permissions.ROLE_TITLES.get(r.signer_role, r.signer_role) if r.signed else "",
        "Meaning": r.signature_meaning or "", "Signed (UTC)": r.recorded_at_utc,
        "Signer ID": f"{r.signer_subject} at {r.signer_issuer}" + (f" <{r.signer_email}>" if r.signer_email else "")
        if r.signed else "",
        "Status": _status(r, corrected, approvals), "Supersedes": _ref(r.supersedes),
        "Superseded by": _ref(corrected.get(r.id)), "Hash": r.hash[:12]} for r in reversed(records)]
    return pd.DataFrame(rows, columns=LOG_TABLE_COLUMNS)


def _status(record: Decision, corrected: dict[int, int], approvals: dict[int, Decision]) -> str:
    if record.kind == APPROVAL:
        return ""
    if record.id in corrected:
        return f"superseded by #{corrected[record.id]}"
    if record.id in approvals:
        by = approvals[record.id]
        return "approved by the chair" + ("" if by.id == record.id else f" (#{by.id})")
    return "awaiting the chair's approval" if record.signed else "recorded before sign-in"


def _ref(record_id: int | None) -> str:
    return "" if record_id is None else f"#{record_id}"


def of_stage(records: list[Decision], study: Study, stage: str | None) -> list[Decision]:
    """The records about one stage of ``study``: a record without a stage is about its first (or only) stage."""
    first = study.regimen[0].name
    return [r for r in records if (r.stage or first) == (stage or first)]


def in_force(records: list[Decision], as_of: dt.date) -> list[Decision]:
    """Records on data up to ``as_of`` that no record corrects: the markers on the history chart.
    (A correction is on the same data cut as the record it corrects.)"""
    corrected = superseded_by(records)
    return [r for r in records if r.kind == DECISION and r.id not in corrected
            and r.data_cut_date <= as_of.isoformat()]
