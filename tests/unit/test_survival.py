"""Time-to-event endpoints (smc.survival): Kaplan–Meier math, log-rank, censoring rules end to end.

Every expected value is worked out by hand from the rules or computed by an independent method in this
file (a hand-written Kaplan–Meier with Greenwood's variance, a hand-written log-rank), never copied from
the module's output:

- KM: S(t) = prod over event times u <= t of (n_u - d_u) / n_u, n_u = subjects with time >= u (those
  censored at u are still at risk at u).
- Greenwood: var(log S) ~ sum d / (n (n - d)); the log(-log) 95% CI of S is S ** exp(±z se) with
  se = sqrt(sum d / (n (n - d))) / |log S| (the + sign gives the lower bound since 0 < S < 1).
- Median: first time S <= 0.5 ("not reached": None); its CI from the first time the lower band, and the
  first time the upper band, is <= 0.5.
- Landmark rates at 6 and 12 months (182.625 and 365.25 days): the step function there, None when the
  group's longest time is shorter.
- Log-rank: sum over distinct event times of observed minus expected with the hypergeometric variance.
- OS / PFS / DOR censoring rules as in the module docstring (dates on or before the as-of date only).
"""
from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import median_survival_times
from scipy.stats import chi2, norm

from smc.analysis import survival
from smc.rules.escalation import DoseLevel
from smc.store.study import Study
from tests.helpers import one_study_db

D = dt.date.fromisoformat
Z = float(norm.ppf(0.975))  # 1.959964…
SIX_MONTHS = 6 * 30.4375  # 182.625 days (12 months: 365.25)


# --------------------------------------------------------------------------- independent reference code


def frame(spec: str) -> pd.DataFrame:
    """'9 13 13+ 18' -> days and event ('+' = censored)."""
    items = spec.split()
    return pd.DataFrame({"days": [int(x.rstrip("+")) for x in items],
                         "event": [not x.endswith("+") for x in items]}).astype({"days": int, "event": bool})


def km_by_hand(times: pd.DataFrame) -> list[tuple[int, int, int, float, float]]:
    """(t, at risk, events, S(t), Greenwood sum d/(n(n-d)) up to t) at every distinct time."""
    days, events = times["days"].tolist(), times["event"].tolist()
    s, greenwood, out = 1.0, 0.0, []
    for t in sorted(set(days)):
        n = sum(1 for x in days if x >= t)
        d = sum(1 for x, e in zip(days, events) if x == t and e)
        if d:
            s *= (n - d) / n
            greenwood = greenwood + d / (n * (n - d)) if n > d else math.inf
        out.append((t, n, d, s, greenwood))
    return out


def loglog_band(s: float, greenwood: float) -> tuple[float, float] | None:
    """The log(-log) 95% CI of S; (1, 1) before any event; None where undefined (S = 0)."""
    if s == 1.0:
        return 1.0, 1.0
    if s <= 0.0:
        return None
    se = math.sqrt(greenwood) / abs(math.log(s))
    return s ** math.exp(Z * se), s ** math.exp(-Z * se)


class Undetermined(Exception):
    """The median's CI bound would depend on the band where S = 0 (no Greenwood CI there)."""


def median_by_hand(times: pd.DataFrame) -> tuple[float | None, float | None, float | None]:
    """(median, CI low, CI high): first time S, the lower band, the upper band are <= 0.5; None if never."""
    median = lo = hi = None
    for t, _, _, s, g in km_by_hand(times):
        if median is None and s <= 0.5:
            median = t
        band = loglog_band(s, g)
        if band is None:
            if lo is None or hi is None:
                raise Undetermined
            continue
        if lo is None and band[0] <= 0.5:
            lo = t
        if hi is None and band[1] <= 0.5:
            hi = t
    return median, lo, hi


def logrank_by_hand(groups: list[pd.DataFrame]) -> float:
    """k-group log-rank chi-square: U = O - E, V hypergeometric covariance, U' V^-1 U on k-1 groups."""
    k = len(groups)
    pooled = pd.concat(groups)
    u, v = np.zeros(k), np.zeros((k, k))
    for t in sorted(set(pooled.loc[pooled["event"], "days"])):
        n = [int((g["days"] >= t).sum()) for g in groups]
        d = [int(((g["days"] == t) & g["event"]).sum()) for g in groups]
        n_all, d_all = sum(n), sum(d)
        for j in range(k):
            u[j] += d[j] - d_all * n[j] / n_all
            if n_all > 1:
                for m in range(k):
                    v[j, m] += (d_all * (n_all - d_all) / (n_all - 1) * n[j] / n_all
                                * ((1.0 if j == m else 0.0) - n[m] / n_all))
    return float(u[:-1] @ np.linalg.inv(v[:-1, :-1]) @ u[:-1])


# R's `aml` data, maintained arm (survival package): + = censored.
AML = "9 13 13+ 18 23 28+ 31 34 45+ 48 161+"
# survfit(Surv(time, status) ~ 1, data = aml[aml$x == "Maintained", ]): S at each death time (3 decimals).
AML_R_SURVIVAL = {9: 0.909, 13: 0.818, 18: 0.716, 23: 0.614, 31: 0.491, 34: 0.368, 48: 0.184}


