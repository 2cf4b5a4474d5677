"""Colours and layout shared by every chart, so a dose level or a CTCAE grade
looks the same on every page; and :func:`plain`, which every text from the data goes through on its way into a
figure."""
from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.colors import hex_to_rgb, sample_colorscale, unlabel_rgb

from smc import settings

# CTCAE grade 1..5: green, amber, orange, dark red, black.
GRADE_COLORS = {1: "#4daf4a", 2: "#e6ab02", 3: "#f46d43", 4: "#a50026", 5: "#1a1a1a"}
DLT_COLOR = "#d7191c"
CHANGED_COLOR = "#e7298a"  # new or changed since the compared data cut: a colour no grade or level uses
DLT_WINDOW_FILL = "rgba(215,25,28,0.07)"  # the DLT window shaded behind a subject's course
RESPONSE_COLORS = {"CR": "#1a9850", "PR": "#66bd63", "SD": "#4575b4", "PD": "#7b3294", "NE": "#999999"}
STATE_COLORS = {"dlt": DLT_COLOR, "evaluable": "#1a9850", "pending": "#fdae61",
                "nonevaluable": "#969696", "expansion": "#6baed6"}
ACTION_COLORS = {"enroll": "#2b83ba", "wait": "#fdae61", "escalate": "#1a9850", "de-escalate": "#d7191c",
                 "declare_mtd": "#5e3c99", "max_dose_cleared": "#008837", "stop": "#1a1a1a",
                 # SMC decision words that are not rule actions
                 "stay": "#80cdc1", "other": "#bdbdbd"}
PHASE_COLORS = {"escalation": "#3b528b", "expansion": "#8fd3e8"}


def level_colors(levels: list[int]) -> dict[int, str]:
    """One colour per dose level, ordered dark (lowest dose) to light (highest), never pale yellow."""
    ordered = sorted(levels)
    if len(ordered) == 1:
        return {ordered[0]: sample_colorscale("Viridis", [0.3])[0]}
    points = [0.85 * i / (len(ordered) - 1) for i in range(len(ordered))]
    return dict(zip(ordered, sample_colorscale("Viridis", points)))


def translucent(color: str, alpha: float) -> str:
    """``color`` (hex or rgb()) with opacity ``alpha``, for bands drawn behind a line of that colour."""
    red, green, blue = hex_to_rgb(color) if color.startswith("#") else unlabel_rgb(color)
    return f"rgba({red:.0f},{green:.0f},{blue:.0f},{alpha})"


# plotly.js reads every string of a figure (titles, axis titles, tick labels, category values, legend names,
# annotations, hover templates and the values they show, text on marks) as a subset of HTML: <a href> becomes an
# SVG link (its popup attribute is pasted into an onclick handler), <span style>, <b>, <br> are drawn, entities
# are decoded; hover and text templates also expand %{...}. A text from the data is therefore escaped before it
# enters a figure: & < > as entities and the % of %{ as &#37;, which plotly decodes back, so the text reads as it
# was. Quotes stay (plotly draws &quot; literally and, without a tag, a quote means nothing). The escaped text
# differs from the raw one only where it held one of these, and html.unescape gives the raw text back (a
# clicked point's subject id, customdata[0]).
_MARKUP = re.compile(r"[&<>]|%\{")


def plain(text: object) -> str:
    """``text`` (any value, as ``str()`` shows it) as literal text in any plotly string."""
    text = str(text)
    if not _MARKUP.search(text):
        return text
    return html.escape(text, quote=False).replace("%{", "&#37;{")


def plain_each(values):
    """Every text in ``values`` as :func:`plain`: the cells of a Series or of a DataFrame's text columns, the
    items of a list or tuple (as a list), the values of a dict, the cells of a NumPy array; numbers, dates and
    missing values untouched. ``values`` itself comes back when no text needed escaping (a figure from ordinary
    data is then exactly what it was, and a 2,000-subject frame is not copied)."""
    if isinstance(values, pd.DataFrame):  # by position: a query result may repeat a column name
        columns = [values.iloc[:, i] for i in range(values.shape[1])]
        changed = {i: escaped for i, column in enumerate(columns)
                   if (escaped := plain_each(column)) is not column}
        if not changed:
            return values
        values = values.copy(deep=False)  # copy-on-write: the caller's frame stays as it was
        for i, escaped in changed.items():
            values.isetitem(i, escaped)
        return values
    if isinstance(values, pd.Series):
        return _plain_series(values) if _holds_text(values) else values
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "OU":
            return values
        flat = pd.Series(values.ravel().astype(object))
        escaped = _plain_series(flat)
        return values if escaped is flat else escaped.to_numpy(object).reshape(values.shape)
    if isinstance(values, dict):
        return {key: plain(value) if isinstance(value, str) else value for key, value in values.items()}
    return [plain(value) if isinstance(value, str) else value for value in values]


