"""The Import page's work: uploaded SDTM files and a mapping -> a new database file."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from smc.ingest import limits
from smc.ingest.load import ERROR, WARNING, ImportFailed, Problem
from smc.ingest.sdtm import import_datasets
from smc.ingest.sdtm.mapping import decode_mapping
from smc.ingest.sdtm.read import SUFFIXES, WHOLE_SET, read_sdtm_dir
from smc.ingest.target import Target

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def import_target(directory: Path, name: str, served: Path, replace: bool = False) -> tuple[Path | None, str | None]:
    """``directory/<name>.duckdb``, or a message saying why the name cannot be used: not a plain file name, the
    served database, or a database that exists when ``replace`` is not asked for."""
    name = name.strip().removesuffix(".duckdb")
    if not NAME.fullmatch(name):
        return None, (f'"{name}" is not a usable file name: use letters, digits, "-", "_" or "." '
                      "(up to 64, starting with a letter or digit)")
    target = directory / f"{name}.duckdb"
    if target.resolve() == served.resolve():
        return None, f"{target} is the database this dashboard serves; choose another name"
    if target.exists() and not replace:
        return None, (f"{target.name} already exists in {directory}; choose another name, or tick "
                      f'"Replace the existing {target.name}"')
    return target, None


def import_uploads(files: list[tuple[str, bytes]], mapping_text: str | None, target: Path,
                   replace: bool = False,
                   mapping_file: tuple[str, bytes] | None = None) -> tuple[list[Problem], dict[str, int]]:
    """Import uploaded datasets as ``import --sdtm`` would, under the target's lock: the uploads are written to a
    private folder beside the target (removed on every way out; the next import sweeps it if the server is
    killed). ``mapping_file`` (name, bytes), when given, replaces ``mapping_text``. An existing target is kept
    unless ``replace``."""
    with Target(target, replace=replace) as lock:
        sizes = [(Path(name).name, len(content)) for name, content in files]
        sizes += [(mapping_file[0], len(mapping_file[1]))] if mapping_file else []
        problems = [Problem(ERROR, name, None, None, None, message, record="")
                    for name, size in sizes if (message := limits.too_large_upload(size))]
        too_big = limits.too_many_bytes(sizes, "the uploaded files")
        if too_big:
            problems.append(Problem(ERROR, WHOLE_SET, None, None, None, too_big, record=""))
        if mapping_file is not None:
            mapping_text, trouble = decode_mapping(mapping_file[1], mapping_file[0])
            problems += trouble
        if problems:
            raise ImportFailed(problems)
        with lock.work_folder() as folder:
            skipped, written = [], set()
            for name, content in files:
                safe = Path(name).name  # never a path from the browser
                if Path(safe).suffix.lower() not in SUFFIXES or safe.startswith("."):
                    skipped.append(safe)
                elif safe.lower() in written:
                    problems.append(Problem(ERROR, safe, None, None, None, "was uploaded more than once (or with "
                                            "a name differing only in case); give each file once", record=""))
                else:
                    written.add(safe.lower())
                    try:
                        (folder / safe).write_bytes(content)
                    except (OSError, ValueError) as exc:  # a name too long, or with a NUL in it
                        problems.append(Problem(ERROR, safe, None, None, None, "could not be saved for reading: "
                                                f"{getattr(exc, 'strerror', None) or exc}", record=""))
            if problems:
                raise ImportFailed(problems)
            datasets, problems = read_sdtm_dir(folder)
            for name in skipped:
                problems.append(Problem(WARNING, name, None, None, None,
                                        "is not an .xpt or .csv dataset and was ignored", record=""))
            return import_datasets(datasets, mapping_text, target, f"upload:{target.name}", problems, lock)


def problems_table(problems: list[Problem]) -> pd.DataFrame:
    """One row per problem, in the words of the CLI; errors first, each group in reading order."""
    frame = pd.DataFrame({
        "severity": [p.severity for p in problems],
        "domain": [p.table or "" for p in problems],
        "record": [p.record if p.record is not None else (f"row {p.row}" if p.row else "") for p in problems],
        "variable": [p.column or "" for p in problems],
        "value": [p.value or "" for p in problems],
        "message": [p.message for p in problems],
    })
    return frame.sort_values("severity", key=lambda s: s != "error", kind="stable", ignore_index=True)