# --------------------------------------------------------------------------- Kaplan–Meier: curve and median


def test_curve_matches_r_on_aml_maintained():
    steps = survival.curve(frame(AML)).set_index("days")
    assert steps.loc[0.0, "survival"] == 1.0  # the curve starts at 1 at time 0
    for t, s in AML_R_SURVIVAL.items():
        assert round(steps.loc[float(t), "survival"], 3) == s, t


def test_curve_matches_hand_km_at_every_time_and_event_table():
    times = frame(AML)
    steps = survival.curve(times).set_index("days")
    for t, n, d, s, _ in km_by_hand(times):
        row = steps.loc[float(t)]
        assert row["survival"] == pytest.approx(s, abs=1e-12), t
        assert (row["at_risk"], row["events"]) == (n, d), t
        assert row["censored"] == sum(1 for x, e in zip(times["days"], times["event"]) if x == t and not e)


def test_curve_ci_is_greenwood_log_log():
    """Pointwise 95% CI at each event time with 0 < S < 1, from the Greenwood sum and log(-log) transform."""
    times = frame(AML)
    steps = survival.curve(times).set_index("days")
    checked = 0
    for t, _, d, s, g in km_by_hand(times):
        if d and 0 < s < 1:
            low, high = loglog_band(s, g)
            assert steps.loc[float(t), "lower"] == pytest.approx(low, abs=1e-6), t
            assert steps.loc[float(t), "upper"] == pytest.approx(high, abs=1e-6), t
            assert low < s < high
            checked += 1
    assert checked == 7  # the seven deaths
    # Spot check by hand at t = 9: S = 10/11, sum = 1/110, se = sqrt(1/110) / |log(10/11)|
    se = math.sqrt(1 / 110) / abs(math.log(10 / 11))
    assert steps.loc[9.0, "lower"] == pytest.approx((10 / 11) ** math.exp(Z * se), abs=1e-9)


def test_summarize_aml_median_and_its_ci():
    """R (conf.type = "log-log"): median 31, 95% CI 13 to NA; the same from the hand-made bands and lifelines."""
    times = frame(AML)
    row = survival.summarize(times)
    assert (row["n"], row["events"]) == (11, 7)
    assert (row["median"], row["median_lo"], row["median_hi"]) == (31, 13, None)
    assert median_by_hand(times) == (31, 13, None)
    kmf = KaplanMeierFitter(alpha=0.05).fit(times["days"], times["event"])
    lo, hi = median_survival_times(kmf.confidence_interval_).iloc[0]
    assert lo == 13 and math.isinf(hi)  # lifelines says "not reached" with inf; the module with None


def test_fit_is_a_95pct_kaplan_meier():
    kmf = survival.fit(frame(AML))
    assert kmf.alpha == 0.05
    assert kmf.median_survival_time_ == 31


def test_ties_censored_at_an_event_time_are_still_at_risk():
    """5 5+ 5 8 10+ 12: at 5, n = 6 (the one censored at 5 included), d = 2 -> 4/6;
    at 8, n = 3 -> 4/6 * 2/3 = 4/9; at 12, n = 1 -> 0. (Excluding the censored one at 5 would give 3/5.)"""
    times = frame("5 5+ 5 8 10+ 12")
    steps = survival.curve(times).set_index("days")
    assert steps.loc[5.0, "survival"] == pytest.approx(4 / 6)
    assert steps.loc[8.0, "survival"] == pytest.approx(4 / 9)
    assert steps.loc[10.0, "survival"] == pytest.approx(4 / 9)
    assert steps.loc[12.0, "survival"] == 0
    assert steps.loc[5.0, ["at_risk", "events", "censored"]].tolist() == [6, 2, 1]
    assert steps.loc[8.0, "at_risk"] == 3
    assert survival.summarize(times)["median"] == 8  # first time S <= 0.5


def test_censorings_sit_on_the_curve_after_the_drop():
    """The subject censored at 5 gets S(5) = 4/6 (the value after the two deaths at 5); at 10, 4/9."""
    times = frame("5 5+ 5 8 10+ 12").assign(subject_id=list("abcdef"))
    marks = survival.censorings(times, survival.curve(times))
    assert marks["subject_id"].tolist() == ["b", "e"]
    assert marks["survival"].tolist() == pytest.approx([4 / 6, 4 / 9])


def test_median_not_reached():
    """10 20+ 30+ 40+ 50+: S = 4/5 after the only death and stays there -> median and upper bound NR.
    The lower band at 10 (S = 0.8, sum = 1/20) is 0.8 ** exp(Z * sqrt(1/20) / |log 0.8|) ~ 0.20 <= 0.5 -> 10."""
    times = frame("10 20+ 30+ 40+ 50+")
    row = survival.summarize(times)
    assert (row["n"], row["events"]) == (5, 1)
    assert row["median"] is None and row["median_hi"] is None
    assert 0.8 ** math.exp(Z * math.sqrt(1 / 20) / abs(math.log(0.8))) < 0.5
    assert row["median_lo"] == 10