def _holds_text(series: pd.Series) -> bool:
    return series.dtype == object or isinstance(series.dtype, (pd.StringDtype, pd.CategoricalDtype))


def _plain_series(series: pd.Series) -> pd.Series:
    # Each distinct value once: a subject id repeats on every point of its line.
    distinct = series.cat.categories if isinstance(series.dtype, pd.CategoricalDtype) else pd.unique(series)
    changed = {value: plain(value) for value in distinct if isinstance(value, str) and _MARKUP.search(value)}
    if not changed:
        return series
    if isinstance(series.dtype, pd.CategoricalDtype):
        return series.cat.rename_categories(lambda value: changed.get(value, value))
    return series.map(lambda value: changed.get(value, value) if isinstance(value, str) else value)


# Every figure starts from plotly_white. As the default, plotly applies it unvalidated when a figure is made;
# set on each figure instead, validating the template cost 15-25 ms per chart.
pio.templates.default = "plotly_white"


def base_layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    """Title (plain text, escaped here), height, margins, a legend row above the plot."""
    fig.update_layout(
        title=dict(text=plain(title), x=0, xanchor="left"), height=height,
        margin=dict(l=10, r=10, t=60, b=40), legend=dict(orientation="h", yanchor="bottom", y=1.0, x=0),
        hoverlabel=dict(align="left"))
    return fig


# Reference lines and bands as the plain layout dicts that plotly's add_hline, add_vline, add_hrect and
# add_vrect make, set together by add_overlays: each add_* call re-validated the whole layout, 10-20 ms a
# call (a 6-level escalation swimlane made 13 such calls, a subject's lab panels one per test).
def hline(y: float, xref: str = "x", yref: str = "y", **style) -> dict:
    return dict(type="line", x0=0, x1=1, xref=f"{xref} domain", y0=y, y1=y, yref=yref, **style)


def vline(x, xref: str = "x", yref: str = "y", **style) -> dict:
    return dict(type="line", x0=x, x1=x, xref=xref, y0=0, y1=1, yref=f"{yref} domain", **style)


def hrect(y0: float, y1: float, xref: str = "x", yref: str = "y", **style) -> dict:
    return dict(type="rect", x0=0, x1=1, xref=f"{xref} domain", y0=y0, y1=y1, yref=yref, **style)


def vrect(x0, x1, xref: str = "x", yref: str = "y", **style) -> dict:
    return dict(type="rect", x0=x0, x1=x1, xref=xref, y0=0, y1=1, yref=f"{yref} domain", **style)


def hline_label(text: str, y: float, left: bool = False, below: bool = False, **style) -> dict:
    """A label at the right (or left) end of a horizontal line, above (or below) it."""
    return dict(text=text, showarrow=False, x=0 if left else 1, xanchor="left" if left else "right",
                xref="x domain", y=y, yanchor="top" if below else "bottom", yref="y", **style)


def panel_axes(fig: go.Figure, row: int, col: int) -> tuple[str, str]:
    """The x and y axis references ("x2", "y2") of a make_subplots panel, for shapes drawn in it."""
    panel = fig.get_subplot(row, col)
    return panel.xaxis.plotly_name.replace("axis", ""), panel.yaxis.plotly_name.replace("axis", "")


def add_overlays(fig: go.Figure, shapes: list[dict] = (), annotations: list[dict] = ()) -> go.Figure:
    """Append shapes and annotations to the figure's own in one layout update."""
    fig.update_layout(shapes=[*fig.layout.shapes, *shapes], annotations=[*fig.layout.annotations, *annotations])
    return fig


def fixed_margins(fig: go.Figure, left: int, bottom: int) -> go.Figure:
    """Outer margins set rather than computed (see label_margin): plotly's automargin lays a chart out a second
    time to fit its axis labels, 0.05-0.35 s more to draw in Chromium."""
    fig.update_layout(margin=dict(l=left, b=bottom))
    fig.update_xaxes(automargin=False)
    fig.update_yaxes(automargin=False)
    return fig


# A stand-in for plotly's own numeric tick labels, none longer than five characters here ("-0.25", "1000",
# "100%", "10k").
NUMERIC_TICK = "-0000"


def label_margin(labels, font_size: int = 12, axis_title: bool = False) -> int:
    """A left margin, in pixels, wide enough for the longest tick label (and a rotated axis title) without
    plotly's automargin pass. 0.6 em a character is wider than the sans-serif fonts labels are drawn in
    (DejaVu Sans, the widest of them here, takes 0.52 em for a subject id)."""
    longest = max((len(str(label)) for label in labels), default=0)
    return round(longest * font_size * 0.6) + 12 + (30 if axis_title else 0)


