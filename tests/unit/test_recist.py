"""RECIST 1.1 (smc.recist) and tumor response on a tiny study (smc.efficacy, smc.rules.stats.exact_ci).

Every expected value below is worked out by hand from the rules (RECIST 1.1 with confirmation,
non-randomised trial), never copied from the code's output:

- Baseline: the last assessment on or before the first dose of the study agent (VIRUS).
- BOR from the time points up to the first PD: CR needs a CR >= 28 d later (only CR/NE between);
  PR needs a CR/PR >= 28 d later (only CR/PR/NE between); else SD when a CR/PR/SD is >= min_sd_days
  (42) after the first dose; else PD if PD was seen; else NE.
- Data issues: PR with < 30% decrease from baseline; PD without both >= 20% and >= 5 mm over the nadir
  (smallest sum before the time point, baseline included), unless new lesions or non-target PD.
- ORR/DCR over subjects with a baseline assessment, Clopper-Pearson 95% CIs.
- DoR: first CR/PR of the confirmed response to first PD or death; censored at the last assessment.
"""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
from scipy.stats import beta

from smc.analysis import efficacy
from smc.rules import recist
from smc.rules.stats import exact_ci
from tests.helpers import one_study_db

D = dt.date.fromisoformat
DOSE = D("2024-01-01")  # first dose for the pure time-point sequences


def tp(day: int, response: str | None) -> recist.TimePoint:
    """A time point ``day`` days after the first dose."""
    return recist.TimePoint(DOSE + dt.timedelta(days=day), response)


def bor(*points: tuple[int, str | None], min_sd_days: int = 42) -> recist.BestResponse:
    return recist.best_overall_response([tp(d, r) for d, r in points], DOSE, min_sd_days)


