"""Adding a data cut to a registry folder (:mod:`smc.store.cuts`): written beside the others, never over one.

The new cut is built as a private file in the folder by the same validator and loader as any import, then
hashed, made read-only, moved to its final name and registered by writing its manifest last (atomically): a
reader sees the cut whole or not at all, and a failed import leaves every registered cut as it was.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from smc.ingest.problems import refused
from smc.store import cuts

T = TypeVar("T")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def add_cut(folder: str | Path, write: Callable[[Path], T], label: str | None = None) -> tuple[cuts.Cut, T]:
    """Run ``write(path)`` (an import into a new file at ``path``), then register that file as a new cut of the
    registry at ``folder``; return the cut and what ``write`` returned. ImportFailed: nothing was registered."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refused(f"cannot create the data cut folder {folder}: {exc.strerror or exc}") from exc
    work = Path(tempfile.mkdtemp(prefix=".new-cut.", dir=folder))
    try:
        built = work / "cut.duckdb"
        result = write(built)
        sha = cuts.file_sha256(built)
        known = next((c for c in cuts.list_cuts(folder) if c.sha256 == sha), None)
        if known is not None:
            raise refused(f"this data cut is already registered as {Path(known.path).name} ({known.label})")
        described = cuts.describe(built, sha, label)
        stem = _UNSAFE.sub("-", f"{described.cut_date or 'undated'}_{described.label}")[:80].strip("-")
        final = folder / f"{stem}_{sha[:8]}.duckdb"
        if final.exists() or cuts.manifest_path(final).exists():
            raise refused(f"{final} exists already; a data cut is never replaced")
        os.chmod(built, 0o444)
        os.replace(built, final)
        cut = cuts.Cut(**{**described.as_json(), "path": str(final.resolve())})
        manifest = work / "manifest.json"
        manifest.write_text(json.dumps({**cut.as_json(), "path": final.name}, indent=2) + "\n")
        os.replace(manifest, cuts.manifest_path(final))  # the cut exists from this moment
        return cut, result
    finally:
        shutil.rmtree(work, ignore_errors=True)
