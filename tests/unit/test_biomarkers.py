"""Biomarkers (smc.biomarkers): time 0, LLOQ/2, fold change, first-dose NCA, power model, shedding,
immunogenicity and the summary helpers.

Every expected value is worked out by hand (or by an independent method) from the rules, never copied from
the code's output. Study S1 escalates VIRUS; as of 2025-03-15:

  101 L1  cyclophosphamide 01-07 08:00; VIRUS 01-10 08:00 (time 0) and 01-17 08:00 (second dose, +168 h)
  102 L1  VIRUS 02-03 with no admin_time (time 0 = midnight, flagged)
  201 L2  VIRUS 02-10 09:30           203 L2  VIRUS 02-12 09:30 (only a pre-dose urine sample)
  202 L2  enrolled, never dosed (its samples are not biomarker results)

PK-like series (VIRUS DNA in blood, LLOQ 10 copies/mL), hours after time 0 (BLQ = below the LLOQ):
  101: -24 h 5000 | 0 BLQ | 1 BLQ | 2 100 | 4 400 | 8 BLQ | 24 400 | 48 100 | 168 25 | 169 9000 (after dose 2)
  102:  6 80 | 12 160 | 24 40 | 48 BLQ | 72 BLQ          201: 0 BLQ | 4 BLQ
"""
from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from smc.analysis import biomarkers as bmk
from tests.helpers import one_study_db

AS_OF = dt.date.fromisoformat("2025-03-15")
LN2 = math.log(2)
NA = None


def subject(sid, level, enrolled):
    return dict(study_id="S1", subject_id=sid, dose_level=level, enrollment_date=enrolled, phase="escalation")


def dose(sid, date, time=NA, agent="VIRUS"):
    return dict(study_id="S1", subject_id=sid, agent=agent, admin_date=date, admin_time=time)


def lab(sid, at, category, test, specimen, value, lloq, unit):
    return dict(study_id="S1", subject_id=sid, collected_at=at, category=category, test=test, specimen=specimen,
                value=value, unit=unit, lloq=lloq)


def pk(sid, at, value):
    return lab(sid, at, "pk", "VIRUS DNA", "blood", value, 10, "copies/mL")


def shed(sid, at, specimen, value):
    return lab(sid, at, "virology", "VIRUS qPCR", specimen, value, 50, "copies/mL")


def il6(sid, at, specimen, value, lloq=1):
    return lab(sid, at, "cytokine", "IL-6", specimen, value, lloq, "pg/mL")


def nab(sid, at, value):
    return lab(sid, at, "immunogenicity", "anti-VIRUS NAb", "serum", value, 10, "titer")


SUBJECTS = [subject("101", 1, "2025-01-05"), subject("102", 1, "2025-02-01"), subject("201", 2, "2025-02-08"),
            subject("202", 2, "2025-02-09"), subject("203", 2, "2025-02-09")]
DOSES = [dose("101", "2025-01-17", "08:00"),  # second dose listed first: order comes from date and time
         dose("101", "2025-01-07", "08:00", agent="cyclophosphamide"),  # not the study agent: not time 0
         dose("101", "2025-01-10", "08:00"), dose("102", "2025-02-03"),
         dose("201", "2025-02-10", "09:30"), dose("203", "2025-02-12", "09:30")]
