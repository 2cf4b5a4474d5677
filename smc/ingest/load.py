"""Validate contract tables and write them as one new DuckDB data cut.

Every source (contract CSVs, the demo simulation, SDTM) arrives here as
a dict of DataFrames of text, passes one validator that reports every problem
at once, and is written into a fresh file that atomically replaces the old
database, under the target's lock (``smc.ingest.target``: one import of a file at a
time). Files are checked against the limits of ``smc.ingest.limits`` before they are
parsed. On any error nothing is written.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from smc import __version__, settings
from smc.ingest import limits
from smc.ingest.problems import ERROR, WARNING, ImportFailed, Problem  # importers and callers take them from here
from smc.ingest.stage_checks import check_stages
from smc.ingest.target import Target
from smc.store import contract


@dataclass
class Validated:
    tables: dict[str, pd.DataFrame]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]


# --------------------------------------------------------------------------- reading


def read_csv_text(path: Path) -> pd.DataFrame:
    """A CSV file as text, its first row the column names (stripped; a column without a name is called
    "column N (no name)"). Raises ValueError, before parsing, for a NUL byte or too many columns, and for more
    rows than ``import_max_rows`` (the parser stops one row past it)."""
    trouble = limits.csv_check(path)
    if trouble:
        raise ValueError(trouble)
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", header=None,
                        nrows=limits.csv_rows_to_read())
    if frame.empty:
        raise pd.errors.EmptyDataError("No columns to parse from file")
    trouble = limits.too_many_rows(len(frame) - 1)
    if trouble:
        raise ValueError(trouble)
    names = [str(c).strip() or f"column {i} (no name)" for i, c in enumerate(frame.iloc[0].fillna(""), start=1)]
    return frame.iloc[1:].set_axis(names, axis=1).reset_index(drop=True)


def read_csv_dir(directory: str | Path) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Read ``<table>.csv`` files as text. Files past a limit (``settings.IMPORT_MAX_…``: checked before anything
    is parsed) and unreadable files become problems."""
    directory = Path(directory)
    raw: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    if not directory.is_dir():
        return raw, [Problem(ERROR, None, None, None, None, f"{directory} is not a directory")]
    paths = {table: directory / f"{table}.csv" for table in contract.TABLES}
    paths = {table: path for table, path in paths.items() if path.is_file()}
    too_big = limits.too_many_bytes([(p.name, p.stat().st_size) for p in paths.values()],
                                    f"the CSV files in {directory}")
    if too_big:
        return raw, [Problem(ERROR, None, None, None, None, too_big)]
    for table, path in paths.items():
        try:
            frame = read_csv_text(path)
            # pandas would call a second "term" "term.1", and the first would win unseen
            repeated = sorted(name for name, n in Counter(frame.columns).items() if n > 1)
            if repeated:
                raise ValueError(f"has the column(s) {', '.join(repeated)} more than once")
            raw[table] = frame
        except UnicodeDecodeError as exc:
            problems.append(Problem(ERROR, table, None, None, None, f"is not UTF-8 text (byte {exc.start})"))
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            problems.append(Problem(ERROR, table, None, None, None,
                                    f"is not a readable CSV file: {exc}".strip()))
        except ValueError as exc:
            problems.append(Problem(ERROR, table, None, None, None, str(exc)))
        except MemoryError:
            problems.append(Problem(ERROR, table, None, None, None, "is too large to read in the memory there is"))
        except OSError as exc:
            problems.append(Problem(ERROR, table, None, None, None, f"could not be read: {exc.strerror or exc}"))
    known = {f"{t}.csv" for t in contract.TABLES}
    for path in sorted(directory.glob("*.csv")):
        if path.name not in known:
            problems.append(Problem(WARNING, None, None, None, None,
                                    f"{path.name} is not a contract table and was ignored"))
    return raw, problems


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Turn a frame of Python values (dates, numbers, None) into contract text, a column at a time
    (a portfolio-scale demo has millions of lab rows)."""
    if not len(frame):
        return frame.astype(str)
    return pd.DataFrame({col: _column_as_text(frame[col]) for col in frame.columns}, index=frame.index)


def numbers_as_text(series: pd.Series) -> pd.Series:
    """Whole numbers without ".0" (a level is "1", not "1.0"); empty text for a missing value."""
    out = pd.Series("", index=series.index, dtype=object)
    known = series.notna()
    whole = known & (series % 1 == 0) & (series.abs() < 2**53)
    out[whole] = series[whole].astype("int64").astype(str)
    out[known & ~whole] = series[known & ~whole].astype(str)
    return out


def _column_as_text(column: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return numbers_as_text(column)
    if pd.api.types.is_datetime64_dtype(column) and (column.dropna().dt.floor("s") == column.dropna()).all():
        text = np.datetime_as_string(column.to_numpy().astype("datetime64[s]"), unit="s")  # as isoformat()
        return pd.Series(text, index=column.index, dtype=object).where(column.notna(), "")
    if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
        return column.astype(object).where(column.notna(), "")
    return column.astype(object).map(_cell_as_text)


def _cell_as_text(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, (dt.date, dt.datetime, pd.Timestamp)):
        return value.isoformat()
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- validating


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, severity, table, row, column, value, message) -> None:
        self.problems.append(Problem(severity, table, row, column, value, message))

    def rows(self, severity, table, frame, mask, column, message, show_value=True) -> None:
        """One problem per row of ``frame`` where ``mask`` holds."""
        for idx in frame.index[np.asarray(mask, dtype=bool)]:
            value = frame.at[idx, column] if show_value and column in frame.columns else None
            text = message(frame.loc[idx]) if callable(message) else message
            self.add(severity, table, int(idx) + 2, column, value, text)


def _stripped(series: pd.Series) -> pd.Series:
    """Text without surrounding blanks; a missing value becomes empty text."""
    return series.fillna("").astype(str).str.strip()


def validate(raw: dict[str, pd.DataFrame], clean: bool = False, unread: frozenset[str] = frozenset()) -> Validated:
    """Check contract tables given as text; return typed tables and every problem.
    ``clean``: the text is already stripped with no missing values (an importer's own output).
    ``unread``: tables whose file is there but was refused (its problem says why), not reported missing."""
    check = _Checker()
    text: dict[str, pd.DataFrame] = {}

    for table in contract.REQUIRED_FILES:
        if table not in raw and table not in unread:
            check.add(ERROR, table, None, None, None, "is missing (a required file)")

    for table in contract.TABLES:
        if table not in raw:
            continue
        frame = raw[table].copy()
        frame.columns = [str(c).strip() for c in frame.columns]
        frame = frame.reset_index(drop=True)
        names = contract.column_names(table)
        missing = [c for c in contract.REQUIRED_COLUMNS[table] if c not in frame.columns]
        for col in missing:
            check.add(ERROR, table, None, col, None, "is a required column and is missing")
        for col in frame.columns:
            if col not in names:
                check.add(WARNING, table, None, col, None, "is not a contract column and was ignored")
        if missing:
            continue
        frame = frame[[c for c in names if c in frame.columns]]
        if not clean:
            frame = frame.apply(_stripped)
        for col in names:
            if col not in frame.columns:
                frame[col] = ""
        text[table] = frame[list(names)]

    typed = {table: _parse_types(check, table, frame) for table, frame in text.items()}
    if "subjects" in typed:
        typed["subjects"]["phase"] = typed["subjects"]["phase"].fillna("escalation")
    _check_keys(check, typed, text)
    _check_references(check, typed, text)
    _check_dates(check, typed, text)
    check_stages(check, typed, text)
    for table in contract.TABLES:
        typed.setdefault(table, _empty(table))
    return Validated(typed, sorted(check.problems, key=_reading_order))


def _reading_order(p: Problem) -> tuple:
    """File by file in load order, then row by row, as a person would fix them."""
    table = contract.TABLES.index(p.table) if p.table in contract.TABLES else -1
    return table, p.row or 0


def _empty(table: str) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in contract.column_names(table)})


def _parse_types(check: _Checker, table: str, frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=frame.index)
    for col in contract.columns()[table]:
        values = frame[col.name]
        empty = values == ""
        if col.name in contract.NOT_EMPTY[table]:
            check.rows(ERROR, table, frame, empty, col.name, "is empty (a value is required)",
                       show_value=False)
        if col.name in contract.FLAG_COLUMNS.get(table, ()):
            parsed = values.str.lower().map(contract.FLAG_WORDS)
            check.rows(ERROR, table, frame, ~empty & parsed.isna(), col.name,
                       "is not a flag (Y/N, yes/no, true/false, 1/0)")
        elif col.sql_type == "DATE":
            parsed = pd.to_datetime(values.where(~empty), format="%Y-%m-%d", errors="coerce")
            check.rows(ERROR, table, frame, ~empty & parsed.isna(), col.name,
                       "is not a date (YYYY-MM-DD)")
        elif col.sql_type == "TIMESTAMP":
            parsed = pd.to_datetime(values.where(~empty), format="ISO8601", errors="coerce")
            check.rows(ERROR, table, frame, ~empty & parsed.isna(), col.name,
                       "is not a date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)")
        elif col.sql_type in ("INTEGER", "DOUBLE"):
            parsed = pd.to_numeric(values.where(~empty), errors="coerce")
            bad = ~empty & (parsed.isna() | ~np.isfinite(parsed.fillna(0)))
            if col.sql_type == "INTEGER":
                check.rows(ERROR, table, frame, bad, col.name, "is not a whole number")
                fraction = ~bad & ~empty & (parsed.fillna(0) % 1 != 0)
                check.rows(ERROR, table, frame, fraction, col.name, "is not a whole number")
                bad = bad | fraction
            else:
                check.rows(ERROR, table, frame, bad, col.name, "is not a number")
            parsed = parsed.where(~bad)
            bounds = contract.BOUNDS.get((table, col.name))
            if bounds:
                outside = pd.Series(False, index=frame.index)
                if bounds.low is not None:
                    outside |= parsed < bounds.low
                if bounds.high is not None:
                    outside |= parsed > bounds.high
                check.rows(ERROR, table, frame, outside, col.name, bounds.what)
            if col.sql_type == "INTEGER":
                parsed = parsed.astype("Int64")
        else:
            parsed = values.where(~empty, None)
            coded = contract.CODED.get((table, col.name))
            if coded:
                check.rows(ERROR, table, frame, ~empty & ~values.isin(coded.words), col.name,
                           f"is not {coded.what} ({', '.join(coded.words)})")
            if (table, col.name) == ("administrations", "admin_time"):
                bad = ~empty & ~values.str.fullmatch(r"([01]\d|2[0-3]):[0-5]\d")
                check.rows(ERROR, table, frame, bad, col.name, "is not a clock time (HH:MM)")
        out[col.name] = parsed
    if table == "studies":
        out["target_dlt_rate"] = out["target_dlt_rate"].fillna(0.30)
        out["min_sd_days"] = out["min_sd_days"].fillna(42)
    if table == "lab_results":
        check.rows(ERROR, table, frame, out["value"].isna() & out["lloq"].isna(), "value",
                   "is empty and no lloq is given (give the limit in lloq for a result below it)",
                   show_value=False)
    return out


def _check_keys(check: _Checker, typed, text) -> None:
    for table, keys in contract.PRIMARY_KEYS.items():
        if table not in typed:
            continue
        frame = typed[table]
        complete = frame[list(keys)].notna().all(axis=1)
        duplicated = complete & frame.duplicated(list(keys), keep="first")
        label = ", ".join(keys)
        check.rows(ERROR, table, text[table], duplicated, keys[-1],
                   f"repeats a key ({label}) given in an earlier row")


def _key_set(frame: pd.DataFrame, cols: list[str]) -> set:
    return set(map(tuple, frame[cols].dropna().astype(str).values.tolist()))


def _check_references(check: _Checker, typed, text) -> None:
    studies = set(typed["studies"]["study_id"].dropna()) if "studies" in typed else set()
    for table, frame in typed.items():
        if table in ("studies", "sites") or "studies" not in typed:
            continue
        unknown = frame["study_id"].notna() & ~frame["study_id"].isin(studies)
        check.rows(ERROR, table, text[table], unknown, "study_id", "is not a study in studies.csv")

    if "subjects" in typed:
        subjects = typed["subjects"]
        if "dose_levels" in typed:
            levels = typed["dose_levels"].astype({"level": "string"})
            known = _key_set(levels, ["study_id", "level"])
            keys = zip(subjects["study_id"].astype(str), subjects["dose_level"].astype("string"))
            unknown = subjects["dose_level"].notna() & pd.Series(
                [k not in known for k in keys], index=subjects.index)
            check.rows(ERROR, "subjects", text["subjects"], unknown, "dose_level",
                       lambda r: f"is not a dose level of {r['study_id']} in dose_levels.csv")
        enrolled = subjects["enrollment_date"].notna()
        check.rows(ERROR, "subjects", text["subjects"], enrolled & subjects["dose_level"].isna(),
                   "dose_level", "is empty for an enrolled subject", show_value=False)
        if "sites" in typed:
            sites = set(typed["sites"]["site_id"].dropna())
            unknown = subjects["site_id"].notna() & ~subjects["site_id"].isin(sites)
            check.rows(ERROR, "subjects", text["subjects"], unknown, "site_id",
                       "is not a site in sites.csv")
        known_subjects = _key_set(subjects, ["study_id", "subject_id"])
        for table in ("subject_stages", "administrations", "adverse_events", "tumor_assessments", "lab_results"):
            if table not in typed:
                continue
            frame = typed[table]
            keys = zip(frame["study_id"].astype(str), frame["subject_id"].astype(str))
            unknown = frame["subject_id"].notna() & pd.Series(
                [k not in known_subjects for k in keys], index=frame.index)
            check.rows(ERROR, table, text[table], unknown, "subject_id",
                       lambda r: f"is not a subject of {r['study_id']} in subjects.csv")


# Within-row order: (table, earlier column, later column).
_ROW_ORDER = (
    ("subjects", "screening_date", "enrollment_date"),
    ("subjects", "enrollment_date", "off_treatment_date"),
    ("subjects", "enrollment_date", "off_study_date"),
    ("subjects", "screening_date", "death_date"),
    ("subjects", "screening_date", "last_contact_date"),
    ("administrations", "admin_date", "end_date"),
    ("adverse_events", "onset_date", "end_date"),
)

# Events that need a subject's date column to lie before (or after) them:
# (table, event column, subject column, relation, message).
_SUBJECT_ORDER = (
    ("adverse_events", "onset_date", "screening_date", "before",
     "is before the subject's informed consent (screening_date {ref})"),
    ("administrations", "admin_date", "enrollment_date", "before",
     "is before the subject's enrollment_date {ref}"),
    ("administrations", "admin_date", "death_date", "after", "is after the subject's death_date {ref}"),
    ("adverse_events", "onset_date", "death_date", "after", "is after the subject's death_date {ref}"),
    ("tumor_assessments", "assessment_date", "death_date", "after",
     "is after the subject's death_date {ref}"),
)


def _check_dates(check: _Checker, typed, text) -> None:
    for table, earlier, later in _ROW_ORDER:
        if table not in typed:
            continue
        frame = typed[table]
        bad = frame[later] < frame[earlier]
        check.rows(ERROR, table, text[table], bad.fillna(False), later,
                   lambda r, e=earlier: f"is before {e} {r[e]}")
    if "subjects" not in typed:
        return
    subjects = typed["subjects"].drop_duplicates(["study_id", "subject_id"])
    for table, column, ref, relation, message in _SUBJECT_ORDER:
        if table not in typed:
            continue
        frame = typed[table].reset_index().merge(
            subjects[["study_id", "subject_id", ref]], on=["study_id", "subject_id"], how="left"
        ).set_index("index")
        bad = frame[column] < frame[ref] if relation == "before" else frame[column] > frame[ref]
        refs = frame[ref].dt.strftime("%Y-%m-%d")
        check.rows(ERROR, table, text[table], bad.fillna(False), column,
                   lambda r, refs=refs, m=message: m.format(ref=refs[r.name]))
    if "administrations" in typed:
        doses = typed["administrations"]
        unenrolled = doses.merge(subjects[["study_id", "subject_id", "enrollment_date"]],
                                 on=["study_id", "subject_id"], how="left")["enrollment_date"].isna()
        known = _key_set(subjects, ["study_id", "subject_id"])
        exists = [k in known for k in zip(doses["study_id"].astype(str), doses["subject_id"].astype(str))]
        check.rows(ERROR, "administrations", text["administrations"],
                   unenrolled.to_numpy() & np.array(exists, dtype=bool), "subject_id",
                   "was dosed but has no enrollment_date (a screen failure cannot be dosed)")


# --------------------------------------------------------------------------- writing


def write_database(tables: dict[str, pd.DataFrame], db_path: str | Path, source: str,
                   n_warnings: int = 0, target: Target | None = None) -> None:
    """Write validated tables to a new file beside ``db_path`` and swap it in, under the target's lock (taken
    here unless the caller holds it: an import holds it from before it reads)."""
    if target is None:
        with Target(db_path) as target:
            return write_database(tables, db_path, source, n_warnings, target)
    with target.work_folder() as work:
        built = work / "cut.duckdb"
        try:
            con = duckdb.connect(str(built))
            try:
                con.execute(settings.SCHEMA_SQL.read_text())
                for table in contract.TABLES:
                    frame = tables.get(table)
                    if frame is None or frame.empty:
                        continue
                    cols = contract.columns()[table]
                    select = ", ".join(f'CAST("{c.name}" AS {c.sql_type}) AS "{c.name}"' for c in cols)
                    con.register("incoming", frame[[c.name for c in cols]])
                    con.execute(f"INSERT INTO {table} SELECT {select} FROM incoming")
                    con.unregister("incoming")
                con.execute("INSERT INTO load_info VALUES (?, ?, ?, ?)", [
                    source, dt.datetime.now(dt.UTC).replace(tzinfo=None), n_warnings, __version__])
                con.execute("CHECKPOINT")
            finally:
                con.close()
        except duckdb.Error as exc:
            raise ImportFailed([Problem(ERROR, None, None, None, None,
                                        f"the database rejected the data: {exc}")]) from exc
        try:
            target.install(built)
        except OSError as exc:
            raise ImportFailed([Problem(ERROR, None, None, None, None,
                                        f"could not write {target.path}: {exc.strerror or exc}")]) from exc
    return None


def import_tables(raw: dict[str, pd.DataFrame], db_path: str | Path, source: str,
                  read_problems: list[Problem] | None = None, target: Target | None = None) -> list[Problem]:
    """Validate and write one data cut; return its warnings or raise ImportFailed."""
    read_problems = read_problems or []
    if any(p.severity == ERROR and p.table is None for p in read_problems):
        raise ImportFailed(read_problems)  # the set as a whole was refused (not a folder, too large): nothing read
    result = validate(raw, unread=frozenset(p.table for p in read_problems if p.severity == ERROR and p.table))
    problems = read_problems + result.problems
    if any(p.severity == ERROR for p in problems):
        raise ImportFailed(problems)
    warnings = [p for p in problems if p.severity == WARNING]
    write_database(result.tables, db_path, source, len(warnings), target)
    return warnings


def import_csv_dir(directory: str | Path, db_path: str | Path) -> list[Problem]:
    """``python -m smc import --csv``: the target is locked before anything is read, so a second import of it is
    refused at once."""
    with Target(db_path) as target:
        raw, problems = read_csv_dir(directory)
        return import_tables(raw, db_path, f"csv:{Path(directory).resolve()}", problems, target)
