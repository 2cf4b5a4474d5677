"""Biomarker charts: per-subject courses with level summaries, T-cell subset fold
changes, exposure against dose (log–log, power model), shedding and immunogenicity."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smc.analysis.biomarkers import PowerFit
from smc.charts.style import (
    add_overlays,
    base_layout,
    hline,
    level_colors,
    lines_by_level,
    log_ticks,
    panel_axes,
    plain,
    plain_each,
    points_trace,
    side_legend,
    unchecked_figure,
)
from smc.settings import too_many_subjects

BELOW_LLOQ_SYMBOL = "circle-open"
NO_CHANGE_LINE = dict(color="#636363", width=1, dash="dot")  # fold change 1


def _time(frame: pd.DataFrame, unit: str) -> pd.Series:
    return frame["hours"] if unit == "hours" else frame["day"]


def biomarker_course(results: pd.DataFrame, summary: pd.DataFrame, levels: dict[int, str], measure: str,
                     unit: str, log_y: bool, y_title: str, agent: str, title: str) -> go.Figure:
    """``measure`` ('plot_value' or 'fold_change') over hours or days from the first dose, coloured by level:
    each level's centre with its spread as thick markers and error bars and, up to MAX_SUBJECT_LINES subjects
    in ``results``, a thin line per subject with below-LLOQ results (drawn at LLOQ/2) as open circles."""
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    series = results[results[measure].notna()]
    traces = []
    for level, lines in ([] if too_many_subjects(results) else lines_by_level(series)):
        label = levels.get(level, str(level))
        below = lines["below_lloq"].astype("boolean").fillna(False).to_numpy(bool)
        traces.append(points_trace(len(lines),
            x=_time(lines, unit), y=lines[measure], mode="lines+markers", name=label, legendgroup=str(level),
            opacity=0.45, line=dict(color=colours.get(level, "#636363"), width=1), connectgaps=False,
            marker=dict(size=6, symbol=np.where(below, BELOW_LLOQ_SYMBOL, "circle")),
            customdata=np.stack([plain_each(lines["subject_id"]), lines["plot_value"],
                                 np.where(below, " (below LLOQ, drawn at LLOQ/2)", ""),
                                 lines["collected_at"].dt.strftime("%Y-%m-%d %H:%M")], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>%{{customdata[3]}} ({unit[:-1]} %{{x:.1f}})"
                           f"<br>%{{customdata[1]:.4g}} {plain(lines['unit'].iloc[0] or '')}%{{customdata[2]}}"
                           + ("<br>%{y:.2f}× baseline" if measure == "fold_change" else "") + "<extra></extra>")))
    fig = unchecked_figure(traces)
    for level, centre in summary.groupby("level", sort=True):
        label = levels.get(level, str(level))
        spread = centre[["low", "high"]].notna().all(axis=1)
        fig.add_trace(go.Scatter(
            x=centre["time"], y=centre["centre"], mode="lines+markers", name=f"{label} summary",
            legendgroup=str(level), line=dict(color=colours.get(level, "#636363"), width=3.5),
            marker=dict(size=9, symbol="diamond"),
            error_y=dict(type="data", symmetric=False, array=(centre["high"] - centre["centre"]).where(spread),
                         arrayminus=(centre["centre"] - centre["low"]).where(spread), thickness=1.5, width=4),
            customdata=np.stack([centre["n"], centre["n_below_lloq"], centre["low"], centre["high"]], axis=1),
            hovertemplate=(f"<b>{label}</b> at {unit[:-1]} %{{x:.0f}}: %{{y:.4g}} (n=%{{customdata[0]}}, "
                           "%{customdata[1]} below LLOQ)<br>spread %{customdata[2]:.4g} to %{customdata[3]:.4g}"
                           "<extra></extra>")))
    if measure == "fold_change":
        add_overlays(fig, [hline(1, line=NO_CHANGE_LINE)])
    base_layout(fig, title, height=480)
    side_legend(fig, 200, "Dose level")
    fig.update_xaxes(title_text=f"{unit.capitalize()} from first dose of {plain(agent)}")
    fig.update_yaxes(title_text=plain(y_title), **(log_ticks(series[measure]) if log_y else {}))
    return fig


def subset_panels(fold: pd.DataFrame, levels: dict[int, str], agent: str, title: str) -> go.Figure:
    """Small multiples, one per T-cell subset: geometric mean fold change from baseline per level and day."""
    subsets = list(dict.fromkeys(fold["test"]))
    columns = min(3, max(1, len(subsets)))
    rows = math.ceil(len(subsets) / columns) if subsets else 1
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=plain_each(subsets) or [""], shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.18)
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    shown = set()
    # Collected and added at once: an add_trace, add_hline or update_xaxes per panel re-validated the figure.
    traces, panels, lines, axes = [], [], [], {}
    for i, subset in enumerate(subsets):
        row, col = i // columns + 1, i % columns + 1
        for level, points in fold[fold["test"] == subset].groupby("level", sort=True):
            label = levels.get(level, str(level))
            traces.append(go.Scatter(
                x=points["nominal_day"], y=points["gmean_fold_change"], mode="lines+markers", name=label,
                legendgroup=str(level), showlegend=level not in shown,
                line=dict(color=colours.get(level, "#636363"), width=2), customdata=points["n"],
                hovertemplate=(f"<b>{plain(subset)}</b> · {label}<br>day %{{x}}: %{{y:.2f}}× baseline "
                               "(geometric mean, n=%{customdata})<extra></extra>")))
            panels.append((row, col))
            shown.add(level)
        x, y = panel_axes(fig, row, col)
        lines.append(hline(1, xref=x, yref=y, line=NO_CHANGE_LINE))
        axes[x.replace("x", "xaxis")] = dict(title_text=f"Days from first dose of {plain(agent)}")
    if traces:
        fig.add_traces(traces, rows=[row for row, _ in panels], cols=[col for _, col in panels])
    add_overlays(fig, lines)
    fig.update_layout(axes)
    base_layout(fig, title, height=340 * rows + 60)
    side_legend(fig, 160, "Dose level", t=90)
    fig.update_yaxes(title_text="Fold change from baseline (×)", type="log", col=1)
    return fig


def exposure_vs_dose(exposure: pd.DataFrame, measure: str, measure_label: str, fit: PowerFit | None,
                     levels: dict[int, str], dose_unit: str, value_unit: str, title: str) -> go.Figure:
    """Each subject's exposure (Cmax or AUClast) against its dose on log–log axes, coloured by level, with the
    fitted power model and its slope (1 = dose-proportional)."""
    colours = level_colors(list(levels))
    measure_label, value_unit = plain(measure_label), plain(value_unit)
    fig = go.Figure()
    measured = exposure[exposure[measure] > 0]
    for level, label in plain_each(levels).items():
        mine = measured[measured["level"] == level]
        if mine.empty:
            continue
        fig.add_trace(points_trace(len(mine),
            x=mine["dose"], y=mine[measure], mode="markers", name=label,
            marker=dict(size=10, color=colours[level], line=dict(width=1, color="white")),
            customdata=np.stack([plain_each(mine["subject_id"]), mine["tmax_h"]], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>{measure_label} %{{y:.4g}} {value_unit}"
                           "<br>Tmax %{customdata[1]:.1f} h<extra></extra>")))
    if fit is not None:
        doses = np.geomspace(measured["dose"].min(), measured["dose"].max(), 50)
        fig.add_trace(go.Scatter(
            x=doses, y=fit.predict(doses), mode="lines", name=f"Power model: slope {fit.slope:.2f} "
                                                               f"(95% CI {fit.slope_lo:.2f}–{fit.slope_hi:.2f})",
            line=dict(color="#1a1a1a", dash="dash", width=2), hoverinfo="skip"))
    base_layout(fig, title, height=440)
    side_legend(fig, 260)
    shown_doses = measured.drop_duplicates("level").sort_values("dose")
    fig.update_xaxes(title_text=f"Dose ({plain(dose_unit)}, log scale)", type="log", tickvals=shown_doses["dose"],
                     ticktext=plain_each(shown_doses["label"]))
    fig.update_yaxes(title_text=f"{measure_label} ({value_unit})", **log_ticks(measured[measure]))
    return fig


def shedding_chart(shed: pd.DataFrame, levels: dict[int, str], title: str) -> go.Figure:
    """One panel per specimen: % of tested subjects with detectable virus by day after dosing, per level."""
    panels = list(dict.fromkeys(zip(shed["test"], shed["specimen"])))
    columns = min(3, max(1, len(panels)))
    rows = math.ceil(len(panels) / columns) if panels else 1
    fig = make_subplots(rows=rows, cols=columns, shared_yaxes=True, horizontal_spacing=0.06,
                        vertical_spacing=0.2, subplot_titles=[plain(f"{t} · {s}") for t, s in panels] or [""])
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    shown = set()
    for i, (test, specimen) in enumerate(panels):
        row, col = i // columns + 1, i % columns + 1
        mine = shed[(shed["test"] == test) & (shed["specimen"] == specimen)]
        for level, points in mine.groupby("level", sort=True):
            label = levels.get(level, str(level))
            fig.add_trace(go.Scatter(
                x=points["nominal_day"], y=points["n_detected"] / points["n_tested"] * 100, mode="lines+markers",
                name=label, legendgroup=str(level), showlegend=level not in shown,
                line=dict(color=colours.get(level, "#636363"), width=2),
                customdata=np.stack([points["n_detected"], points["n_tested"]], axis=1),
                hovertemplate=(f"<b>{plain(specimen)}</b> · {label}<br>day %{{x}}: %{{customdata[0]}} of "
                               "%{customdata[1]} subjects with detectable virus<extra></extra>")), row=row, col=col)
            shown.add(level)
        fig.update_xaxes(title_text="Day after first dose", row=row, col=col)
    base_layout(fig, title, height=320 * rows + 60)
    side_legend(fig, 160, "Dose level", t=90)
    fig.update_yaxes(title_text="Subjects with detectable virus (%)", range=[-5, 105], col=1)
    return fig


def immunogenicity_chart(table: pd.DataFrame, test: str, levels: dict[int, str], title: str) -> go.Figure:
    """% of tested subjects positive by day (day 0 = pre-dose), per level."""
    colours = level_colors(list(levels))
    fig = go.Figure()
    for level, points in table[table["test"] == test].groupby("level", sort=True):
        label = plain(levels.get(level, level))
        fig.add_trace(go.Scatter(
            x=points["nominal_day"], y=points["pct_positive"], mode="lines+markers", name=label,
            line=dict(color=colours.get(level, "#636363"), width=2), marker=dict(size=8),
            customdata=np.stack([points["n_positive"], points["n_tested"],
                                 points["gmt"].map(lambda g: "—" if pd.isna(g) else f"{g:.4g}")], axis=1),
            hovertemplate=(f"<b>{plain(test)}</b> · {label}<br>day %{{x}}: %{{customdata[0]}} of %{{customdata[1]}} "
                           "positive<br>geometric mean of positives %{customdata[2]}<extra></extra>")))
    base_layout(fig, title, height=400)
    side_legend(fig, 160, "Dose level")
    fig.update_xaxes(title_text="Day after first dose (0 = pre-dose)")
    fig.update_yaxes(title_text="Subjects positive (%)", range=[-5, 105])
    return fig
