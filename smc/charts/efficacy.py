"""Efficacy charts: waterfall, spider and swimmer plots of RECIST response, and
tumor-marker trends. Days count from the first dose of the study's agent."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from smc.analysis import tumor_markers
from smc.charts.style import (
    RESPONSE_COLORS,
    add_overlays,
    base_layout,
    fixed_margins,
    hline,
    hline_label,
    label_margin,
    level_colors,
    lines_by_level,
    log_ticks,
    plain,
    plain_each,
    points_trace,
    quartile_traces,
    side_legend,
    unchecked_figure,
)
from smc.rules.recist import PD_INCREASE_PCT, PR_DECREASE_PCT, RESPONSES
from smc.settings import too_many_subjects

REFERENCE_LINE = dict(dash="dash", color="#636363", width=1)
ZERO_LINE = hline(0, line=dict(color="#636363", width=1))
MARKER_EVENTS = {  # swimmer-plot events: marker symbol and colour
    "Response (first CR/PR)": ("triangle-up", RESPONSE_COLORS["CR"]),
    "Progression (PD)": ("x", RESPONSE_COLORS["PD"]),
    "Off treatment": ("line-ns", "#1a1a1a"),
    "Death": ("square", "#1a1a1a"),
}


def _fmt(value, spec: str = ".1f", empty: str = "—") -> str:
    return empty if value is None or pd.isna(value) else format(value, spec)


def _response_lines(fig: go.Figure, *shapes: dict) -> None:
    """The PR and PD thresholds, labelled, after ``shapes``."""
    label = "rgba(255,255,255,0.8)"  # a background keeps the label readable over a wall of bars
    add_overlays(fig, [*shapes, hline(-PR_DECREASE_PCT, line=REFERENCE_LINE),
                       hline(PD_INCREASE_PCT, line=REFERENCE_LINE)],
                 [hline_label(f"−{PR_DECREASE_PCT:.0f}% (PR)", -PR_DECREASE_PCT, below=True, bgcolor=label),
                  hline_label(f"+{PD_INCREASE_PCT:.0f}% (PD)", PD_INCREASE_PCT, bgcolor=label)])


def waterfall(subjects: pd.DataFrame, levels: dict[int, str], title: str) -> go.Figure:
    """One bar per subject with a post-baseline measurement: best (most negative) % change of the target
    sum from baseline, coloured by BOR, largest increase left; a strip under the bars shows the dose level.
    customdata[0] is the subject id as plotly text (style.plain; a click opens the profile)."""
    measured = subjects[subjects["best_pct_change"].notna()].sort_values(
        ["best_pct_change", "subject_id"], ascending=[False, True])
    measured = plain_each(measured)  # after sorting on the raw ids
    levels = plain_each(levels)
    fig = go.Figure()
    for bor in RESPONSES:
        mine = measured[measured["bor"] == bor]
        if mine.empty:
            continue
        fig.add_trace(go.Bar(
            x=mine["subject_id"], y=mine["best_pct_change"], name=bor, marker_color=RESPONSE_COLORS[bor],
            legendgroup="bor", legendgrouptitle_text="Best response",
            # text, not object, arrays: plotly serialises those whole instead of cell by cell on every rerun
            customdata=np.stack([mine["subject_id"], mine["label"], mine["bor_reason"].fillna("")], axis=1).astype(str),
            hovertemplate=("<b>%{customdata[0]}</b> · %{customdata[1]}<br>best change %{y:+.1f}%<br>"
                           f"BOR {bor}: %{{customdata[2]}}<extra></extra>")))
    strip = min(-100.0, float(measured["best_pct_change"].min()) if len(measured) else -100.0) - 12
    fig.add_traces(_level_strip(measured, levels, strip))
    _response_lines(fig)
    base_layout(fig, title, height=480)
    fig.update_layout(barmode="overlay")
    side_legend(fig, 140)
    top = max(40.0, float(measured["best_pct_change"].max()) + 10 if len(measured) else 40.0)
    fig.update_yaxes(title_text="Best change in target-lesion sum from baseline (%)", range=[strip - 8, top],
                     zeroline=True, zerolinecolor="#636363")
    _subject_bar_axis(fig, measured["subject_id"], " (strip under the bars: dose level)")
    return fig


def _subject_bar_axis(fig: go.Figure, subject_ids: pd.Series, note: str = "") -> None:
    """The x axis of a bar per subject in ``subject_ids`` order, labelled with the ids; past MAX_SUBJECT_LINES
    subjects the ids are unreadable, so they are left out and the bars touch without outlines (gaps and the
    template's white outline around pixel-wide bars would wash their colours out)."""
    many = too_many_subjects(subject_ids)
    fig.update_xaxes(title_text=(f"{len(subject_ids):,} subjects by best change" if many else "Subject") + note,
                     categoryorder="array", categoryarray=list(subject_ids), tickangle=-45, showticklabels=not many)
    if many:
        fig.update_layout(bargap=0)
        fig.update_traces(marker_line_width=0, selector=dict(type="bar"))


def _level_strip(measured: pd.DataFrame, levels: dict[int, str], y: float) -> list:
    """A strip at ``y`` with each subject's dose level as a coloured cell under its bar: one heatmap row, which
    the browser draws as one image (2,000 square markers took it half a second), and a legend entry per level."""
    colours = level_colors(list(levels))
    shown = [level for level in levels if (measured["level"] == level).any()]
    if not shown:
        return []
    position = {level: i for i, level in enumerate(shown)}
    steps = [[edge, colours[level]] for i, level in enumerate(shown) for edge in (i / len(shown), (i + 1) / len(shown))]
    cells = go.Heatmap(
        x=measured["subject_id"], y0=y, dy=10, z=[measured["level"].map(position).to_numpy(float)],
        zmin=-0.5, zmax=len(shown) - 0.5, colorscale=steps, showscale=False, name="Dose level",
        xgap=0 if too_many_subjects(measured) else 1, text=[measured["label"].to_numpy(object)],
        hovertemplate="<b>%{x}</b> · %{text}<extra></extra>")
    keys = [go.Scatter(x=[None], y=[None], mode="markers", name=levels[level], legendgroup="level",
                       legendgrouptitle_text="Dose level", marker=dict(symbol="square", size=14, color=colours[level]))
            for level in shown]
    return [cells, *keys]


def spider(time_points: pd.DataFrame, levels: dict[int, str], agent: str, title: str) -> go.Figure:
    """% change of the target sum from baseline over days from first dose, one line per subject from its
    baseline (0%), coloured by level; each time point's marker shows the investigator's response."""
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    measured = time_points.assign(pct=time_points["pct_change"].where(~time_points["baseline"], 0.0))
    measured = measured[measured["pct"].notna()]
    drawn = measured.groupby("subject_id")["pct"].transform("size") >= 2  # a baseline alone draws nothing
    shown = measured[drawn].assign(response=measured["overall_response"].fillna("baseline"))
    traces = []
    for level, lines in lines_by_level(shown, "day"):
        label = levels.get(level, str(level))
        traces.append(points_trace(len(lines),
            x=lines["day"], y=lines["pct"], mode="lines+markers", name=label, legendgroup=str(level),
            line=dict(color=colours.get(level, "#636363"), width=1.8), connectgaps=False,
            marker=dict(size=8, color=[RESPONSE_COLORS.get(r, "#ffffff") for r in lines["response"]],
                        line=dict(width=1.5, color=colours.get(level, "#636363"))),
            customdata=np.stack([plain_each(lines["subject_id"]), plain_each(lines["response"]), lines["target_sum_mm"],
                                 lines["assessment_date"].dt.strftime("%Y-%m-%d"),
                                 plain_each(lines["data_issue"].replace("", "—"))], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>%{{customdata[3]}} (day %{{x}}): "
                           "%{customdata[1]}<br>sum %{customdata[2]:.0f} mm, %{y:+.1f}% from baseline"
                           "<br>data issue: %{customdata[4]}<extra></extra>")))
    fig = unchecked_figure(traces)
    _response_lines(fig, ZERO_LINE)
    base_layout(fig, title, height=460)
    fig.update_layout(margin=dict(t=90), legend_title_text="Dose level ")
    fig.update_xaxes(title_text=f"Days from first dose of {plain(agent)}")
    fig.update_yaxes(title_text="Change in target-lesion sum from baseline (%)")
    return fixed_margins(fig, left=80, bottom=60)  # 0.53 s -> 0.37 s to draw 200 subjects' lines


def swimmer_order(subjects: pd.DataFrame) -> pd.DataFrame:
    """The swimmer plot's order, grouped by level (highest on top), longest follow-up last in each."""
    return subjects.sort_values(["level", "followed_days"], ascending=[False, True])


def swimmer(subjects: pd.DataFrame, levels: dict[int, str], agent: str, as_of_label: str, title: str) -> go.Figure:
    """Time on study per subject (first dose to death, leaving the study or the as-of date) as a bar coloured
    by level, grouped by level; an arrow marks subjects still on study; markers show the first response,
    progression, end of treatment and death. customdata[0] is the subject id as plotly text (style.plain)."""
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    order = plain_each(swimmer_order(subjects))
    fig = go.Figure()
    for level, label in levels.items():
        mine = order[order["level"] == level]
        if mine.empty:
            continue
        status = np.where(mine["ongoing"], f"on study at {as_of_label}",
                          np.where(mine["death_date"].notna(), "died", "off study"))
        fig.add_trace(go.Bar(
            y=mine["subject_id"], x=mine["followed_days"], orientation="h", name=label, legendgroup="level",
            legendgrouptitle_text="Dose level", marker_color=colours[level], opacity=0.85,
            customdata=np.stack([mine["subject_id"], mine["bor"], status], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>%{{x}} days from first dose, "
                           "%{customdata[2]}<br>best response %{customdata[1]}<extra></extra>")))
    ongoing = order[order["ongoing"]]
    fig.add_trace(go.Scatter(
        y=ongoing["subject_id"], x=ongoing["followed_days"] + 2, mode="markers", name="Still on study",
        legendgroup="event", legendgrouptitle_text="Events", marker=dict(symbol="arrow-right", size=12,
                                                                         color="#1a1a1a"),
        customdata=ongoing["subject_id"], hovertemplate="<b>%{y}</b> still on study<extra></extra>"))
    day = {
        "Response (first CR/PR)": order["ttr_days"].astype("float"),
        "Progression (PD)": (pd.to_datetime(order["progression_date"]) - pd.to_datetime(order["first_dose_date"])).dt.days,
        "Off treatment": (pd.to_datetime(order["off_treatment_date"]) - pd.to_datetime(order["first_dose_date"])).dt.days,
        "Death": (pd.to_datetime(order["death_date"]) - pd.to_datetime(order["first_dose_date"])).dt.days,
    }
    for name, (symbol, colour) in MARKER_EVENTS.items():
        when = day[name]
        has = when.notna()
        if not has.any():
            continue
        fig.add_trace(go.Scatter(
            y=order["subject_id"][has], x=when[has], mode="markers", name=name, legendgroup="event",
            legendgrouptitle_text="Events",
            marker=dict(symbol=symbol, size=13, color=colour,
                        line=dict(width=2, color=colour if symbol in ("x", "line-ns") else "white")),
            customdata=np.stack([order["subject_id"][has], order["bor"][has]], axis=1),
            hovertemplate=f"<b>%{{customdata[0]}}</b><br>{name} on day %{{x:.0f}}<br>best response "
                          "%{customdata[1]}<extra></extra>"))
    base_layout(fig, title, height=max(360, 26 * len(order) + 140))
    fig.update_layout(barmode="overlay")
    side_legend(fig, 170)
    fig.update_xaxes(title_text=f"Days from first dose of {plain(agent)}", rangemode="tozero")
    fig.update_yaxes(title_text="Subject", categoryorder="array", categoryarray=list(order["subject_id"]))
    return fixed_margins(fig, left=label_margin(subjects["subject_id"], axis_title=True), bottom=60)


def marker_trends(markers: pd.DataFrame, medians: pd.DataFrame, test: str, measure: str, levels: dict[int, str],
                  agent: str, log_y: bool, title: str) -> go.Figure:
    """A tumor marker (``measure``: 'plot_value' or 'pct_change') over days from first dose, coloured by level.
    Up to MAX_SUBJECT_LINES subjects: a thin line per subject, with each level's weekly median (``medians``) as
    a thick dashed line; results below the LLOQ (drawn at LLOQ/2) are open circles. More: each level's weekly
    median and interquartile band only."""
    series = tumor_markers.measured(markers, test, measure)
    unit = series["unit"].dropna().iloc[0] if series["unit"].notna().any() else ""
    shown_unit = "%" if measure == "pct_change" else unit
    if too_many_subjects(series):
        fig = go.Figure(quartile_traces(medians, "day", levels, "week of day %{x:.0f}", shown_unit, "subjects"))
    else:
        fig = unchecked_figure(_marker_subject_traces(series, measure, levels, unit))
        colours = level_colors(list(levels))
        for level, median in medians.groupby("level", sort=True):
            label = plain(levels.get(level, level))
            fig.add_trace(go.Scatter(
                x=median["day"], y=median["median"], mode="lines", name=f"{label} median", legendgroup=str(level),
                line=dict(color=colours.get(level, "#636363"), width=4, dash="dash"), customdata=median["n"],
                hovertemplate=(f"<b>{label} median</b><br>week of day %{{x:.0f}}: %{{y:.4g}} {plain(shown_unit)} "
                               "(n=%{customdata})<extra></extra>")))
    if measure == "pct_change":
        add_overlays(fig, [ZERO_LINE])
        y_title = f"{test}: change from baseline (%)"
    else:
        y_title = f"{test} ({unit})" if unit else test
    y_title = plain(y_title)
    base_layout(fig, title, height=460)
    side_legend(fig, 190)
    fig.update_xaxes(title_text=f"Days from first dose of {plain(agent)}")
    fig.update_yaxes(title_text=y_title, **(log_ticks(series[measure]) if log_y and measure == "plot_value" else {}))
    return fig


def _marker_subject_traces(series: pd.DataFrame, measure: str, levels: dict[int, str], unit: str) -> list[dict]:
    colours = level_colors(list(levels))
    traces = []
    for level, lines in lines_by_level(series, "day"):
        label = plain(levels.get(level, level))
        below = lines["below_lloq"].astype("boolean").fillna(False).to_numpy(bool)
        traces.append(points_trace(len(lines),
            x=lines["day"], y=lines[measure], mode="lines+markers", name=label, legendgroup=str(level),
            opacity=0.55, line=dict(color=colours.get(level, "#636363"), width=1.2), connectgaps=False,
            marker=dict(size=6, symbol=np.where(below, "circle-open", "circle")),
            customdata=np.stack([plain_each(lines["subject_id"]), lines["plot_value"],
                                 lines["pct_change"].map(lambda v: _fmt(v, "+.1f")),
                                 np.where(below, " (below LLOQ, drawn at LLOQ/2)", "")], axis=1),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> · {label}<br>day %{{x:.0f}}: %{{customdata[1]:.4g}} {plain(unit)}"
                           "%{customdata[3]}<br>%{customdata[2]}% from baseline<extra></extra>")))
    return traces


