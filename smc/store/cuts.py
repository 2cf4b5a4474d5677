"""The registry of data cuts: a folder of immutable DuckDB files, one per cut, each with its manifest.

A cut ``<name>.duckdb`` is registered by its manifest ``<name>.cut.json`` (cut date, label, source, SHA-256 of
the file, load time), written last and atomically by :mod:`smc.ingest.register`: a file without one is an
import still running, or an import that died, and is not a cut. Cut files are never replaced; a new transfer is
a new file. What the committee writes (decision log, review marks, access log) belongs to the registry, not to
one cut: it lives in the folder beside the cuts (:func:`store_file`).

A single DuckDB file outside a registry (``SMC_DB``, ``--db``) is served as a registry of one cut, as before.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from smc.store.db import Database

MANIFEST_SUFFIX = ".cut.json"
DECISIONS_FILE, ACCESS_FILE = "decisions.sqlite", "access.sqlite"
SHORT_ID_CHARS = 12  # what a link carries: the first hex digits of the cut's SHA-256
log = logging.getLogger("smc")


@dataclass(frozen=True)
class Cut:
    """One data cut as the registry lists it (``python -m smc cuts list --json`` prints these fields)."""

    path: str
    cut_date: str  # the latest data cut date of its studies (YYYY-MM-DD)
    label: str
    source: str  # csv:…, sdtm:…, demo:…
    sha256: str
    loaded_at_utc: str
    studies: dict  # study_id -> that study's data cut date

    @property
    def short_id(self) -> str:
        return self.sha256[:SHORT_ID_CHARS]

    @property
    def title(self) -> str:
        return f"{self.cut_date} · {self.label}"

    def as_json(self) -> dict:
        return asdict(self)


def manifest_path(db_path: str | Path) -> Path:
    path = Path(db_path)
    return path.with_name(path.name.removesuffix(".duckdb") + MANIFEST_SUFFIX)


def is_registered(db_path: str | Path) -> bool:
    return manifest_path(db_path).is_file()


def store_file(db_path: str | Path, name: str, single_suffix: str) -> Path:
    """Where the writable file ``name`` of the registry holding ``db_path`` lives: the registry's folder for a
    registered cut; beside a single file (``<cut>`` + ``single_suffix``) otherwise."""
    path = Path(db_path)
    if is_registered(path):
        return path.parent / name
    return path.with_name(path.name.removesuffix(".duckdb") + single_suffix)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(db_path: str | Path, sha256: str, label: str | None = None) -> Cut:
    """A cut's manifest, read off the file itself: its studies' cut dates and its load_info."""
    db = Database(db_path)
    studies = {r["study_id"]: r["data_cut_date"] for r in db.rows("studies")}
    info = db.sql("SELECT source, loaded_at_utc FROM load_info")
    source = str(info.source[0]) if len(info) else "unknown"
    loaded = f"{info.loaded_at_utc[0]:%Y-%m-%dT%H:%M:%SZ}" if len(info) else ""
    dates = [d for d in studies.values() if d is not None]
    cut_date = max(dates).isoformat() if dates else ""
    return Cut(path=str(Path(db_path).resolve()), cut_date=cut_date,
               label=label or f"{source.split(':', 1)[0]} cut of {cut_date or 'unknown date'}", source=source,
               sha256=sha256, loaded_at_utc=loaded,
               studies={s: d.isoformat() if d else None for s, d in studies.items()})


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _single_file_cut(path: Path, identity: tuple) -> Cut:
    """A file outside a registry, described once per file identity (a replaced file is described again)."""
    return describe(path, file_sha256(path))


def _from_manifest(fields: dict) -> Cut:
    """A manifest's fields as a Cut; TypeError or KeyError for one that is not what the registry writes (the
    folder may be shared storage: nothing in it is trusted to be well formed)."""
    cut = Cut(**{k: fields[k] for k in Cut.__dataclass_fields__})
    texts = [getattr(cut, k) for k in Cut.__dataclass_fields__ if k != "studies"]
    if not all(isinstance(v, str) for v in texts) or not isinstance(cut.studies, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in cut.studies.items()):
        raise TypeError("a field of the wrong type")
    if not re.fullmatch(r"[0-9a-f]{64}", cut.sha256):
        raise ValueError("sha256 is not 64 hex digits")
    return cut


def cut_of(db_path: str | Path) -> Cut:
    """The cut a file is: its manifest in a registry, else the file described (and hashed) as it is now."""
    path = Path(db_path)
    manifest = manifest_path(path)
    if manifest.is_file():
        cut = _from_manifest(json.loads(manifest.read_text(encoding="utf-8")))
        return Cut(**{**asdict(cut), "path": str(path.resolve())})
    return _single_file_cut(path.resolve(), _identity(path))


_NAMED_SHA = re.compile(r"\bsha256:([0-9a-f]{64})\b")


def named_cut_sha256(text: str) -> str | None:
    """The cut's SHA-256 a decision record's ``data_source`` names (``… sha256:<hex> …``), or None."""
    found = _NAMED_SHA.search(text or "")
    return found.group(1) if found else None


def _order(cut: Cut) -> tuple:
    return cut.cut_date, cut.loaded_at_utc, cut.path


def list_cuts(folder: str | Path) -> list[Cut]:
    """The registered cuts of a folder, oldest first (cut date, then load time). A manifest that cannot be
    read, or whose file is missing, is logged and left out: it never hides the other cuts."""
    cuts = []
    for manifest in sorted(Path(folder).glob(f"*{MANIFEST_SUFFIX}")):
        try:
            cut = _from_manifest(json.loads(manifest.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("data cut manifest %s is unreadable (%s); left out", manifest, exc)
            continue
        db_file = manifest.with_name(manifest.name.removesuffix(MANIFEST_SUFFIX) + ".duckdb")
        if not db_file.is_file():
            log.warning("data cut manifest %s names no file; left out", manifest)
            continue
        cuts.append(Cut(**{**asdict(cut), "path": str(db_file.resolve())}))
    return sorted(cuts, key=_order)


class Registry:
    """The cuts the app serves: a registry folder, or one file (``SMC_DB``) served as a registry of one."""

    def __init__(self, cuts: list[Cut], folder: Path | None):
        self.cuts, self.folder = cuts, folder

    @classmethod
    def of_folder(cls, folder: str | Path) -> Registry:
        return cls(list_cuts(folder), Path(folder))

    @classmethod
    def of_file(cls, db_path: str | Path) -> Registry:
        return cls([_single_file_cut(Path(db_path).resolve(), _identity(Path(db_path)))], None)

    @property
    def latest(self) -> Cut | None:
        return self.cuts[-1] if self.cuts else None

    def find(self, wanted: str | None) -> Cut | None:
        """The cut a link or a command names: its short id, its full SHA-256, its label or its file name."""
        if not wanted:
            return None
        for cut in self.cuts:
            if wanted in (cut.short_id, cut.sha256, cut.label, Path(cut.path).name):
                return cut
        return None

    def by_sha(self, sha256: str) -> Cut | None:
        return next((c for c in self.cuts if c.sha256 == sha256), None)

    def before(self, cut: Cut) -> list[Cut]:
        """The cuts listed before ``cut``, oldest first."""
        return [c for c in self.cuts if _order(c) < _order(cut)]

    def earlier_with(self, cut: Cut, study_id: str) -> list[Cut]:
        """The cuts before ``cut`` that hold the study, oldest first."""
        return [c for c in self.before(cut) if study_id in c.studies]

    def previous(self, cut: Cut, study_id: str) -> Cut | None:
        """The cut before ``cut`` that holds the study, or None."""
        earlier = self.earlier_with(cut, study_id)
        return earlier[-1] if earlier else None
