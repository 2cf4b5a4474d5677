"""Escalation charts: subject swimlanes, and the escalation history replayed."""
from __future__ import annotations

import datetime as dt
import textwrap

import pandas as pd
import plotly.graph_objects as go

from smc.charts.style import (
    ACTION_COLORS,
    CHANGED_COLOR,
    DLT_COLOR,
    GRADE_COLORS,
    RESPONSE_COLORS,
    STATE_COLORS,
    add_overlays,
    base_layout,
    fixed_margins,
    hline,
    hrect,
    label_margin,
    level_colors,
    plain,
    plain_each,
    vline,
)
from smc.decision_log.ledger import Decision

LANE_PX = 26


def _lane_text(lanes: pd.DataFrame) -> list[str]:
    """Each lane's subject and phase, as text (escaped where drawn)."""
    return [f"{s} · {'exp' if p == 'expansion' else 'esc'}" for s, p in zip(lanes.subject_id, lanes.phase)]


def swimlanes(lanes: pd.DataFrame, administrations: pd.DataFrame, adverse_events: pd.DataFrame,
              assessments: pd.DataFrame, dlt_window_days: int, as_of: dt.date,
              calendar: bool = False, changed_events: pd.DataFrame | None = None,
              stage_windows: pd.DataFrame | None = None, first_stage: str | None = None) -> go.Figure:
    """One lane per subject, grouped by dose level (lowest at the bottom).

    x is days from the subject's first dose of the agent, or calendar dates
    (with the as-of date as a line). Each lane shows its follow-up, the DLT
    window band, doses as ticks, AEs by CTCAE grade, DLTs as red stars,
    RECIST responses, off study and death; ``changed_events`` (AEs new or changed since the compared data cut) are
    ringed. A staged regimen names its first stage (``first_stage``) and draws the later stages' windows
    (``stage_windows``: :func:`smc.analysis.swimlanes.stage_windows`) hatched. ``customdata[0]`` of every point
    is the subject id as plotly text (style.plain; html.unescape gives the id),
    so a click can open the subject.
    """
    lanes = lanes.sort_values(["level", "phase", "enrollment_date", "subject_id"],
                              ascending=[True, False, True, True]).reset_index(drop=True)
    y_of = {s: i for i, s in enumerate(lanes.subject_id)}
    dosed = lanes[lanes.first_dose_date.notna()]
    fig = go.Figure()
    fig.add_trace(_follow_up_lines(dosed, y_of, calendar))
    fig.add_trace(_dlt_window_bars(dosed, y_of, dlt_window_days, calendar, first_stage))
    if stage_windows is not None:
        fig.add_traces(_later_window_bars(stage_windows, lanes, y_of, calendar))
    fig.add_traces(_dose_marks(administrations, y_of, calendar))
    fig.add_traces(_adverse_event_marks(adverse_events, y_of, calendar))
    if changed_events is not None and not changed_events.empty:
        fig.add_trace(_changed_marks(changed_events, y_of, calendar))
    fig.add_traces(_response_marks(assessments, y_of, calendar))
    fig.add_traces(_exit_marks(lanes, y_of, calendar))

    bands, band_labels = _level_bands(lanes, y_of)
    lines, line_labels = _reference_lines(dlt_window_days, as_of, calendar)
    fig.update_xaxes(**_time_axis(calendar))
    add_overlays(fig, bands + lines, band_labels + line_labels)
    lane_text = _lane_text(lanes)
    fig.update_yaxes(**_lane_axis(lane_text))
    height = max(420, 230 + LANE_PX * len(lanes))
    base_layout(fig, "Subject swimlanes by dose level (lowest dose at the bottom)", height=height)
    fig.update_layout(**_legend_under(height))
    # Set margins: plotly's automargin laid the chart out twice for the lane labels (0.1-0.15 s in Chromium).
    return fixed_margins(fig, left=label_margin(lane_text), bottom=150)


def _x(frame: pd.DataFrame, day_col: str, date_col: str, calendar: bool) -> pd.Series:
    return frame[date_col] if calendar else frame[day_col]