def day(n: int) -> dt.date:
    return DOSE + dt.timedelta(days=n)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Independent reference: beta quantiles (lo = 0 when k = 0, hi = 1 when k = n)."""
    lo = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    hi = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    return float(lo), float(hi)


# --------------------------------------------------------------------------- best overall response


def test_no_post_baseline_assessment_is_ne():
    """Nothing after baseline: response cannot be evaluated."""
    assert bor().bor == "NE"


def test_ne_only_is_ne():
    """Only NE (or missing) time points: no SD or better, no PD -> NE."""
    assert bor((42, "NE"), (84, "NE")).bor == "NE"
    assert bor((42, None), (84, "NE")).bor == "NE"  # a missing response counts as NE


def test_pd_first_is_pd_and_later_responses_do_not_count():
    """Progression at the first assessment: PD; a later confirmed CR cannot improve the BOR."""
    best = bor((30, "PD"), (60, "CR"), (90, "CR"))
    assert best.bor == "PD"
    assert best.progression_date == day(30)
    assert best.response_date is None


def test_sd_after_first_pd_is_ignored():
    """SD on day 50 comes after the first PD (day 30), so it cannot give SD: PD."""
    assert bor((20, "SD"), (30, "PD"), (50, "SD")).bor == "PD"


def test_sd_duration_boundary_day_41_vs_42():
    """SD needs a CR/PR/SD at least 42 days after the first dose: day 41 is too early, day 42 counts."""
    assert bor((41, "SD")).bor == "NE"                 # too early, no PD -> NE
    assert bor((41, "SD"), (60, "PD")).bor == "PD"     # too early, then PD -> PD
    assert bor((42, "SD")).bor == "SD"
    assert bor((42, "SD"), (60, "PD")).bor == "SD"     # SD reached before the progression


def test_min_sd_days_is_a_parameter():
    """A study with a 56-day SD minimum: SD on day 42 is not enough, day 56 is."""
    assert bor((42, "SD"), min_sd_days=56).bor == "NE"
    assert bor((56, "SD"), min_sd_days=56).bor == "SD"


def test_unconfirmed_pr_falls_back_to_sd_pd_or_ne():
    """An unconfirmed PR is not a response: SD if a CR/PR/SD is >= day 42, else PD if PD seen, else NE."""
    assert bor((42, "PR")).bor == "SD"                           # the PR itself is >= day 42
    assert bor((35, "PR"), (49, "SD")).bor == "SD"               # SD on day 49 qualifies
    assert bor((35, "PR"), (49, "PD")).bor == "PD"               # nothing >= day 42 before PD
    assert bor((35, "PR"), (49, "NE")).bor == "NE"               # NE does not qualify for SD
    unconfirmed = bor((42, "PR"))
    assert unconfirmed.response_date is None and unconfirmed.confirmed_on is None


def test_pr_confirmation_needs_28_days():
    """A PR confirmed 27 days later is not confirmed (-> SD, day 42 qualifies); 28 days later is."""
    assert bor((42, "PR"), (69, "PR")).bor == "SD"
    best = bor((42, "PR"), (70, "PR"))
    assert best.bor == "PR"
    assert best.response_date == day(42)
    assert best.confirmed_on == day(70)
    assert best.progression_date is None


def test_pr_confirmed_by_a_later_pr_beyond_an_early_one():
    """PR d42, PR d56 (only 14 d), PR d70 (28 d after d42): confirmed, onset day 42."""
    best = bor((42, "PR"), (56, "PR"), (70, "PR"))
    assert (best.bor, best.response_date, best.confirmed_on) == ("PR", day(42), day(70))


def test_ne_between_response_and_confirmation_is_allowed():
    """NE (or a missing response) between a PR and its confirmation does not break it."""
    assert bor((42, "PR"), (56, "NE"), (70, "PR")).bor == "PR"
    assert bor((42, "PR"), (56, None), (70, "PR")).bor == "PR"


def test_sd_between_two_prs_breaks_the_confirmation():
    """PR d42, SD d56, PR d84: the PR was not maintained, so not confirmed -> SD (day 42 qualifies)."""
    best = bor((42, "PR"), (56, "SD"), (84, "PR"))
    assert best.bor == "SD"
    assert best.response_date is None


def test_response_onset_is_the_first_pr_of_the_confirmed_response():
    """PR d30 lost (SD d42), then PR d60 confirmed d88: the response starts on day 60, not 30."""
    best = bor((30, "PR"), (42, "SD"), (60, "PR"), (88, "PR"))
    assert (best.bor, best.response_date, best.confirmed_on) == ("PR", day(60), day(88))


def test_cr_confirmed_is_cr():
    """CR confirmed by CR 28 days later -> CR; NE in between is allowed."""
    best = bor((42, "CR"), (70, "CR"))
    assert (best.bor, best.response_date, best.confirmed_on) == ("CR", day(42), day(70))
    assert bor((42, "CR"), (56, "NE"), (70, "CR")).bor == "CR"


def test_cr_needs_28_days_too():
    """CR then CR 27 days later: neither CR nor PR confirmed -> SD (day 42 qualifies)."""
    assert bor((42, "CR"), (69, "CR")).bor == "SD"


def test_cr_followed_by_pr_is_a_confirmed_pr():
    """A CR followed >= 28 days later by a PR is a confirmed PR, onset at the CR."""
    best = bor((42, "CR"), (70, "PR"))
    assert (best.bor, best.response_date, best.confirmed_on) == ("PR", day(42), day(70))


def test_pr_between_two_crs_gives_pr_not_cr():
    """CR d42, PR d56, CR d84: the PR breaks the CR confirmation; CR/PR for >= 28 d -> PR."""
    best = bor((42, "CR"), (56, "PR"), (84, "CR"))
    assert best.bor == "PR"
    assert best.response_date == day(42)


def test_cr_after_a_pr_dates_the_response_from_the_pr():
    """PR d42, CR d70, CR d98: BOR CR; the response (for DoR/TTR) starts at the first PR, day 42."""
    best = bor((42, "PR"), (70, "CR"), (98, "CR"))
    assert best.bor == "CR"
    assert best.response_date == day(42)
    assert best.confirmed_on == day(98)  # the CR that confirmed the CR


def test_confirmed_pr_then_pd_returns_the_progression_date():
    """Confirmed PR then PD on day 100: BOR PR with the progression date for DoR."""
    best = bor((42, "PR"), (70, "PR"), (100, "PD"))
    assert (best.bor, best.response_date, best.progression_date) == ("PR", day(42), day(100))


def test_pd_breaks_a_pending_confirmation():
    """PR d42, PD d56, PR d84: the PR was lost before confirmation and d84 is after the first PD -> SD."""
    best = bor((42, "PR"), (56, "PD"), (84, "PR"))
    assert best.bor == "SD"
    assert best.progression_date == day(56)


def test_points_are_taken_in_date_order():
    """The same sequence given out of order gives the same result."""
    points = [tp(70, "PR"), tp(42, "PR")]
    assert recist.best_overall_response(points, DOSE).bor == "PR"


# --------------------------------------------------------------------------- measurements and data issues


def scans(*rows) -> pd.DataFrame:
    """(day, target_sum_mm, overall_response[, new_lesions[, nontarget]]); the first row is the baseline."""
    out = []
    for r in rows:
        d, total, resp, *rest = r
        new = rest[0] if len(rest) > 0 else "N"
        nontarget = rest[1] if len(rest) > 1 else "NON-CR/NON-PD"
        out.append(dict(assessment_date=pd.Timestamp(day(d)), target_sum_mm=total, new_lesions=new,
                        nontarget_response=nontarget, overall_response=resp))
    return pd.DataFrame(out)


def issues(*rows) -> list[bool]:
    """Whether each post-baseline time point is flagged, with baseline at the first row."""
    frame = scans(*rows)
    changes = recist.measurement_changes(frame, frame["assessment_date"].iloc[0])
    return [bool(x) for x in changes["data_issue"].iloc[1:]]


def test_percent_change_and_nadir_before_each_time_point():
    """Baseline 100; 60 (-40%), 70 (-30%); the nadir is the smallest sum *before* each point."""
    frame = scans((-7, 100.0, None), (42, 60.0, "PR"), (84, 70.0, "PR"), (126, 50.0, "PR"))
    c = recist.measurement_changes(frame, frame["assessment_date"].iloc[0])
    assert c["baseline"].tolist() == [True, False, False, False]
    assert math.isnan(c["pct_change"].iloc[0])  # no change at the baseline itself
    assert c["pct_change"].iloc[1:].tolist() == pytest.approx([-40.0, -30.0, -50.0])
    assert math.isnan(c["nadir_mm"].iloc[0])
    assert c["nadir_mm"].iloc[1:].tolist() == pytest.approx([100.0, 60.0, 60.0])  # not the point's own sum
    assert c["change_from_nadir_mm"].iloc[1:].tolist() == pytest.approx([-40.0, 10.0, -10.0])


def test_assessments_before_the_baseline_are_left_out():
    """A screening scan before the baseline (sum 30) is neither the baseline nor a nadir."""
    frame = scans((-30, 30.0, None), (-3, 100.0, None), (42, 80.0, "SD"))
    c = recist.measurement_changes(frame, pd.Timestamp(day(-3)))
    assert len(c) == 2
    assert c["pct_change"].iloc[1] == pytest.approx(-20.0)
    assert c["nadir_mm"].iloc[1] == pytest.approx(100.0)


def test_pr_needs_a_30_percent_decrease():
    """PR at -29% is flagged; exactly -30% (and more) is a valid PR."""
    assert issues((0, 100.0, None), (42, 71.0, "PR")) == [True]
    assert issues((0, 100.0, None), (42, 70.0, "PR")) == [False]
    assert issues((0, 50.0, None), (42, 35.0, "PR")) == [False]  # -30% again with other numbers
    assert issues((0, 100.0, None), (42, 60.0, "PR")) == [False]


def test_pd_needs_20_percent_and_5_mm_over_the_nadir():
    """PD without new lesions or non-target PD needs both >= 20% and >= 5 mm over the nadir."""
    assert issues((0, 100.0, None), (42, 119.0, "PD")) == [True]    # +19%
    assert issues((0, 100.0, None), (42, 120.0, "PD")) == [False]   # +20%, +20 mm
    assert issues((0, 20.0, None), (42, 24.0, "PD")) == [True]      # +20% but only +4 mm
    assert issues((0, 25.0, None), (42, 30.0, "PD")) == [False]     # +20% and +5 mm


@pytest.mark.parametrize("nadir, total, response", [
    (33.0, 23.1, "PR"),  # exactly -30% (9.9 / 33.0): a valid PR
    (46.0, 32.2, "PR"),  # exactly -30% (13.8 / 46.0)
    (27.0, 32.4, "PD"),  # exactly +20% (5.4 / 27.0) and +5.4 mm: a valid PD
    (11.4, 16.4, "PD"),  # exactly +5.0 mm (and +43.9%): a valid PD
])
def test_boundaries_hold_for_sums_in_tenths_of_a_mm(nadir, total, response):
    """Sums measured to 0.1 mm that sit exactly on the 30% / 20% / 5 mm cut-offs meet the criterion, so
    they must not be flagged (the rules say 'exactly -30% is fine', '>= 20%', '>= 5 mm')."""
    assert issues((0, nadir, None), (42, total, response)) == [False]


def test_a_missing_sum_does_not_reset_the_nadir():
    """Baseline 100, NE without a sum, PD at 119: the nadir is still 100, +19% -> flagged."""
    frame = scans((0, 100.0, None), (42, None, "NE"), (84, 119.0, "PD"))
    c = recist.measurement_changes(frame, frame["assessment_date"].iloc[0])
    assert c["nadir_mm"].iloc[2] == pytest.approx(100.0)
    assert [bool(x) for x in c["data_issue"].iloc[1:]] == [False, True]


def test_pd_with_new_lesions_or_nontarget_pd_is_not_flagged():
    """PD may come from new lesions or unequivocal non-target progression whatever the target sum."""
    assert issues((0, 100.0, None), (42, 100.0, "PD", "Y")) == [False]
    assert issues((0, 100.0, None), (42, 90.0, "PD", "N", "PD")) == [False]
    assert issues((0, 100.0, None), (42, 100.0, "PD", "N", "NON-CR/NON-PD")) == [True]


def test_pd_is_measured_from_the_nadir_not_the_baseline():
    """Baseline 100, PR at 60, PD at 70: -30% from baseline but +16.7% / +10 mm from the nadir 60 -> flag.
    PD at 72 is +20% / +12 mm from 60 -> valid although still below the baseline."""
    assert issues((0, 100.0, None), (42, 60.0, "PR"), (84, 70.0, "PD")) == [False, True]
    assert issues((0, 100.0, None), (42, 60.0, "PR"), (84, 72.0, "PD")) == [False, False]


def test_the_nadir_excludes_the_time_point_itself():
    """PD at 90 after baseline 100: the nadir is 100 (before it), so -10% -> flagged."""
    assert issues((0, 100.0, None), (42, 90.0, "PD")) == [True]


def test_sd_cr_ne_are_never_flagged():
    """Only PR and PD are checked against the measurements."""
    assert issues((0, 100.0, None), (42, 40.0, "SD"), (84, 0.0, "CR"), (126, None, "NE")) == [False, False, False]


def test_data_issue_directly():
    """data_issue(response, % from baseline, % from nadir, mm from nadir, new lesions, non-target)."""
    assert recist.data_issue("PR", -29.0, float("nan"), float("nan"), "N", "NON-CR/NON-PD") != ""
    assert recist.data_issue("PR", -30.0, float("nan"), float("nan"), "N", "NON-CR/NON-PD") == ""
    assert recist.data_issue("PD", 10.0, 19.0, 19.0, "N", "NON-CR/NON-PD") != ""
    assert recist.data_issue("PD", 10.0, 20.0, 4.0, "N", "NON-CR/NON-PD") != ""
    assert recist.data_issue("PD", 10.0, 20.0, 5.0, "N", "NON-CR/NON-PD") == ""
    assert recist.data_issue("PD", 0.0, 0.0, 0.0, "Y", "NON-CR/NON-PD") == ""
    assert recist.data_issue("PD", 0.0, 0.0, 0.0, "N", "PD") == ""
    assert recist.data_issue("SD", 50.0, 50.0, 50.0, "N", "NON-CR/NON-PD") == ""
    # Target lesions gone (nadir 0 mm): no % from the nadir; a 3 mm regrowth is under the 5 mm, 6 mm is PD.
    assert recist.data_issue("PD", -100.0, float("nan"), 0.0, "N", "NON-CR/NON-PD") == (
        "PD with +0 mm from a nadir of 0 mm (PD needs ≥20% and ≥5 mm), no new lesion, non-target not PD")
    assert recist.data_issue("PD", -90.0, float("inf"), 3.0, "N", "NON-CR/NON-PD").startswith(
        "PD with +3 mm from a nadir of 0 mm")
    assert recist.data_issue("PD", -85.0, float("inf"), 6.0, "N", "NON-CR/NON-PD") == ""


# --------------------------------------------------------------------------- exact confidence intervals


@pytest.mark.parametrize("k, n, lo, hi", [(1, 6, 0.0042, 0.6412), (0, 3, 0.0, 0.7076), (3, 3, 0.2924, 1.0)])
def test_exact_ci_known_values(k, n, lo, hi):
    """Clopper-Pearson 95%: 1/6 -> 0.4%-64.1%, 0/3 -> 0-70.8%, 3/3 -> 29.2%-100%."""
    assert exact_ci(k, n) == pytest.approx((lo, hi), abs=1e-4)


@pytest.mark.parametrize("k, n", [(0, 1), (1, 1), (1, 3), (2, 3), (3, 9), (5, 9), (7, 20), (0, 20)])
def test_exact_ci_matches_beta_quantiles(k, n):
    assert exact_ci(k, n) == pytest.approx(clopper_pearson(k, n), abs=1e-9)


def test_exact_ci_of_nobody_is_none():
    assert exact_ci(0, 0) == (None, None)


# --------------------------------------------------------------------------- end to end through the database
#
# Study S1, agent VIRUS, min_sd_days 42 (the default). Days are from each subject's first VIRUS dose.
#
#  L1 101  base d-7 100 | d42 PR 60 | d70 PR 55 | d112 PD 80 (nadir 55: +25 mm/+45%)  -> PR, TTR 42,
#                                                               DoR 112-42 = 70 (PD), best -45%
#     102  screening d-21 70 | base d0 50 (on the dose day) | d42 SD 48 | d84 PR 36 (-28%: flag) |
#          d126 PD 45 (nadir 36: +9 mm/+25%)  -> PR not confirmed (PD next) -> SD (d42), best -28%
#     103  base d-5 40 | d39 PD 44 (+10%/+4 mm, no new lesion: flag)  -> PD
#  L2 201  d-11 90 | cyclophosphamide d-6 | d-3 80 (baseline: last before VIRUS) | d42 CR 0 | d70 CR 0 |
#          d112 CR 0 | death d137  -> CR, TTR 42 (not 48 from cyclophosphamide), DoR 137-42 = 95 (death)
#     202  base d-7 60 | d21 SD 58 | d56 PR 40 | d84 PR 38 | d126 PR 38  -> PR, TTR 56,
#          DoR censored at the last assessment 126-56 = 70, best (38-60)/60 = -36.67%
#     203  base d-5 30, nothing later  -> NE, in the denominator
#     204  dosed, no assessment at all  -> NE, no baseline: not in the denominator
#     205  enrolled, never dosed; 206 dosed with cyclophosphamide only  -> not listed
#  L3 301  base d-4 70 | d41 SD 68 | d84 NE (no sum)  -> SD too early, no PD -> NE, best -2.86%
#     302  base d-4 50 | d42 SD 52 | d84 PD 52 non-target PD (+2 mm but non-target PD: no flag) -> SD
#     303  base d-7 40 | d42 PD 38 with a new lesion (no flag)  -> PD
#
# Evaluable (with a baseline): L1 3 (PR, SD, PD), L2 3 (CR, PR, NE), L3 3 (SD, PD, NE); total 9.

AS_OF = D("2025-03-15")
FIRST = {"101": "2024-06-03", "102": "2024-06-10", "103": "2024-06-17", "201": "2024-07-01",
         "202": "2024-07-08", "203": "2024-07-15", "204": "2024-07-22", "301": "2024-08-05",
         "302": "2024-08-05", "303": "2024-08-12"}


def on(sid: str, days: int) -> str:
    return (D(FIRST[sid]) + dt.timedelta(days=days)).isoformat()


def subject(sid, level, enrolled, **extra):
    return dict(study_id="S1", subject_id=sid, dose_level=level, enrollment_date=enrolled, phase="escalation",
                **extra)


def dose(sid, date, agent="VIRUS"):
    return dict(study_id="S1", subject_id=sid, agent=agent, admin_date=date)


def scan(sid, days, total, response=None, new="N", nontarget="NON-CR/NON-PD"):
    return dict(study_id="S1", subject_id=sid, assessment_date=on(sid, days), target_sum_mm=total,
                new_lesions=new, nontarget_response=nontarget, overall_response=response)


TRIAL = dict(
    subjects=[
        subject("101", 1, "2024-05-20"), subject("102", 1, "2024-05-21"), subject("103", 1, "2024-06-01"),
        subject("201", 2, "2024-06-15", death_date=on("201", 137), death_cause="Sepsis"),
        subject("202", 2, "2024-06-28"), subject("203", 2, "2024-07-05"), subject("204", 2, "2024-07-10"),
        subject("205", 2, "2024-07-12"), subject("206", 2, "2024-07-13"),
        subject("301", 3, "2024-07-25"), subject("302", 3, "2024-07-26"), subject("303", 3, "2024-08-01"),
    ],
    administrations=[
        *[dose(sid, first) for sid, first in FIRST.items()],
        dose("201", on("201", -6), agent="cyclophosphamide"),  # lymphodepletion before the study agent
        dose("201", on("201", 21)),
        dose("206", "2024-07-20", agent="cyclophosphamide"),
    ],
    tumor_assessments=[
        scan("101", -7, 100), scan("101", 42, 60, "PR"), scan("101", 70, 55, "PR"), scan("101", 112, 80, "PD"),
        scan("102", -21, 70), scan("102", 0, 50), scan("102", 42, 48, "SD"), scan("102", 84, 36, "PR"),
        scan("102", 126, 45, "PD"),
        scan("103", -5, 40), scan("103", 39, 44, "PD"),
        scan("201", -11, 90), scan("201", -3, 80), scan("201", 42, 0, "CR"), scan("201", 70, 0, "CR"),
        scan("201", 112, 0, "CR"),
        scan("202", -7, 60), scan("202", 21, 58, "SD"), scan("202", 56, 40, "PR"), scan("202", 84, 38, "PR"),
        scan("202", 126, 38, "PR"),
        scan("203", -5, 30),
        scan("301", -4, 70), scan("301", 41, 68, "SD"), scan("301", 84, None, "NE", nontarget="NE"),
        scan("302", -4, 50), scan("302", 42, 52, "SD"), scan("302", 84, 52, "PD", nontarget="PD"),
        scan("303", -7, 40), scan("303", 42, 38, "PD", new="Y"),
    ],
)


@pytest.fixture()
def trial(tmp_path):
    return one_study_db(tmp_path / "recist.duckdb", **TRIAL)


@pytest.fixture()
def data(trial):
    return efficacy.load_efficacy(*trial, AS_OF)


def by_subject(data) -> dict:
    return {r.subject_id: r for r in data.subjects.itertuples()}


def test_subjects_are_those_dosed_with_the_study_agent(data):
    """205 never dosed and 206 only had cyclophosphamide: not evaluable for the agent's efficacy."""
    assert data.subjects["subject_id"].tolist() == ["101", "102", "103", "201", "202", "203", "204",
                                                    "301", "302", "303"]