LABS = [
    # --- PK-like, 101 (time 0 = 2025-01-10 08:00)
    pk("101", "2025-01-09T08:00:00", 5000),  # pre-dose: not part of the first-dose profile
    pk("101", "2025-01-10T08:00:00", NA), pk("101", "2025-01-10T09:00:00", NA),  # BLQ before first quantifiable
    pk("101", "2025-01-10T10:00:00", 100), pk("101", "2025-01-10T12:00:00", 400),
    pk("101", "2025-01-10T16:00:00", NA),  # BLQ between quantifiable samples: left out
    pk("101", "2025-01-11T08:00:00", 400),  # ties Cmax: Tmax stays at the first occurrence (4 h)
    pk("101", "2025-01-12T08:00:00", 100),
    pk("101", "2025-01-17T08:00:00", 25),  # exactly at the second dose: still in the profile
    pk("101", "2025-01-17T09:00:00", 9000),  # after the second dose: ignored
    # --- PK-like, 102 (time 0 = 2025-02-03 00:00, no admin_time)
    pk("102", "2025-02-03T06:00:00", 80), pk("102", "2025-02-03T12:00:00", 160),
    pk("102", "2025-02-04T00:00:00", 40),
    pk("102", "2025-02-05T00:00:00", NA), pk("102", "2025-02-06T00:00:00", NA),  # trailing BLQ: add nothing
    # --- PK-like, 201: nothing quantified
    pk("201", "2025-02-10T09:30:00", NA), pk("201", "2025-02-10T13:30:00", NA),
    # --- never dosed
    pk("202", "2025-02-10T10:00:00", 777), shed("202", "2025-02-11T10:00:00", "urine", 777),
    # --- shedding (LLOQ 50)
    shed("101", "2025-01-09T08:00:00", "urine", 1000),  # pre-dose: not shedding
    shed("101", "2025-01-11T08:00:00", "urine", 200),  # day 1
    shed("101", "2025-01-13T10:00:00", "urine", 60),  # 74 h = day 3 (2 h after the day-3 visit)
    shed("101", "2025-01-17T08:00:00", "urine", NA),  # day 7, BLQ
    shed("101", "2025-01-11T08:00:00", "saliva", NA),  # day 1, BLQ
    shed("102", "2025-02-04T00:00:00", "urine", NA),  # day 1, BLQ
    shed("102", "2025-02-08T00:00:00", "urine", 0),  # day 5, quantified zero: not detected
    shed("102", "2025-02-05T00:00:00", "saliva", 300),  # day 2
    shed("201", "2025-02-10T09:30:00", "urine", 5000),  # exactly time 0: not after dosing
    shed("201", "2025-02-24T09:30:00", "urine", 70),  # day 14
    shed("203", "2025-02-10T09:30:00", "urine", 80),  # pre-dose only: 203 is not tested
    # --- cytokines (fold change)
    il6("101", "2025-01-08T08:00:00", "serum", 4.0), il6("101", "2025-01-10T07:00:00", "serum", 5.0),  # baseline 5
    il6("101", "2025-01-10T14:00:00", "serum", 50.0), il6("101", "2025-01-11T08:00:00", "serum", 10.0),
    il6("101", "2025-01-10T08:00:00", "plasma", 2.0),  # at time 0: the plasma baseline
    il6("101", "2025-01-10T20:00:00", "plasma", NA),  # BLQ, LLOQ 1 -> 0.5
    il6("102", "2025-02-04T00:00:00", "serum", 3.0),  # no pre-dose result: no fold change
    # --- immunogenicity (LLOQ 10)
    nab("101", "2025-01-03T08:00:00", NA), nab("101", "2025-01-09T08:00:00", NA),  # days -7 and -1 -> day 0
    nab("101", "2025-01-24T08:00:00", 40), nab("101", "2025-02-07T08:00:00", 160),  # days 14, 28
    nab("102", "2025-02-02T00:00:00", 20),  # day -1 -> 0, pre-existing titer
    nab("102", "2025-02-17T00:00:00", 160), nab("102", "2025-03-03T00:00:00", NA),  # days 14, 28
    nab("201", "2025-02-10T08:00:00", NA), nab("201", "2025-02-24T09:30:00", NA),  # days 0, 14
    # --- not a biomarker category
    dict(study_id="S1", subject_id="101", collected_at="2025-01-11T08:00:00", category="hematology",
         test="Neutrophils", specimen="blood", value=3.0, unit="10^9/L", lloq=NA),
]


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    path = tmp_path_factory.mktemp("biomarkers") / "biomarkers.duckdb"
    return one_study_db(path, subjects=SUBJECTS, administrations=DOSES, lab_results=LABS)