def _follow_up_lines(dosed: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> go.Scatter:
    """Follow-up line from first dose to the last day known (off study, death or as-of)."""
    xs, ys = [], []
    for r in dosed.itertuples():
        xs += [r.first_dose_date if calendar else 0, r.followed_to if calendar else r.followed_days, None]
        ys += [y_of[r.subject_id]] * 2 + [None]
    return go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#bdbdbd", width=2), name="Follow-up",
                      hoverinfo="skip")


def _later_window_bars(windows: pd.DataFrame, lanes: pd.DataFrame, y_of: dict[str, int],
                       calendar: bool) -> list[go.Bar]:
    """Each later stage's DLT window, from the subject's first dose of the stage's agent, hatched and coloured by
    the subject's DLT state in that stage."""
    first_dose = lanes.set_index("subject_id")["first_dose_date"]
    windows = windows[windows.subject_id.isin(y_of)]
    traces = []
    for (stage, days), part in windows.groupby(["stage", "dlt_window_days"], sort=False):
        start_day = (part["start"] - part["subject_id"].map(first_dose)).dt.days
        traces.append(go.Bar(
            orientation="h", y=[y_of[s] for s in part.subject_id],
            base=part["start"] if calendar else start_day,
            x=[days * 86_400_000 if calendar else days] * len(part),
            marker=dict(color=[STATE_COLORS.get(s, "#cccccc") for s in part.state], opacity=0.28,
                        pattern=dict(shape="/", fgcolor="#525252", size=6, solidity=0.25)),
            width=0.7, name=f"DLT window, {plain(stage)} ({days} d)",
            customdata=plain_each(part[["subject_id", "stage", "label", "state"]]),
            hovertemplate="%{customdata[0]} · %{customdata[1]} at %{customdata[2]}<br>DLT window: "
                          "%{customdata[3]}<extra></extra>"))
    return traces


def _dlt_window_bars(dosed: pd.DataFrame, y_of: dict[str, int], dlt_window_days: int, calendar: bool,
                     stage: str | None = None) -> go.Bar:
    """DLT window band as horizontal bars (one trace, cheap at 500 lanes), coloured by the lane's DLT state."""
    return go.Bar(
        orientation="h", y=[y_of[s] for s in dosed.subject_id],
        base=dosed["first_dose_date"] if calendar else [0] * len(dosed),
        x=[dlt_window_days * 86_400_000 if calendar else dlt_window_days] * len(dosed),
        marker=dict(color=[STATE_COLORS.get(s, "#cccccc") for s in dosed.state], opacity=0.28),
        width=0.7, name=f"DLT window, {plain(stage)} ({dlt_window_days} d)" if stage else f"DLT window ({dlt_window_days} d)",
        customdata=plain_each(dosed[["subject_id", "label", "state"]]),
        hovertemplate="%{customdata[0]} · %{customdata[1]}<br>DLT window: %{customdata[2]}<extra></extra>")


