"""Charts past MAX_SUBJECT_LINES subjects (a 2,000-subject expansion): they summarise each dose level, page the
subjects or drop unreadable labels instead of drawing a line or labelled bar per subject; up to the limit they
draw every subject. Expected values are worked by hand from the rows built here. The pages drawn past the limit
are checked in tests/pages/test_dense_chart_pages.py."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from smc.analysis import biomarkers, tumor_markers
from smc.charts.biomarkers import biomarker_course
from smc.charts.efficacy import marker_best_change, marker_trends, waterfall
from smc.charts.style import level_colors
from smc.settings import MAX_SUBJECT_LINES, too_many_subjects

LEVELS = {1: "L1", 2: "L2"}


def test_too_many_subjects_counts_distinct_subjects_not_rows():
    rows = pd.DataFrame({"subject_id": [f"S{i}" for i in range(MAX_SUBJECT_LINES)] * 3})
    assert not too_many_subjects(rows)
    assert too_many_subjects(pd.concat([rows, pd.DataFrame({"subject_id": ["one more"]})]))
    assert too_many_subjects(pd.Series([f"S{i}" for i in range(MAX_SUBJECT_LINES + 1)]))


def best_responses(n: int) -> pd.DataFrame:
    """n subjects: odd ones at level 2; subject i's best change is 50 - i % (so S0000 is the tallest bar)."""
    return pd.DataFrame(dict(subject_id=[f"S{i:04d}" for i in range(n)], level=[1 + i % 2 for i in range(n)],
                             label=[LEVELS[1 + i % 2] for i in range(n)], best_pct_change=[50.0 - i for i in range(n)],
                             bor=["PD" if 50 - i >= 20 else "SD" for i in range(n)], bor_reason="by hand"))


def strip_colours(fig) -> dict[str, str]:
    """The colour the level strip (a one-row heatmap with a step colour scale) gives each subject."""
    cells, = [t for t in fig.data if t.type == "heatmap"]
    steps = [(edge, colour) for edge, colour in cells.colorscale]
    colours = {}
    for subject, z in zip(cells.x, cells.z[0]):
        position = (z - cells.zmin) / (cells.zmax - cells.zmin)
        colours[subject] = next(colour for (low, colour), (high, _) in zip(steps[::2], steps[1::2])
                                if low <= position <= high)
    return colours


@pytest.mark.parametrize("n", [MAX_SUBJECT_LINES, MAX_SUBJECT_LINES + 1])
def test_waterfall_strip_gives_each_subject_its_level_colour_and_drops_ids_past_the_limit(n):
    subjects = best_responses(n)
    fig = waterfall(subjects, LEVELS, "t")
    bars = {x: y for t in fig.data if t.type == "bar" for x, y in zip(t.x, t.y)}
    assert bars == {f"S{i:04d}": 50.0 - i for i in range(n)}
    expected = level_colors([1, 2])
    assert strip_colours(fig) == {f"S{i:04d}": expected[1 + i % 2] for i in range(n)}
    assert list(fig.layout.xaxis.categoryarray) == [f"S{i:04d}" for i in range(n)]  # largest increase left
    keys = [t for t in fig.data if t.type == "scatter"]
    assert [(t.name, t.marker.color) for t in keys] == [("L1", expected[1]), ("L2", expected[2])]
    many = n > MAX_SUBJECT_LINES
    assert fig.layout.xaxis.showticklabels is (not many)
    assert fig.layout.bargap == (0 if many else None)
    assert {t.marker.line.width for t in fig.data if t.type == "bar"} == ({0} if many else {None})
    assert fig.layout.xaxis.title.text.startswith(f"{n:,} subjects by best change" if many else "Subject")


def test_marker_best_change_drops_the_ids_past_the_limit():
    best = best_responses(MAX_SUBJECT_LINES + 1).assign(baseline_value=10.0, value=5.0, day=28)
    fig = marker_best_change(best, "CEA", LEVELS, "t")
    assert sum(len(t.x) for t in fig.data) == MAX_SUBJECT_LINES + 1
    assert fig.layout.xaxis.showticklabels is False and fig.layout.bargap == 0
    few = marker_best_change(best.head(3), "CEA", LEVELS, "t")
    assert few.layout.xaxis.showticklabels is True and few.layout.xaxis.title.text == "Subject"


