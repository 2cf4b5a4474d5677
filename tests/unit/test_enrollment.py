"""Enrollment for the sponsor (smc.analysis.enrollment and queries/enrollment_subjects.sql).

Every expected value is worked out by hand from the module docstring's rules, or by an independent method
in this file (SQL counts written here, scipy's gamma form of the exact Poisson interval), never copied from
the module's output.

The hand-made study S1 (planned 8 by 2025-06-30; sites A "Alpha Hospital", B without a name, and one
subject without a site; levels -1, 1, 2, 3; all dates 2025; V = the study agent VIRUS, C = cyclophosphamide):

  id   site screen enroll  lvl phase  doses           off trt  off study (reason)          death
  101  A    01-02  01-06   1   esc    V 01-08         02-10    02-20 Withdrew consent      03-01
  102  A    01-03  -      screen failure: Inadequate hepatic function
  103  A    01-10  -      screen failure: Inadequate hepatic function
  104  B    01-12  -      screen failure: (none: "not recorded")
  105  B    01-15  01-20   1   esc    V 01-22, 02-12  02-28    03-05 Lost to follow-up
  106  A    01-21  01-25   2   esc    V 01-29         03-10
  107  B    02-01  02-10   2   esc    C 02-12, V 02-14
  108  -    02-20  03-01   2   exp
  109  A    03-10  03-20   3   exp    V 03-22
  110  B    03-16  -      screen failure: Withdrew consent
  111  A    02-05  -      screen failure: ECOG performance status 2
  112  B    01-05  01-09   1   esc    V 01-10         01-30    02-01 Withdrew consent
"""
from __future__ import annotations

import datetime as dt
import json
import math
from fractions import Fraction

import pandas as pd
import pytest
from scipy.stats import gamma

from smc.analysis import enrollment
from smc.analysis.dose_decision import load_subject_facts_by_study
from smc.store.db import Database
from smc.store.study import load_study
from tests import helpers
from tests.helpers import STUDIES, as_of_dates

D = dt.date.fromisoformat
CUT = D("2025-03-15")


# --------------------------------------------------------------------------- building data


def one_study_db(path, **tables: list[dict]):
    """helpers.one_study_db with this file's study row (planned 8 by 2025-06-30) unless ``studies`` is given."""
    return helpers.one_study_db(path, **({"studies": [study_row()]} | tables))


def study_row(study_id="S1", planned=8, target="2025-06-30", cut="2025-03-15", **extra):
    return dict(study_id=study_id, title=extra.pop("title", f"Study {study_id}"), design="3+3",
                agent=extra.pop("agent", "VIRUS"), dlt_window_days=28, planned_enrollment=planned,
                enrollment_target_date=target, data_cut_date=cut, **extra)


def subject(sid, site, screening, enrolled=None, level=None, phase=None, reason=None, off_treatment=None,
            off_study=None, off_study_reason=None, death=None, study="S1"):
    return dict(study_id=study, subject_id=sid, site_id=site, screening_date=screening, enrollment_date=enrolled,
                dose_level=level, phase=phase, screen_fail_reason=reason, off_treatment_date=off_treatment,
                off_study_date=off_study, off_study_reason=off_study_reason, death_date=death)


def dose(sid, date, agent="VIRUS", study="S1"):
    return dict(study_id=study, subject_id=sid, agent=agent, admin_date=date)


def y(md: str) -> str:
    return f"2025-{md}"


MAIN_SUBJECTS = [
    subject("101", "A", y("01-02"), y("01-06"), 1, "escalation", off_treatment=y("02-10"), off_study=y("02-20"),
            off_study_reason="Withdrew consent", death=y("03-01")),
    subject("102", "A", y("01-03"), reason="Inadequate hepatic function"),
    subject("103", "A", y("01-10"), reason="Inadequate hepatic function"),
    subject("104", "B", y("01-12")),
    subject("105", "B", y("01-15"), y("01-20"), 1, "escalation", off_treatment=y("02-28"), off_study=y("03-05"),
            off_study_reason="Lost to follow-up"),
    subject("106", "A", y("01-21"), y("01-25"), 2, "escalation", off_treatment=y("03-10")),
    subject("107", "B", y("02-01"), y("02-10"), 2, "escalation"),
    subject("108", None, y("02-20"), y("03-01"), 2, "expansion"),
    subject("109", "A", y("03-10"), y("03-20"), 3, "expansion"),
    subject("110", "B", y("03-16"), reason="Withdrew consent"),
    subject("111", "A", y("02-05"), reason="ECOG performance status 2"),
    subject("112", "B", y("01-05"), y("01-09"), 1, "escalation", off_treatment=y("01-30"), off_study=y("02-01"),
            off_study_reason="Withdrew consent"),
]
MAIN_DOSES = [dose("101", y("01-08")), dose("105", y("01-22")), dose("105", y("02-12")), dose("106", y("01-29")),
              dose("107", y("02-12"), "cyclophosphamide"), dose("107", y("02-14")), dose("109", y("03-22")),
              dose("112", y("01-10"))]
