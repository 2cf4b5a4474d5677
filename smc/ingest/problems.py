"""What an import reports: a problem names the file (or SDTM domain and record), the column and the value, and
says what is wrong; ``ImportFailed`` carries every problem of a refused import. Nothing else escapes an import."""
from __future__ import annotations

from dataclasses import dataclass

ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    severity: str
    table: str | None
    row: int | None  # spreadsheet row: the header is row 1, the first data row is row 2
    column: str | None
    value: str | None
    message: str
    # An SDTM record ("USUBJID 01-701-1015 AESEQ 3") in place of a CSV row; table is then the domain.
    record: str | None = None

    def __str__(self) -> str:
        if self.record is not None:
            where = f"{self.table} {self.record}".strip()
        else:
            where = f"{self.table}.csv" if self.table else ""
            if self.row is not None:
                where += f" row {self.row}"
        subject = ""
        if self.column is not None:
            subject = self.column if self.value is None else f'{self.column} "{self.value}"'
        text = f"{subject} {self.message}".strip()
        return f"{where}: {text}" if where else text


class ImportFailed(Exception):
    """Validation or writing failed; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        errors = [p for p in problems if p.severity == ERROR]
        super().__init__(f"{len(errors)} error(s); first: {errors[0] if errors else '?'}")


def refused(message: str, where: str | None = None) -> ImportFailed:
    """An import refused for one reason about a file (``where``: its name, or None for the whole import)."""
    return ImportFailed([Problem(ERROR, where, None, None, None, message, record="" if where else None)])
