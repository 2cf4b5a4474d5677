"""The limits an import checks before it parses anything: bytes of the whole set (from ``stat``) and columns
(from a CSV's first row, scanned as the parser would read it, or a SAS transport file's own header). Rows are
limited as a file is parsed: the parser stops one row past the limit (a row count needs the parser's reading of
quotes). A file past a limit is refused with a message naming the file and the setting.

Settings are read on every call (``settings.IMPORT_MAX_…``), so a test can lower them."""
from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pyreadstat

from smc import settings

MB = 1024 * 1024  # as Streamlit's server.maxUploadSize counts its megabytes
_CHUNK = 1024 * 1024


def _n(value: int) -> str:
    return f"{value:,}"


def too_many_bytes(sizes: Iterable[tuple[str, int]], what: str) -> str | None:
    """A message if the files (name, bytes) together pass ``import_max_mb``; ``what`` names the set."""
    sizes = list(sizes)
    total = sum(size for _, size in sizes)
    if total <= settings.IMPORT_MAX_MB * MB:
        return None
    largest, size = max(sizes, key=lambda item: item[1])
    return (f"{what} come to {total / MB:,.1f} MB, more than the {_n(settings.IMPORT_MAX_MB)} MB one import reads "
            f"(setting import_max_mb); the largest is {largest} ({size / MB:,.1f} MB)")


def too_large_upload(size: int) -> str | None:
    if size <= settings.UPLOAD_MAX_MB * MB:
        return None
    return f"is {size / MB:,.1f} MB, more than the {_n(settings.UPLOAD_MAX_MB)} MB a file may be (setting upload_max_mb)"


def _columns_message(columns: int) -> str:
    return (f"has more than {_n(settings.IMPORT_MAX_COLUMNS)} columns (setting import_max_columns)"
            if columns > settings.IMPORT_MAX_COLUMNS else "")


def _rows_message() -> str:
    return f"has more than {_n(settings.IMPORT_MAX_ROWS)} rows (setting import_max_rows)"


class _Buffer:
    """A file read a chunk at a time; ``more(keep)`` drops the bytes before ``keep`` and reads on."""

    def __init__(self, fh):
        self.fh, self.data = fh, fh.read(_CHUNK)

    def more(self, keep: int) -> int | None:
        """The new index of ``keep`` once more is read (0), or None at the end of the file."""
        chunk = self.fh.read(_CHUNK)
        if not chunk:
            return None
        self.data = self.data[keep:] + chunk
        return 0


_NOT_BLANK = re.compile(rb"[^ \t\r\n]")
_FIELD_END = re.compile(rb"[,\r\n]")


def _first_row_fields(fh, limit: int) -> int:
    """Fields in the first row pandas' C parser reads (blank lines skipped; a field is quoted only when a quote
    opens it, "" is a quote inside one, and a quoted field may hold commas and line breaks), counted up to
    ``limit`` + 1."""
    buf, at = _Buffer(fh), 0
    while len(buf.data) < 3 and buf.more(0) is not None:  # enough to see a byte order mark
        pass
    if buf.data.startswith(b"\xef\xbb\xbf"):
        at = 3
    while True:  # leading blank lines (spaces and tabs only)
        while (first := _NOT_BLANK.search(buf.data, at)) is None:
            keep = max(buf.data.rfind(b"\n"), buf.data.rfind(b"\r"), at)  # from the last line break on
            if (at := buf.more(keep)) is None:
                return 0
        # pandas swallows a comma that follows a blank line ended by a lone CR ("\r,\n" is one more blank line)
        if buf.data[first.start():first.start() + 1] == b"," and buf.data[first.start() - 1:first.start()] == b"\r":
            at = first.start() + 1
            continue
        break
    # The row starts after the last line break before its first character (spaces there belong to its first field)
    at = max(buf.data.rfind(b"\n", at, first.start()), buf.data.rfind(b"\r", at, first.start()), at - 1) + 1
    fields = 0
    while True:
        fields += 1
        if fields > limit:
            return fields
        if at >= len(buf.data) and (at := buf.more(at)) is None:
            return fields
        if buf.data[at:at + 1] == b'"':
            at += 1
            while True:
                quote = buf.data.find(b'"', at)
                if quote < 0 or quote + 1 >= len(buf.data):  # need the byte after a quote to tell "" from the end
                    at = buf.more(len(buf.data) if quote < 0 else quote)
                    if at is None:
                        return fields
                    continue
                if buf.data[quote + 1:quote + 2] == b'"':
                    at = quote + 2
                    continue
                at = quote + 1
                break
        while (end := _FIELD_END.search(buf.data, at)) is None:
            if (at := buf.more(len(buf.data))) is None:
                return fields
        if end.group() != b",":
            return fields
        at = end.end()


def _nul_at(fh) -> int | None:
    offset = 0
    while chunk := fh.read(_CHUNK):
        if (found := chunk.find(b"\0")) >= 0:
            return offset + found
        offset += len(chunk)
    return None


def csv_check(path: Path) -> str | None:
    """What is wrong with a CSV file before it is parsed: a NUL byte (pandas would silently cut the value at
    it), or more columns than ``import_max_columns`` in its first row (the parser takes its number of columns
    from that row and refuses a longer one). Rows are limited as it is parsed (``csv_rows_to_read``)."""
    with open(path, "rb") as fh:
        nul = _nul_at(fh)
        if nul is not None:
            return f"holds a NUL byte (at byte {nul:,}): it is not a CSV text file"
        fh.seek(0)
        return _columns_message(_first_row_fields(fh, settings.IMPORT_MAX_COLUMNS)) or None


def csv_rows_to_read() -> int:
    """Rows to parse of a CSV file, the header included: one past the limit, so a longer file is seen."""
    return settings.IMPORT_MAX_ROWS + 2


def too_many_rows(rows: int) -> str | None:
    """A message if a file read up to its row limit (``csv_rows_to_read``, ``xpt_row_limit``) has too many."""
    return _rows_message() if rows > settings.IMPORT_MAX_ROWS else None


def xpt_shape(path: Path) -> str | None:
    """A message if a SAS transport file has too many variables, read from its header (pyreadstat reads only the
    metadata). Its rows are limited as it is read (``xpt_row_limit``): a transport file does not store their
    number."""
    _, meta = pyreadstat.read_xport(str(path), metadataonly=True)
    return _columns_message(meta.number_columns or 0) or None


def xpt_row_limit() -> int:
    """Rows to read of a transport file: one past the limit, so a longer file is seen and refused."""
    return settings.IMPORT_MAX_ROWS + 1