def test_median_is_the_first_time_at_or_below_half():
    """1 2 3 4 (all deaths): S = 0.5 from 2 to 3. The module's rule (lifelines, SAS) gives 2, not R's 2.5."""
    assert survival.summarize(frame("1 2 3 4"))["median"] == 2


@pytest.mark.parametrize("spec", [AML, "5 5+ 5 8 10+ 12 14+", "3 6 6 9+ 12 15+ 20 30+ 40 50+",
                                  "10 20+ 30+ 40+ 50+", "2 4 8 16+ 16+ 16+ 16+ 16+"])
def test_median_ci_from_the_bands(spec):
    """The median CI from the hand-made Greenwood log(-log) bands, and from lifelines directly."""
    times = frame(spec)
    row = survival.summarize(times)
    assert (row["median"], row["median_lo"], row["median_hi"]) == median_by_hand(times)
    kmf = KaplanMeierFitter(alpha=0.05).fit(times["days"], times["event"])
    lo, hi = median_survival_times(kmf.confidence_interval_).iloc[0]
    assert row["median_lo"] == (None if math.isinf(lo) else lo)
    assert row["median_hi"] == (None if math.isinf(hi) else hi)


def test_empty_group_summary():
    row = survival.summarize(frame(""))
    assert row["n"] == 0 and row["events"] == 0
    assert all(row[k] is None for k in row if k not in ("n", "events"))


# --------------------------------------------------------------------------- landmark rates


def test_landmark_rates_and_their_ci():
    """30 100 200+ 250 400+ 500+: at 182.625 d, S = 5/6 * 4/5 = 4/6 (n 6 at 30, 5 at 100);
    at 365.25 d, S = 4/6 * 2/3 = 4/9 (n 3 at 250). Greenwood sums 1/30 + 1/20 and + 1/6."""
    times = frame("30 100 200+ 250 400+ 500+")
    row = survival.summarize(times)
    s6, s12 = 4 / 6, 4 / 9
    lo6, hi6 = loglog_band(s6, 1 / 30 + 1 / 20)
    lo12, hi12 = loglog_band(s12, 1 / 30 + 1 / 20 + 1 / 6)
    assert (row["s6m"], row["s6m_lo"], row["s6m_hi"]) == pytest.approx((s6, lo6, hi6), abs=1e-9)
    assert (row["s12m"], row["s12m_lo"], row["s12m_hi"]) == pytest.approx((s12, lo12, hi12), abs=1e-9)


def test_landmark_beyond_the_longest_time_is_none():
    """30 100 200+ 250: longest time 250 < 365.25 -> no 12-month rate; at 182.625, 3/4 * 2/3 = 1/2."""
    row = survival.summarize(frame("30 100 200+ 250"))
    assert row["s6m"] == pytest.approx(0.5)
    assert row["s12m"] is None and row["s12m_lo"] is None and row["s12m_hi"] is None


@pytest.mark.parametrize("longest, defined", [(365, False), (366, True)])
def test_twelve_month_landmark_boundary(longest, defined):
    """12 months = 365.25 days: followed 365 days is short of it, 366 is beyond it (S = 1/2 after the death
    at 30 with 2 at risk; Greenwood sum 1/2)."""
    row = survival.summarize(frame(f"30 {longest}+"))
    if defined:
        lo, hi = loglog_band(0.5, 1 / 2)
        assert (row["s12m"], row["s12m_lo"], row["s12m_hi"]) == pytest.approx((0.5, lo, hi))
    else:
        assert row["s12m"] is None
    assert row["s6m"] == pytest.approx(0.5)  # 182.625 <= 365 either way


# --------------------------------------------------------------------------- number at risk and ticks


def test_number_at_risk_counts_times_at_or_after_t():
    times = frame("0+ 5 5+ 10 20+")
    # t = 0: all 5; t = 5: the two at 5 and 10, 20 -> 4; t = 6: 10, 20 -> 2; t = 20: 1; t = 21: none
    assert survival.number_at_risk(times, [0, 5, 6, 20, 21]) == [5, 4, 2, 1, 0]
    assert survival.number_at_risk(times, [SIX_MONTHS]) == [0]


@pytest.mark.parametrize("max_days, unit", [(0, "days"), (30, "days"), (69, "days"), (100, "days"),
                                            (500, "days"), (1000, "days"), (40, "months"), (365, "months"),
                                            (700, "months"), (1500, "months")])
def test_time_ticks_are_even_from_zero_and_cover_the_longest_time(max_days, unit):
    ticks = survival.time_ticks(max_days, unit)
    per_unit, allowed = (30.4375, (1, 2, 3, 6, 12)) if unit == "months" else (1, (7, 14, 28, 56, 91, 182, 364))
    assert ticks[0] == 0
    step = ticks[1] - ticks[0]
    assert any(step == pytest.approx(s * per_unit) for s in allowed)  # whole weeks / months
    assert np.diff(ticks) == pytest.approx([step] * (len(ticks) - 1))  # evenly spaced
    assert ticks[-1] >= max_days  # covers the longest time
    assert len(ticks) <= 11  # 0 plus at most ten intervals


