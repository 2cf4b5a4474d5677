"""Data as text: ui.text.md for Markdown and charts.style.plain / plain_each for plotly strings, with many
variants of each kind of payload, and the chart builders fed hostile text. (Rendering in Streamlit and Chromium:
tests/browser/test_hostile_text.py.)"""
from __future__ import annotations

import datetime as dt
import html
import json
import re

import numpy as np
import pandas as pd
import pytest
from markdown_it import MarkdownIt  # an independent CommonMark parser (installed with rich, a Streamlit dependency)

from smc.charts.explore import quick_chart
from smc.charts.overview import subjects_per_level
from smc.charts.safety import ae_heatmap
from smc.charts.style import plain, plain_each
from smc.ui.text import WORD_JOINER, md

HOST = "127.0.0.1:9"
PAYLOADS = [
    "<script>alert(1)</script>", f"<img src=http://{HOST}/x onerror=alert(1)>",
    '<iframe srcdoc="<script>alert(2)</script>"></iframe>', "<a href=javascript:alert(3)>x</a>",
    f"<a href='http://{HOST}/' popup='\");alert(4);(\"'>p</a>", f"[x](http://{HOST}/md)", f"![x](http://{HOST}/img)",
    "[x](javascript:alert(5))", f"<http://{HOST}/angle>", ":red[x]", ":blue-background[x]", ":material/warning:",
    ":material_star:", ":streamlit:", ":smile:", "$x^2$", "$$x$$", "**b**", "__b__", "*i*", "_i_", "`c`", "```c```",
    "~~s~~", "~s~", "# h", "## h", "- l", "+ l", "* l", "1. l", "7) l", "> q", "---", "===", "***", "| a | b |",
    "a\nb", "a\r\n# b", "x\\", "\\*", "&lt;b&gt;", "&amp;", "&#60;i&#62;", "&copy;", f"http://{HOST}/bare",
    "https://example.org", "www.example.org", "WWW.EXAMPLE.ORG", "x@example.org", "mailto:x@example.org",
    "a -> b", "a <- b", "a <-> b", "a -- b", "a >= b", "a <= b", "a ~= b", "[ref]: http://x", "[^1]", "{#id .c}",
    "%{x}", "%{customdata[0]:.2f}", "<b>b</b><br>", "<span style='color:red'>r</span>", "<svg onload=alert(6)>",
    "'\"><script>alert(7)</script>", "<!-- c -->", "<?php ?>", "<![CDATA[x]]>", "__init__", "a__b__c", "_x_y",
    "x_y_", "é_é_", "1_000_", "snake_case _em_", "**_x_**",
]
ORDINARY = ["IX001-004", "IDOV-SAFE", "3×10^8 PFU (cohort 2)", "2025-03-14", "Cytokine release syndrome",
            "Immune system disorders", "10^9/L", "CA19-9", "PD-1+TIM-3+ CD8+ T cells", "reason: text", "1.5 mg",
            "Recovered/resolved", "CN-SH-02", "O'Brien \"Bob\"", "100%", "x = 1", "#5 of 9",
            "-3 days", "+2", "2024", "1.0", "decisions_no_update", "peak_alt_xuln", "a_b_c", "é_ü"]
COMMONMARK = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def rendered(source: str) -> str:
    return COMMONMARK.render(source)


# ---------------------------------------------------------------------------------------------------- md()


@pytest.mark.parametrize("value", PAYLOADS)
def test_md_parses_to_the_value_as_text_and_nothing_else(value):
    """CommonMark (with GFM tables and strikethrough) reads md(value) as one paragraph holding the value."""
    literal = " ".join(value.splitlines()).strip()
    escaped = html.escape(literal, quote=False).replace('"', "&quot;")  # as markdown-it writes text
    assert rendered(md(value)).replace(WORD_JOINER, "") == f"<p>{escaped}</p>\n"


