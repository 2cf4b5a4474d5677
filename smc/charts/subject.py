"""Subject profile charts: the course timeline (treatment, AEs, target lesions)
and small multiples of the subject's labs, all on days from first dose."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from smc.charts.style import (
    DLT_COLOR,
    DLT_WINDOW_FILL,
    GRADE_COLORS,
    NUMERIC_TICK,
    RESPONSE_COLORS,
    add_overlays,
    base_layout,
    fixed_margins,
    hrect,
    label_margin,
    panel_axes,
    plain,
    plain_each,
    vline,
    vrect,
)

AGENT_COLOR = "#3b528b"
OTHER_AGENT_COLOR = "#8c8c8c"
NORMAL_RANGE_FILL = "rgba(26,152,80,0.08)"
DAY_AXIS = "Days from first dose of any study treatment"


def _date(value) -> str:
    return "" if pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def subject_timeline(administrations: pd.DataFrame, adverse_events: pd.DataFrame, assessments: pd.DataFrame,
                     agent: str, title: str, as_of_day: int, dlt_window: tuple[int, int] | None = None,
                     milestones: dict[str, int] | None = None) -> go.Figure:
    """Treatment, AE bars coloured by CTCAE grade (DLTs starred, ongoing hatched) and target-lesion sums.

    Frames carry ``day`` (and ``end_day``) from the first dose of any treatment; ``dlt_window`` is
    [start, end) in the same days; ``milestones`` maps e.g. "Off study" to a day.
    """
    agents = list(dict.fromkeys([agent, *administrations["agent"]])) if not administrations.empty else [agent]
    terms = list(dict.fromkeys(adverse_events.sort_values("day")["term"]))
    heights = [max(1, len(agents)) * 28 + 30, max(1, len(terms)) * 26 + 30, 190]
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06, row_heights=heights,
                        subplot_titles=("Treatment", "Adverse events (bar: onset to end; hatched: ongoing)",
                                        "Target lesions: sum of diameters"))
    fig.add_traces(_treatment_marks(administrations, agent), rows=1, cols=1)
    fig.add_traces(_adverse_event_bars(adverse_events, as_of_day), rows=2, cols=1)
    fig.add_traces(_dlt_marks(adverse_events), rows=2, cols=1)
    if not assessments.empty:
        fig.add_trace(_target_lesion_line(assessments), row=3, col=1)
    else:
        fig.add_annotation(text="No tumor assessment by this date", showarrow=False, xref="x3 domain",
                           yref="y3 domain", x=0.5, y=0.5)

    panels, note_axes = _drawn_panels(fig, heights)
    window, window_notes = _dlt_window_shapes(dlt_window, panels)
    lines, notes = _milestone_lines(milestones or {}, panels, note_axes)
    add_overlays(fig, window + lines, window_notes + notes)

    base_layout(fig, title, height=sum(heights) + 160)
    fig.update_layout(barmode="overlay", legend=dict(title_text="AE ", orientation="h", x=0, y=-0.07,
                                                      yanchor="top"), margin=dict(b=110))
    fig.update_xaxes(title_text=DAY_AXIS, row=3, col=1, zeroline=True)
    fig.update_yaxes(autorange="reversed", type="category", row=1, col=1)
    fig.update_yaxes(autorange="reversed", type="category", row=2, col=1)
    fig.update_yaxes(title_text="mm", rangemode="tozero", row=3, col=1)
    left = max(label_margin([*agents, *terms]), label_margin([NUMERIC_TICK], axis_title=True))
    return fixed_margins(fig, left=left, bottom=110)


def _treatment_marks(administrations: pd.DataFrame, agent: str) -> list[go.Scatter]:
    """Treatment panel, one row per agent: a bar over each period given, a diamond at each administration."""
    traces = []
    for name, given in administrations.groupby("agent", sort=False):
        colour = AGENT_COLOR if name == agent else OTHER_AGENT_COLOR
        name = plain(name)  # the agent's row label, legend name and hover: text from the data
        hover = [f"<b>{name}</b> {r.dose:g} {plain(r.unit or '')} {plain(r.route or '')}<br>{_date(r.admin_date)} "
                 f"(day {r.day})"
                 + (f" to {_date(r.end_date)}" if pd.notna(r.end_date) else "")
                 + (f"<br>cycle {r.cycle:g}" if pd.notna(r.cycle) else "")
                 for r in given.itertuples()]
        periods = given[given["end_day"].notna() & (given["end_day"] > given["day"])]
        for r in periods.itertuples():
            traces.append(go.Scatter(x=[r.day, r.end_day], y=[name, name], mode="lines", showlegend=False,
                                     line=dict(color=colour, width=8), hoverinfo="skip"))
        traces.append(go.Scatter(x=given["day"], y=[name] * len(given), mode="markers", name=name,
                                 marker=dict(symbol="diamond", size=11, color=colour, line=dict(width=1, color="white")),
                                 customdata=hover, hovertemplate="%{customdata}<extra></extra>", showlegend=False))
    return traces


def _adverse_event_bars(adverse_events: pd.DataFrame, as_of_day: int) -> list[go.Bar]:
    """AE panel: one bar per event from onset to end (to ``as_of_day``, hatched, if ongoing), coloured by grade;
    each grade in the legend once."""
    traces, shown_grades = [], set()
    for r in adverse_events.itertuples():
        ongoing = pd.isna(r.end_day)
        end = as_of_day if ongoing else r.end_day
        hover = (f"<b>{plain(r.term)}</b> grade {r.grade}{' · DLT' if r.dlt == 'Y' else ''}"
                 f"{' · serious' if r.serious == 'Y' else ''}{' · related' if r.related == 'Y' else ''}"
                 f"<br>onset {_date(r.onset_date)} (day {r.day}), "
                 + ("ongoing" if ongoing else f"end {_date(r.end_date)} (day {r.end_day})")
                 + ("" if r.treatment_emergent else "<br>baseline event (before first dose)")
                 + (f"<br>outcome: {plain(r.outcome)}" if isinstance(r.outcome, str) else ""))
        traces.append(go.Bar(
            y=[plain(r.term)], x=[max(end - r.day, 0) + 1], base=[r.day], orientation="h", width=0.6,
            marker=dict(color=GRADE_COLORS[r.grade], pattern=dict(shape="/" if ongoing else "")),
            name=f"Grade {r.grade}", legendgroup=f"grade{r.grade}", legendrank=r.grade,
            showlegend=r.grade not in shown_grades,
            hovertemplate=hover + "<extra></extra>"))
        shown_grades.add(r.grade)
    return traces


def _dlt_marks(adverse_events: pd.DataFrame) -> list[go.Scatter]:
    """AE panel: a star at the onset of each DLT."""
    dlts = adverse_events[adverse_events["dlt"] == "Y"]
    if dlts.empty:
        return []
    return [go.Scatter(x=dlts["day"], y=plain_each(dlts["term"]), mode="markers", name="DLT",
                       marker=dict(symbol="star", size=15, color=DLT_COLOR, line=dict(width=1, color="white")),
                       hovertemplate="DLT onset day %{x}<extra></extra>")]


def _target_lesion_line(assessments: pd.DataFrame) -> go.Scatter:
    """Target-lesion panel: the sum of diameters at each assessment, marked and labelled with its response."""
    responses = plain_each(assessments["overall_response"].fillna("Baseline"))
    return go.Scatter(
        x=assessments["day"], y=assessments["target_sum_mm"], mode="lines+markers+text", name="Target sum",
        text=responses.where(responses != "Baseline", "BL"), textposition="top center", showlegend=False,
        cliponaxis=False,  # the response over the highest sum would be cut at the panel's top
        line=dict(color="#636363"), marker=dict(size=10, color=[RESPONSE_COLORS.get(x, "#bdbdbd") for x in responses]),
        customdata=np.stack([responses, assessments["assessment_date"].map(_date),
                             plain_each(assessments["new_lesions"].fillna("—"))], axis=1),
        hovertemplate="%{customdata[1]} (day %{x})<br>sum %{y:.0f} mm<br>response %{customdata[0]}"
                      "<br>new lesions %{customdata[2]}<extra></extra>")


def _drawn_panels(fig: go.Figure, heights: list[int]) -> tuple[list[tuple[str, str]], tuple[str, str]]:
    """The (x, y) axes of the panels with data, and those of the panel the milestone notes go in."""
    drawn = {trace.xaxis or "x" for trace in fig.data}  # as add_vrect(row="all"): only panels with data
    height_of = {panel_axes(fig, row, 1): height for row, height in enumerate(heights, start=1)}
    panels = [(x, y) for x, y in height_of if x in drawn]
    # Milestone notes run down the tallest drawn panel: the treatment panel is often too short for
    # "Off study · Death".
    return panels, max(panels, key=height_of.get, default=("x", "y"))


def _dlt_window_shapes(dlt_window: tuple[int, int] | None,
                       panels: list[tuple[str, str]]) -> tuple[list[dict], list[dict]]:
    """The DLT window shaded across the drawn panels, labelled above the top one."""
    if not dlt_window:
        return [], []
    shapes = [vrect(*dlt_window, xref=x, yref=y, fillcolor=DLT_WINDOW_FILL, line=dict(width=0)) for x, y in panels]
    note = dict(x=dlt_window[0], y=1.0, xref="x", yref="y domain", text="DLT window", showarrow=False,
                xanchor="left", yanchor="bottom", font=dict(size=11, color=DLT_COLOR))
    return shapes, [note]


def _milestone_lines(milestones: dict[str, int], panels: list[tuple[str, str]],
                     note_axes: tuple[str, str]) -> tuple[list[dict], list[dict]]:
    """A dotted line across the drawn panels on each milestone's day, with one note per day naming them all."""
    note_x, note_y = note_axes
    on_day: dict[int, list[str]] = {}
    for label, day in milestones.items():
        on_day.setdefault(day, []).append(label)
    shapes, notes = [], []
    for day, labels in on_day.items():
        shapes += [vline(day, xref=x, yref=y, line=dict(color="#1a1a1a", dash="dot", width=1)) for x, y in panels]
        notes.append(dict(x=day, y=1.0, xref=note_x, yref=f"{note_y} domain", text=plain(" · ".join(labels)),
                          showarrow=False, textangle=-90, xanchor="right", yanchor="top", font=dict(size=11),
                          bgcolor="rgba(255,255,255,0.85)"))
    return shapes, notes


