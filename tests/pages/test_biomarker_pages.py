"""AppTest: the Biomarkers page for every demo study and several as-of dates;
what it lists, counts and computes checked against SQL on the contract tables
(tests.helpers; the report's section against the same SQL: tests/unit/test_report.py)."""
from __future__ import annotations

import numpy as np
import pytest

from smc.ui import pages
from tests.helpers import RESULTS_SQL, STUDIES, array, as_of_dates, cmax_by_subject, figures, run_app, shedding_counts


def series_counts(sql, study_id, as_of) -> dict[tuple, tuple[int, int]]:
    """{(category, test, specimen): (results, below LLOQ)}."""
    rows = sql(RESULTS_SQL + "SELECT category, test, specimen, count(*), count(*) FILTER (WHERE value IS NULL) "
               "FROM results GROUP BY ALL", study_id, as_of)
    return {(c, t, s): (n, blq) for c, t, s, n, blq in rows}


@pytest.mark.parametrize("study_id", STUDIES)
def test_biomarkers_page_matches_sql(app_env, sql, study_id):
    for as_of in as_of_dates(sql, study_id):
        at = run_app(study_id, as_of, pages.script("biomarkers"))
        assert at.title[0].value == f"{study_id} · Biomarkers"
        counts = series_counts(sql, study_id, as_of)
        if not counts:
            assert not figures(at) and any("No biomarker result" in i.value for i in at.info)
            continue
        picker = at.selectbox(key="biomarker_series")
        assert len(picker.options) == len(counts)
        for option in picker.options:
            at.selectbox(key="biomarker_series").set_value(option).run()
            assert not at.exception
            (category, test, specimen), = [k for k in counts if option.endswith(f"{k[1]} · {k[2]}")
                                           and k[1] in option]
            n, blq = counts[(category, test, specimen)]
            course = figures(at)[0]
            subject_traces = [t for t in course["data"] if not t["name"].endswith("summary")]
            # One trace per level; a gap (NaN) separates its subjects' lines.
            assert sum(int(np.isfinite(np.asarray(array(t["x"]), float)).sum()) for t in subject_traces) == n
            open_circles = sum(symbol == "circle-open" for t in subject_traces for symbol in t["marker"]["symbol"])
            assert open_circles == blq
            assert any(c.value.startswith(f"{blq} of {n} results below the LLOQ") for c in at.caption)

        assert not [df for df in at.dataframe if "cmax" in df.value.columns]  # in the Exposure tab
        tabs = [tab.label for tab in at.tabs]
        expected_cmax = cmax_by_subject(sql, study_id, as_of)
        assert ("Exposure" in tabs) == bool(expected_cmax)
        at = run_app(study_id, as_of, pages.script("biomarkers"), biomarkers_view="Exposure")
        exposure = [df.value for df in at.dataframe if "cmax" in df.value.columns]
        if expected_cmax:
            table = exposure[0]
            shown = {r["subject_id"].split("subject=")[-1]: r["cmax"] for _, r in table.iterrows()
                     if r["cmax"] == r["cmax"]}  # links; NaN: nothing quantified
            first_test = at.selectbox(key="exposure_series").value
            expected = {s: v for (s, t, sp), v in expected_cmax.items() if f"{t} · {sp}" == first_test}
            assert shown == pytest.approx(expected)
        at = run_app(study_id, as_of, pages.script("biomarkers"), biomarkers_view="Shedding")
        shed = [df.value for df in at.dataframe if "n_detected" in df.value.columns]
        expected_shed = shedding_counts(sql, study_id, as_of)
        assert ("Shedding" in tabs) == bool(expected_shed)
        if expected_shed:
            assert {(r["specimen"], r["level"]): (r["n_tested"], r["n_detected"])
                    for _, r in shed[0].iterrows()} == expected_shed
        else:
            assert not shed