@pytest.mark.parametrize("value", PAYLOADS)
@pytest.mark.parametrize("where", ["{}", "text {}", "{} text", "**{}**", "## {}", "- {}", "x\n\n{}", "a · {} · b"])
def test_md_stays_text_wherever_it_is_put(value, where):
    """Put at the start of a line, after text, inside strong text, a heading or a list item: no tag but the
    ones the surrounding text makes."""
    around = set(re.findall(r"<(\w+)", rendered(where.format("x"))))
    assert set(re.findall(r"<(\w+)", rendered(where.format(md(value))))) == around


@pytest.mark.parametrize("value, breaks", [
    (f"http://{HOST}/x", "http://"), ("https://example.org", "https://"), ("mailto:x@y.org", "mailto:x"),
    ("www.example.org", "www."), ("WWW.example.org", "WWW."), ("x@example.org", "@example"),
    (":material/warning:", ":material/"), (":material_star:", ":material_"), (":streamlit:", ":streamlit"),
    (":smile:", ":smile"), (":red[x]", ":red"), ("a -> b", "->"), ("a <- b", "<-"), ("a -- b", "--"),
    ("a >= b", ">="), ("a <= b", "<="), ("a ~= b", "~=")])
def test_md_breaks_what_streamlit_finds_after_parsing(value, breaks):
    """Bare URLs, e-mail addresses, icons, the logo, emoji, directives and arrows are found by Streamlit in the
    parsed text, where a backslash is gone: a word joiner splits them (its output, escapes resolved)."""
    parsed = re.sub(r"</?p>\n?", "", rendered(md(value)))
    assert breaks not in html.unescape(parsed)
    assert html.unescape(parsed).replace(WORD_JOINER, "") == value


@pytest.mark.parametrize("value", ORDINARY)
def test_md_leaves_ordinary_values_as_they_are(value):
    assert md(value) == value


def test_md_of_none_numbers_dates_and_exceptions():
    assert md(None) == "—"
    assert md(3) == "3" and md(2.5) == "2.5"
    assert md(dt.date(2025, 3, 14)) == "2025-03-14"
    assert "\\<b\\>" in md(ValueError("bad <b>value</b>"))
    assert "\n" not in md("a\nb\r\nc\u2028d")


# ------------------------------------------------------------------------------------------ plain, plain_each


@pytest.mark.parametrize("value", PAYLOADS + ORDINARY)
def test_plain_leaves_no_markup_and_unescapes_to_the_value(value):
    """No tag can open, no template variable is left, every & starts an entity plotly decodes, and
    html.unescape (what a clicked point's id goes through) gives the value back."""
    text = plain(value)
    assert "<" not in text and ">" not in text and "%{" not in text
    assert re.fullmatch(r"([^&]|&(amp|lt|gt|#37);)*", text, flags=re.S)
    assert html.unescape(text) == value


@pytest.mark.parametrize("value", ORDINARY)
def test_plain_leaves_ordinary_values_as_they_are(value):
    assert plain(value) == value


def test_plain_each_escapes_text_cells_only_and_copies_only_when_it_must():
    ordinary = pd.DataFrame({"id": ["IX001-001", "IX001-002"], "n": [1, 2]})
    ids = ordinary["id"]
    assert plain_each(ordinary) is ordinary and plain_each(ids) is ids
    frame = pd.DataFrame({"id": ["<b>x</b>", None, "ok"], "n": [1.5, np.nan, 3],
                          "day": pd.to_datetime(["2025-01-01", None, "2025-01-03"]),
                          "mixed": ["%{x}", 4, dt.date(2025, 1, 1)]})
    escaped = plain_each(frame)
    assert escaped["id"].tolist() == ["&lt;b&gt;x&lt;/b&gt;", None, "ok"]
    assert escaped["mixed"].tolist() == ["&#37;{x}", 4, dt.date(2025, 1, 1)]
    pd.testing.assert_series_equal(escaped["n"], frame["n"])
    pd.testing.assert_series_equal(escaped["day"], frame["day"])
    assert frame["id"].tolist() == ["<b>x</b>", None, "ok"]  # the caller's frame as it was