def test_time_ticks_examples_by_hand():
    # 100 days: 7-day steps need 15 intervals, 14-day steps 8 -> 0, 14, …, 112 (first multiple >= 100)
    assert survival.time_ticks(100, "days") == [14 * i for i in range(9)]
    # 365 days in months: 12.0 months -> 2-month steps (6 intervals), last 12 months = 365.25 days
    assert survival.time_ticks(365, "months") == pytest.approx([2 * 30.4375 * i for i in range(7)])


@pytest.mark.parametrize("max_days, unit", [(70, "days"), (140, "days"), (487, "months")])
def test_time_ticks_stop_at_the_first_tick_covering_the_longest_time(max_days, unit):
    """When the longest time is itself a tick (70 days = 10 weeks; 487 days = 16 months exactly), the axis
    should end there: covering 0..max_days needs no further tick (one more adds an empty number-at-risk
    column and, at 70 days, makes 12 ticks: more than 0 plus ten intervals)."""
    ticks = survival.time_ticks(max_days, unit)
    assert ticks[-1] >= max_days - 1e-9
    assert ticks[-2] < max_days - 1e-9
    assert len(ticks) <= 11


# --------------------------------------------------------------------------- log-rank


def make_study(levels=(1, 2, 3)) -> Study:
    return Study(study_id="S1", title=None, design="3+3", agent="VIRUS", dlt_window_days=28, target_dlt_rate=0.3,
                 planned_enrollment=None, enrollment_target_date=None, min_sd_days=42, indication=None, data_cut_date=D("2025-03-15"),
                 levels=tuple(DoseLevel(lv, f"L{lv}") for lv in levels))


def survival_of(by_level: dict[int, str], endpoint: str = "os", phases: dict[int, str] | None = None):
    """A Survival built directly from '9 13+ …' specs per level."""
    start = D("2024-01-01")
    rows = []
    for level, spec in by_level.items():
        for i, r in enumerate(frame(spec).itertuples()):
            rows.append(dict(endpoint=endpoint, subject_id=f"{level}{i:02d}", level=level, label=f"L{level}",
                             phase=(phases or {}).get(level, "escalation"), start_date=start,
                             end_date=start + dt.timedelta(days=r.days), days=r.days, event=r.event,
                             reason="death" if r.event else "censored"))
    times = pd.DataFrame(rows, columns=survival.TIME_COLUMNS).astype({"days": int, "event": bool})
    return survival.Survival(make_study(), D("2025-03-15"), times)


LEVEL1, LEVEL2, LEVEL3 = "3 5 7+ 9 12", "4+ 6 6 10 15+", "2+ 8+ 20+"


def test_logrank_two_levels_by_hand():
    data = survival_of({1: LEVEL1, 2: LEVEL2})
    test = survival.logrank(data, "os", "level")
    expected = logrank_by_hand([frame(LEVEL1), frame(LEVEL2)])
    assert test.statistic == pytest.approx(expected, rel=1e-9)
    assert test.degrees_of_freedom == 1 and test.groups == 2
    assert test.p_value == pytest.approx(chi2.sf(expected, 1), rel=1e-9)


def test_logrank_two_groups_closed_form():
    """Two groups: (O1 - E1)^2 / V, summed over the distinct event times (a second, scalar hand computation)."""
    a, b = frame(LEVEL1), frame(LEVEL2)
    o_e = var = 0.0
    for t in sorted(set(pd.concat([a, b]).query("event")["days"])):
        n1, n2 = (a["days"] >= t).sum(), (b["days"] >= t).sum()
        d1, d2 = ((a["days"] == t) & a["event"]).sum(), ((b["days"] == t) & b["event"]).sum()
        n, d = n1 + n2, d1 + d2
        o_e += d1 - d * n1 / n
        var += d * (n1 / n) * (n2 / n) * (n - d) / (n - 1) if n > 1 else 0.0
    test = survival.logrank(survival_of({1: LEVEL1, 2: LEVEL2}), "os", "level")
    assert test.statistic == pytest.approx(o_e ** 2 / var, rel=1e-9)


def test_logrank_includes_groups_without_events():
    """Level 3 has subjects but no event: it is one of the groups compared (2 df), since two others have events."""
    data = survival_of({1: LEVEL1, 2: LEVEL2, 3: LEVEL3})
    test = survival.logrank(data, "os", "level")
    expected = logrank_by_hand([frame(LEVEL1), frame(LEVEL2), frame(LEVEL3)])
    assert test.statistic == pytest.approx(expected, rel=1e-9)
    assert test.degrees_of_freedom == 2 and test.groups == 3
    assert test.p_value == pytest.approx(chi2.sf(expected, 2), rel=1e-9)