@pytest.fixture(scope="module")
def bm(trial):
    return bmk.load_biomarkers(*trial, AS_OF)


def result(bm, sid, test, specimen, at):
    r = bm.results
    row = r[(r["subject_id"] == sid) & (r["test"] == test) & (r["specimen"] == specimen)
            & (r["collected_at"] == pd.Timestamp(at))]
    assert len(row) == 1, (sid, test, specimen, at)
    return row.iloc[0]


# --------------------------------------------------------------------------- time 0, LLOQ/2, what is loaded


def test_time_zero_is_the_first_agent_dose_at_its_clock_time_not_another_treatment(bm):
    """101: VIRUS at 01-10 08:00 (cyclophosphamide 01-07 is not the agent): 10:00 that day is +2 h,
    the day before at 08:00 is -24 h, the second dose (01-17 08:00) is +168 h."""
    assert result(bm, "101", "VIRUS DNA", "blood", "2025-01-10T10:00:00")["hours"] == pytest.approx(2.0)
    assert result(bm, "101", "VIRUS DNA", "blood", "2025-01-09T08:00:00")["hours"] == pytest.approx(-24.0)
    assert result(bm, "101", "VIRUS DNA", "blood", "2025-01-17T08:00:00")["hours"] == pytest.approx(168.0)
    assert bool(result(bm, "101", "VIRUS DNA", "blood", "2025-01-10T10:00:00")["first_agent_dose_time_known"])


def test_missing_admin_time_counts_as_midnight_and_is_flagged(bm):
    """102's dose has no clock time: time 0 is 02-03 00:00, so 06:00 is +6 h; the flag says it was guessed."""
    row = result(bm, "102", "VIRUS DNA", "blood", "2025-02-03T06:00:00")
    assert row["hours"] == pytest.approx(6.0)
    assert not bool(row["first_agent_dose_time_known"])


def test_only_dosed_subjects_and_biomarker_categories_are_loaded(bm):
    """202 was never dosed (no time 0); hematology is a safety lab, not a biomarker."""
    assert "202" not in set(bm.results["subject_id"])
    assert "hematology" not in set(bm.results["category"])
    assert set(bm.results["subject_id"]) == {"101", "102", "201", "203"}


def test_below_lloq_is_drawn_at_half_the_lloq_and_flagged(bm):
    """A BLQ result (empty value, LLOQ 10) is kept at 10/2 = 5; a measured value keeps its own value."""
    blq = result(bm, "101", "VIRUS DNA", "blood", "2025-01-10T16:00:00")
    assert bool(blq["below_lloq"]) and blq["plot_value"] == pytest.approx(5.0)
    measured = result(bm, "101", "VIRUS DNA", "blood", "2025-01-10T12:00:00")
    assert not bool(measured["below_lloq"]) and measured["plot_value"] == pytest.approx(400.0)
    zero = result(bm, "102", "VIRUS qPCR", "urine", "2025-02-08T00:00:00")  # quantified 0 is not BLQ
    assert not bool(zero["below_lloq"]) and zero["plot_value"] == 0


def test_series_counts_every_result_and_every_below_lloq_result(bm):
    """Counted by hand from LABS (dosed subjects only): BLQ results are counted, never dropped; order is
    pk, virology, cytokine, immunogenicity (the category order), then test and specimen."""
    got = [(r.category, r.test, r.specimen, r.unit, r.n_subjects, r.n_results, int(r.n_below_lloq))
           for r in bm.series().itertuples()]
    assert got == [
        ("pk", "VIRUS DNA", "blood", "copies/mL", 3, 17, 7),  # 101: 10 (0, 1, 8 h BLQ), 102: 5 (2 BLQ), 201: 2 BLQ
        ("virology", "VIRUS qPCR", "saliva", "copies/mL", 2, 2, 1),
        ("virology", "VIRUS qPCR", "urine", "copies/mL", 4, 9, 2),  # 101: 4, 102: 2, 201: 2, 203: 1
        ("cytokine", "IL-6", "plasma", "pg/mL", 1, 2, 1),
        ("cytokine", "IL-6", "serum", "pg/mL", 2, 5, 0),
        ("immunogenicity", "anti-VIRUS NAb", "serum", "titer", 3, 9, 5),
    ]


