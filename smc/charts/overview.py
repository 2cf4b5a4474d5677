"""Overview charts."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from smc.charts.style import DLT_COLOR, PHASE_COLORS, base_layout, plain_each


def subjects_per_level(per_level: pd.DataFrame) -> go.Figure:
    """Stacked bars of enrolled subjects per dose level (escalation / expansion), DLTs marked.

    ``per_level``: level, label, escalation, expansion, n_dlt (levels in dose order).
    """
    labels = plain_each(per_level["label"].tolist())
    fig = go.Figure()
    for phase in ("escalation", "expansion"):
        fig.add_bar(
            name=phase.capitalize(), x=labels, y=per_level[phase], marker_color=PHASE_COLORS[phase],
            customdata=per_level[["level"]], text=per_level[phase].where(per_level[phase] > 0, ""),
            textposition="inside", insidetextanchor="start",
            hovertemplate=f"%{{x}} (level %{{customdata[0]}})<br>{phase}: %{{y}} subjects<extra></extra>")
    with_dlt = per_level[per_level["n_dlt"] > 0]
    fig.add_scatter(
        name="DLTs (escalation, in window)", x=plain_each(with_dlt["label"]),
        y=with_dlt["escalation"] + with_dlt["expansion"], mode="markers+text",
        marker=dict(symbol="star", size=16, color=DLT_COLOR, line=dict(width=1, color="black")),
        text=[f"{n} DLT" for n in with_dlt["n_dlt"]], textposition="top center", cliponaxis=False,
        customdata=with_dlt[["n_dlt"]], hovertemplate="%{x}: %{customdata[0]} subject(s) with a DLT<extra></extra>")
    fig.update_layout(barmode="stack")
    fig.update_xaxes(title="Dose level (lowest → highest)", categoryorder="array", categoryarray=labels)
    fig.update_yaxes(title="Subjects enrolled (n)", rangemode="tozero")
    return base_layout(fig, "Subjects per dose level and phase")