def log_ticks(values) -> dict:
    """Axis settings for a log scale: a tick per decade (10^n) when the values span two decades or more,
    else 1-2-5 ticks."""
    positive = [float(v) for v in values if v == v and v > 0]
    wide = len(positive) > 1 and max(positive) / min(positive) >= 100
    return dict(type="log", dtick=1 if wide else "D2", exponentformat="power" if wide else "SI")


def side_legend(fig: go.Figure, right_margin: int, title: str | None = None, **margin) -> go.Figure:
    """A vertical legend right of the plot, for legends too long for a row above it."""
    legend = dict(orientation="v", y=1, x=1.01, yanchor="top")
    if title:
        legend["title_text"] = title
    fig.update_layout(legend=legend, margin=dict(r=right_margin, **margin))
    return fig


def quartile_traces(quartiles: pd.DataFrame, x: str, levels: dict[int, str], x_hover: str, unit: str,
                    counted: str) -> list[go.Scatter]:
    """Per dose level of ``quartiles`` (columns level, ``x``, median, q1, q3, n): the interquartile band (drawn
    first, from the 75th percentile down to the 25th) and the median line over it. Hovering the median gives
    ``x_hover`` (a hover template for the x value), the quartiles and n ``counted`` (e.g. "results")."""
    colours = level_colors(list(levels))
    unit = plain(unit)
    traces = []
    for level, mine in quartiles.groupby("level", sort=True):
        label, colour = plain(levels.get(level, level)), colours.get(level, "#636363")
        band = dict(x=mine[x], mode="lines", line=dict(width=0, color=colour), legendgroup=str(level),
                    showlegend=False, hoverinfo="skip")
        traces += [go.Scatter(y=mine["q3"], name=f"{label} 75th percentile", **band),
                   go.Scatter(y=mine["q1"], name=f"{label} 25th percentile", fill="tonexty",
                              fillcolor=translucent(colour, 0.18), **band),
                   go.Scatter(x=mine[x], y=mine["median"], mode="lines+markers", name=label,
                              legendgroup=str(level), line=dict(color=colour, width=2.5), marker=dict(size=6),
                              customdata=np.stack([mine["q1"], mine["q3"], mine["n"]], axis=1),
                              hovertemplate=(f"<b>{label}</b><br>{x_hover}: median %{{y:.4g}} {unit}<br>"
                                             "25th–75th percentile %{customdata[0]:.4g}–%{customdata[1]:.4g}"
                                             f"<br>%{{customdata[2]}} {counted}<extra></extra>"))]
    return traces


def points_trace(n_points: int, **properties) -> dict:
    """A scatter trace as a plain dict for :func:`unchecked_figure` (or ``fig.add_trace``): "scattergl" (drawn on
    a canvas) past settings.WEBGL_ABOVE_POINTS marks, else "scatter". One eDISH point per subject of a 2,000-subject level
    took Chromium about 0.2 s longer to draw as SVG."""
    return dict(type="scattergl" if n_points > settings.WEBGL_ABOVE_POINTS else "scatter", **properties)


def unchecked_figure(traces: list[dict]) -> go.Figure:
    """A figure of :func:`points_trace` dicts without plotly's per-property validation, which costs about
    0.3 s per 10,000-point trace on every rerun (plotly.py#1812, "use dicts"). A misspelt property is then not
    caught here; the page and browser tests draw every such chart."""
    return go.Figure(data=traces, _validate=False)


def subject_lines(points: pd.DataFrame, subject: str = "subject_id") -> pd.DataFrame:
    """Many subjects' lines as one trace: ``points`` in drawing order (each subject's rows together) with a
    row of missing values after each subject, which plotly draws as a break in the line. One trace per dose
    level instead of one per subject keeps a 2,000-subject chart small and quick to draw."""
    points = points.reset_index(drop=True)
    last = points[subject].ne(points[subject].shift(-1))
    gaps = points.iloc[:0].reindex(points.index[last] + 0.5)  # NaN / NaT / None in each column's own type
    return pd.concat([points, gaps]).sort_index(kind="stable").reset_index(drop=True)


def lines_by_level(points: pd.DataFrame, *order: str):
    """(level, :func:`subject_lines`) per dose level in level order, each subject's points sorted by ``order``
    (else kept in their given order)."""
    ordered = points.sort_values(["level", "subject_id", *order], kind="stable")
    for level, mine in ordered.groupby("level", sort=True):
        yield level, subject_lines(mine)