def test_plain_each_takes_every_container_the_builders_pass():
    repeated = pd.DataFrame([["<a>", "<b>"]], columns=["x", "x"])  # a query result may repeat a name
    assert plain_each(repeated).values.tolist() == [["&lt;a&gt;", "&lt;b&gt;"]]
    categories = plain_each(pd.Series(["<i>", "j", "<i>"], dtype="category"))
    assert categories.tolist() == ["&lt;i&gt;", "j", "&lt;i&gt;"] and categories.dtype == "category"
    assert plain_each(pd.Series(["<s>"], dtype="string")).tolist() == ["&lt;s&gt;"]
    assert plain_each(np.array([["<a>", 1], ["b", "&"]], dtype=object)).tolist() == [["&lt;a&gt;", 1], ["b", "&amp;"]]
    assert plain_each(np.array(["<u>", "v"])).tolist() == ["&lt;u&gt;", "v"]
    assert plain_each(np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert plain_each({1: "<x>", 2: "y"}) == {1: "&lt;x&gt;", 2: "y"}
    assert plain_each(("<x>", None, 3)) == ["&lt;x&gt;", None, 3]


# ---------------------------------------------------------------------------------- builders fed hostile text

OWN_TAG = re.compile(r"</?(b|br|extra)>|<span style='color:[^'<>]+'>|</span>")


def figure_strings(fig) -> list[str]:
    def walk(value):
        if isinstance(value, dict):
            return [s for key, v in value.items() if key != "legendgroup" for s in walk(v)]
        if isinstance(value, list):
            return [s for v in value for s in walk(v)]
        return [value] if isinstance(value, str) else []
    return walk(json.loads(fig.to_json()))


def assert_only_own_markup(fig):
    foreign = [s for s in figure_strings(fig) if "<" in OWN_TAG.sub("", s) or ">" in OWN_TAG.sub("", s)]
    assert foreign == []


def test_overview_bars_show_hostile_dose_labels_as_text():
    labels = PAYLOADS[:4]
    per_level = pd.DataFrame({"level": [1, 2, 3, 4], "label": labels, "escalation": [3, 3, 3, 1],
                              "expansion": [0, 2, 0, 0], "n_dlt": [0, 1, 2, 0]})
    fig = subjects_per_level(per_level)
    assert_only_own_markup(fig)
    assert [html.unescape(x) for x in fig.data[0].x] == labels  # plotly decodes the entities: it reads as given
    assert list(fig.layout.xaxis.categoryarray) == list(fig.data[0].x)


def test_heatmap_wraps_hostile_socs_before_escaping_them():
    soc = "<img src=x onerror=alert(1)> " * 3
    rows = [(soc, PAYLOADS[5]), (PAYLOADS[8], "%{customdata}")]
    cells = pd.DataFrame({"soc": [soc], "term": [PAYLOADS[5]], "level": [1], "n_subjects": [1], "n_dosed": [3],
                          "percent": [33.3], "worst_grade": [3]})
    fig = ae_heatmap(cells, rows, [(1, "<b>L1</b>", 3)], "<i>title</i>")
    assert_only_own_markup(fig)
    assert fig.layout.title.text == "&lt;i&gt;title&lt;/i&gt;"
    wrapped = fig.data[0].y[0][-1]  # the first row is drawn on top, last in plotly's order
    assert html.unescape(wrapped.replace("<br>", " ")) == soc.strip()
    assert "%{" not in "".join(fig.data[1].customdata.ravel())


def test_quick_chart_escapes_column_names_and_values_of_any_result():
    frame = pd.DataFrame({"<b>term</b>": PAYLOADS[:6], "n": range(6), "%{x}": PAYLOADS[6:12]})
    for kind, y, colour in (("bar", None, "%{x}"), ("scatter", "n", "<b>term</b>"), ("line", "n", None)):
        fig = quick_chart(frame, kind, "<b>term</b>", y, colour, "<script>t</script>")
        assert_only_own_markup(fig)
        strings = figure_strings(fig)
        assert not any("%{x}=" in s for s in strings)  # the column "%{x}" named in a hover label, unescaped
        assert colour is None or any("&#37;{x}" in s or "&lt;b&gt;term" in s for s in strings)
        assert fig.layout.xaxis.title.text == "&lt;b&gt;term&lt;/b&gt;"
