"""Kaplan–Meier plot: step curves per group with censor ticks, optional 95% CI bands, and the number at risk
under the plot at the x ticks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smc.analysis.survival import (
    DAYS_PER_MONTH,
    ENDPOINTS,
    GROUPINGS,
    Y_TITLES,
    GroupCurve,
    Survival,
    group_curves,
    time_ticks,
)
from smc.charts.style import (
    NUMERIC_TICK,
    PHASE_COLORS,
    base_layout,
    fixed_margins,
    label_margin,
    level_colors,
    plain,
    plain_each,
    side_legend,
    translucent,
)

POOLED_COLOR = "#404040"


def group_colors(by: str, keys: list, levels: list[int]) -> dict:
    """Dose levels keep their colour from every other page; phases theirs; the pooled curve is dark grey."""
    if by == "level":
        return level_colors(levels)
    if by == "phase":
        return dict(PHASE_COLORS)
    return {key: POOLED_COLOR for key in keys}


def km_plot(curves: list[GroupCurve], colors: dict, unit: str, ticks: list[float], show_ci: bool, title: str,
            y_title: str, named: tuple[str, ...] | None = None) -> go.Figure:
    """``curves`` from ``survival.group_curves`` (times in days), drawn in ``unit`` ("months" or "days").
    The lower panel lists each group's number at risk at ``ticks``. A censor tick's hover names its subject when
    ``named`` (the subjects the viewer may see) holds it or is None (every subject); others say "a subject"."""
    scale = DAYS_PER_MONTH if unit == "months" else 1.0
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.8, 0.2], vertical_spacing=0.1)
    x_unit = "Month" if unit == "months" else "Day"
    for c in curves:
        color, label = colors.get(c.key, POOLED_COLOR), plain(c.label)
        x = c.steps["days"] / scale
        if show_ci:
            fig.add_trace(go.Scatter(x=x, y=c.steps["lower"], mode="lines", line=dict(width=0, shape="hv"),
                                     legendgroup=c.label, showlegend=False, hoverinfo="skip"), row=1, col=1)
            fig.add_trace(go.Scatter(x=x, y=c.steps["upper"], mode="lines", line=dict(width=0, shape="hv"),
                                     fill="tonexty", fillcolor=translucent(color, 0.15), legendgroup=c.label,
                                     showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=x, y=c.steps["survival"], mode="lines", name=label, legendgroup=c.label,
            line=dict(color=color, width=2.5, shape="hv"),
            customdata=np.stack([c.steps["lower"], c.steps["upper"], c.steps["at_risk"], c.steps["events"],
                                 c.steps["censored"]], axis=1),
            hovertemplate=(f"<b>{label}</b><br>{x_unit} %{{x:.1f}}: S = %{{y:.3f}} "
                           "(95% CI %{customdata[0]:.3f}–%{customdata[1]:.3f})<br>"
                           "at risk %{customdata[2]}, events %{customdata[3]}, censored %{customdata[4]}"
                           "<extra></extra>")), row=1, col=1)
        if len(c.censored):
            fig.add_trace(go.Scatter(
                x=c.censored["days"] / scale, y=c.censored["survival"], mode="markers", name=f"{label} censored",
                legendgroup=c.label, showlegend=False,
                marker=dict(symbol="line-ns-open", size=11, color=color, line=dict(width=2, color=color)),
                customdata=np.stack([plain_each(_named(c.censored["subject_id"], named)),
                                     plain_each(c.censored["reason"]), c.censored["days"]], axis=1),
                hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>%{{customdata[1]}} on day "
                               "%{customdata[2]}<extra></extra>")), row=1, col=1)
    labels = [c.label for c in curves]
    for c, label in zip(curves, plain_each(labels)):
        fig.add_trace(go.Scatter(
            x=[t / scale for t in ticks], y=[label] * len(ticks), mode="text", text=[str(n) for n in c.at_risk],
            textfont=dict(color=colors.get(c.key, POOLED_COLOR), size=12), showlegend=False,
            hovertemplate=f"{label}: %{{text}} at risk at {x_unit.lower()} %{{x:.0f}}<extra></extra>"),
            row=2, col=1)
    base_layout(fig, title, height=560)
    side_legend(fig, 170, "Group")
    tick_text = [f"{t / scale:.0f}" for t in ticks]
    end = ticks[-1] / scale
    fig.update_xaxes(tickvals=[t / scale for t in ticks], ticktext=tick_text, range=[-0.03 * end, 1.03 * end],
                     showgrid=True)
    fig.update_xaxes(title_text=f"Time since first dose ({unit})", showgrid=False, row=2, col=1)
    fig.update_yaxes(title_text=plain(y_title), range=[0, 1.03], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(title_text="At risk", categoryorder="array", categoryarray=plain_each(labels[::-1]), showgrid=False,
                     row=2, col=1)
    return fixed_margins(fig, left=label_margin([*labels, NUMERIC_TICK], axis_title=True), bottom=60)


def _named(subject_ids: pd.Series, named: tuple[str, ...] | None) -> pd.Series:
    """The ids the viewer may see; "a subject" for the others (a censor tick is the study's, its id is not)."""
    return subject_ids if named is None else subject_ids.where(subject_ids.isin(named), "a subject")


def endpoint_plot(data: Survival, endpoint: str, by: str, unit: str, show_ci: bool, levels: list[int],
                  named: tuple[str, ...] | None = None) -> go.Figure:
    """The Survival page's Kaplan–Meier figure of one endpoint (needs subjects in the analysis); ``named``: the
    subjects whose ids the censor ticks may show (None: every subject)."""
    ticks = time_ticks(float(data.endpoint(endpoint)["days"].max()), unit)
    curves = group_curves(data, endpoint, by, ticks)
    return km_plot(curves, group_colors(by, [c.key for c in curves], levels), unit, ticks, show_ci,
                   f"{ENDPOINTS[endpoint]} by {GROUPINGS[by].lower()}", Y_TITLES[endpoint], named)