def test_logrank_needs_two_groups_with_events():
    assert survival.logrank(survival_of({1: LEVEL1, 3: LEVEL3}), "os", "level") is None  # one group with events
    assert survival.logrank(survival_of({1: LEVEL1}), "os", "level") is None  # one group
    assert survival.logrank(survival_of({1: LEVEL1, 2: LEVEL2}), "os", "all") is None  # pooled: one group
    assert survival.logrank(survival_of({1: LEVEL1, 2: LEVEL2}), "pfs", "level") is None  # no PFS rows at all


def test_logrank_by_phase():
    data = survival_of({1: LEVEL1, 2: LEVEL2}, phases={1: "escalation", 2: "expansion"})
    test = survival.logrank(data, "os", "phase")
    assert test.statistic == pytest.approx(logrank_by_hand([frame(LEVEL1), frame(LEVEL2)]), rel=1e-9)


# --------------------------------------------------------------------------- table display


def test_survival_table_display_months_and_days():
    """Level 1 = aml (median 31 [13–NR] days = 1.0 [0.4–NR] months: 31 / 30.4375 = 1.02, 13 / 30.4375 = 0.43;
    longest time 161 < 182.625 -> no landmark '—'); level 2 = 10 20+ 30+ 40+ 50+ (NR [10–NR]);
    level 3 = 30 100 200+ 250 400+ 500+ (median 250: S = 4/9 there; 6-month 4/6, 12-month 4/9)."""
    data = survival_of({1: AML, 2: "10 20+ 30+ 40+ 50+", 3: "30 100 200+ 250 400+ 500+"})
    table = survival.survival_table(data, "os", "level")
    months = survival.survival_table_display(table, "months")
    days = survival.survival_table_display(table, "days")
    assert months["Group"].tolist() == ["L1", "L2", "L3"]
    assert months["N"].tolist() == [11, 5, 6] and months["Events"].tolist() == [7, 1, 3]
    # level 3 by hand: median 250; lower band at 30 (S = 5/6, sum 1/30) ~ 0.27 <= 0.5 -> 30; the upper band
    # at 250 (S = 4/9, sum 1/30 + 1/20 + 1/6) ~ 0.78 and S stays 4/9 -> NR. In months 250 d = 8.21, 30 d = 0.99.
    assert median_by_hand(frame("30 100 200+ 250 400+ 500+")) == (250, 30, None)
    assert months["Median, months [95% CI]"].tolist() == ["1.0 [0.4–NR]", "NR [0.3–NR]", "8.2 [1.0–NR]"]
    assert days["Median, days [95% CI]"].tolist() == ["31 [13–NR]", "NR [10–NR]", "250 [30–NR]"]
    lo6, hi6 = loglog_band(4 / 6, 1 / 30 + 1 / 20)
    lo12, hi12 = loglog_band(4 / 9, 1 / 30 + 1 / 20 + 1 / 6)
    # level 2's longest time (50) is short of 182.625 days as well
    assert months["6-month rate [95% CI]"].tolist() == ["—", "—", f"67% [{lo6:.0%}–{hi6:.0%}]"]
    assert months["12-month rate [95% CI]"].tolist()[2] == f"44% [{lo12:.0%}–{hi12:.0%}]"
    assert months["12-month rate [95% CI]"].tolist()[:2] == ["—", "—"]  # longest 161 and 50 < 365.25


def test_duration_text_months_rounding():
    """days / 30.4375 with one decimal: 45 d = 1.478 -> 1.5; 30 d = 0.986 -> 1.0; 91 d = 2.990 -> 3.0;
    None (not reached) -> NR; in days, whole days."""
    blank = dict(s6m=None, s6m_lo=None, s6m_hi=None, s12m=None, s12m_lo=None, s12m_hi=None)
    table = pd.DataFrame([dict(group=1, label="L1", n=3, events=2, median=45.0, median_lo=30.0, median_hi=91.0,
                               **blank),
                          dict(group=2, label="L2", n=3, events=1, median=None, median_lo=30.0, median_hi=None,
                               **blank)])
    assert survival.survival_table_display(table, "months")["Median, months [95% CI]"].tolist() == [
        "1.5 [1.0–3.0]", "NR [1.0–NR]"]
    assert survival.survival_table_display(table, "days")["Median, days [95% CI]"].tolist() == [
        "45 [30–91]", "NR [30–NR]"]


# --------------------------------------------------------------------------- censoring rules end to end
#
# Study S1 (agent VIRUS, levels 1-3, cut 2025-03-15). Days are from each subject's first VIRUS dose (d0).
#  L1 101  VIRUS d0, d21 | scans d-7 base, d42 PR, d70 PR (confirms), d112 PD | labs d95, d130 (with a time) |
#          AE onset d98 end d105 | last contact d190 | death d200
#     102  VIRUS d0 as a continuous period to d27 (end_date) | one scan, on d0 (baseline only) |
#          AE onset d10 end d40 | lab d250 | last contact d300 (after the cut)
#     103  VIRUS d0, d21 | no scan | lab d25 at 08:30 | death d60
#  L2 201  cyclophosphamide d-6, VIRUS d0, d21 | scans d-11, d-3 base, d42 CR, d70 CR, d112 CR | death d137
#     202  VIRUS d0 | scans d-7 base, d42 PR, d56 PD (PR unconfirmed) | last contact d250 = the cut
#     203  VIRUS d0 | scans d-5 base, d42 PR, d69 PR (27 days: unconfirmed) | lab d150 | death after the cut
#     204  VIRUS d0 | scans d-7 base, d35 PR, d63 PR (28 days: confirms), d105 PR, d160 PR | last contact d200
#     205  enrolled, never dosed; 206 cyclophosphamide only  -> in no analysis
#  L3 301  enrolled, first VIRUS dose after the cut  -> level 3 has nobody by the cut