MAIN_SITES = [dict(site_id="A", name="Alpha Hospital", country="X"), dict(site_id="B", name=None, country="Y")]
# Levels given out of order: the study's dose order is numeric (-1 < 1 < 2 < 3).
MAIN_LEVELS = [dict(study_id="S1", level=lv, label=label)
               for lv, label in ((2, "1e9 PFU"), (-1, "3e7 PFU"), (3, "1e10 PFU"), (1, "1e8 PFU"))]


def main_tables() -> dict:
    return dict(studies=[study_row()], dose_levels=MAIN_LEVELS, sites=MAIN_SITES, subjects=MAIN_SUBJECTS,
                administrations=MAIN_DOSES)


@pytest.fixture(scope="module")
def main(tmp_path_factory):
    return one_study_db(tmp_path_factory.mktemp("enrollment") / "main.duckdb", **main_tables())


def load(trial, as_of) -> enrollment.Enrollment:
    db, study = trial
    return enrollment.load_enrollment(db, study, D(as_of) if isinstance(as_of, str) else as_of)


# --------------------------------------------------------------------------- counts and statuses

# as-of: (screened, screen failures, enrolled, dosed), from the table in the module docstring.
COUNTS = {
    "2025-01-01": (0, 0, 0, 0),  # nobody screened yet
    "2025-01-04": (2, 1, 0, 0),  # 101 (in screening), 102 (screen failure)
    "2025-01-15": (6, 3, 2, 2),  # + 112, 103, 104, 105 (105 screened on the day, enrolled 01-20); 101, 112 dosed
    "2025-02-11": (9, 4, 5, 4),  # + 106, 107, 111; 105, 106, 107 enrolled; 107 not dosed yet
    "2025-02-13": (9, 4, 5, 5),  # 107 dosed 02-12 with cyclophosphamide: any study treatment counts
    "2025-02-25": (10, 4, 5, 5),  # + 108 (screened 02-20, enrolled 03-01: in screening)
    "2025-03-15": (11, 4, 6, 5),  # + 109 (screened 03-10); 108 enrolled, not dosed; 110 (03-16) not yet
    "2025-03-31": (12, 5, 7, 6),  # + 110 (screen failure); 109 enrolled 03-20, dosed 03-22
}


@pytest.mark.parametrize("as_of", list(COUNTS))
def test_counts_at_several_dates(main, as_of):
    data = load(main, as_of)
    assert (data.screened, data.screen_failures, data.enrolled, data.dosed) == COUNTS[as_of]
    assert data.planned == 8
    assert data.as_of == D(as_of)


SF = "Screen failure"
STATUS_BY_DATE = {
    "2025-01-04": {"101": "In screening", "102": SF},
    "2025-01-15": {"101": "On treatment", "112": "On treatment", "102": SF, "103": SF, "104": SF,
                   "105": "In screening"},
    "2025-02-11": {"101": "In follow-up", "112": "Off study", "105": "On treatment", "106": "On treatment",
                   "107": "Enrolled, not yet dosed", "102": SF, "103": SF, "104": SF, "111": SF},
    # 101's death on 03-01 is not seen yet: off study since 02-20.
    "2025-02-25": {"101": "Off study", "112": "Off study", "105": "On treatment", "106": "On treatment",
                   "107": "On treatment", "108": "In screening", "102": SF, "103": SF, "104": SF, "111": SF},
    "2025-03-15": {"101": "Dead", "105": "Off study", "112": "Off study", "106": "In follow-up",
                   "107": "On treatment", "108": "Enrolled, not yet dosed", "109": "In screening",
                   "102": SF, "103": SF, "104": SF, "111": SF},
    "2025-03-31": {"101": "Dead", "105": "Off study", "112": "Off study", "106": "In follow-up",
                   "107": "On treatment", "108": "Enrolled, not yet dosed", "109": "On treatment",
                   "102": SF, "103": SF, "104": SF, "111": SF, "110": SF},
}


@pytest.mark.parametrize("as_of", list(STATUS_BY_DATE))
def test_subject_status_with_as_of_masking(main, as_of):
    data = load(main, as_of)
    assert dict(zip(data.subjects["subject_id"], data.subjects["status"])) == STATUS_BY_DATE[as_of]


def test_every_status_occurs_at_the_cut(main):
    assert set(load(main, CUT).subjects["status"]) == set(enrollment.STATUSES)


