"""Quick charts over an Explore result: the investigator picks x, y, colour and kind."""
from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from smc import settings
from smc.charts.style import base_layout, plain, plain_each, side_legend

CHART_KINDS = {"bar": "Bar", "line": "Line", "scatter": "Scatter", "box": "Box"}


def quick_chart(frame: pd.DataFrame, kind: str, x: str, y: str | None, color: str | None, title: str) -> go.Figure:
    """One Plotly Express chart of ``frame``; ``y`` None counts rows per x (bar only)."""
    if color and frame[color].nunique() > settings.QUICK_CHART_MAX_COLOURS:
        color = None
    data = frame.assign(**{color: frame[color].astype(str)}) if color else frame
    # Plotly Express writes column names into its hover templates and legend title, and values into categories
    # and legend names: both come from whatever the query returned.
    names = {column: plain(column) for column in data.columns}
    data = plain_each(data).set_axis([names[c] for c in data.columns], axis=1)
    x, y, color = names[x], names.get(y), names.get(color)
    if y is None:
        data = data.groupby([x, color] if color else [x], dropna=False).size().reset_index(name="rows")
        y = "rows"
        kind = "bar"
    draw = {"bar": px.bar, "line": px.line, "scatter": px.scatter, "box": px.box}[kind]
    options = dict(markers=True) if kind == "line" else {}
    if kind == "bar":
        options = dict(barmode="group")
    fig = draw(data.sort_values(x) if kind == "line" else data, x=x, y=y, color=color, **options)
    base_layout(fig, title)
    if color:
        side_legend(fig, 160, color)
    fig.update_xaxes(title_text=x)
    fig.update_yaxes(title_text=y)
    return fig
