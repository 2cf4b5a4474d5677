"""ui.figure and ui.shared: a chart or summary is computed once per distinct input, and any change to an input
frame is a new result."""
from __future__ import annotations

import pandas as pd
import pytest
import streamlit as st

from smc import ui

BUILDS: list[int] = []


def value_total(frame: pd.DataFrame, title: str = "") -> tuple[float, str]:
    """A stand-in chart builder: what it returns depends on every row of the frame."""
    BUILDS.append(len(frame))
    return float(frame["value"].sum()), title


@pytest.fixture(autouse=True)
def empty_cache():
    st.cache_resource.clear()
    BUILDS.clear()
    yield
    st.cache_resource.clear()


def test_the_same_input_is_built_once_and_a_new_title_is_a_new_chart():
    frame = pd.DataFrame({"value": [1.0, 2.0, 3.0]})
    first = ui.figure(value_total, frame, title="a")
    again = ui.figure(value_total, frame.copy(), title="a")
    assert first == (6.0, "a") and again is first and BUILDS == [3]
    assert ui.figure(value_total, frame, title="b") == (6.0, "b") and BUILDS == [3, 3]


def test_a_change_in_one_row_of_a_large_frame_is_a_new_chart():
    # Streamlit's own hash reads a 10,000-row sample of a frame past 50,000 rows; a change elsewhere must count.
    rows = 60_000
    before = pd.DataFrame({"day": range(rows), "value": 1.0})
    after = before.copy()
    after.loc[rows - 1, "value"] = 2.0
    assert ui.figure(value_total, before) == (60_000.0, "")
    assert ui.figure(value_total, after) == (60_001.0, "")
    assert BUILDS == [rows, rows]


def test_frames_with_unhashable_cells_are_told_apart():
    lists = pd.DataFrame({"value": [1.0, 2.0], "grades": [[1, 2], [3]]})
    changed = lists.assign(grades=[[1, 2], [4]])
    ui.figure(value_total, lists)
    ui.figure(value_total, changed)
    ui.figure(value_total, lists.copy())
    assert BUILDS == [2, 2]


def test_a_shared_summary_is_computed_once_and_the_same_object_is_returned():
    frame = pd.DataFrame({"value": [1.0, 2.0]})
    first = ui.shared(value_total, frame)
    assert ui.shared(value_total, frame.copy()) is first and BUILDS == [2]
    assert ui.shared(value_total, frame.assign(value=[1.0, 5.0])) == (6.0, "") and BUILDS == [2, 2]