def test_subject_status_precedence():
    """Dead beats off study beats in follow-up beats on treatment beats enrolled; a screen failure is that."""
    everything = dict(screen_failed=False, enrollment_date=D("2025-01-06"), first_dose_date=D("2025-01-08"),
                      off_treatment_date=D("2025-02-10"), off_study_date=D("2025-02-20"), death_date=D("2025-03-01"))

    def status(**changes):
        return enrollment.subject_statuses(pd.DataFrame([{**everything, **changes}]))[0]

    assert status() == "Dead"
    assert status(death_date=None) == "Off study"
    assert status(death_date=pd.NaT, off_study_date=pd.NaT) == "In follow-up"
    assert status(death_date=None, off_study_date=None, off_treatment_date=None) == "On treatment"
    assert status(death_date=None, off_study_date=None, off_treatment_date=None,
                  first_dose_date=None) == "Enrolled, not yet dosed"
    # dead without an off-study date, or off study without an end-of-treatment date
    assert status(off_study_date=None, off_treatment_date=None) == "Dead"
    assert status(death_date=None, off_treatment_date=None) == "Off study"
    assert status(enrollment_date=None, first_dose_date=None, off_treatment_date=None, off_study_date=None,
                  death_date=None) == "In screening"
    assert status(screen_failed=True, enrollment_date=None, first_dose_date=None, off_treatment_date=None,
                  off_study_date=None, death_date=None) == "Screen failure"


def test_subjects_frame_masks_what_is_not_known_yet(main):
    """As of 2025-02-25: 108 enrolls on 03-01 (no level or phase yet); 101's death (03-01) is hidden."""
    rows = load(main, "2025-02-25").subjects.set_index("subject_id")
    assert pd.isna(rows.at["108", "enrollment_date"]) and pd.isna(rows.at["108", "level"])
    assert pd.isna(rows.at["108", "phase"]) and not rows.at["108", "screen_failed"]
    assert pd.isna(rows.at["101", "death_date"])
    assert pd.Timestamp(rows.at["101", "off_study_date"]).date() == D("2025-02-20")
    assert rows.at["101", "off_study_reason"] == "Withdrew consent"
    assert pd.isna(rows.at["105", "off_treatment_date"])  # 02-28
    assert rows.at["106", "label"] == "1e9 PFU" and rows.at["108", "label"] is None


# --------------------------------------------------------------------------- cumulative and plan


def test_cumulative_running_totals_end_on_the_as_of_date(main):
    # (date, screened, enrolled): screening dates 01-02 01-03 01-05 01-10 01-12 01-15 01-21 02-01 02-05 02-20
    # 03-10; enrollment dates 01-06 01-09 01-20 01-25 02-10 03-01; then the as-of date 03-15 repeats the last.
    expected = [("01-02", 1, 0), ("01-03", 2, 0), ("01-05", 3, 0), ("01-06", 3, 1), ("01-09", 3, 2),
                ("01-10", 4, 2), ("01-12", 5, 2), ("01-15", 6, 2), ("01-20", 6, 3), ("01-21", 7, 3),
                ("01-25", 7, 4), ("02-01", 8, 4), ("02-05", 9, 4), ("02-10", 9, 5), ("02-20", 10, 5),
                ("03-01", 10, 6), ("03-10", 11, 6), ("03-15", 11, 6)]
    got = enrollment.cumulative(load(main, CUT))
    assert list(got.columns) == ["date", "screened", "enrolled"]
    assert [(pd.Timestamp(d).date(), int(s), int(e)) for d, s, e in got.itertuples(index=False)] == [
        (D(y(md)), s, e) for md, s, e in expected]


def test_cumulative_when_the_last_event_is_on_the_as_of_date(main):
    """As of 03-10 the last event (109 screened) is on the as-of date: no extra row."""
    got = enrollment.cumulative(load(main, "2025-03-10"))
    assert pd.Timestamp(got["date"].iloc[-1]).date() == D("2025-03-10")
    assert got["date"].is_unique
    assert (int(got["screened"].iloc[-1]), int(got["enrolled"].iloc[-1])) == (11, 6)


def test_cumulative_before_anyone_was_screened(main):
    got = enrollment.cumulative(load(main, "2025-01-01"))
    assert got.empty and list(got.columns) == ["date", "screened", "enrolled"]


def test_cumulative_with_only_screening(main):
    """As of 01-04: 101 and 102 screened, nobody enrolled."""
    got = enrollment.cumulative(load(main, "2025-01-04"))
    assert [(pd.Timestamp(d).date(), int(s), int(e)) for d, s, e in got.itertuples(index=False)] == [
        (D("2025-01-02"), 1, 0), (D("2025-01-03"), 2, 0), (D("2025-01-04"), 2, 0)]


