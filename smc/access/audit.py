"""The access log: who signed in and out, who was refused what, and who signed which decision record.

One append-only SQLite file beside the decision log (``demo.duckdb`` -> ``demo.access.sqlite``), in WAL mode so
every session of every server process appends at once.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from smc import settings
from smc.access.identity import Identity
from smc.store import cuts
from smc.store.append_only import appending, reading, utc_text

LOG_SUFFIX = ".access.sqlite"
EVENTS = ("sign-in", "sign-out", "denied", "expired", "signature")
SCHEMA = (settings.QUERIES_DIR / "sqlite" / "access_log_schema.sql").read_text()
COLUMNS = ("id", "at_utc", "event", "issuer", "subject", "name", "role", "auth_time", "what", "detail")


def log_path(db_path: str | Path) -> Path:
    """The access log of a data cut: its registry's ``access.sqlite``, or for a single file beside it, same name,
    ``.access.sqlite``."""
    return cuts.store_file(db_path, cuts.ACCESS_FILE, LOG_SUFFIX)


def beside_decision_log(decision_log: Path) -> Path:
    """The access log kept with a decision log (a registry's, or a single file's)."""
    if decision_log.name == cuts.DECISIONS_FILE:
        return decision_log.with_name(cuts.ACCESS_FILE)
    return decision_log.with_name(decision_log.name.removesuffix(".decisions.sqlite") + LOG_SUFFIX)


def append(path: Path, event: str, who: Identity | None, what: str = "", detail: str = "",
           now: dt.datetime | None = None) -> None:
    """Add one row; a second sign-in row for the same sign-in at the provider is ignored."""
    if event not in EVENTS:
        raise ValueError(f"unknown access event {event!r}")
    row = (utc_text(now or dt.datetime.now(dt.UTC)), event, who.issuer if who else "", who.subject if who else "",
           who.name if who else "", who.role if who else "", utc_text(who.auth_time) if who else None, what, detail)
    with appending(path, SCHEMA) as con:
        con.execute(f"INSERT OR IGNORE INTO access_log ({', '.join(COLUMNS[1:])}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row)


def read(path: Path) -> list[dict]:
    """Every row, oldest first; none when nothing was logged yet."""
    if not path.is_file():
        return []
    with reading(path) as con:
        return [dict(r) for r in con.execute("SELECT * FROM access_log ORDER BY id")]