CUT = D("2025-03-15")
FIRST = {"101": "2024-06-03", "102": "2024-06-10", "103": "2024-06-17", "201": "2024-07-01",
         "202": "2024-07-08", "203": "2024-07-15", "204": "2024-07-22"}


def on(sid: str, days: int) -> dt.date:
    return D(FIRST[sid]) + dt.timedelta(days=days)


def iso(sid: str, days: int) -> str:
    return on(sid, days).isoformat()


def subject(sid, level, enrolled, **extra):
    return dict(study_id="S1", subject_id=sid, dose_level=level, enrollment_date=enrolled, phase="escalation",
                **extra)


def dose(sid, date, agent="VIRUS", end_date=None):
    return dict(study_id="S1", subject_id=sid, agent=agent, admin_date=date, end_date=end_date)


def scan(sid, days, total, response=None):
    return dict(study_id="S1", subject_id=sid, assessment_date=iso(sid, days), target_sum_mm=total,
                new_lesions="N", nontarget_response="NON-CR/NON-PD", overall_response=response)


def lab(sid, collected_at):
    return dict(study_id="S1", subject_id=sid, collected_at=collected_at, category="hematology",
                test="Neutrophils", value=3.1, unit="10^9/L")


def ae(sid, onset, end=None):
    return dict(study_id="S1", subject_id=sid, term="Fatigue", onset_date=onset, end_date=end, grade=1, dlt="N")


TRIAL = dict(
    subjects=[
        subject("101", 1, "2024-05-20", last_contact_date=iso("101", 190), death_date=iso("101", 200),
                death_cause="Disease progression"),
        subject("102", 1, "2024-05-21", last_contact_date=iso("102", 300)),
        subject("103", 1, "2024-06-01", death_date=iso("103", 60), death_cause="Sepsis"),
        subject("201", 2, "2024-06-15", death_date=iso("201", 137), death_cause="Pneumonia"),
        subject("202", 2, "2024-06-28", last_contact_date=iso("202", 250)),
        subject("203", 2, "2024-07-05", death_date="2025-04-01", death_cause="Disease progression"),
        subject("204", 2, "2024-07-10", last_contact_date=iso("204", 200)),
        subject("205", 2, "2024-07-12"), subject("206", 2, "2024-07-13"),
        subject("301", 3, "2025-01-10"),
    ],
    administrations=[
        dose("101", iso("101", 0)), dose("101", iso("101", 21)),
        dose("102", iso("102", 0), end_date=iso("102", 27)),
        dose("103", iso("103", 0)), dose("103", iso("103", 21)),
        dose("201", iso("201", -6), agent="cyclophosphamide"), dose("201", iso("201", 0)),
        dose("201", iso("201", 21)),
        dose("202", iso("202", 0)), dose("203", iso("203", 0)), dose("204", iso("204", 0)),
        dose("206", "2024-07-20", agent="cyclophosphamide"),
        dose("301", "2025-03-20"),
    ],
    tumor_assessments=[
        scan("101", -7, 100), scan("101", 42, 60, "PR"), scan("101", 70, 55, "PR"), scan("101", 112, 80, "PD"),
        scan("102", 0, 50),
        scan("201", -11, 90), scan("201", -3, 80), scan("201", 42, 0, "CR"), scan("201", 70, 0, "CR"),
        scan("201", 112, 0, "CR"),
        scan("202", -7, 60), scan("202", 42, 40, "PR"), scan("202", 56, 75, "PD"),
        scan("203", -5, 30), scan("203", 42, 20, "PR"), scan("203", 69, 19, "PR"),
        scan("204", -7, 50), scan("204", 35, 30, "PR"), scan("204", 63, 28, "PR"), scan("204", 105, 27, "PR"),
        scan("204", 160, 27, "PR"),
    ],
    lab_results=[
        lab("101", f"{iso('101', 95)}T10:00:00"), lab("101", f"{iso('101', 130)}T14:45:00"),
        lab("102", iso("102", 250)),
        lab("103", f"{iso('103', 25)}T08:30:00"),
        lab("203", iso("203", 150)),
    ],
    adverse_events=[
        ae("101", iso("101", 98), iso("101", 105)),
        ae("102", iso("102", 10), iso("102", 40)),
    ],
)


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    return one_study_db(tmp_path_factory.mktemp("survival") / "survival.duckdb", **TRIAL)


def rows(trial, as_of: dt.date, endpoint: str) -> dict:
    """subject_id -> the endpoint's row, as of ``as_of``."""
    data = survival.load_survival(*trial, as_of)
    return {r.subject_id: r for r in data.endpoint(endpoint).itertuples()}