def test_best_overall_response_per_subject(data):
    assert {r.subject_id: r.bor for r in data.subjects.itertuples()} == {
        "101": "PR",  # PR d42 confirmed d70
        "102": "SD",  # PR d84 followed by PD: unconfirmed; SD on d42
        "103": "PD",  # PD at the first scan
        "201": "CR",  # CR d42 confirmed d70
        "202": "PR",  # PR d56 confirmed d84
        "203": "NE",  # baseline only
        "204": "NE",  # no assessment
        "301": "NE",  # SD on d41 is too early, then NE, no PD
        "302": "SD",  # SD on d42, then PD
        "303": "PD",  # PD (new lesion) at the first scan
    }


def test_baseline_is_the_last_assessment_before_the_first_study_agent_dose(data):
    s = by_subject(data)
    assert s["102"].baseline_date == D(on("102", 0))   # on the dose day counts, the screening d-21 does not
    assert s["102"].baseline_sum_mm == 50
    assert s["201"].baseline_date == D(on("201", -3))  # after the lymphodepletion, before VIRUS
    assert s["201"].baseline_sum_mm == 80
    assert s["201"].first_dose_date == D(FIRST["201"])
    assert pd.isna(s["204"].baseline_date)


def test_best_percent_change(data):
    s = by_subject(data)
    assert s["101"].best_pct_change == pytest.approx(-45.0)          # 55 vs 100
    assert s["102"].best_pct_change == pytest.approx(-28.0)          # 36 vs 50 (not vs the screening 70)
    assert s["201"].best_pct_change == pytest.approx(-100.0)
    assert s["202"].best_pct_change == pytest.approx(-22 / 60 * 100)  # 38 vs 60
    assert s["301"].best_pct_change == pytest.approx(-2 / 70 * 100)   # 68 vs 70; the NE has no sum
    assert math.isnan(s["203"].best_pct_change)


