"""The Import page's work: uploaded SDTM files and a mapping -> a new database file."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

from smc.ingest.load import Problem
from smc.ingest.sdtm import import_datasets
from smc.ingest.sdtm.read import SUFFIXES, read_sdtm_dir

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def import_target(directory: Path, name: str, served: Path) -> tuple[Path | None, str | None]:
    """``directory/<name>.duckdb``, or a message saying why the name cannot be used."""
    name = name.strip().removesuffix(".duckdb")
    if not NAME.fullmatch(name):
        return None, (f'"{name}" is not a usable file name: use letters, digits, "-", "_" or "." '
                      "(up to 64, starting with a letter or digit)")
    target = directory / f"{name}.duckdb"
    if target.resolve() == served.resolve():
        return None, f"{target} is the database this dashboard serves; choose another name"
    return target, None


def import_uploads(files: list[tuple[str, bytes]], mapping_text: str | None,
                   target: Path) -> tuple[list[Problem], dict[str, int]]:
    """Write the uploads to a private folder, then import them as ``import --sdtm`` would."""
    with tempfile.TemporaryDirectory(prefix="smc-sdtm-") as folder:
        skipped = []
        for name, content in files:
            safe = Path(name).name  # never a path from the browser
            if Path(safe).suffix.lower() not in SUFFIXES:
                skipped.append(safe)
                continue
            (Path(folder) / safe).write_bytes(content)
        datasets, problems = read_sdtm_dir(folder)
        for name in skipped:
            problems.append(Problem("warning", name, None, None, None,
                                    "is not an .xpt or .csv dataset and was ignored", record=""))
        return import_datasets(datasets, mapping_text, target, f"upload:{target.name}", problems)


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