def test_subjects_are_those_dosed_with_the_study_agent_by_the_as_of_date(trial):
    """205 never dosed, 206 cyclophosphamide only, 301 first dosed after the cut; on 2024-07-10 only the
    subjects first dosed by then (203 and 204 come later)."""
    dosed = ["101", "102", "103", "201", "202", "203", "204"]
    assert sorted(rows(trial, CUT, "os")) == dosed
    assert sorted(rows(trial, CUT, "pfs")) == dosed
    assert sorted(rows(trial, D("2024-07-10"), "os")) == ["101", "102", "103", "201", "202"]


# OS: (subject, as-of day, expected OS day, event) with where the end date comes from.
OS_CASES = [
    ("101", 100, 98, False),   # contact d190 not yet recorded; latest record: AE onset d98 (AE end d105 is later)
    ("101", 150, 130, False),  # latest record: lab d130 (collected at 14:45), after the PD scan d112, AE end d105
    ("101", 195, 190, False),  # last contact d190 recorded by then; death d200 not yet
    ("101", 199, 190, False),  # still alive as known the day before the death
    ("101", 200, 200, True),   # death on the as-of date counts
    ("102", 20, 10, False),    # AE onset d10; the dosing period's end d27 is after the as-of date
    ("102", 30, 27, False),    # the dosing period's end_date d27
    ("102", 45, 40, False),    # AE end d40
    ("103", 22, 21, False),    # dose admin_date d21 (the lab d25 is later)
    ("103", 25, 25, False),    # lab taken at 08:30 on the as-of date itself counts
    ("103", 59, 25, False),    # no contact date, death d60 not yet: the lab d25
    ("201", 120, 112, False),  # tumor assessment d112; days from VIRUS, not from cyclophosphamide (d-6)
]


@pytest.mark.parametrize("sid, as_of_day, expected_day, event", OS_CASES)
def test_overall_survival_censoring(trial, sid, as_of_day, expected_day, event):
    r = rows(trial, on(sid, as_of_day), "os")[sid]
    assert (r.days, bool(r.event)) == (expected_day, event)
    assert r.start_date == on(sid, 0)
    assert r.end_date == on(sid, expected_day)


def test_overall_survival_at_the_cut(trial):
    got = {sid: (r.days, bool(r.event)) for sid, r in rows(trial, CUT, "os").items()}
    assert got == {
        "101": (200, True),   # death d200
        "102": (250, False),  # contact d300 is after the cut: latest record, lab d250
        "103": (60, True),    # death d60
        "201": (137, True),   # death d137 from the VIRUS dose (143 from cyclophosphamide would be wrong)
        "202": (250, False),  # last contact on the cut date itself
        "203": (150, False),  # death 2025-04-01 is after the cut: censored at the latest record, lab d150
        "204": (200, False),  # last contact d200
    }
    assert rows(trial, CUT, "os")["201"].start_date == D("2024-07-01")  # first VIRUS dose


def test_progression_free_survival_at_the_cut(trial):
    r = rows(trial, CUT, "pfs")
    got = {sid: (x.days, bool(x.event)) for sid, x in r.items()}
    assert got == {
        "101": (112, True),   # PD d112, before the death d200
        "102": (0, False),    # only a baseline scan (on d0): censored at day 0
        "103": (60, True),    # no scan at all, but death d60 is an event
        "201": (137, True),   # CR throughout, death d137
        "202": (56, True),    # PD d56
        "203": (69, False),   # last scan d69, death after the cut not seen
        "204": (160, False),  # last scan d160
    }
    assert r["102"].end_date == on("102", 0)
    assert r["101"].end_date == on("101", 112)


def test_progression_free_survival_as_of_earlier_dates(trial):
    r101 = rows(trial, on("101", 100), "pfs")["101"]
    assert (r101.days, bool(r101.event), r101.end_date) == (70, False, on("101", 70))  # PD d112 not seen yet
    r103 = rows(trial, on("103", 30), "pfs")["103"]
    assert (r103.days, bool(r103.event), r103.end_date) == (0, False, on("103", 0))  # no scan, alive: day 0
    r201 = rows(trial, on("201", 120), "pfs")["201"]
    assert (r201.days, bool(r201.event)) == (112, False)  # last scan d112; death d137 not yet


def test_duration_of_response_at_the_cut(trial):
    """Only confirmed responders: 101 (PR d42 -> PD d112), 201 (CR d42 -> death d137), 204 (PR d35 confirmed
    d63, censored at the last scan d160). 202's PR was followed by PD, 203's second PR came 27 days later."""
    r = rows(trial, CUT, "dor")
    got = {sid: (x.start_date, x.end_date, x.days, bool(x.event)) for sid, x in r.items()}
    assert got == {
        "101": (on("101", 42), on("101", 112), 70, True),
        "201": (on("201", 42), on("201", 137), 95, True),
        "204": (on("204", 35), on("204", 160), 125, False),
    }