def test_response_table(data):
    table = efficacy.response_table(data)
    rows = {None if pd.isna(r.level) else int(r.level): r for r in table.itertuples()}
    assert list(rows) == [1, 2, 3, None]  # dose order, then the total
    expected = {  # level: (n, cr, pr, sd, pd, ne)
        1: (3, 0, 1, 1, 1, 0),
        2: (3, 1, 1, 0, 0, 1),  # 204 has no baseline: outside the denominator
        3: (3, 0, 0, 1, 1, 1),
        None: (9, 1, 2, 2, 2, 2),
    }
    for level, (n, cr, pr, sd, pd_, ne) in expected.items():
        r = rows[level]
        assert (r.n, r.cr, r.pr, r.sd, r.pd, r.ne) == (n, cr, pr, sd, pd_, ne), level
        assert r.orr == pytest.approx((cr + pr) / n)
        assert r.dcr == pytest.approx((cr + pr + sd) / n)
        assert (r.orr_lo, r.orr_hi) == pytest.approx(clopper_pearson(cr + pr, n), abs=1e-9)
        assert (r.dcr_lo, r.dcr_hi) == pytest.approx(clopper_pearson(cr + pr + sd, n), abs=1e-9)
    assert rows[3].orr_lo == 0 and rows[3].orr_hi == pytest.approx(0.7076, abs=1e-4)  # 0/3 -> 0-70.8%
    assert rows[None].label == "Total"