def subject_labs(labs: pd.DataFrame, title: str, columns: int = 3) -> go.Figure:
    """One small panel per test and specimen: values over days, the normal range shaded, markers
    coloured by CTCAE grade where graded, results below LLOQ drawn at LLOQ/2 as open circles."""
    panels = list(labs.groupby(["test", "specimen"], sort=False, dropna=False))
    if not panels:
        fig = go.Figure()
        fig.add_annotation(text="No laboratory result by this date.", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        return base_layout(fig, title, height=220)
    rows = math.ceil(len(panels) / columns)
    names = [plain(f"{test}{'' if pd.isna(spec) else f' · {spec}'} ({frame['unit'].iloc[0] or 'no unit'})")
             for (test, spec), frame in panels]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=names, horizontal_spacing=0.06,
                        vertical_spacing=0.5 / rows)
    ranges = []  # each panel's normal range, added together after the panels
    for index, (_, frame) in enumerate(panels):
        row, col = index // columns + 1, index % columns + 1
        below = frame["value"].isna()
        shown = frame["value"].where(~below, frame["lloq"] / 2)
        graded = frame["grade"].notna()
        colours = [GRADE_COLORS.get(int(g), "#636363") if ok and g >= 1 else "#636363"
                   for g, ok in zip(frame["grade"].fillna(0), graded)]
        hover = [f"{_date(t)} (day {d:.1f})<br>" + (f"&lt; LLOQ {lloq:g}" if b else f"{v:g}") + f" {plain(u or '')}"
                 + (f"<br>grade {int(g)}" if pd.notna(g) else "")
                 + (f"<br>normal {lo:g}–{hi:g}" if pd.notna(lo) and pd.notna(hi) else "")
                 for t, d, v, lloq, b, u, g, lo, hi in zip(frame["collected_at"], frame["day"], frame["value"],
                                                           frame["lloq"], below, frame["unit"], frame["grade"],
                                                           frame["ref_low"], frame["ref_high"])]
        fig.add_trace(go.Scatter(
            x=frame["day"], y=shown, mode="lines+markers", showlegend=False, line=dict(color="#bdbdbd", width=1),
            marker=dict(size=8, color=["white" if b else c for b, c in zip(below, colours)],
                        line=dict(width=1.5, color=colours)),
            hovertext=hover, hoverinfo="text"), row=row, col=col)
        low, high = frame["ref_low"].dropna(), frame["ref_high"].dropna()
        if not high.empty:
            x, y = panel_axes(fig, row, col)
            ranges.append(hrect(low.iloc[0] if not low.empty else 0, high.iloc[0], xref=x, yref=y,
                                fillcolor=NORMAL_RANGE_FILL, line=dict(width=0)))
        positive = shown[shown > 0]
        if len(positive) and positive.max() / positive.min() > 100:
            fig.update_yaxes(type="log", row=row, col=col)
    add_overlays(fig, ranges)
    base_layout(fig, title, height=110 + 230 * rows)
    fixed_margins(fig, left=60, bottom=60)  # a dozen panels: 0.7 s -> 0.35 s to draw
    fig.update_annotations(font_size=12)
    fig.update_xaxes(title_text="Days from first dose", title_font_size=11)
    return fig
