"""What every domain's mapping shares: the problems found so far, a readable
name for each SDTM record, variable access, and dates with their warnings."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from smc.ingest.load import ERROR, WARNING, Problem
from smc.ingest.sdtm import dates
from smc.ingest.sdtm.mapping import Mapping
from smc.ingest.sdtm.read import Dataset

ORIGIN = "_origin"  # (domain, record) of each contract row, for messages after validation
NOT_A_DATE = "is not an ISO 8601 date (YYYY-MM-DD, YYYY-MM-DDThh:mm, or partial YYYY-MM or YYYY)"


@dataclass
class SdtmImport:
    mapping: Mapping
    datasets: dict[str, Dataset]
    problems: list[Problem] = field(default_factory=list)
    subjects: pd.DataFrame | None = None  # USUBJID -> status, level, phase; set once DM is read
    ds_dated: pd.Series | None = None  # USUBJID -> latest DS date other than death
    consent: pd.Series | None = None  # USUBJID -> screening (consent) date (text), from DM
    first_dose: pd.Series | None = None  # USUBJID -> first dose date of the agent (text), from EX

    # ------------------------------------------------------------------ problems

    def error(self, domain, record, variable, value, message) -> None:
        self.problems.append(Problem(ERROR, domain, None, variable, value, message, record=record or ""))

    def warn(self, domain, record, variable, value, message) -> None:
        self.problems.append(Problem(WARNING, domain, None, variable, value, message, record=record or ""))

    def rows(self, severity, domain: str, frame: pd.DataFrame, mask, variable: str | None, message) -> None:
        """One problem per row of ``frame`` where ``mask`` holds; ``message`` may be a function of the row."""
        mask = np.asarray(mask, dtype=bool)
        for idx in frame.index[mask]:
            row = frame.loc[idx]
            value = row[variable] if variable in frame.columns else None
            text = message(row) if callable(message) else message
            self.problems.append(Problem(severity, domain, None, variable, value, text, record=row[RECORD]))

    # ------------------------------------------------------------------ datasets

    def dataset(self, domain: str) -> pd.DataFrame | None:
        found = self.datasets.get(domain)
        return None if found is None else found.frame


RECORD = "_RECORD"


def column(frame: pd.DataFrame, name: str) -> pd.Series:
    """A variable's text, or empty text when the dataset lacks the variable (it is optional)."""
    return frame[name] if name in frame.columns else pd.Series("", index=frame.index, dtype=object)


def first_present(frame: pd.DataFrame, *names: str) -> pd.Series:
    """Per row, the first of the variables that holds a value (AEDECOD, else AETERM)."""
    out = pd.Series("", index=frame.index, dtype=object)
    for name in reversed(names):
        values = column(frame, name)
        out = values.where(values != "", out)
    return out


def label_records(domain: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Name each record as a person finds it: USUBJID and the domain's sequence number."""
    frame = frame.copy()
    seq = f"{domain[-2:] if domain.startswith('SUPP') else domain}SEQ"
    subject = "USUBJID " + column(frame, "USUBJID")
    if seq in frame.columns and not domain.startswith("SUPP"):
        frame[RECORD] = subject + " " + seq + " " + frame[seq]
    else:  # no sequence: the file and its data row (header = row 1)
        row = pd.Series(frame.groupby("_FILE").cumcount() + 2, index=frame.index).astype(str)
        frame[RECORD] = subject + " (" + frame["_FILE"] + " row " + row + ")"
    return frame


def parse_dates(ctx: SdtmImport, domain: str, frame: pd.DataFrame, variable: str, end: bool = False,
                required: bool = False) -> dates.Parsed:
    """Parse one --DTC variable: an error per unparsable value (and per missing one when required),
    a warning per imputed partial date."""
    parsed = dates.parse(column(frame, variable), end=end)
    ctx.rows(ERROR, domain, frame, parsed.kind == dates.BAD, variable, NOT_A_DATE)
    if required:
        ctx.rows(ERROR, domain, frame, parsed.kind == dates.EMPTY, variable, "is empty (a date is required)")
    where = "last" if end else "first"
    imputed = parsed.date_text
    ctx.rows(WARNING, domain, frame, parsed.kind == dates.PARTIAL, variable,
             lambda r: f"is a partial date; imputed to {imputed[r.name]}, the {where} day of the period")
    return parsed


def number_text(values: pd.Series) -> pd.Series:
    """Numbers as contract text (15 significant digits, so float sums do not show their last bit)."""
    return values.map(lambda v: "" if pd.isna(v) else f"{v:.15g}")


def subject_rows(ctx: SdtmImport, domain: str, frame: pd.DataFrame) -> pd.DataFrame:
    """The records of imported subjects: an error for each record of a subject DM lacks,
    and excluded arms dropped silently (DM's warning names them)."""
    status = frame["USUBJID"].map(ctx.subjects["status"])
    ctx.rows(ERROR, domain, frame, status.isna(), "USUBJID", "is not a subject in DM")
    return frame[status.notna() & (status != "excluded")]


def origins(domain: str, frame: pd.DataFrame) -> pd.Series:
    return pd.Series(list(zip([domain] * len(frame), frame[RECORD])), index=frame.index, dtype=object)