def _dose_marks(administrations: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> list[go.Scatter]:
    """Doses as ticks on the lane: the agent's large and black, other study treatment small and grey."""
    doses = administrations[administrations.subject_id.isin(y_of)]
    traces = []
    for is_agent, name, size, color in ((True, "Dose of the agent", 14, "#252525"),
                                        (False, "Other study treatment", 9, "#969696")):
        part = doses[doses.is_agent == is_agent]
        if part.empty:
            continue
        traces.append(go.Scatter(
            x=_x(part, "day", "admin_date", calendar), y=part.subject_id.map(y_of), mode="markers", name=name,
            marker=dict(symbol="line-ns-open", size=size, color=color, line=dict(width=2, color=color)),
            customdata=plain_each(part[["subject_id", "agent", "admin_date", "dose", "unit", "route", "cycle", "day"]]),
            hovertemplate=("%{customdata[0]}<br>%{customdata[1]} %{customdata[3]:.3g} %{customdata[4]} "
                           "%{customdata[5]}<br>%{customdata[2]|%Y-%m-%d} (day %{customdata[7]}, cycle "
                           "%{customdata[6]})<extra></extra>")))
    return traces


def _adverse_event_marks(adverse_events: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> list[go.Scatter]:
    """AEs as dots above the lane, one trace per CTCAE grade, then DLTs as red stars on the lane."""
    aes = adverse_events[adverse_events.subject_id.isin(y_of)]
    ae_hover = ("%{customdata[0]}: %{customdata[1]}<br>grade %{customdata[2]}, day %{customdata[4]} "
                "(%{customdata[3]|%Y-%m-%d})<br>serious %{customdata[5]}, related %{customdata[6]}, "
                "DLT %{customdata[7]}<extra></extra>")
    ae_data = ["subject_id", "term", "grade", "onset_date", "day", "serious", "related", "dlt"]
    traces = []
    for grade in range(1, 6):
        part = aes[(aes.grade == grade) & (aes.dlt != "Y")]
        if part.empty:
            continue
        traces.append(go.Scatter(
            x=_x(part, "day", "onset_date", calendar), y=part.subject_id.map(y_of) + 0.22, mode="markers",
            name=f"AE grade {grade}", marker=dict(symbol="circle", size=7 + grade, color=GRADE_COLORS[grade],
                                                  line=dict(width=0.5, color="white")),
            customdata=plain_each(part[ae_data]), hovertemplate=ae_hover))
    dlts = aes[aes.dlt == "Y"]
    if not dlts.empty:
        traces.append(go.Scatter(
            x=_x(dlts, "day", "onset_date", calendar), y=dlts.subject_id.map(y_of), mode="markers", name="DLT",
            marker=dict(symbol="star", size=20, color=DLT_COLOR, line=dict(width=1.5, color="black")),
            customdata=plain_each(dlts[ae_data]), hovertemplate="<b>DLT</b> " + ae_hover))
    return traces


def _changed_marks(events: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> go.Scatter:
    """A ring around each AE that is new or changed since the compared data cut, where its mark is: a DLT's star on
    the lane, any other AE's dot above it."""
    events = events[events.subject_id.isin(y_of)]
    above = (events.dlt != "Y") * 0.22
    return go.Scatter(
        x=_x(events, "day", "onset_date", calendar), y=events.subject_id.map(y_of) + above, mode="markers",
        name="New or changed since the compared cut",
        marker=dict(symbol="circle-open", size=15, color=CHANGED_COLOR, line=dict(width=2)),
        customdata=plain_each(events[["subject_id", "term", "grade"]]),
        hovertemplate="%{customdata[0]}: %{customdata[1]} (grade %{customdata[2]})<br>new or changed since the "
                      "compared data cut<extra></extra>")


def _response_marks(assessments: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> list[go.Scatter]:
    """RECIST responses as diamonds below the lane, one trace per response."""
    scans = assessments[assessments.subject_id.isin(y_of) & assessments.overall_response.notna()]
    traces = []
    for response, color in RESPONSE_COLORS.items():
        part = scans[scans.overall_response == response]
        if part.empty:
            continue
        traces.append(go.Scatter(
            x=_x(part, "day", "assessment_date", calendar), y=part.subject_id.map(y_of) - 0.25, mode="markers",
            name=f"RECIST {response}", marker=dict(symbol="diamond", size=9, color=color),
            customdata=plain_each(part[["subject_id", "overall_response", "assessment_date", "day", "target_sum_mm"]]),
            hovertemplate=("%{customdata[0]}: RECIST %{customdata[1]}<br>%{customdata[2]|%Y-%m-%d} "
                           "(day %{customdata[3]}), target sum %{customdata[4]:.0f} mm<extra></extra>")))
    return traces


def _exit_marks(lanes: pd.DataFrame, y_of: dict[str, int], calendar: bool) -> list[go.Scatter]:
    """Off study and death on the lane."""
    traces = []
    for col, reason, name, symbol, color in (
            ("off_study_date", "off_study_reason", "Off study", "x-thin-open", "#525252"),
            ("death_date", "death_cause", "Death", "cross", "#000000")):
        part = lanes[lanes[col].notna()].copy()
        if part.empty:
            continue
        part["day"] = (part[col] - part["first_dose_date"]).dt.days
        traces.append(go.Scatter(
            x=part[col] if calendar else part["day"], y=part.subject_id.map(y_of), mode="markers", name=name,
            marker=dict(symbol=symbol, size=13, color=color, line=dict(width=2, color=color)),
            customdata=plain_each(part[["subject_id", col, reason, "day"]]),
            hovertemplate=f"%{{customdata[0]}}: {name.lower()} %{{customdata[1]|%Y-%m-%d}} "
                          "(day %{customdata[3]})<br>%{customdata[2]}<extra></extra>"))
    return traces


def _level_bands(lanes: pd.DataFrame, y_of: dict[str, int]) -> tuple[list[dict], list[dict]]:
    """Level bands and labels: a tinted band and a line under each dose level's lanes, its label on the right."""
    colors = level_colors(lanes["level"].dropna().unique().tolist()) if len(lanes) else {}
    shapes, labels = [], []
    for level, group in lanes.groupby("level", sort=True):
        lo, hi = y_of[group.subject_id.iloc[0]], y_of[group.subject_id.iloc[-1]]
        shapes += [hrect(lo - 0.5, hi + 0.5, fillcolor=colors[level], opacity=0.07, line=dict(width=0), layer="below"),
                   hline(lo - 0.5, line=dict(color="#737373", width=1))]
        labels.append(dict(xref="paper", x=1.0, xanchor="left", y=(lo + hi) / 2,
                           text=f"<span style='color:{colors[level]}'>■</span> <b>{plain(group.label.iloc[0])}</b>",
                           showarrow=False, font=dict(color="#252525", size=12)))
    return shapes, labels


def _reference_lines(dlt_window_days: int, as_of: dt.date, calendar: bool) -> tuple[list[dict], list[dict]]:
    """The as-of date as a labelled line on calendar dates; the end of the DLT window on days."""
    if calendar:
        return ([vline(pd.Timestamp(as_of).value / 1e6, line=dict(color=DLT_COLOR, dash="dash", width=2))],
                [dict(x=pd.Timestamp(as_of), y=1.0, yref="paper", text=f"as of {as_of:%Y-%m-%d}",
                      showarrow=False, yanchor="bottom", font=dict(color=DLT_COLOR))])
    return [vline(dlt_window_days, line=dict(color="#737373", dash="dot", width=1))], []


def _time_axis(calendar: bool) -> dict:
    if calendar:
        return dict(title="Calendar date", type="date")
    return dict(title="Days from first dose of the agent", zeroline=True)


def _lane_axis(lane_text: list[str]) -> dict:
    """One tick per lane, labelled with the subject and phase."""
    return dict(tickmode="array", tickvals=list(range(len(lane_text))), ticktext=plain_each(lane_text),
                range=[-0.7, len(lane_text) - 0.3], title=None, showgrid=False, fixedrange=True)


def _legend_under(height: int) -> dict:
    # Legend under the plot: above it, it would cover the title on narrow screens.
    return dict(barmode="overlay", bargap=0, margin=dict(r=130, t=50),
                legend=dict(orientation="h", yanchor="top", y=-95 / (height - 200), x=0))


def _hover_text(text: str, width: int = 70) -> str:
    """Free text (a rationale, a name) as plain text in a hover label, wrapped before it is escaped."""
    return "<br>".join(plain(line) for line in textwrap.wrap(text, width))


def escalation_history(steps: pd.DataFrame, lanes: pd.DataFrame, dlts: pd.DataFrame,
                       level_labels: dict[int, str], as_of: dt.date, decisions: list[Decision] = (),
                       entry: str = "enrolled") -> go.Figure:
    """Dose level over time: every escalation enrollment, every counted DLT, the rule's call at each change,
    and the SMC's recorded decisions at the data cut they reviewed.

    ``steps``: date, level, action, reason of the rule replayed at each date (rule_steps).
    ``lanes``: subject_id, level, label, phase, enrollment_date, state of each subject; for a later stage of a staged
    regimen its entries (:func:`smc.analysis.swimlanes.stage_entries`), with ``entry`` naming them.
    ``dlts``: subject_id, level, label, onset_date of the DLTs the rule counted.
    """
    order = sorted(level_labels)
    pos = {lv: i for i, lv in enumerate(order)}
    colors = level_colors(order)
    fig = go.Figure()
    esc = lanes[lanes.phase == "escalation"]

    # Step line: the level the rule pointed at after each decision date.
    dates, actions, reasons = list(steps["date"]), list(steps["action"]), plain_each(list(steps["reason"]))
    levels = [pos[level] for level in steps["level"]]
    if dates:
        fig.add_scatter(x=dates + [as_of], y=levels + levels[-1:], mode="lines", line_shape="hv",
                        line=dict(color="#969696", width=2), name="Level the rule points to", hoverinfo="skip")
        changed = [i for i in range(len(dates)) if i == 0 or actions[i] != actions[i - 1] or levels[i] != levels[i - 1]]
        for action in dict.fromkeys(actions[i] for i in changed):
            idx = [i for i in changed if actions[i] == action]
            fig.add_scatter(
                x=[dates[i] for i in idx], y=[levels[i] for i in idx], mode="markers", name=f"Rule: {plain(action)}",
                marker=dict(symbol="square", size=11, color=ACTION_COLORS[action], line=dict(width=1, color="white")),
                customdata=[[plain(action), reasons[i]] for i in idx],
                hovertemplate="%{x|%Y-%m-%d}: <b>%{customdata[0]}</b><br>%{customdata[1]}<extra></extra>")

    if not esc.empty:
        fig.add_scatter(
            x=esc.enrollment_date, y=esc.level.map(pos) + 0.12, mode="markers", name=f"Subject {plain(entry)}",
            marker=dict(size=9, color=[colors[lv] for lv in esc.level], line=dict(width=1, color="white")),
            customdata=plain_each(esc[["subject_id", "label", "state"]]),
            hovertemplate=f"%{{x|%Y-%m-%d}}: %{{customdata[0]}} {plain(entry)} at %{{customdata[1]}}<br>"
                          "DLT state on the as-of date: %{customdata[2]}<extra></extra>")
    if not dlts.empty:
        fig.add_scatter(
            x=dlts.onset_date, y=dlts.level.map(pos) - 0.12, mode="markers", name="DLT (counted)",
            marker=dict(symbol="star", size=16, color=DLT_COLOR, line=dict(width=1, color="black")),
            customdata=plain_each(dlts[["subject_id", "label"]]),
            hovertemplate="%{x|%Y-%m-%d}: DLT in %{customdata[0]} at %{customdata[1]}<extra></extra>")
    for followed, name, outline in ((1, "SMC decision (follows the rule)", dict(width=1.5, color="black")),
                                    (0, "SMC decision (deviation)", dict(width=3, color=DLT_COLOR))):
        # A record whose level or word this chart cannot place (a level since removed) is left to the table.
        shown = [d for d in decisions if d.follows_recommendation == followed and d.level in pos
                 and d.decision in ACTION_COLORS]
        if shown:
            fig.add_scatter(
                x=[d.data_cut_date for d in shown], y=[pos[d.level] for d in shown], mode="markers", name=name,
                marker=dict(symbol="diamond", size=15, color=[ACTION_COLORS[d.decision] for d in shown], line=outline),
                customdata=[[*plain_each([d.id, d.decision, level_labels[d.level], d.recommended_action, d.meeting_date]),
                             _hover_text(d.rationale) or "(no rationale)", _hover_text(d.recorded_by)] for d in shown],
                hovertemplate="Data to %{x|%Y-%m-%d}: the SMC decided <b>%{customdata[1]}</b> at %{customdata[2]} "
                              "(record #%{customdata[0]})<br>meeting %{customdata[4]}; the rule said "
                              "%{customdata[3]}<br>%{customdata[5]}<br>recorded by %{customdata[6]}<extra></extra>")
    level_text = [level_labels[lv] for lv in order]
    fig.update_yaxes(tickmode="array", tickvals=list(range(len(order))), ticktext=plain_each(level_text),
                     range=[-0.5, len(order) - 0.5], title="Dose level")
    fig.update_xaxes(title="Date", type="date")
    base_layout(fig, "Escalation history: the protocol rule replayed at every change, and the SMC's decisions",
                height=440)
    # Legend under the plot: with decisions it is two rows long and would cover the title.
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.22, x=0))
    return fixed_margins(fig, left=label_margin(level_text, axis_title=True), bottom=110)  # 0.1 s less to draw
