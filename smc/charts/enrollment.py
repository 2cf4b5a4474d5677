"""Enrollment charts: cumulative screened and enrolled against the plan with the projection, subjects per
site, and subjects per status."""
from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from smc.analysis.enrollment import Projection
from smc.charts.style import add_overlays, base_layout, hline, hline_label, plain_each, side_legend

COUNT_COLORS = {"screened": "#969696", "screen_failures": "#d7191c", "enrolled": "#2b83ba", "dosed": "#1a9850"}
COUNT_NAMES = {"screened": "Screened", "screen_failures": "Screen failures", "enrolled": "Enrolled",
               "dosed": "Dosed"}
PLAN_COLOR = "#5e3c99"


def cumulative_enrollment(cumulative: pd.DataFrame, plan: pd.DataFrame | None, planned: int | None,
                          projected: Projection | None, title: str) -> go.Figure:
    """Running totals as steps; the plan as a dashed line (or the planned level); the projected date of
    reaching the plan with its 95% range."""
    fig = go.Figure()
    for column in ("screened", "enrolled"):
        fig.add_trace(go.Scatter(
            x=cumulative["date"], y=cumulative[column], mode="lines", name=COUNT_NAMES[column],
            line=dict(color=COUNT_COLORS[column], width=2.5, shape="hv"),
            hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y}} {column}<extra></extra>"))
    if plan is not None:
        fig.add_trace(go.Scatter(x=plan["date"], y=plan["planned"], mode="lines", name="Plan",
                                 line=dict(color=PLAN_COLOR, dash="dash"),
                                 hovertemplate="Plan: %{y} by %{x|%Y-%m-%d}<extra></extra>"))
    elif planned:
        add_overlays(fig, [hline(planned, line=dict(color=PLAN_COLOR, dash="dash"))],
                     [hline_label(f"Planned: {planned}", planned, left=True)])
    if projected and projected.projected:
        start = cumulative["date"].iloc[-1]
        fig.add_trace(go.Scatter(x=[start, pd.Timestamp(projected.projected)],
                                 y=[projected.enrolled, projected.planned], mode="lines",
                                 line=dict(color=COUNT_COLORS["enrolled"], dash="dot"), name="Projection",
                                 hoverinfo="skip"))
        centre = pd.Timestamp(projected.projected)
        latest = f"{projected.latest:%Y-%m-%d}" if projected.latest else "open"
        hover = (f"Projected {projected.projected:%Y-%m-%d} (95%: {projected.earliest:%Y-%m-%d} to {latest})<br>"
                 f"at {projected.rate_per_day * 30.4375:.1f} subjects/month, {projected.recent_enrolled} enrolled "
                 f"in the last {projected.window_days} days<extra></extra>")
        # The 95% range as a bar along the plan's level; an open end runs off the right edge.
        far = pd.Timestamp(projected.latest) if projected.latest else centre + (centre - start) * 3
        fig.add_trace(go.Scatter(x=[pd.Timestamp(projected.earliest), far], y=[projected.planned] * 2,
                                 mode="lines", name="95% range", line=dict(color=COUNT_COLORS["enrolled"], width=8),
                                 opacity=0.3, hovertemplate=hover))
        fig.add_trace(go.Scatter(
            x=[centre], y=[projected.planned], mode="markers", name="Plan reached (projected)",
            marker=dict(symbol="diamond", size=12, color=COUNT_COLORS["enrolled"]), hovertemplate=hover))
        # Show the projection, but not a range years away at the expense of the enrollment so far.
        ends = [centre, pd.Timestamp(projected.earliest)] + ([pd.Timestamp(plan["date"].iloc[-1])]
                                                             if plan is not None else [])
        right = max(ends) + (max(ends) - cumulative["date"].iloc[0]) * 0.08
        fig.update_xaxes(range=[cumulative["date"].iloc[0] - (right - cumulative["date"].iloc[0]) * 0.02, right])
    base_layout(fig, title, height=440)
    side_legend(fig, 190)
    fig.update_xaxes(title_text="Date")
    fig.update_yaxes(title_text="Subjects (cumulative)", rangemode="tozero")
    return fig


def site_counts(sites: pd.DataFrame, title: str) -> go.Figure:
    """Grouped horizontal bars per site: screened, screen failures, enrolled, dosed."""
    fig = go.Figure()
    for column, name in COUNT_NAMES.items():
        fig.add_trace(go.Bar(y=plain_each(sites["site_name"]), x=sites[column], name=name, orientation="h",
                             marker_color=COUNT_COLORS[column],
                             hovertemplate=f"%{{y}}: %{{x}} {name.lower()}<extra></extra>"))
    base_layout(fig, title, height=max(260, 90 + 70 * len(sites)))
    side_legend(fig, 160)
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="Subjects")
    fig.update_yaxes(autorange="reversed")
    return fig


def status_counts(statuses: pd.DataFrame, title: str) -> go.Figure:
    """Subjects per status now, one bar each in the order screening → death."""
    fig = go.Figure(go.Bar(y=plain_each(statuses["status"]), x=statuses["n"], orientation="h", marker_color="#2b83ba",
                           text=statuses["n"], textposition="outside", customdata=plain_each(statuses["reasons"]),
                           hovertemplate="%{y}: %{x} subject(s)<br>%{customdata}<extra></extra>"))
    base_layout(fig, title, height=320)
    fig.update_xaxes(title_text="Subjects")
    fig.update_yaxes(autorange="reversed")
    return fig