def test_responders_time_to_and_duration_of_response(data):
    table = efficacy.responders(data)
    got = {r.subject_id: (r.bor, r.ttr_days, r.dor_days, bool(r.dor_event)) for r in table.itertuples()}
    assert got == {
        "101": ("PR", 42, 70, True),   # PR d42 -> PD d112
        "201": ("CR", 42, 95, True),   # CR d42 -> death d137 (TTR from VIRUS, not cyclophosphamide)
        "202": ("PR", 56, 70, False),  # PR d56 -> censored at the last scan d126
    }
    r101 = table[table["subject_id"] == "101"].iloc[0]
    assert r101.response_date == pd.Timestamp(on("101", 42))
    assert r101.confirmed_on == pd.Timestamp(on("101", 70))
    assert r101.progression_date == pd.Timestamp(on("101", 112))


def test_data_issues(data):
    """102's PR at -28% and 103's PD at +10%/+4 mm; not 302 (non-target PD) nor 303 (new lesion)."""
    flagged = efficacy.data_issues(data)
    got = [(r.subject_id, r.assessment_date.date().isoformat(), r.overall_response) for r in flagged.itertuples()]
    assert sorted(got) == [("102", on("102", 84), "PR"), ("103", on("103", 39), "PD")]
    r102 = flagged[flagged["subject_id"] == "102"].iloc[0]
    assert r102["pct_change"] == pytest.approx(-28.0)
    r103 = flagged[flagged["subject_id"] == "103"].iloc[0]
    assert r103.nadir_mm == pytest.approx(40.0) and r103.change_from_nadir_mm == pytest.approx(4.0)


