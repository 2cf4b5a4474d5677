"""Safety charts: the AE heatmap (terms under their SOC × dose levels)."""
from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from smc.charts.style import GRADE_COLORS, base_layout, plain

EMPTY_CELL = "#f0f0f0"
COUNT_SCALE = [[0.0, "#fee0d2"], [1.0, "#a50f15"]]


def _grade_scale() -> list:
    """A stepped colour scale so worst grade g (1-5) gets exactly GRADE_COLORS[g]."""
    scale = []
    for g, colour in GRADE_COLORS.items():
        scale += [[(g - 1) / 5, colour], [g / 5, colour]]
    return scale


def _wrap(text: str, width: int = 32) -> str:
    """``text`` as plain text in lines of up to ``width`` characters (wrapped before it is escaped)."""
    return "<br>".join(plain(line) for line in textwrap.wrap(text, width)) or plain(text)


def ae_heatmap(cells: pd.DataFrame, rows: list[tuple[str, str]], columns: list[tuple[int, str, int]],
               title: str, color_by: str = "count") -> go.Figure:
    """Subjects with the event per term (grouped under SOC) and dose level.

    ``cells``: soc, term, level, n_subjects, n_dosed, percent, worst_grade (non-empty cells only);
    ``rows``: (soc, term) top to bottom; ``columns``: (level, label, N) in dose order;
    ``color_by``: "count" or "grade" (worst CTCAE grade).
    """
    fig = go.Figure()
    x = [f"{plain(label)}<br>N={n}" for _, label, n in columns]
    if not rows or not columns:
        fig.add_annotation(text="No subject had an event of this kind by this date.", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return base_layout(fig, title, height=260)

    # Top to bottom on screen means bottom to top in plotly's y order.
    ordered = list(reversed(rows))
    y = [[_wrap(soc) for soc, _ in ordered], [plain(term) for _, term in ordered]]
    row_index = {key: i for i, key in enumerate(ordered)}
    col_index = {level: j for j, (level, _, _) in enumerate(columns)}
    shape = (len(ordered), len(columns))
    n, grade, percent = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for cell in cells.itertuples():
        i, j = row_index.get((cell.soc, cell.term)), col_index.get(cell.level)
        if i is not None and j is not None:
            n[i, j], grade[i, j], percent[i, j] = cell.n_subjects, cell.worst_grade, cell.percent
    hover = np.empty(shape, dtype=object)
    for i, (soc, term) in enumerate(ordered):
        soc, term = plain(soc), plain(term)
        for j, (_, label, total) in enumerate(columns):
            label = plain(label)
            hover[i, j] = (f"<b>{term}</b> ({soc})<br>{label}: {int(n[i, j])}/{total} subjects "
                           f"({percent[i, j]:.0f}%)<br>worst grade {int(grade[i, j])}"
                           if not np.isnan(n[i, j]) else f"<b>{term}</b><br>{label}: 0/{total} subjects")
    text = np.where(np.isnan(n), "", np.nan_to_num(n).astype(int).astype(str))

    # A pale layer under every cell keeps empty cells visible as empty (not as zero-coloured).
    fig.add_trace(go.Heatmap(x=x, y=y, z=np.zeros(shape), colorscale=[[0, EMPTY_CELL], [1, EMPTY_CELL]],
                             showscale=False, xgap=2, ygap=2, customdata=hover,
                             hovertemplate="%{customdata}<extra></extra>"))
    if color_by == "grade":
        colour = dict(z=grade - 0.5, colorscale=_grade_scale(), zmin=0, zmax=5,  # grade g fills step g
                      colorbar=dict(title="Worst<br>grade", tickvals=[0.5, 1.5, 2.5, 3.5, 4.5],
                                    ticktext=["1", "2", "3", "4", "5"]))
    else:
        top = max(1, int(np.nanmax(n)))
        colour = dict(z=n, colorscale=COUNT_SCALE, zmin=0.5, zmax=top + 0.5,
                      colorbar=dict(title="Subjects", tickvals=list(range(1, top + 1)), dtick=1))
    fig.add_trace(go.Heatmap(x=x, y=y, text=text, texttemplate="%{text}", customdata=hover, xgap=2, ygap=2,
                             hovertemplate="%{customdata}<extra></extra>", hoverongaps=False, **colour))
    base_layout(fig, title, height=max(280, 170 + 34 * len(ordered)))
    fig.update_xaxes(side="top", title_text="Dose level (N = dosed subjects)", showgrid=False, type="category")
    fig.update_yaxes(showgrid=False, title_text=None)
    fig.update_layout(margin=dict(t=120), plot_bgcolor="white", showlegend=False)
    return fig