def test_duration_of_response_as_of_earlier_dates(trial):
    """As of 101's d69 the confirming scan (d70) is not done: no DOR row. As of d100: censored at d70 (28 days).
    As of 201's d120: censored at the last scan d112 (70 days), the death comes later."""
    assert "101" not in rows(trial, on("101", 69), "dor")
    r101 = rows(trial, on("101", 100), "dor")["101"]
    assert (r101.days, bool(r101.event), r101.end_date) == (28, False, on("101", 70))
    r201 = rows(trial, on("201", 120), "dor")["201"]
    assert (r201.days, bool(r201.event)) == (70, False)


def km_median(spec: str) -> float | None:
    """First time the hand-made KM is at or below 0.5."""
    return next((t for t, _, _, s, _ in km_by_hand(frame(spec)) if s <= 0.5), None)


def test_survival_json_at_the_cut(trial):
    """Per endpoint: levels 1, 2, 3 (dose order; level 3 has nobody) then "all".
    OS  L1 60 200 250+: S 2/3, 1/3 -> median 200.  L2 137 150+ 200+ 250+: S 3/4 -> NR.
        all 60 137 150+ 200 200+ 250+ 250+: 6/7, 5/7, 5/7 * 3/4 = 0.536 (tie at 200: n = 4) -> NR.
    PFS L1 0+ 60 112: S 1/2 at 60 -> 60.  L2 56 69+ 137 160+: 3/4, 3/8 -> 137.
        all 0+ 56 60 69+ 112 137 160+: 5/6, 4/6, 4/9, 2/9 -> 112.
    DOR L1 70: -> 70.  L2 95 125+: 1/2 at 95 -> 95.  all 70 95 125+: 2/3, 1/3 -> 95."""
    out = survival.survival_json(survival.load_survival(*trial, CUT))
    assert list(out) == ["os", "pfs", "dor"]
    specs = {
        "os": {1: "60 200 250+", 2: "137 150+ 200+ 250+", "all": "60 137 150+ 200 200+ 250+ 250+"},
        "pfs": {1: "0+ 60 112", 2: "56 69+ 137 160+", "all": "0+ 56 60 69+ 112 137 160+"},
        "dor": {1: "70", 2: "95 125+", "all": "70 95 125+"},
    }
    expected_medians = {"os": {1: 200, 2: None, "all": None}, "pfs": {1: 60, 2: 137, "all": 112},
                        "dor": {1: 70, 2: 95, "all": 95}}
    checked = 0
    for endpoint, by_group in specs.items():
        got = out[endpoint]
        assert [r["group"] for r in got] == [1, 2, 3, "all"], endpoint
        assert got[2] == dict(group=3, n=0, events=0, median=None, median_lo=None, median_hi=None)
        for r in got:
            if r["group"] == 3:
                continue
            times = frame(by_group[r["group"]])
            assert (r["n"], r["events"]) == (len(times), int(times["event"].sum())), (endpoint, r["group"])
            assert r["median"] == expected_medians[endpoint][r["group"]] == km_median(by_group[r["group"]])
            try:
                _, lo, hi = median_by_hand(times)
            except Undetermined:  # the band at S = 0 has no Greenwood CI: the bound is a convention
                continue
            assert r["median_lo"] == (None if lo is None else round(lo, 2)), (endpoint, r["group"])
            assert r["median_hi"] == (None if hi is None else round(hi, 2)), (endpoint, r["group"])
            checked += 1
    assert checked == 7  # all but PFS and DOR level 1, whose curves drop to 0 before the upper band is at 0.5
    assert isinstance(out["os"][0]["group"], int)


def test_survival_table_by_level_skips_empty_levels_and_pools(trial):
    data = survival.load_survival(*trial, CUT)
    by_level = survival.survival_table(data, "os", "level")
    assert by_level["group"].tolist() == [1, 2]  # level 3 has nobody: no row on the page
    assert by_level["n"].tolist() == [3, 4] and by_level["events"].tolist() == [2, 1]
    pooled = survival.survival_table(data, "os", "all")
    assert pooled["group"].tolist() == ["all"] and pooled["n"].tolist() == [7]


def test_progression_without_a_baseline_scan_still_ends_pfs(tmp_path):
    """Not evaluable for response (no baseline), but a PD after the first dose is a progression, and without one
    the subject is censored at the last scan."""
    db, study = one_study_db(tmp_path / "nobase.duckdb", subjects=[
        subject("101", 1, "2024-05-20"), subject("102", 1, "2024-05-21")],
        administrations=[dose("101", iso("101", 0)), dose("102", iso("102", 0))],
        tumor_assessments=[scan("101", 42, 60, "SD"), scan("101", 84, 80, "PD"), scan("102", 42, 50, "SD"),
                           scan("102", 90, 50, "SD")])
    r = {x.subject_id: x for x in survival.load_survival(db, study, CUT).endpoint("pfs").itertuples()}
    assert (r["101"].days, bool(r["101"].event), r["101"].reason) == (84, True, "progression")
    assert (r["102"].days, bool(r["102"].event)) == (90, False)
