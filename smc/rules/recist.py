"""RECIST 1.1 for one subject: changes from baseline and nadir, confirmed best overall response, data issues.

Rules: docs/rules.md#tumor-response
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import pandas as pd

CONFIRMATION_DAYS = 28
PR_DECREASE_PCT = 30.0
PD_INCREASE_PCT = 20.0
PD_INCREASE_MM = 5.0
RESPONSES = ("CR", "PR", "SD", "PD", "NE")

# What may confirm a response, and what may lie between it and its confirmation.
_CONFIRMS = {"CR": {"CR"}, "PR": {"CR", "PR"}}


def rule_text(min_sd_days: int) -> str:
    """The BOR rule in words, for the page and the report."""
    return (f"RECIST 1.1 with confirmation (non-randomised trial): CR and PR need a confirming CR (for CR) or CR/PR "
            f"(for PR) at least {CONFIRMATION_DAYS} days later, with only confirming responses or NE in between; "
            f"a CR followed by a PR counts as PR. Unconfirmed responses count as SD when a CR, PR or SD was "
            f"assessed at least {min_sd_days} days after the first dose; otherwise PD if PD was seen, else NE. "
            f"Responses after the first PD do not count.")


@dataclass(frozen=True)
class TimePoint:
    date: dt.date
    response: str | None  # the investigator's time-point overall response; None counts as NE


@dataclass(frozen=True)
class BestResponse:
    bor: str                        # CR, PR, SD, PD or NE
    reason: str                     # which rule decided it, with dates
    response_date: dt.date | None   # first CR/PR of the confirmed response (responders only)
    confirmed_on: dt.date | None    # the assessment that confirmed it
    progression_date: dt.date | None  # first time-point PD


def _confirmed(points: list[TimePoint], level: str) -> tuple[TimePoint, TimePoint] | None:
    """The earliest response at ``level`` or better with its confirmation, if any."""
    allowed = _CONFIRMS[level]
    for i, first in enumerate(points):
        if first.response not in allowed:
            continue
        for later in points[i + 1:]:
            if later.response in allowed and (later.date - first.date).days >= CONFIRMATION_DAYS:
                return first, later
            if later.response not in allowed | {"NE", None}:
                break  # the response was not maintained
    return None


def best_overall_response(points: list[TimePoint], first_dose: dt.date, min_sd_days: int = 42) -> BestResponse:
    """BOR from the post-baseline time points (those after the baseline assessment), in date order."""
    points = sorted(points, key=lambda p: p.date)
    if not points:
        return BestResponse("NE", "no post-baseline assessment", None, None, None)
    progression = next((p.date for p in points if p.response == "PD"), None)
    before_pd = [p for p in points if progression is None or p.date <= progression]
    for level in ("CR", "PR"):
        found = _confirmed(before_pd, level)
        if found:
            first, confirmation = found
            onset = _confirmed(before_pd, "PR")[0]  # any confirmed CR is also a confirmed PR
            gap = (confirmation.date - first.date).days
            return BestResponse(level, f"{first.response} on {first.date} confirmed by {confirmation.response} on "
                                       f"{confirmation.date} ({gap} days later)", onset.date, confirmation.date,
                                progression)
    stable = [p for p in before_pd if p.response in ("CR", "PR", "SD")
              and (p.date - first_dose).days >= min_sd_days]
    if stable:
        p = stable[0]
        unconfirmed = any(q.response in ("CR", "PR") for q in before_pd)
        return BestResponse("SD", f"{p.response} on {p.date}, day {(p.date - first_dose).days} ≥ {min_sd_days}"
                                  + (" (CR/PR not confirmed)" if unconfirmed else ""), None, None, progression)
    if progression:
        return BestResponse("PD", f"PD on {progression} with no SD or better from day {min_sd_days}",
                            None, None, progression)
    return BestResponse("NE", f"no PD and no SD or better from day {min_sd_days}", None, None, None)


def measurement_changes(assessments: pd.DataFrame, baseline_date: dt.date | pd.Timestamp) -> pd.DataFrame:
    """One subject's assessments from baseline on, with % change from baseline, the nadir before each time
    point (baseline included), the change from it, and the data issue where the investigator's response
    disagrees with the measurements ('' when it agrees or cannot be checked)."""
    one = assessments.assign(subject_id="", baseline_date=pd.Timestamp(baseline_date))
    return changes_from_baseline(one).drop(columns=["subject_id", "baseline_date"])


def changes_from_baseline(assessments: pd.DataFrame) -> pd.DataFrame:
    """:func:`measurement_changes` for many subjects at once: ``assessments`` has ``subject_id`` and each
    subject's ``baseline_date``; rows before it are dropped, the rest sorted by subject and date."""
    a = assessments[assessments["assessment_date"] >= assessments["baseline_date"]] \
        .sort_values(["subject_id", "assessment_date"], kind="stable").reset_index(drop=True)
    subject, sums = a["subject_id"], a["target_sum_mm"]
    first = subject.ne(subject.shift())
    baseline_sum = sums.where(first).groupby(subject).ffill()
    pct = ((sums - baseline_sum) / baseline_sum * 100).where(baseline_sum.ne(0) & ~first)
    # Smallest sum before this time point (baseline included), skipping missing sums.
    nadir = sums.groupby(subject).cummin().groupby(subject).ffill().groupby(subject).shift(1)
    rise_mm = sums - nadir
    a = a.assign(baseline=first, pct_change=pct, nadir_mm=nadir, change_from_nadir_mm=rise_mm,
                 change_from_nadir_pct=rise_mm / nadir * 100)
    checked = zip(a["baseline"], a["overall_response"], a["pct_change"], a["change_from_nadir_pct"],
                  a["change_from_nadir_mm"], a["new_lesions"], a["nontarget_response"])
    a["data_issue"] = ["" if baseline else data_issue(*values) for baseline, *values in checked]
    return a


def data_issue(response: str | None, pct_change: float, rise_pct: float, rise_mm: float,
               new_lesions: str | None, nontarget_response: str | None) -> str:
    """Why an investigator's time-point response disagrees with the measurements, or ''."""
    # Sums in tenths of a mm put exact cut-offs a float's hair away (23.1 / 33.0 - 1 = -0.29999…).
    pct_change, rise_pct, rise_mm = (round(v, 6) for v in (pct_change, rise_pct, rise_mm))
    if response == "PR" and pd.notna(pct_change) and pct_change > -PR_DECREASE_PCT:
        return f"PR with a {-pct_change:.1f}% decrease from baseline (PR needs ≥{PR_DECREASE_PCT:.0f}%)"
    if response == "PD" and new_lesions != "Y" and nontarget_response != "PD" and pd.notna(rise_mm):
        if not (rise_pct >= PD_INCREASE_PCT and rise_mm >= PD_INCREASE_MM):
            # a nadir of 0 mm (target lesions gone) has no % change: 0 / 0, or any rise / 0
            rise = (f"{rise_pct:+.1f}% / {rise_mm:+.0f} mm from the nadir" if math.isfinite(rise_pct)
                    else f"{rise_mm:+.0f} mm from a nadir of 0 mm")
            return (f"PD with {rise} (PD needs ≥{PD_INCREASE_PCT:.0f}% and ≥{PD_INCREASE_MM:.0f} mm), no new lesion, "
                    "non-target not PD")
    return ""