def test_plan_line_from_the_first_enrollment_to_the_target(main):
    got = enrollment.plan_line(load(main, CUT))
    assert [pd.Timestamp(d).date() for d in got["date"]] == [D("2025-01-06"), D("2025-06-30")]
    assert got["planned"].tolist() == [0, 8]
    assert enrollment.plan_line(load(main, "2025-01-04")) is None  # nobody enrolled yet


def test_plan_line_needs_a_target_date_and_a_planned_number(tmp_path):
    subjects = [subject("1", None, "2025-01-02", "2025-01-05", 1)]
    no_date = one_study_db(tmp_path / "nodate.duckdb", studies=[study_row(planned=8, target=None)],
                           subjects=subjects)
    no_number = one_study_db(tmp_path / "nonumber.duckdb", studies=[study_row(planned=None)], subjects=subjects)
    assert enrollment.plan_line(load(no_date, CUT)) is None
    assert load(no_date, CUT).planned == 8
    assert enrollment.plan_line(load(no_number, CUT)) is None
    assert load(no_number, CUT).planned is None
    assert enrollment.projection(load(no_number, CUT)) is None


# --------------------------------------------------------------------------- projection


def projection_db(path, dates: list[dt.date], planned: int | None, cut="2024-12-29"):
    subjects = [subject(f"{i:03d}", None, d.isoformat(), d.isoformat(), 1, "escalation")
                for i, d in enumerate(dates)]
    return one_study_db(path, studies=[study_row(planned=planned, target=None, cut=cut)], subjects=subjects)


def days_after(as_of: dt.date, remaining: int, rate: float) -> dt.date:
    return as_of + dt.timedelta(days=math.ceil(remaining / rate))