class _WithEmptyRow:
    """The loader refuses a result with neither value nor LLOQ, so inject one after the query to check that
    load_biomarkers drops it (it has nothing to draw)."""

    def __init__(self, db):
        self.db = db

    def query(self, name, **params):
        frame = self.db.query(name, **params)
        if name == "lab_results":
            extra = frame[frame["subject_id"] == "101"].head(1).copy()
            extra[["value", "lloq"]] = np.nan
            extra["collected_at"] = pd.Timestamp("2025-01-10T11:00:00")
            frame = pd.concat([frame, extra], ignore_index=True)
        return frame


def test_a_result_with_neither_value_nor_lloq_is_dropped(trial, bm):
    db, study = trial
    loaded = bmk.load_biomarkers(_WithEmptyRow(db), study, AS_OF)
    assert len(loaded.results) == len(bm.results)
    assert not (loaded.results["value"].isna() & loaded.results["lloq"].isna()).any()
    assert loaded.results["plot_value"].notna().all()


# --------------------------------------------------------------------------- fold change


def test_fold_change_is_from_the_last_result_at_or_before_time_0_of_the_same_specimen(bm):
    """101 IL-6 serum: baseline 5.0 (-1 h, later than 4.0 on day -2): 50/5 = 10 at +6 h, 10/5 = 2 at +24 h.
    Plasma: baseline 2.0 at exactly time 0; the BLQ at +12 h is 0.5 (LLOQ/2) -> 0.25."""
    assert result(bm, "101", "IL-6", "serum", "2025-01-10T14:00:00")["fold_change"] == pytest.approx(10.0)
    assert result(bm, "101", "IL-6", "serum", "2025-01-11T08:00:00")["fold_change"] == pytest.approx(2.0)
    assert result(bm, "101", "IL-6", "plasma", "2025-01-10T20:00:00")["fold_change"] == pytest.approx(0.25)


def test_no_fold_change_at_or_before_time_0_or_without_a_baseline(bm):
    """Pre-dose and time-0 results are baselines, not changes; 102 has no pre-dose IL-6."""
    assert pd.isna(result(bm, "101", "IL-6", "serum", "2025-01-10T07:00:00")["fold_change"])
    assert pd.isna(result(bm, "101", "IL-6", "plasma", "2025-01-10T08:00:00")["fold_change"])
    assert pd.isna(result(bm, "102", "IL-6", "serum", "2025-02-04T00:00:00")["fold_change"])


# --------------------------------------------------------------------------- AUC and NCA


def test_auc_linear_up_log_down_worked_example():
    """0-1 h rises 0->100: linear 0.5·100 = 50; 1-2 h falls 100->50: 50·1/ln 2; 2-4 h falls 50->25:
    25·2/ln(2) = 50/ln 2. Total 50 + 100/ln 2 ≈ 194.27."""
    auc = bmk.auc_linear_up_log_down(np.array([0.0, 1, 2, 4]), np.array([0.0, 100, 50, 25]))
    assert auc == pytest.approx(50 + 100 / LN2, rel=1e-12)
    assert auc == pytest.approx(194.27, abs=0.01)


def test_auc_log_down_is_exact_for_exponential_decline():
    """c = 100·e^(-t/2): each log trapezoid is (c1-c2)/0.5, the sum telescopes to the integral
    ∫0^8 100 e^(-t/2) dt = 200·(1 - e^-4)."""
    t = np.array([0.0, 1, 2, 4, 8])
    auc = bmk.auc_linear_up_log_down(t, 100 * np.exp(-0.5 * t))
    assert auc == pytest.approx(200 * (1 - math.exp(-4)), rel=1e-9)