def marker_rows(n: int) -> pd.DataFrame:
    """n level-1 subjects with CEA at baseline (day 0, value 10) and day 14 (value 10 + i, i = 1..n)."""
    rows = []
    for i in range(1, n + 1):
        for day, value in ((0, 10.0), (14, 10.0 + i)):
            rows.append(dict(subject_id=f"S{i:04d}", level=1, label="L1", phase="escalation", test="CEA", day=day,
                             baseline=day == 0, plot_value=value, pct_change=None if day == 0 else i * 10.0,
                             below_lloq=False, unit="ng/mL"))
    return pd.DataFrame(rows)


def test_level_medians_give_each_week_its_median_and_quartiles():
    markers = marker_rows(5)  # day-14 values 11..15
    medians = tumor_markers.level_medians(markers, "CEA", "plot_value")
    # Week 0: five baselines of 10. Week 2: 11..15, linear interpolation: Q1 at position 1 of 0..4 = 12.
    assert medians[["week", "day", "median", "q1", "q3", "n"]].to_dict("records") == [
        dict(week=0, day=0, median=10.0, q1=10.0, q3=10.0, n=5),
        dict(week=2, day=14, median=13.0, q1=12.0, q3=14.0, n=5)]
    lone = tumor_markers.level_medians(marker_rows(1), "CEA", "plot_value")
    assert lone.empty  # one subject's value is already its own line


def test_marker_trends_draw_subject_lines_up_to_the_limit_and_quartile_bands_past_it():
    few = marker_rows(MAX_SUBJECT_LINES)
    lines = marker_trends(few, tumor_markers.level_medians(few, "CEA", "plot_value"), "CEA", "plot_value", LEVELS,
                          "VIRUS", False, "t")
    assert [t.name for t in lines.data] == ["L1", "L1 median"]
    assert {s for s in lines.data[0].customdata[:, 0] if isinstance(s, str)} == set(few["subject_id"])

    many = marker_rows(MAX_SUBJECT_LINES + 1)  # day-14 values 11..211
    bands = marker_trends(many, tumor_markers.level_medians(many, "CEA", "plot_value"), "CEA", "plot_value",
                          LEVELS, "VIRUS", False, "t")
    assert [t.name for t in bands.data] == ["L1 75th percentile", "L1 25th percentile", "L1"]
    median = bands.data[2]
    assert list(median.x) == [0, 14] and list(median.y) == [10.0, 111.0]
    assert [list(row) for row in median.customdata] == [[10.0, 10.0, 201], [61.0, 161.0, 201]]
    assert bands.data[1].fill == "tonexty"


def biomarker_rows(n: int) -> pd.DataFrame:
    """n level-1 subjects with IL-6 at hours 0 and 24 (value i + 1 at hour 24)."""
    first = dt.datetime(2025, 1, 1, 8)
    rows = [dict(subject_id=f"S{i:04d}", level=1, label="L1", hours=float(h), day=h / 24,
                 collected_at=first + dt.timedelta(hours=h), plot_value=1.0 if h == 0 else i + 1.0,
                 fold_change=None if h == 0 else i + 1.0, below_lloq=False, unit="pg/mL")
            for i in range(n) for h in (0, 24)]
    return pd.DataFrame(rows).astype({"collected_at": "datetime64[ns]"})


def test_biomarker_course_draws_the_level_summary_alone_past_the_limit():
    few = biomarker_rows(MAX_SUBJECT_LINES)
    summary = biomarkers.level_summary(few, "hours", geometric=False)
    fig = biomarker_course(few, summary, {1: "L1"}, "plot_value", "hours", False, "IL-6", "VIRUS", "t")
    assert [t.name for t in fig.data] == ["L1", "L1 summary"]
    many = biomarker_rows(MAX_SUBJECT_LINES + 1)
    summary = biomarkers.level_summary(many, "hours", geometric=False)
    fig = biomarker_course(many, summary, {1: "L1"}, "plot_value", "hours", False, "IL-6", "VIRUS", "t")
    centre, = fig.data
    assert centre.name == "L1 summary"
    assert list(centre.x) == [0.0, 24.0] and list(centre.y) == [1.0, 101.0]  # mean of 1..201
