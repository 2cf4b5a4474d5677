"""Safety-lab charts: eDISH (liver signal) and lab values through the DLT window."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from smc.analysis.labs import HY_LAW_ALT_XULN, HY_LAW_BILI_XULN, course_as_quartiles, course_days, course_quartiles
from smc.charts.style import (
    DLT_WINDOW_FILL,
    NUMERIC_TICK,
    add_overlays,
    base_layout,
    fixed_margins,
    hline,
    hline_label,
    label_margin,
    level_colors,
    lines_by_level,
    plain,
    plain_each,
    points_trace,
    quartile_traces,
    unchecked_figure,
    vline,
    vrect,
)
from smc.rules import ctcae

QUADRANT_LABELS = (  # (horizontal side, vertical side, label) of each eDISH quadrant
    ("right", "top", "Possible Hy's law"), ("left", "top", "Hyperbilirubinemia"),
    ("right", "bottom", "Temple's corollary"), ("left", "bottom", "Normal range"))

EDISH_TICKS = [0.01, 0.03, 0.1, 0.3, 1, 2, 3, 5, 10, 20, 50, 100]


def edish(peaks: pd.DataFrame, transaminase: str, levels: dict[int, str], title: str) -> go.Figure:
    """Peak ALT (or AST) ×ULN against peak total bilirubin ×ULN per subject, log axes, one colour per level.

    ``peaks``: liver_peaks() rows; ``transaminase``: "ALT" or "AST"; ``levels``: level -> label (dose order).
    Each point's customdata[0] is its subject id (a click opens the profile).
    """
    x_column = f"peak_{transaminase.lower()}_xuln"
    colours = level_colors(list(levels))
    fig = go.Figure()
    for level, label in plain_each(levels).items():
        mine = peaks[peaks["level"] == level]
        if mine.empty:
            continue
        fig.add_trace(points_trace(len(mine),
            x=mine[x_column], y=mine["peak_bili_xuln"], mode="markers", name=label,
            marker=dict(size=11, color=colours[level], line=dict(width=1, color="white")),
            customdata=np.stack([plain_each(mine["subject_id"]), plain_each(mine["hys_law_quadrant"]),
                                 plain_each(mine["phase"])], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label} · %{{customdata[2]}}<br>peak {plain(transaminase)} "
                           "%{x:.2f}×ULN<br>peak bilirubin %{y:.2f}×ULN<br>%{customdata[1]}<extra></extra>")))
    values = pd.concat([peaks[x_column], peaks["peak_bili_xuln"]]).dropna()
    high = max(10.0, float(values.max()) * 1.5) if len(values) else 10.0
    low = min(0.1, float(values[values > 0].min()) / 1.5) if (values > 0).any() else 0.1
    limit = dict(dash="dash", color="#636363", width=1)
    add_overlays(fig, [vline(HY_LAW_ALT_XULN, line=limit), hline(HY_LAW_BILI_XULN, line=limit)], [
        *(dict(x=np.log10(high) if side == "right" else np.log10(low),
               y=np.log10(high) if height == "top" else np.log10(low), text=text, showarrow=False,
               xanchor=side, yanchor=height, font=dict(size=12, color="#636363"))
          for side, height, text in QUADRANT_LABELS),
        dict(x=np.log10(HY_LAW_ALT_XULN), y=np.log10(high), text="3×ULN", showarrow=False,
             xanchor="left", yanchor="top", yshift=-18, font=dict(size=10, color="#636363")),
        dict(x=np.log10(high), y=np.log10(HY_LAW_BILI_XULN), text="2×ULN", showarrow=False,
             xanchor="right", yanchor="bottom", xshift=-4, font=dict(size=10, color="#636363"))])
    base_layout(fig, title, height=520)
    fig.update_layout(margin=dict(t=90))
    ticks = dict(type="log", range=[np.log10(low), np.log10(high)], tickvals=EDISH_TICKS,
                 ticktext=[f"{t:g}" for t in EDISH_TICKS])
    fig.update_xaxes(title_text=f"Peak {plain(transaminase)} (×ULN)", **ticks)
    fig.update_yaxes(title_text="Peak total bilirubin (×ULN)", **ticks)
    fig.update_layout(legend_title_text="Dose level ")
    return fixed_margins(fig, left=label_margin([NUMERIC_TICK], axis_title=True), bottom=60)


def lab_course(results: pd.DataFrame, nadirs: pd.DataFrame, test: str, levels: dict[int, str],
               dlt_window_days: int, agent: str, title: str) -> go.Figure:
    """``test`` over days from the agent's first dose, coloured by level, with the DLT window shaded and the
    lower normal limit and CTCAE grade cut-offs drawn. Up to MAX_SUBJECT_LINES subjects: one line
    each, with each nadir inside the drawn days marked. More: each level's median and interquartile band
    per day (course_quartiles), as thousands of lines would be one solid band."""
    first_day, last_day = course_days(dlt_window_days)
    series = results[(results["test"] == test) & results["value"].notna()
                     & results["agent_day"].between(first_day, last_day)]
    unit = series["unit"].dropna().iloc[0] if series["unit"].notna().any() else ""
    if course_as_quartiles(results, test):  # the page titles the chart from the same frame
        fig = go.Figure(quartile_traces(course_quartiles(series, test), "agent_day", levels, "day %{x}", unit,
                                        "results"))
    else:
        fig = unchecked_figure(_subject_traces(series, levels))
        shown = nadirs[nadirs["nadir_day"].between(first_day, last_day)]
        if not shown.empty:
            fig.add_trace(go.Scatter(
                x=shown["nadir_day"], y=shown["nadir_value"], mode="markers", name="Nadir",
                marker=dict(symbol="triangle-down", size=11, color="#1a1a1a"),
                customdata=np.stack([plain_each(shown["subject_id"]), plain_each(shown["recovery"])], axis=1),
                hovertemplate="<b>%{customdata[0]}</b> nadir %{y:.2f} on day %{x}<br>recovery to grade ≤1: "
                              "%{customdata[1]}<extra></extra>"))
    shapes = [vrect(0, dlt_window_days, fillcolor=DLT_WINDOW_FILL, line=dict(width=0))]
    labels = [dict(text=f"DLT window ({dlt_window_days} d)", showarrow=False, x=0, xanchor="left", xref="x", y=1,
                   yanchor="top", yref="y domain")]
    rule = ctcae.GRADINGS.get(test)
    lln = series["ref_low"].median()
    if pd.notna(lln):
        shapes.append(hline(lln, line=dict(color="#1a9850", dash="dot", width=1)))
        labels.append(hline_label("LLN", lln))
    if rule is not None and rule.direction == "low":
        for grade, cut in enumerate(rule.cuts, start=2):
            shapes.append(hline(cut, line=dict(color="#a50026", dash="dash", width=1)))
            labels.append(hline_label(f"G{grade} &lt; {cut:g}", cut))
    add_overlays(fig, shapes, labels)
    base_layout(fig, title, height=460)
    fig.update_layout(margin=dict(t=90))
    fig.update_xaxes(title_text=f"Days from first dose of {plain(agent)}")
    fig.update_yaxes(title_text=plain(f"{test} ({unit})" if unit else test), rangemode="tozero")
    fig.update_layout(legend_title_text="Dose level ")
    return fixed_margins(fig, left=label_margin([NUMERIC_TICK], axis_title=True), bottom=60)


def _subject_traces(series: pd.DataFrame, levels: dict[int, str]) -> list[dict]:
    colours = level_colors(list(levels))
    traces = []
    for level, lines in lines_by_level(series[["level", "subject_id", "agent_day", "value", "grade", "unit"]]):
        label = plain(levels.get(level, level))
        traces.append(points_trace(len(lines),
            x=lines["agent_day"], y=lines["value"], mode="lines+markers", name=label, legendgroup=str(level),
            line=dict(color=colours.get(level, "#636363"), width=1.5), marker=dict(size=5), connectgaps=False,
            customdata=np.stack([plain_each(lines["subject_id"]),
                                 lines["grade"].astype(object).where(lines["grade"].notna(), "—")], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>day %{{x}}: %{{y:.2f}} "
                           f"{plain(lines['unit'].iloc[0] or '')}<br>grade %{{customdata[1]}}<extra></extra>")))
    return traces
