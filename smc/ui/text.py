"""Data shown as text, never as markup.

Streamlit renders Markdown in ``st.markdown``, captions, titles, alerts, metric labels and values, tab and
expander labels, the options of ``st.pills`` and ``st.segmented_control``, button and link labels and help
tooltips: a dose-level label ``![x](http://host/x)`` would load an image, ``[x](javascript:...)`` or a bare
``http://host`` would become a link, ``:red[...]``, ``:material/...:`` and ``$...$`` would be interpreted. Every
value that comes from the data (labels, terms, ids, reasons, free text, exception messages, the URL) goes through
:func:`md` before it is put into Markdown; the page's own words do not. (Selectbox and multiselect options are
drawn as plain text.)

Two kinds of syntax need two kinds of escape (measured on Streamlit 1.67 in Chromium):

- what the Markdown parser reads (emphasis, links, images, code, HTML, entities, math, tables, strikethrough,
  headings and lists at the start of a line) is backslash-escaped;
- what Streamlit and GFM find in the text *after* parsing, where a backslash has already gone (bare URLs
  ``http://…`` and ``www.…``, e-mail addresses, ``:material/…:`` icons, ``:streamlit:``, emoji ``:shortcode:``,
  arrows and dashes made of ``->``, ``--``, ``>=``), is broken by an invisible U+2060 WORD JOINER after a ``:``
  or ``@`` followed by more text, before the ``.`` of ``www.`` and between the two characters of those pairs.

Ordinary values (``IX001-004``, ``3×10^8 PFU (cohort 2)``, dates) come out unchanged, so a page's text equals
its data wherever nothing needed escaping.
"""
from __future__ import annotations

import re

WORD_JOINER = "\u2060"  # invisible, no line break: splits a pattern the renderer looks for in parsed text

# Characters with a meaning anywhere in a line: \ escape, ` code, * _ emphasis, [ ] links, images and
# directive labels, < > HTML, autolinks and blockquotes, & entities, $ math, ~ strikethrough, | tables. An _
# between two letters or digits cannot emphasise (CommonMark), so snake_case names stay as they are.
_ANYWHERE = re.compile(r"([\\`*\[\]<>&$~|]|_(?![^\W_])|(?<![^\W_])_)")
# Where a word joiner goes: after a ':' or '@' that something follows at once (http:, :material/…:, :red[,
# :smile:, an e-mail address; "reason: text" needs none), before the '.' of 'www.', and inside <- -- -> <= >= ~=
# (Streamlit turns them into arrows, a dash and signs).
_JOIN = re.compile(r"(?<=[:@])(?=\S)|(?i:(?<=www)(?=\.))|(?<=[<-])(?=-)|(?<=-)(?=>)|(?<=[<>~])(?==)")
# What only means something at the start of a line: a heading (# to ######, then a space), a list item (- or +
# then a space; 1. or 1) then a space), a setext underline or thematic break (a line of = or -). A value may be
# put at the start of a line, so its own start is escaped; "#5", "1.5 mg" and "-3" are left alone.
_LINE_START = re.compile(r"^(\s*)(?:(#{1,6}|[+-])(?=\s|$)|([=-])(?=[\s=\u2060-]*$)|(\d{1,9})([.)])(?=\s|$))")


def md(value: object) -> str:
    """``value`` as literal text inside Markdown (see the module docstring); line breaks become spaces (a value
    must not start a heading or a list on a line of its own), None becomes an em dash."""
    if value is None:
        return "—"
    text = " ".join(str(value).splitlines())
    text = _ANYWHERE.sub(r"\\\1", _JOIN.sub(WORD_JOINER, text))
    return _LINE_START.sub(_escape_line_start, text, count=1)


def _escape_line_start(match: re.Match) -> str:
    space, marker, rule, digits, delimiter = match.groups()
    if marker or rule:
        return f"{space}\\{marker or rule}"
    return f"{space}{digits}\\{delimiter}"