def marker_best_change(best: pd.DataFrame, test: str, levels: dict[int, str], title: str) -> go.Figure:
    """Each subject's best (most negative) % change of a tumor marker, a bar coloured by level."""
    colours = level_colors(list(levels))
    levels = plain_each(levels)
    fig = go.Figure()
    for level, label in levels.items():
        mine = best[best["level"] == level]
        if mine.empty:
            continue
        fig.add_trace(go.Bar(
            x=plain_each(mine["subject_id"]), y=mine["best_pct_change"], name=label, marker_color=colours[level],
            # numbers only: plotly serialises a numeric array whole instead of cell by cell on every rerun
            customdata=mine[["baseline_value", "value", "day"]].to_numpy(float),
            hovertemplate=(f"<b>%{{x}}</b> · {label}<br>best change %{{y:+.1f}}%: "
                           "%{customdata[0]:.4g} → %{customdata[1]:.4g} on day %{customdata[2]:.0f}<extra></extra>")))
    add_overlays(fig, [ZERO_LINE])
    base_layout(fig, title, height=420)
    side_legend(fig, 150, "Dose level", l=70)
    _subject_bar_axis(fig, plain_each(best["subject_id"]))
    fig.update_yaxes(title_text=f"Best change in {plain(test)} from baseline (%)")
    return fig
