"""SDTM ISO 8601 date-times, complete or partial, as contract dates.

SDTM keeps what was collected: ``2014-03-05T08:30``, ``2014-03`` (day unknown),
``2014`` (month unknown), ``2014---05`` (month unknown, day known). The
contract needs whole dates, so partial ones are imputed: an onset (and any
other start) to the first day of the known period, an end to the last day, so
an event never looks shorter than it may have been. Callers warn for each
imputed value.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

# Year, then month and day when known, then an optional clock time; SDTM writes an
# unknown component as "-" (2014---05), which counts as unknown from there on.
_ISO = (r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
        r"(?:T(?P<hour>\d{2})(?::(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.\d+)?)?)?)?)?)?"
        r"(?:--[-\d:T.]*)?$")

FULL, PARTIAL, BAD, EMPTY = "full", "partial", "bad", "empty"


@dataclass(frozen=True)
class Parsed:
    """Per value: the imputed timestamp (NaT when empty or bad) and what kind of value it was."""

    when: pd.Series  # datetime64
    kind: pd.Series  # FULL, PARTIAL, BAD or EMPTY
    has_time: pd.Series  # bool: a clock time was given

    @property
    def date_text(self) -> pd.Series:
        return self.when.dt.strftime("%Y-%m-%d").fillna("")

    @property
    def timestamp_text(self) -> pd.Series:
        """The date, with its clock time where one was given (for TIMESTAMP columns)."""
        with_time = self.when.dt.strftime("%Y-%m-%dT%H:%M:%S")
        return self.date_text.where(~self.has_time, with_time).fillna("")

    @property
    def clock_text(self) -> pd.Series:
        """``HH:MM`` where a time was given, else empty."""
        return self.when.dt.strftime("%H:%M").where(self.has_time, "").fillna("")


# Complete values in the usual shapes parse without the regular expression (most rows of a large set).
_COMPLETE = {10: "%Y-%m-%d", 16: "%Y-%m-%dT%H:%M", 19: "%Y-%m-%dT%H:%M:%S"}


def parse(values: pd.Series, end: bool = False) -> Parsed:
    """Parse SDTM --DTC text; impute a partial date to the first (or, for an end, last) day."""
    text = values.fillna("").astype(str).str.strip()
    when = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    has_time = pd.Series(False, index=values.index)
    length = text.str.len()
    for size, fmt in _COMPLETE.items():
        shaped = length == size
        if shaped.any():
            when[shaped] = pd.to_datetime(text[shaped], format=fmt, errors="coerce").to_numpy()
            has_time[shaped] = size > 10
    empty = text == ""
    rest = when.isna() & ~empty
    kind = pd.Series(FULL, index=values.index, dtype=object)
    kind[empty] = EMPTY
    if rest.any():
        r_when, r_kind, r_time = _parse_rest(text[rest], end)
        when[rest], kind[rest], has_time[rest] = r_when.to_numpy(), r_kind.to_numpy(), r_time.to_numpy()
    has_time &= kind == FULL
    return Parsed(when=when, kind=kind, has_time=has_time)


def _parse_rest(text: pd.Series, end: bool) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Partial, unusual or bad values, through the full ISO 8601 pattern."""
    parts = text.str.extract(_ISO)
    matched = parts["year"].notna()
    partial = matched & (parts["month"].isna() | parts["day"].isna())
    month = parts["month"].fillna("12" if end else "01")
    day = parts["day"].fillna("01")
    iso = parts["year"] + "-" + month + "-" + day + "T" + parts["hour"].fillna("00") + ":" \
        + parts["minute"].fillna("00") + ":" + parts["second"].fillna("00")
    when = pd.to_datetime(iso.where(matched), format="%Y-%m-%dT%H:%M:%S", errors="coerce")
    if end:  # the last day of the month or year, at the start of that day
        when = when.where(~(matched & parts["day"].isna()), when + pd.offsets.MonthEnd(0))
    bad = when.isna()
    kind = pd.Series(FULL, index=text.index, dtype=object)
    kind[partial] = PARTIAL
    kind[bad] = BAD
    # A time needs its minutes to be kept (2014-03-05T14 keeps only the date).
    return when.where(~bad), kind, (parts["minute"].notna() & ~bad & ~partial).astype(bool)