def test_time_points_have_days_from_first_dose(data):
    tp_ = data.time_points
    days = tp_[tp_["subject_id"] == "201"]["day"].tolist()
    assert days == [-3, 42, 70, 112]  # baseline on, the d-11 scan is before the baseline


def test_as_of_hides_the_confirmation(trial):
    """As of day 69 for 101 the d70 confirmation is not yet done: the PR d42 is unconfirmed -> SD (d42).
    As of day 70 it is confirmed. 303, first dosed after that date, is not listed."""
    before = efficacy.load_efficacy(*trial, D(on("101", 69)))
    s = by_subject(before)
    assert s["101"].bor == "SD"
    assert pd.isna(s["101"].response_date)
    assert "101" not in set(efficacy.responders(before)["subject_id"])
    assert "303" not in s
    on_day = efficacy.load_efficacy(*trial, D(on("101", 70)))
    assert by_subject(on_day)["101"].bor == "PR"


def test_as_of_hides_later_death_and_progression(trial):
    """As of 201's day 112 the death (d137) has not happened: DoR censored at the last scan, 112-42 = 70."""
    data = efficacy.load_efficacy(*trial, D(on("201", 112)))
    r = efficacy.responders(data).set_index("subject_id").loc["201"]
    assert (r.bor, r.ttr_days, r.dor_days, bool(r.dor_event)) == ("CR", 42, 70, False)