@pytest.mark.parametrize("hours, conc, expected", [
    ([0, 2], [10, 30], 2 * 40 / 2),  # rising: linear
    ([0, 3], [5, 5], 15),  # level: linear (ln(1) would divide by zero)
    ([0, 2], [10, 0], 2 * 10 / 2),  # falling to 0: linear (log of 0 undefined)
    ([0, 1], [100, 50], 50 / LN2),  # falling between positives: log, 72.13 not the linear 75
    ([0], [7], 0.0),  # a single sample has no area
])
def test_auc_rule_per_segment(hours, conc, expected):
    assert bmk.auc_linear_up_log_down(np.array(hours, float), np.array(conc, float)) == pytest.approx(expected)


def test_first_dose_profile_drops_pre_dose_mid_and_trailing_blq_and_post_second_dose(bm):
    """101: pre-dose and the sample after the second dose are out; BLQ at 0 and 1 h (before the first
    quantifiable) count as 0; the BLQ at 8 h is left out; 168 h (= the second dose) is in.
    102: no sample at 0 -> starts at (0, 0); the trailing BLQs at 48 and 72 h are left out."""
    hours, conc = bmk.first_dose_profile(bm.results_of("VIRUS DNA", "blood").query("subject_id == '101'"))
    assert hours.tolist() == pytest.approx([0, 1, 2, 4, 24, 48, 168])
    assert conc.tolist() == pytest.approx([0, 0, 100, 400, 400, 100, 25])
    hours, conc = bmk.first_dose_profile(bm.results_of("VIRUS DNA", "blood").query("subject_id == '102'"))
    assert hours.tolist() == pytest.approx([0, 6, 12, 24])
    assert conc.tolist() == pytest.approx([0, 80, 160, 40])


def test_exposure_by_hand(bm):
    """101: Cmax 400 first at 4 h (the 24 h tie does not move Tmax; 5000 pre-dose and 9000 after the
    second dose do not count). AUC: 0-1 h 0; 1-2 h 50; 2-4 h 500; 4-24 h 8000 (level);
    24-48 h (400-100)·24/ln 4 = 3600/ln 2; 48-168 h (100-25)·120/ln 4 = 4500/ln 2 -> 8550 + 8100/ln 2.
    102: (0,0) added; Cmax 160 at 12 h after midnight; AUC 240 + 720 + (160-40)·12/ln 4 = 960 + 720/ln 2,
    the trailing BLQs add nothing. 201: nothing quantified -> NaN."""
    e = bmk.exposure(bm).set_index("subject_id")
    assert list(e.index) == ["101", "102", "201"]
    assert e.loc["101", ["level", "cmax", "tmax_h"]].tolist() == [1, 400, 4]
    assert e.loc["101", "auc"] == pytest.approx(8550 + 8100 / LN2, rel=1e-12)
    assert e.loc["101", "tlast_h"] == pytest.approx(168)
    assert e.loc["102", ["level", "cmax", "tmax_h"]].tolist() == [1, 160, 12]
    assert e.loc["102", "auc"] == pytest.approx(960 + 720 / LN2, rel=1e-12)
    assert e.loc["102", "tlast_h"] == pytest.approx(24)
    assert e.loc["201", "level"] == 2
    assert e.loc["201", ["cmax", "tmax_h", "auc"]].isna().all()
    assert set(e["test"]) == {"VIRUS DNA"} and set(e["specimen"]) == {"blood"}


# --------------------------------------------------------------------------- power model


