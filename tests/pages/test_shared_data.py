"""Loaded data, charts and summaries are shared, not copied, between sessions and reruns (ui.cached, ui.shared):
after every page has run for every demo study at two as-of dates, each shared result must still equal a fresh
computation. A page or summary that wrote into a frame it was given would otherwise change what every other SMC
member sees."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import streamlit as st

from smc import ui
from smc.tools.bench import PAGES
from tests.helpers import STUDIES, as_of_dates, run_app


def assert_same(shared, fresh, where: str) -> None:
    """Equal values, field by field (a frozen dataclass), column by column (a frame), item by item."""
    if isinstance(shared, go.Figure):
        assert_same(shared.to_plotly_json(), fresh.to_plotly_json(), where)
    elif dataclasses.is_dataclass(shared) and not isinstance(shared, type):
        assert type(shared) is type(fresh), where
        for field in dataclasses.fields(shared):
            assert_same(getattr(shared, field.name), getattr(fresh, field.name), f"{where}.{field.name}")
    elif isinstance(shared, pd.DataFrame):
        pd.testing.assert_frame_equal(shared, fresh, check_exact=True, obj=where)
    elif isinstance(shared, pd.Series):
        pd.testing.assert_series_equal(shared, fresh, check_exact=True, obj=where)
    elif isinstance(shared, np.ndarray) and shared.dtype == object:  # NaN cells: compared item by item below
        assert_same(shared.tolist(), fresh.tolist(), where)
    elif isinstance(shared, np.ndarray):
        np.testing.assert_array_equal(shared, fresh, err_msg=where)
    elif isinstance(shared, dict):
        assert shared.keys() == fresh.keys(), where
        for key in shared:
            assert_same(shared[key], fresh[key], f"{where}[{key!r}]")
    elif isinstance(shared, (list, tuple)):
        assert len(shared) == len(fresh), where
        for i, (a, b) in enumerate(zip(shared, fresh)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert shared == fresh or (shared != shared and fresh != fresh), where  # NaN equals NaN here


@pytest.fixture()
def shared_results(app_env, monkeypatch):
    """Every (function, args, kwargs, result) the pages read through ui.cached (function(db, *args)) and
    ui.shared / ui.figure (function(*args, **kwargs)), from empty caches."""
    st.cache_resource.clear()
    calls: dict[int, tuple] = {}
    cached_call, shared_result = ui._cached_call, ui._shared_result

    def recording_cached(loader, db, args):
        result = cached_call(loader, db, args)
        calls.setdefault(id(result), (loader, (db, *args), (), result))
        return result

    def recording_shared(function, args, kwargs):
        result = shared_result(function, args, kwargs)
        calls.setdefault(id(result), (function, args, kwargs, result))
        return result

    monkeypatch.setattr(ui, "_cached_call", recording_cached)
    monkeypatch.setattr(ui, "_shared_result", recording_shared)
    yield calls
    st.cache_resource.clear()


def test_no_page_changes_the_data_charts_or_summaries_it_shares(shared_results, sql):
    for study_id in STUDIES:
        for as_of in as_of_dates(sql, study_id)[:2]:
            for page in PAGES:  # each view (tab) of a page too
                run_app(study_id, as_of, page.script, user="admin", **page.view_query)  # every page opens
    functions = {function.rsplit(".", 1)[-1] for function, *_ in shared_results.values()}
    assert {"load_dose_decision", "load_swimlanes", "swimlanes", "load_efficacy", "load_biomarker_view", "load_survival",
            "survival_table", "waterfall", "spider", "marker_trends", "escalation_history"} <= functions
    for function, args, kwargs, result in shared_results.values():
        assert_same(result, ui._function(function)(*args, **dict(kwargs)), function)
