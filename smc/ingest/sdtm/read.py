"""Read SDTM datasets (SAS transport ``.xpt`` or CSV with SDTM names) as text.

A file's domain is its ``DOMAIN`` value (``RDOMAIN`` for a SUPP-- dataset, as
``SUPPAE``), else its file name, so ``rs_onco_recist.csv`` is read as RS.
Several files of one domain are stacked. Every value becomes text: numbers
without a spurious ``.0``, missing values empty.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyreadstat

from smc.ingest import limits
from smc.ingest.load import ERROR, WARNING, Problem, numbers_as_text, read_csv_text

SUFFIXES = (".xpt", ".csv")
WHOLE_SET = "SDTM"  # the "domain" of a problem with the set of files as a whole (not a folder, too large)


@dataclass
class Dataset:
    domain: str
    frame: pd.DataFrame  # text, SDTM variable names upper-case, plus _file
    files: tuple[str, ...]


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame.columns = [str(c).strip().upper() for c in frame.columns]
    for col in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[col]):
            frame[col] = numbers_as_text(frame[col])
        else:
            frame[col] = frame[col].fillna("").astype(str).str.strip()
    return frame


def _duplicated_names(frame: pd.DataFrame) -> list[str]:
    counts = Counter(str(c).strip().upper() for c in frame.columns)  # linear: a file may have many columns
    return sorted(name for name, n in counts.items() if n > 1)


def read_file(path: Path) -> pd.DataFrame:
    """One dataset as text. pyreadstat reads XPT (pandas' read_sas misreads some zeros). A file past a limit
    (columns, rows: ``settings.IMPORT_MAX_…``) raises ValueError before it is parsed."""
    if path.suffix.lower() == ".xpt":
        too_wide = limits.xpt_shape(path)
        if too_wide:
            raise ValueError(too_wide)
        frame, _ = pyreadstat.read_xport(str(path), row_limit=limits.xpt_row_limit())
        too_long = limits.too_many_rows(len(frame))
        if too_long:
            raise ValueError(too_long)
    else:
        frame = read_csv_text(path)
    repeated = _duplicated_names(frame)
    if repeated:
        raise ValueError(f"has the variable(s) {', '.join(repeated)} more than once")
    frame = _as_text(frame)
    if path.suffix.lower() == ".xpt":
        return frame
    # A spreadsheet may write a whole number as "3.0"; SUPP-- links and visit keys need "3".
    for col in [c for c in frame.columns if c.endswith("SEQ") or c in ("IDVARVAL", "VISITNUM")]:
        frame[col] = frame[col].str.replace(r"^(\d+)\.0*$", r"\1", regex=True)
    return frame


def _domain_of(frame: pd.DataFrame, path: Path) -> tuple[str | None, str | None]:
    """(domain, problem text) from DOMAIN/RDOMAIN values, else the file name."""
    stem = path.stem.upper()
    if "RDOMAIN" in frame.columns and stem.startswith("SUPP"):
        values = set(frame["RDOMAIN"]) - {""}
        prefix = "SUPP"
        column = "RDOMAIN"
    elif "DOMAIN" in frame.columns:
        values = set(frame["DOMAIN"]) - {""}
        prefix = ""
        column = "DOMAIN"
    else:
        return stem.split("_")[0], None
    if len(values) > 1:
        return None, f"holds several domains in {column} ({', '.join(sorted(values))}); give one per file"
    return (prefix + values.pop()) if values else stem.split("_")[0], None


def read_sdtm_dir(directory: str | Path) -> tuple[dict[str, Dataset], list[Problem]]:
    """Every ``.xpt`` and ``.csv`` in the directory (not its subdirectories), by domain."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}, [Problem(ERROR, WHOLE_SET, None, None, None, f"{directory} is not a directory", record="")]
    problems: list[Problem] = []
    parts: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    paths = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    too_big = limits.too_many_bytes([(p.name, p.stat().st_size) for p in paths], "the SDTM datasets")
    if too_big:
        return {}, [Problem(ERROR, WHOLE_SET, None, None, None, too_big, record="")]
    for path in paths:
        try:
            frame = read_file(path)
        except UnicodeDecodeError as exc:
            problems.append(Problem(ERROR, path.name, None, None, None, f"is not UTF-8 text (byte {exc.start})",
                                    record=""))
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            problems.append(Problem(ERROR, path.name, None, None, None, f"is not a readable CSV file: {exc}",
                                    record=""))
            continue
        except ValueError as exc:  # our own: past a limit, a variable twice
            problems.append(Problem(ERROR, path.name, None, None, None, str(exc), record=""))
            continue
        except MemoryError:
            problems.append(Problem(ERROR, path.name, None, None, None,
                                    "is too large to read in the memory there is", record=""))
            continue
        except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
            kind = "SAS transport (.xpt)" if path.suffix.lower() == ".xpt" else "CSV"
            problems.append(Problem(ERROR, path.name, None, None, None,
                                    f"is not a readable {kind} file: {exc}", record=""))
            continue
        domain, trouble = _domain_of(frame, path)
        if trouble:
            problems.append(Problem(ERROR, path.name, None, None, None, trouble, record=""))
            continue
        frame["_FILE"] = path.name
        parts.setdefault(domain, []).append((path.name, frame))
    datasets = {}
    for domain, files in parts.items():
        names = tuple(name for name, _ in files)
        if len(files) > 1:
            problems.append(Problem(WARNING, domain, None, None, None,
                                    f"was read from {len(files)} files ({', '.join(names)}) and stacked",
                                    record=""))
        frame = pd.concat([f for _, f in files], ignore_index=True).fillna("")
        datasets[domain] = Dataset(domain, frame, names)
    return datasets, problems