def test_power_model_exact_power_law():
    """y = 3·dose^0.8 exactly: ln y = ln 3 + 0.8 ln dose, no residual, so the CI collapses onto 0.8."""
    d = pd.Series([1.0, 2, 4, 8, 16])
    fit = bmk.power_model(d, 3 * d ** 0.8)
    assert fit.n == 5
    assert fit.slope == pytest.approx(0.8, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(3), abs=1e-12)
    assert fit.slope_lo == pytest.approx(0.8, abs=1e-9) and fit.slope_hi == pytest.approx(0.8, abs=1e-9)
    assert fit.predict(np.array([10.0])) == pytest.approx([3 * 10 ** 0.8])


def _reference_fit(x, y):
    """Independent slope and 95% CI: numpy.polyfit on logs; CI from statsmodels OLS when installed, else the
    textbook slope ± t(0.975, n-2)·sqrt(SSE/(n-2)/Sxx)."""
    lx, ly = np.log(x), np.log(y)
    slope, intercept = np.polyfit(lx, ly, 1)
    try:
        import statsmodels.api as sm
    except ImportError:
        n = len(lx)
        sse = float(np.sum((ly - (intercept + slope * lx)) ** 2))
        sxx = float(np.sum((lx - lx.mean()) ** 2))
        half = stats.t.ppf(0.975, n - 2) * math.sqrt(sse / (n - 2) / sxx)
        return slope, intercept, slope - half, slope + half
    ci = sm.OLS(ly, sm.add_constant(lx)).fit().conf_int(0.05)
    return slope, intercept, ci[1][0], ci[1][1]