def test_projection_at_a_constant_rate(tmp_path):
    """One enrollment every 3 days from 2024-01-01 (offsets 0, 3, …, 363 = 2024-12-29, 2024 is a leap year):
    122 subjects by the as-of date 2024-12-29; planned 200, so 78 remain. In the 90-day window a subject
    counts when as_of - d < 90 days: offsets 276..363 (i = 92..121), 30 subjects; offset 273 (2024-09-30) is
    exactly 90 days before and is left out, the subject enrolled on the as-of date counts.
    Rate 30/90 = 1/3 a day, so 78 * 3 = 234 days."""
    start, as_of = D("2024-01-01"), D("2024-12-29")
    dates = [start + dt.timedelta(days=3 * i) for i in range(122)]
    assert dates[-1] == as_of and (as_of - D("2024-09-30")).days == 90 and D("2024-09-30") in dates
    p = enrollment.projection(load(projection_db(tmp_path / "p.duckdb", dates, 200), as_of))
    assert (p.planned, p.enrolled, p.window_days, p.recent_enrolled) == (200, 122, 90, 30)
    assert p.rate_per_day == pytest.approx(1 / 3)
    assert p.reached_on is None
    assert p.projected == as_of + dt.timedelta(days=234) == D("2025-08-20")
    # exact Poisson interval, gamma form: [G^-1(0.025; k), G^-1(0.975; k + 1)] / days
    low, high = gamma.ppf(0.025, 30) / 90, gamma.ppf(0.975, 31) / 90
    assert (p.rate_low, p.rate_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert 0.2 < low < 1 / 3 < high < 0.5  # 30 events: about 20–43 per 90 days
    assert p.earliest == days_after(as_of, 78, high)
    assert p.latest == days_after(as_of, 78, low)
    assert p.earliest < p.projected < p.latest


def test_projection_of_a_young_study_uses_the_days_since_the_first_enrollment(tmp_path):
    """First enrollment 2024-11-01, then every 3 days (offsets 0, 3, …, 57 = 2024-12-28: 20 subjects); as of
    2024-12-29 (offset 58) the window is 58 + 1 = 59 days (the first enrollment day included),
    all 20 are recent: rate 20/59; planned 30: 10 remain, 10 * 59 / 20 = 29.5 -> 30 days."""
    as_of = D("2024-12-29")
    dates = [D("2024-11-01") + dt.timedelta(days=3 * i) for i in range(20)]
    assert dates[-1] == D("2024-12-28") and (as_of - dates[0]).days == 58
    p = enrollment.projection(load(projection_db(tmp_path / "young.duckdb", dates, 30), as_of))
    assert (p.window_days, p.recent_enrolled, p.enrolled) == (59, 20, 20)
    assert p.rate_per_day == pytest.approx(20 / 59)
    assert p.projected == as_of + dt.timedelta(days=30)
    low, high = gamma.ppf(0.025, 20) / 59, gamma.ppf(0.975, 21) / 59
    assert (p.rate_low, p.rate_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert (p.earliest, p.latest) == (days_after(as_of, 10, high), days_after(as_of, 10, low))


def test_projected_date_when_the_remaining_days_come_out_whole(tmp_path):
    """One old enrollment (2024-01-01) and one a day on the 33 days up to the as-of date 2024-12-29: 34 enrolled,
    33 in the window, rate 33/90. Planned 45: 11 remain, 11 / (33/90) = 11 * 90 / 33 = 30 days exactly, so
    the plan is reached on as_of + 30 = 2025-01-28, not a day later (floating point gives 30.000000000000004)."""
    as_of = D("2024-12-29")
    dates = [D("2024-01-01")] + [as_of - dt.timedelta(days=j) for j in range(33)]
    p = enrollment.projection(load(projection_db(tmp_path / "whole.duckdb", dates, 45), as_of))
    assert (p.window_days, p.recent_enrolled, p.enrolled) == (90, 33, 34)
    assert Fraction(11) / Fraction(33, 90) == 30
    assert p.projected == as_of + dt.timedelta(days=30) == D("2025-01-28")


@pytest.mark.parametrize("planned", [5, 7])
def test_projection_when_the_plan_is_already_reached(tmp_path, planned):
    """7 enrolled (given out of date order); reached on the date of the planned-th enrollment, no projection."""
    dates = [D(x) for x in ("2024-03-01", "2024-01-10", "2024-05-20", "2024-02-15", "2024-04-02", "2024-06-30",
                            "2024-03-20")]
    # in order: 01-10 02-15 03-01 03-20 04-02 05-20 06-30 -> 5th 2024-04-02, 7th 2024-06-30
    p = enrollment.projection(load(projection_db(tmp_path / "done.duckdb", dates, planned), D("2024-12-29")))
    assert p.reached_on == {5: D("2024-04-02"), 7: D("2024-06-30")}[planned]
    assert (p.projected, p.earliest, p.latest) == (None, None, None)
    assert (p.planned, p.enrolled) == (planned, 7)


def test_projection_without_enrollment_in_the_window(tmp_path):
    """Last enrollment 2024-06-30, as of 2024-12-29: nobody in the last 90 days. Rate 0: no projected date and
    no latest date; the upper bound -ln(0.025)/90 still gives an earliest date. 3 enrolled, planned 20."""
    as_of = D("2024-12-29")
    dates = [D("2024-01-10"), D("2024-03-01"), D("2024-06-30")]
    p = enrollment.projection(load(projection_db(tmp_path / "stalled.duckdb", dates, 20), as_of))
    assert (p.window_days, p.recent_enrolled, p.rate_per_day, p.rate_low) == (90, 0, 0, 0)
    assert p.rate_high == pytest.approx(-math.log(0.025) / 90)
    assert (p.projected, p.latest, p.reached_on) == (None, None, None)
    assert p.earliest == as_of + dt.timedelta(days=math.ceil(17 * 90 / -math.log(0.025)))  # 415 days
    assert p.earliest == D("2026-02-17")


def test_projection_needs_an_enrollment(main):
    assert enrollment.projection(load(main, "2025-01-04")) is None  # planned 8, nobody enrolled yet


def test_projection_of_the_main_study_at_the_cut(main):
    """Enrollments 01-06 … 03-01: first 2025-01-06, so the window is 68 + 1 = 69 days, all 6 recent; 2 remain:
    2 * 69 / 6 = 23 days."""
    p = enrollment.projection(load(main, CUT))
    assert (p.window_days, p.recent_enrolled, p.enrolled, p.planned) == (69, 6, 6, 8)
    assert p.projected == CUT + dt.timedelta(days=23)


def test_poisson_rate_ci():
    assert enrollment.poisson_rate_ci(0, 90) == (0.0, pytest.approx(-math.log(0.025) / 90))
    low, high = enrollment.poisson_rate_ci(7, 45)
    assert low == pytest.approx(gamma.ppf(0.025, 7) / 45, rel=1e-9)
    assert high == pytest.approx(gamma.ppf(0.975, 8) / 45, rel=1e-9)


# --------------------------------------------------------------------------- tables


def test_by_site_at_the_cut(main):
    """A: 101 102 103 106 109 111 (102, 103, 111 failed; 101, 106 enrolled and dosed; 109 enrolls after the cut).
    B (no name: shown by its id): 104 105 107 112 (104 failed, no reason; 110 is screened after the cut).
    No site: 108, enrolled, not dosed."""
    got = enrollment.by_site(load(main, CUT))
    assert list(got.columns) == ["site_id", "site_name", "screened", "screen_failures", "reasons", "enrolled",
                                 "dosed"]
    rows = [tuple(None if (not isinstance(v, str) and pd.isna(v)) else v for v in r)
            for r in got.itertuples(index=False)]
    assert rows == [
        ("A", "Alpha Hospital", 6, 3, "Inadequate hepatic function (2); ECOG performance status 2 (1)", 2, 2),
        ("B", "B", 4, 1, "not recorded (1)", 3, 3),
        (None, None, 1, 0, "", 1, 0),
    ]


def test_by_site_later(main):
    """As of 03-31: 109 enrolled and dosed at A, 110 a screen failure at B."""
    got = enrollment.by_site(load(main, "2025-03-31")).set_index("site_name")
    assert got.loc["Alpha Hospital", ["screened", "enrolled", "dosed"]].tolist() == [6, 3, 3]
    assert got.loc["B", ["screened", "screen_failures", "enrolled"]].tolist() == [5, 2, 3]
    assert set(got.at["B", "reasons"].split("; ")) == {"not recorded (1)", "Withdrew consent (1)"}


def test_by_level_in_dose_order_with_phases(main):
    """Cut: level 1: 101 105 112 (escalation, dosed); level 2: 106 107 escalation (dosed), 108 expansion (not
    dosed); levels -1 and 3: nobody (109 enrolls on 03-20)."""
    got = enrollment.by_level(load(main, CUT))
    assert got["level"].tolist() == [-1, 1, 2, 3]
    assert got["label"].tolist() == ["3e7 PFU", "1e8 PFU", "1e9 PFU", "1e10 PFU"]
    assert got[["escalation", "expansion", "enrolled", "dosed"]].values.tolist() == [
        [0, 0, 0, 0], [3, 0, 3, 3], [2, 1, 3, 2], [0, 0, 0, 0]]
    later = enrollment.by_level(load(main, "2025-03-31")).set_index("level")
    assert later.loc[3, ["escalation", "expansion", "enrolled", "dosed"]].tolist() == [0, 1, 1, 1]


def test_screen_fail_reasons(main):
    got = enrollment.screen_fail_reasons(load(main, CUT))
    assert list(got.columns) == ["reason", "n"]
    assert got.iloc[0].tolist() == ["Inadequate hepatic function", 2]
    assert dict(zip(got["reason"], got["n"])) == {"Inadequate hepatic function": 2, "not recorded": 1,
                                                 "ECOG performance status 2": 1}
    later = enrollment.screen_fail_reasons(load(main, "2025-03-31"))
    assert dict(zip(later["reason"], later["n"]))["Withdrew consent"] == 1 and later["n"].sum() == 5
    assert enrollment.screen_fail_reasons(load(main, "2025-01-01")).empty


def test_timing_at_the_cut(main):
    """Screening -> enrollment: 101 4, 105 5, 106 4, 107 9, 108 9 (02-20 -> 03-01, February 2025 has 28 days),
    112 4: sorted 4 4 4 5 9 9, median 4.5. Enrollment -> first dose: 101 2, 105 2, 106 4, 107 2 (the
    cyclophosphamide), 112 1; 108 not dosed: sorted 1 2 2 2 4, median 2."""
    got = enrollment.timing(load(main, CUT)).set_index("interval")
    assert got.loc["Screening → enrollment", ["n", "median", "min", "max"]].tolist() == [6, 4.5, 4, 9]
    assert got.loc["Enrollment → first dose", ["n", "median", "min", "max"]].tolist() == [5, 2, 1, 4]


def test_timing_before_anyone_is_enrolled(main):
    got = enrollment.timing(load(main, "2025-01-04"))
    assert got["n"].tolist() == [0, 0]
    assert got["median"].isna().all() and got["min"].isna().all() and got["max"].isna().all()


def test_status_counts_keep_zeros_and_give_off_study_reasons(main):
    got = enrollment.status_counts(load(main, CUT))
    assert got["status"].tolist() == list(enrollment.STATUSES)
    assert got["n"].tolist() == [1, 4, 1, 1, 1, 2, 1]
    reasons = dict(zip(got["status"], got["reasons"]))
    assert set(reasons.pop("Off study").split("; ")) == {"Lost to follow-up (1)", "Withdrew consent (1)"}
    assert set(reasons.values()) == {""}
    # 02-25: 101 (death on 03-01 not seen) and 112 off study, both withdrew consent; 105 106 107 on treatment
    early = enrollment.status_counts(load(main, "2025-02-25"))
    assert early["n"].tolist() == [1, 4, 0, 3, 0, 2, 0]
    assert early.set_index("status").at["Off study", "reasons"] == "Withdrew consent (2)"
    # nobody screened: every status, all zeros
    empty = enrollment.status_counts(load(main, "2025-01-01"))
    assert empty["status"].tolist() == list(enrollment.STATUSES) and empty["n"].tolist() == [0] * 7


def test_enrollment_json(main):
    out = enrollment.enrollment_json(load(main, CUT))
    assert out == {"screened": 11, "screen_failures": 4, "enrolled": 6, "dosed": 5, "planned": 8,
                   "by_site": [{"site_id": "A", "screened": 6, "enrolled": 2},
                               {"site_id": "B", "screened": 4, "enrolled": 3},
                               {"site_id": None, "screened": 1, "enrolled": 1}]}
    assert json.loads(json.dumps(out)) == out  # plain JSON types


# --------------------------------------------------------------------------- a subject without a screening date


@pytest.fixture()
def no_screening_date(tmp_path):
    """301: no screening date, enrolled 2025-02-01. 302: screened 01-01, enrolled 01-11 (10 days)."""
    return one_study_db(tmp_path / "noscreen.duckdb", studies=[study_row(planned=4)], subjects=[
        subject("301", None, None, "2025-02-01", 1), subject("302", None, "2025-01-01", "2025-01-11", 1)])


def test_screened_on_the_enrollment_date_without_a_screening_date(no_screening_date):
    assert (load(no_screening_date, "2025-01-31").screened, load(no_screening_date, "2025-01-31").enrolled) == (1, 1)
    data = load(no_screening_date, "2025-02-01")
    assert (data.screened, data.enrolled, data.screen_failures) == (2, 2, 0)
    got = enrollment.cumulative(data)
    assert [(pd.Timestamp(d).date(), int(s), int(e)) for d, s, e in got.itertuples(index=False)] == [
        (D("2025-01-01"), 1, 0), (D("2025-01-11"), 1, 1), (D("2025-02-01"), 2, 2)]


def test_timing_leaves_out_a_subject_without_a_screening_date(no_screening_date):
    """301's days from screening to enrollment are unknown (no screening date), not 0: only 302's 10 days
    count (as the enrollment -> first dose interval leaves out subjects not dosed)."""
    got = enrollment.timing(load(no_screening_date, "2025-02-01")).set_index("interval")
    assert got.loc["Screening → enrollment", ["n", "median", "min", "max"]].tolist() == [1, 10, 10, 10]


# --------------------------------------------------------------------------- portfolio


S2_SUBJECTS = [
    # "101" also exists in S1: subjects are identified by (study_id, subject_id)
    subject("101", "A", "2025-01-02", "2025-01-05", 1, "escalation", study="S2"),
    subject("202", "B", "2025-01-03", "2025-01-10", 1, "escalation", study="S2"),
    subject("203", "B", "2025-01-20", "2025-02-10", 2, "escalation", study="S2"),  # after the S2 cut
    subject("204", "A", "2025-01-04", reason="Hepatitis B", study="S2"),
]


def dlt_event(sid, onset, study="S2"):
    return dict(study_id=study, subject_id=sid, term="Cytokine release syndrome", onset_date=onset, grade=3,
                dlt="Y")


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory):
    tables = main_tables()
    tables["studies"] = [study_row(), study_row("S2", planned=12, target=None, cut="2025-01-31", agent="DRUG")]
    tables["dose_levels"] = MAIN_LEVELS + [dict(study_id="S2", level=lv, label=f"{lv} mg") for lv in (1, 2)]
    tables["subjects"] = MAIN_SUBJECTS + S2_SUBJECTS
    tables["administrations"] = MAIN_DOSES + [dose("101", "2025-01-06", "DRUG", "S2"),
                                              dose("202", "2025-01-12", "DRUG", "S2")]
    # S2's 101 has a DLT 9 days after the first dose; 202's comes after S2's cut. S1's 101 has none.
    tables["adverse_events"] = [dlt_event("101", "2025-01-15"), dlt_event("202", "2025-02-05")]
    db, _ = one_study_db(tmp_path_factory.mktemp("portfolio") / "two.duckdb", **tables)
    return db


def test_portfolio_one_row_per_study_at_its_own_cut(two_studies):
    """S1 at 2025-03-15: 6 of 8 enrolled, levels 1 and 2 opened of -1, 1, 2, 3, no DLT. S2 at 2025-01-31: 101
    and 202 enrolled at level 1 (203 enrolls on 02-10), planned 12, levels 1 of 2, one DLT by the cut (101's;
    202's is after it)."""
    got = enrollment.load_portfolio(two_studies)
    assert got["study_id"].tolist() == ["S1", "S2"]
    rows = got.set_index("study_id")
    assert rows.loc["S1", ["enrolled", "planned", "levels_opened"]].tolist() == [6, 8, "2 of 4"]
    assert rows.loc["S2", ["enrolled", "planned", "levels_opened"]].tolist() == [2, 12, "1 of 2"]
    assert rows.loc["S2", "data_cut_date"] == D("2025-01-31") and rows.loc["S2", "agent"] == "DRUG"
    assert rows.loc["S1", "title"] == "Study S1" and rows["dlts"].tolist() == [0, 1]
    assert all(isinstance(r, str) and r for r in rows["recommendation"])


def test_studies_sharing_subject_ids_stay_apart(two_studies):
    """S2's 101 was dosed on 01-06; S1's 101 (enrolled 01-06) only on 01-08."""
    s1, s2 = load_study(two_studies, "S1"), load_study(two_studies, "S2")
    early = enrollment.load_enrollment(two_studies, s1, D("2025-01-07"))
    assert (early.screened, early.enrolled, early.dosed) == (3, 1, 0)  # 101 102 112 screened; 101 enrolled
    cut = enrollment.load_enrollment(two_studies, s1, CUT)
    assert (cut.screened, cut.screen_failures, cut.enrolled, cut.dosed) == COUNTS["2025-03-15"]
    other = enrollment.load_enrollment(two_studies, s2, D("2025-01-31"))
    assert (other.screened, other.screen_failures, other.enrolled, other.dosed) == (4, 1, 2, 2)


def test_subject_facts_of_several_studies_come_from_one_query_each_at_its_own_cut(two_studies):
    """S1 at 01-07: only 101 enrolled (01-06), not yet dosed (01-08). S2 at 01-31: its own 101, dosed 01-06,
    and 202, dosed 01-12; 203 enrolls after the cut. The shared id 101 keeps each study's first dose."""
    facts = load_subject_facts_by_study(two_studies, {"S1": D("2025-01-07"), "S2": D("2025-01-31")})
    assert [(f.subject_id, f.first_dose_date, f.dlt_onsets) for f in facts["S1"]] == [("101", None, ())]
    assert [(f.subject_id, f.first_dose_date, f.dlt_onsets) for f in facts["S2"]] == [
        ("101", D("2025-01-06"), (D("2025-01-15"),)), ("202", D("2025-01-12"), ())]
    assert load_subject_facts_by_study(two_studies, {}) == {}


# --------------------------------------------------------------------------- demo data against SQL


@pytest.fixture(scope="module")
def demo(demo_db):
    return Database(demo_db)


@pytest.mark.parametrize("study_id", STUDIES)
def test_demo_counts_match_sql(demo, sql, study_id):
    study = load_study(demo, study_id)
    planned = sql("SELECT planned_enrollment FROM studies WHERE study_id = ?", study_id)[0][0]
    seen = []
    for as_of in as_of_dates(sql, study_id):
        screened, failures, enrolled, in_screening, dead = sql(
            "SELECT count(CASE WHEN screening_date <= ? OR (screening_date IS NULL AND enrollment_date <= ?) "
            "THEN 1 END), "
            "count(CASE WHEN enrollment_date IS NULL AND screening_date <= ? THEN 1 END), "
            "count(CASE WHEN enrollment_date <= ? THEN 1 END), "
            "count(CASE WHEN screening_date <= ? AND enrollment_date > ? THEN 1 END), "
            "count(CASE WHEN enrollment_date <= ? AND death_date <= ? THEN 1 END) "
            "FROM subjects WHERE study_id = ?", *[as_of] * 8, study_id)[0]
        dosed = sql("SELECT count(*) FROM subjects s WHERE study_id = ? AND enrollment_date <= ? AND EXISTS "
                    "(SELECT 1 FROM administrations a WHERE a.study_id = s.study_id AND a.subject_id = s.subject_id "
                    "AND a.admin_date <= ?)", study_id, as_of, as_of)[0][0]
        per_site = dict(sql("SELECT site_id, count(*) FROM subjects WHERE study_id = ? AND "
                            "coalesce(screening_date, enrollment_date) <= ? GROUP BY site_id", study_id, as_of))
        data = enrollment.load_enrollment(demo, study, as_of)
        where = (study_id, as_of)
        assert (data.screened, data.screen_failures, data.enrolled, data.dosed, data.planned) == (
            screened, failures, enrolled, dosed, planned), where
        statuses = enrollment.status_counts(data).set_index("status")["n"]
        assert statuses.sum() == screened, where
        assert (statuses["Screen failure"], statuses["In screening"], statuses["Dead"]) == (
            failures, in_screening, dead), where
        sites = enrollment.by_site(data)
        assert dict(zip(sites["site_id"], sites["screened"])) == per_site, where
        assert (sites["enrolled"].sum(), sites["dosed"].sum()) == (enrolled, dosed), where
        assert enrollment.by_level(data)["enrolled"].sum() == enrolled, where
        json_out = enrollment.enrollment_json(data)
        assert (json_out["screened"], json_out["enrolled"], json_out["planned"]) == (screened, enrolled, planned)
        seen.append(enrolled)
    assert seen[0] > 0 and seen[-1] == 0  # the cut, mid-escalation, then a date before anyone was enrolled