def test_efficacy_json(data):
    out = efficacy.efficacy_json(data)
    subjects = {r["subject_id"]: r for r in out["subjects"]}
    required = ("subject_id", "level", "bor", "best_pct_change")
    assert all(set(required) <= set(r) for r in out["subjects"])
    assert [subjects[s][k] for s in ("101", "202", "204") for k in required] == [
        "101", 1, "PR", -45.0,   # 55 vs 100
        "202", 2, "PR", -36.67,  # 38 vs 60, rounded to 2 decimals
        "204", 2, "NE", None,    # no measurement at all
    ]
    if "evaluable" in out["subjects"][0]:  # evaluable = has a baseline (the ORR denominator)
        assert {s: r["evaluable"] for s, r in subjects.items()} == {
            s: s != "204" for s in ("101", "102", "103", "201", "202", "203", "204", "301", "302", "303")}
    keys = {"level", "n", "cr", "pr", "sd", "pd", "ne", "orr", "orr_lo", "orr_hi", "dcr", "dcr_lo", "dcr_hi"}
    assert all(set(r) == keys for r in out["by_level"])
    assert [r["level"] for r in out["by_level"]] == [1, 2, 3, None]
    total = out["by_level"][-1]
    lo, hi = clopper_pearson(3, 9)
    dlo, dhi = clopper_pearson(5, 9)
    assert total == dict(level=None, n=9, cr=1, pr=2, sd=2, pd=2, ne=2, orr=round(3 / 9, 4), orr_lo=round(lo, 4),
                         orr_hi=round(hi, 4), dcr=round(5 / 9, 4), dcr_lo=round(dlo, 4), dcr_hi=round(dhi, 4))
    if "total" in out:
        assert out["total"] == total
    level3 = out["by_level"][2]
    assert (level3["orr"], level3["orr_lo"], level3["orr_hi"]) == (0.0, 0.0, 0.7076)
    assert sorted((r["subject_id"], r["overall_response"]) for r in out["data_issues"]) == [("102", "PR"),
                                                                                              ("103", "PD")]