def test_power_model_with_noise_matches_an_independent_fit():
    rng = np.random.default_rng(20250315)
    d = np.repeat([1.0, 3, 10, 30], 3)
    y = 3 * d ** 0.8 * np.exp(rng.normal(0, 0.25, len(d)))
    fit = bmk.power_model(pd.Series(d), pd.Series(y))
    slope, intercept, lo, hi = _reference_fit(d, y)
    assert fit.n == 12
    assert fit.slope == pytest.approx(slope, rel=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert (fit.slope_lo, fit.slope_hi) == pytest.approx((lo, hi), rel=1e-9)
    assert fit.slope_lo < fit.slope < fit.slope_hi


@pytest.mark.parametrize("dose, exposure", [
    ([1.0, 10.0], [5.0, 40.0]),  # two subjects
    ([3.0, 3.0, 3.0, 3.0], [5.0, 6.0, 7.0, 8.0]),  # one dose: no slope
    ([1.0, 3.0, 10.0, 30.0], [5.0, np.nan, 40.0, np.nan]),  # only two subjects with a measured exposure
])
def test_power_model_needs_three_subjects_and_two_doses(dose, exposure):
    assert bmk.power_model(pd.Series(dose), pd.Series(exposure)) is None


# --------------------------------------------------------------------------- shedding


def test_shedding_by_level(bm):
    """After time 0 only. Urine L1: 101 and 102 tested, 101 detected (200 on day 1, 60 at 74 h = day 3;
    the 1000 pre-dose does not count), 102's quantified 0 is not a detection. Saliva L1: 102 detected on
    day 2. Urine L2: 201 tested (its time-0 sample is not after dosing) and detected on day 14; 203 has
    only a pre-dose sample, so it is not tested."""
    got = {(r.specimen, r.level): (r.n_tested, r.n_detected, r.last_day_detected)
           for r in bmk.shedding_by_level(bm).itertuples()}
    assert got == {("urine", 1): (2, 1, 3), ("saliva", 1): (2, 1, 2), ("urine", 2): (1, 1, 14)}


def test_shedding_by_day(bm):
    """Urine L1 by nominal day: day 1 101 (200) and 102 (BLQ) tested, 1 detected; day 3 101 detected;
    day 5 102's quantified 0; day 7 101 BLQ."""
    s = bmk.shedding(bm)
    urine = s[(s["specimen"] == "urine") & (s["level"] == 1)]
    got = {int(r.nominal_day): (r.n_tested, r.n_detected) for r in urine.itertuples()}
    assert got == {1: (2, 1), 3: (1, 1), 5: (1, 0), 7: (1, 0)}
    l2 = s[(s["specimen"] == "urine") & (s["level"] == 2)]
    assert [(int(r.nominal_day), r.n_tested, r.n_detected) for r in l2.itertuples()] == [(14, 1, 1)]


def test_last_day_detected_per_subject(bm):
    """101 urine: day 3 (day 7 was BLQ); 101 saliva and 102 urine: never; 102 saliva: day 2; 201 urine: 14."""
    got = {(r.subject_id, r.specimen): (None if pd.isna(r.last_day_detected) else int(r.last_day_detected))
           for r in bmk.last_day_detected(bm).itertuples()}
    assert got == {("101", "urine"): 3, ("101", "saliva"): None, ("102", "urine"): None,
                   ("102", "saliva"): 2, ("201", "urine"): 14}


# --------------------------------------------------------------------------- immunogenicity


def test_immunogenicity_by_level_and_day(bm):
    """Pre-dose samples (days -7 and -1) sit on day 0, and a subject counts once. L1 day 0: 101 BLQ twice,
    102 titer 20 -> 1/2 positive, GMT 20. Day 14: 40 and 160 -> GMT sqrt(40·160) = 80. Day 28: 160 and a
    BLQ -> 1/2, GMT 160. L2 (201): BLQ on days 0 and 14 -> 0 positive, no GMT."""
    table = bmk.immunogenicity(bm)
    got = {(r.level, int(r.nominal_day)): (r.n_tested, r.n_positive, r.gmt, r.pct_positive)
           for r in table.itertuples()}
    assert set(got) == {(1, 0), (1, 14), (1, 28), (2, 0), (2, 14)}
    assert got[(1, 0)] == pytest.approx((2, 1, 20, 50))
    assert got[(1, 14)] == pytest.approx((2, 2, 80, 100))
    assert got[(1, 28)] == pytest.approx((2, 1, 160, 50))
    for key in [(2, 0), (2, 14)]:
        n_tested, n_positive, gmt, pct = got[key]
        assert (n_tested, n_positive, pct) == (1, 0, 0) and math.isnan(gmt)
    assert set(table["test"]) == {"anti-VIRUS NAb"}


# --------------------------------------------------------------------------- axes and summaries


@pytest.mark.parametrize("hours, unit", [
    ([-24, 0, 2, 168], "hours"),  # every sample within the first week (168 h exactly is still in it)
    ([0, 24, 168.5], "days"),  # one sample past 168 h
    ([0, 24 * 28], "days"),
])
def test_time_unit(hours, unit):
    assert bmk.time_unit(pd.DataFrame({"hours": hours})) == unit


@pytest.mark.parametrize("values, log_axis", [
    ([1, 100], True),  # exactly two decades
    ([1, 99.9], False),
    ([0, 0.5, 50], True),  # zero is ignored: 50/0.5 = 100
    ([0, 1, 50], False),  # 50/1 < 100 (the zero does not make it infinite)
    ([5], False),  # a single value spans nothing
])
def test_spans_decades(values, log_axis):
    assert bool(bmk.spans_decades(pd.Series(values, dtype=float))) is log_axis


def _summary_frame():
    """Level 1: 2 at 0.9 h and 8 at 1.2 h (both nominal 1 h), a BLQ drawn at 5 at 24 h; level 2: 10 at 1 h."""
    hours = [0.9, 1.2, 24.0, 1.0]
    return pd.DataFrame(dict(level=[1, 1, 1, 2], label=["1e8 PFU"] * 3 + ["1e9 PFU"], hours=hours,
                             day=[h / 24 for h in hours], plot_value=[2.0, 8.0, 5.0, 10.0],
                             below_lloq=[False, False, True, False]))


def test_level_summary_geometric():
    """2 and 8: GM = 4; logs ln 4 ± ln 2, sample SD = sqrt(2·ln²2 / 1) = √2·ln 2, so GSD = 2^√2 and the band
    is 4/2^√2 .. 4·2^√2. One value: GM is the value, no SD."""
    s = bmk.level_summary(_summary_frame(), "hours").set_index(["level", "time"])
    gsd = 2 ** math.sqrt(2)
    assert s.loc[(1, 1.0), ["n", "n_below_lloq"]].tolist() == [2, 0]
    assert s.loc[(1, 1.0), ["centre", "low", "high"]].tolist() == pytest.approx([4, 4 / gsd, 4 * gsd])
    assert s.loc[(1, 24.0), ["n", "n_below_lloq"]].tolist() == [1, 1]
    assert s.loc[(1, 24.0), "centre"] == pytest.approx(5)
    assert pd.isna(s.loc[(1, 24.0), "low"]) and pd.isna(s.loc[(1, 24.0), "high"])
    assert s.loc[(2, 1.0), "centre"] == pytest.approx(10)
    assert s.loc[(1, 1.0), "label"] == "1e8 PFU"


def test_level_summary_arithmetic():
    """2 and 8: mean 5, sample SD sqrt((9 + 9)/1) = √18."""
    s = bmk.level_summary(_summary_frame(), "hours", geometric=False).set_index(["level", "time"])
    assert s.loc[(1, 1.0), ["centre", "low", "high"]].tolist() == pytest.approx(
        [5, 5 - math.sqrt(18), 5 + math.sqrt(18)])


def test_level_summary_in_days():
    """In days 0.9 h and 1.2 h round to day 0 and 24 h to day 1; level 2's 1 h is day 0."""
    s = bmk.level_summary(_summary_frame(), "days")
    assert [(r.level, r.time, r.n) for r in s.itertuples()] == [(1, 0.0, 2), (1, 1.0, 1), (2, 0.0, 1)]


# --------------------------------------------------------------------------- report JSON


def test_biomarkers_json(bm):
    """The report's section carries the hand-computed exposure (NaN as missing) and shedding counts and is
    plain JSON."""
    out = bmk.biomarkers_json(bm)
    json.dumps(out, allow_nan=False)
    exposure = {r["subject_id"]: r for r in out["exposure"]}
    assert set(exposure) == {"101", "102", "201"}
    e101 = exposure["101"]
    assert (e101["level"], e101["test"], e101["specimen"], e101["cmax"], e101["tmax_h"]) == (
        1, "VIRUS DNA", "blood", 400, 4)
    assert e101["auc"] == pytest.approx(8550 + 8100 / LN2, rel=1e-5)
    assert exposure["102"]["auc"] == pytest.approx(960 + 720 / LN2, rel=1e-5)
    assert all(exposure["201"][k] is None for k in ("cmax", "tmax_h", "auc"))
    shedding = {(r["specimen"], r["level"]): (r["n_tested"], r["n_detected"]) for r in out["shedding"]}
    assert shedding == {("urine", 1): (2, 1), ("saliva", 1): (2, 1), ("urine", 2): (1, 1)}


def test_biomarkers_json_without_a_specimen_is_valid_json(tmp_path):
    """specimen is optional in lab_results. A PK series without one must come out as null, like the
    missing numbers: `report --json` prints this section with json.dump, and a bare NaN is not JSON."""
    db, study = one_study_db(
        tmp_path / "nospecimen.duckdb", subjects=[subject("101", 1, "2025-01-05")],
        administrations=[dose("101", "2025-01-10", "08:00")],
        lab_results=[lab("101", "2025-01-10T10:00:00", "pk", "VIRUS DNA", NA, 100, 10, "copies/mL"),
                     lab("101", "2025-01-11T08:00:00", "virology", "VIRUS qPCR", NA, 200, 50, "copies/mL")])
    out = bmk.biomarkers_json(bmk.load_biomarkers(db, study, AS_OF))
    assert out["exposure"][0]["specimen"] is None
    assert out["shedding"][0]["specimen"] is None
    json.dumps(out, allow_nan=False)
