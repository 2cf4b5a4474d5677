"""Simulate the three seed trials (docs/seeds/, the protocols as registered) as contract tables.

Escalation is driven by the same rule module the SMC reads (smc.rules.escalation):
each day the simulation asks the rule what to do and enrolls, waits or stops
as it says. What is scripted is only each subject's fate inside the DLT window
(one letter per subject enrolled at a level, in order: N no DLT, T DLT,
D leaves the study inside the window, X not evaluable per investigator), so
every data cut shows the SMC a decision. Everything else (dates, AEs, labs,
scans, biomarkers, deaths) is drawn from a seeded generator: the same seed
gives the same data.

The data cut of each study:
- IDOV-SAFE: accelerated titration, first DLT at 7×10^9 PFU, 1×10^10 PFU
  exceeded, MTD 7×10^9 PFU declared and its 6-subject expansion under way,
  the latest expansion subjects still inside their DLT window.
- BIOTTT001: in monotherapy, 1 DLT in the first 3 at 5×10^9 VP, so that level is
  being expanded to 6 (three subjects inside the window); expansion at 5×10^8 VP.
  In the combination (its second stage, capped by what monotherapy cleared),
  5×10^7 VP cleared and a DLT at 5×10^8 VP: that level needs 6 there.
- IX001: 2 DLTs at level 2, de-escalation back to level 1, which has 3 of
  the 6 evaluable subjects it needs.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from smc.demo.specs import TrialSpec
from smc.rules import ctcae
from smc.rules.escalation import DoseLevel, SubjectFacts, assess, window_end

DAY = dt.timedelta(days=1)


def days(n: float) -> dt.timedelta:
    return dt.timedelta(days=int(round(n)))




# --------------------------------------------------------------------------- escalation


@dataclass
class SimSubject:
    subject_id: str
    level: int
    phase: str
    cohort: int | None
    enrollment: dt.date
    first_dose: dt.date
    fate: str  # N, T, D, X (see module docstring)
    window_days: int
    dlt_day: int | None = None  # days after first dose
    leave_day: int | None = None  # days after first dose (fate D)
    extra: dict = field(default_factory=dict)
    combination_start: dt.date | None = None  # a staged regimen's second stage: the day it began
    combination_level: int | None = None  # its level there: capped at what monotherapy had cleared
    combination_dlt_day: int | None = None  # days after combination_start (scripted)

    @property
    def dlt_date(self) -> dt.date | None:
        return None if self.dlt_day is None else self.first_dose + days(self.dlt_day)

    @property
    def leave_date(self) -> dt.date | None:
        return None if self.leave_day is None else self.first_dose + days(self.leave_day)

    def facts(self) -> SubjectFacts:
        return SubjectFacts(self.subject_id, self.level, self.enrollment, self.first_dose,
                            (self.dlt_date,) if self.dlt_date else (), self.leave_date,
                            "N" if self.fate == "X" else None, self.phase)

    def event_dates(self) -> list[dt.date]:
        return [d for d in (self.first_dose, window_end(self.first_dose, self.window_days),
                            self.dlt_date, self.leave_date) if d]


def simulate_escalation(spec: TrialSpec, rng: np.random.Generator) -> tuple[list[SimSubject], dict]:
    """Enroll subjects as the protocol rule says until the script runs out."""
    window = spec.study["dlt_window_days"]
    levels = [DoseLevel(lv["level"], lv["label"]) for lv in spec.levels]
    fates = {lv: list(f) for lv, f in spec.script.items()}
    subjects: list[SimSubject] = []
    cleared_on: dict[int, dt.date] = {}
    t, cohort, cohort_size, last_level = spec.start, 0, 0, None
    meeting: tuple | None = None  # the SMC meets a few days after the rule calls a new level
    while True:
        result = assess(spec.study["design"], window, levels, [s.facts() for s in subjects], t)
        for s in result.levels:
            if s.status == "cleared":
                cleared_on.setdefault(s.level, t)
        rec = result.recommendation
        if rec.action in ("escalate", "de-escalate") and meeting != (rec.action, rec.to_level):
            meeting = (rec.action, rec.to_level)
            t += days(rng.integers(2, 7))
            continue
        if rec.action in ("enroll", "escalate", "de-escalate") and fates.get(rec.to_level):
            fate = fates[rec.to_level].pop(0)
            if rec.to_level != last_level or cohort_size == 3:
                cohort, cohort_size = cohort + 1, 0
            cohort_size, last_level = cohort_size + 1, rec.to_level
            first_dose = t + days(rng.integers(*spec.dose_delay, endpoint=True))
            s = SimSubject(f"{spec.study['study_id']}-{len(subjects) + 1:03d}", rec.to_level, "escalation",
                           cohort, t, first_dose, fate, window)
            if fate == "T":
                s.dlt_day = int(rng.integers(4, window - 4))
            elif fate == "D":
                s.leave_day = int(rng.integers(6, window - 6))
            subjects.append(s)
            t += days(rng.integers(*spec.stagger, endpoint=True))
            continue
        if rec.action in ("declare_mtd", "max_dose_cleared", "stop"):
            break
        upcoming = [d for s in subjects for d in s.event_dates() if d > t]
        if not upcoming:
            break
        t = min(upcoming)
    return subjects, {"cleared_on": cleared_on, "decided_on": t, "mtd": rec.mtd_level}


COMBINATION_DAY = 28  # a staged regimen's combination begins this many days after the first monotherapy dose


def plan_combination(spec: TrialSpec, subjects: list[SimSubject], cleared_on: dict[int, dt.date]) -> None:
    """Subjects who completed a DLT-free monotherapy begin the combination on day 29, at their own level or, when it
    was not yet cleared in monotherapy, the highest level that was (the combination's ceiling); with no such level
    yet, on the day the first one at or below their own is cleared. ``spec.combination_script`` scripts the fates
    of the escalation subjects entering each combination level, in the order they enter."""
    if len(spec.stages) < 2:
        return
    fates = {lv: list(f) for lv, f in spec.combination_script.items()}
    entering = sorted((s for s in subjects if s.fate == "N"), key=lambda s: (s.first_dose, s.subject_id))
    for s in entering:
        earliest = s.first_dose + days(COMBINATION_DAY)
        options = sorted((when, level) for level, when in cleared_on.items() if level <= s.level)
        if not options:
            continue
        by_then = [level for when, level in options if when <= earliest]
        s.combination_start, s.combination_level = (earliest, max(by_then)) if by_then else options[0]
        if s.phase == "escalation" and fates.get(s.combination_level):
            if fates[s.combination_level].pop(0) == "T":
                s.combination_dlt_day = 9


def add_expansion(spec: TrialSpec, subjects: list[SimSubject], events: dict, rng) -> None:
    if spec.expansion is None:
        return
    level, n, when = spec.expansion
    t = (events["decided_on"] if when == "mtd" else events["cleared_on"][level]) + days(rng.integers(7, 14))
    opened, elapsed = t, 0.0
    for _ in range(n):
        first_dose = t + days(rng.integers(*spec.dose_delay, endpoint=True))
        subjects.append(SimSubject(f"{spec.study['study_id']}-{len(subjects) + 1:03d}", level, "expansion",
                                   None, t, first_dose, "N", spec.study["dlt_window_days"]))
        if spec.expansion_days is None:
            t += days(rng.integers(5, 10))
        else:  # a large cohort: several subjects may start on one day
            elapsed += float(rng.exponential(spec.expansion_days / n))
            t = opened + days(elapsed)


# --------------------------------------------------------------------------- clinical content


@dataclass(frozen=True)
class AeSpec:
    term: str
    soc: str
    p: float  # probability per subject
    grades: tuple[float, ...]  # probabilities of grades 1, 2, 3, 4
    onset: tuple[int, int]  # days after first dose
    duration: tuple[int, int]
    related: float = 0.8


VIRUS_AES = [
    AeSpec("Pyrexia", "General disorders and administration site conditions", 0.85, (0.5, 0.4, 0.1), (0, 2), (1, 3), 0.95),
    AeSpec("Chills", "General disorders and administration site conditions", 0.6, (0.7, 0.3), (0, 1), (1, 2), 0.95),
    AeSpec("Influenza like illness", "General disorders and administration site conditions", 0.45, (0.6, 0.4), (0, 3), (2, 6), 0.9),
    AeSpec("Fatigue", "General disorders and administration site conditions", 0.5, (0.6, 0.35, 0.05), (1, 10), (5, 30), 0.7),
    AeSpec("Lymphocyte count decreased", "Investigations", 0.7, (0.2, 0.4, 0.35, 0.05), (1, 2), (3, 8), 0.9),
    AeSpec("Alanine aminotransferase increased", "Investigations", 0.3, (0.7, 0.3), (3, 10), (5, 15), 0.8),
    AeSpec("Nausea", "Gastrointestinal disorders", 0.3, (0.8, 0.2), (0, 3), (1, 4), 0.6),
    AeSpec("Headache", "Nervous system disorders", 0.25, (0.9, 0.1), (0, 2), (1, 2), 0.6),
]
HAI_AES = [
    AeSpec("Pyrexia", "General disorders and administration site conditions", 0.7, (0.6, 0.35, 0.05), (0, 2), (1, 3), 0.9),
    AeSpec("Abdominal pain", "Gastrointestinal disorders", 0.45, (0.6, 0.35, 0.05), (0, 2), (1, 4), 0.8),
    AeSpec("Aspartate aminotransferase increased", "Investigations", 0.5, (0.6, 0.3, 0.1), (1, 5), (5, 14), 0.85),
    AeSpec("Alanine aminotransferase increased", "Investigations", 0.4, (0.6, 0.35, 0.05), (1, 5), (5, 14), 0.85),
    AeSpec("Fatigue", "General disorders and administration site conditions", 0.4, (0.7, 0.3), (2, 20), (7, 30), 0.6),
]
COMBINATION_DLT = ("Immune-mediated hepatitis", "Hepatobiliary disorders", 3)  # a scripted combination DLT
COMBO_AES = [  # start with regorafenib and toripalimab from day 29
    AeSpec("Palmar-plantar erythrodysesthesia syndrome", "Skin and subcutaneous tissue disorders", 0.55, (0.35, 0.45, 0.2), (35, 60), (14, 40), 0.95),
    AeSpec("Hypertension", "Vascular disorders", 0.4, (0.2, 0.55, 0.25), (32, 60), (20, 90), 0.9),
    AeSpec("Diarrhoea", "Gastrointestinal disorders", 0.4, (0.55, 0.35, 0.1), (33, 70), (3, 10), 0.85),
    AeSpec("Hypothyroidism", "Endocrine disorders", 0.2, (0.4, 0.6), (70, 140), (60, 200), 0.9),
    AeSpec("Rash maculo-papular", "Skin and subcutaneous tissue disorders", 0.25, (0.5, 0.4, 0.1), (40, 90), (7, 28), 0.9),
    AeSpec("Immune-mediated hepatitis", "Hepatobiliary disorders", 0.08, (0.0, 0.3, 0.7), (50, 120), (14, 40), 0.95),
]
TCRT_AES = [  # days relative to the TCR-T infusion; lymphodepletion starts on day -5
    AeSpec("Lymphocyte count decreased", "Investigations", 1.0, (0.0, 0.0, 0.15, 0.85), (-2, 0), (7, 14), 0.95),
    AeSpec("Neutrophil count decreased", "Investigations", 0.95, (0.0, 0.1, 0.35, 0.55), (2, 5), (5, 12), 0.95),
    AeSpec("Platelet count decreased", "Investigations", 0.75, (0.3, 0.35, 0.25, 0.1), (3, 7), (7, 21), 0.9),
    AeSpec("Anemia", "Blood and lymphatic system disorders", 0.7, (0.3, 0.5, 0.2), (3, 10), (10, 30), 0.85),
    AeSpec("Cytokine release syndrome", "Immune system disorders", 0.7, (0.5, 0.5), (0, 3), (2, 6), 0.95),
    AeSpec("Pyrexia", "General disorders and administration site conditions", 0.8, (0.5, 0.45, 0.05), (0, 2), (1, 4), 0.9),
    AeSpec("Febrile neutropenia", "Blood and lymphatic system disorders", 0.25, (0.0, 0.0, 1.0), (4, 9), (3, 7), 0.9),
    AeSpec("Capillary leak syndrome", "Vascular disorders", 0.15, (0.3, 0.6, 0.1), (2, 6), (3, 8), 0.85),
    AeSpec("Hypoalbuminaemia", "Metabolism and nutrition disorders", 0.3, (0.5, 0.5), (3, 10), (7, 20), 0.7),
]
BACKGROUND_AES = [  # disease-related, any modality
    AeSpec("Decreased appetite", "Metabolism and nutrition disorders", 0.3, (0.7, 0.3), (5, 120), (10, 60), 0.3),
    AeSpec("Constipation", "Gastrointestinal disorders", 0.2, (0.8, 0.2), (5, 120), (5, 20), 0.2),
    AeSpec("Back pain", "Musculoskeletal and connective tissue disorders", 0.15, (0.6, 0.3, 0.1), (10, 150), (10, 40), 0.1),
    AeSpec("Ascites", "Gastrointestinal disorders", 0.08, (0.2, 0.5, 0.3), (30, 200), (20, 60), 0.05),
]
BACKGROUND_EVERY_DAYS = 10  # portfolio studies: disease-related events may recur this often through follow-up
PRE_DOSE_AES = [  # present between consent and the first dose of any treatment: baseline events, not TEAEs
    AeSpec("Fatigue", "General disorders and administration site conditions", 0.2, (0.7, 0.3), (-6, -1), (10, 60), 0.0),
    AeSpec("Cancer pain", "Neoplasms benign, malignant and unspecified (incl cysts and polyps)", 0.15, (0.6, 0.4),
           (-6, -1), (20, 90), 0.0),
    AeSpec("Insomnia", "Psychiatric disorders", 0.1, (1.0,), (-6, -1), (7, 30), 0.0),
]
MODALITY_AES = {"virus": VIRUS_AES, "hai_combo": HAI_AES, "tcrt": TCRT_AES}

# Safety labs: (test, category, unit, ref_low, ref_high, baseline mean, baseline sd).
SAFETY_LABS = [
    ("Neutrophils", "hematology", "10^9/L", 1.8, 6.3, 3.8, 0.8),
    ("Lymphocytes", "hematology", "10^9/L", 1.1, 3.2, 1.7, 0.35),
    ("Platelets", "hematology", "10^9/L", 125, 350, 230, 45),
    ("Hemoglobin", "hematology", "g/L", 115, 150, 128, 8),
    ("ALT", "chemistry", "U/L", 7, 40, 22, 6),
    ("AST", "chemistry", "U/L", 13, 35, 23, 5),
    ("Bilirubin", "chemistry", "umol/L", 3.4, 20.5, 10, 3),
    ("Creatinine", "chemistry", "umol/L", 45, 104, 72, 12),
]
LAB_DAYS = {  # safety-lab visits, days after first dose; then every `then` days
    "virus": ([-7, 1, 3, 8, 15, 22, 29, 43], 21),
    "hai_combo": ([-7, 1, 3, 8, 15, 22, 29, 43], 14),
    "tcrt": ([-9, -5, 0, 3, 7, 10, 14, 21, 28, 42, 56, 84], 28),
}
COURSES = {"virus": (21, 36), "hai_combo": (28, 26)}  # portfolio: (days per course, most courses); TCR-T: one infusion
SCAN_DAYS = {  # RECIST assessments after first dose; then every `then` days
    "virus": ([42, 84, 126], 63),
    "hai_combo": ([28, 56, 84, 112, 140], 56),
    "tcrt": ([28, 56, 84], 56),
}
MARKERS = {  # tumor type -> markers (test, unit, baseline log-mean, ULN)
    "Colorectal": [("CEA", "ng/mL", 3.6, 5.0), ("CA19-9", "U/mL", 4.5, 37), ("CA125", "U/mL", 2.9, 35)],
    "Pancreatic": [("CA19-9", "U/mL", 6.0, 37), ("CEA", "ng/mL", 2.3, 5.0), ("CA125", "U/mL", 3.3, 35)],
    "Ovarian": [("CA125", "U/mL", 5.5, 35)],
    "Gastric": [("CEA", "ng/mL", 2.8, 5.0), ("CA19-9", "U/mL", 4.0, 37)],
    "Lung": [("CEA", "ng/mL", 2.9, 5.0)],
}


class Trial:
    """Builds one study's contract rows from its simulated subjects."""

    def __init__(self, spec: TrialSpec, rng: np.random.Generator):
        self.spec, self.rng = spec, rng
        # Its own stream, so adding pre-dose events leaves every other simulated value as it was.
        self.pre_dose_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
        # Likewise for complete responses and the investigator's misreads of scans.
        self.reading_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])
        self.sid = spec.study["study_id"]
        self.window = spec.study["dlt_window_days"]
        self.doses = {lv["level"]: lv for lv in spec.levels}
        self.level_rank = {lv: i for i, lv in enumerate(sorted(self.doses))}
        self.rows: dict[str, list[dict]] = {t: [] for t in (
            "subjects", "subject_stages", "administrations", "adverse_events", "tumor_assessments", "lab_results")}

    # ---- helpers
    def u(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def choose(self, options, p=None):
        return options[int(self.rng.choice(len(options), p=p))]

    def lab(self, s, when: dt.datetime | dt.date, category, test, specimen, value, unit, lloq=None,
            ref_low=None, ref_high=None, grade=None):
        below = lloq is not None and value < lloq
        self.rows["lab_results"].append(dict(
            study_id=self.sid, subject_id=s.subject_id, collected_at=when, category=category, test=test,
            specimen=specimen, value=None if below else round(float(value), 4), unit=unit, lloq=lloq,
            ref_low=ref_low, ref_high=ref_high, grade=grade))

    # ---- the subject's course
    def build(self, subjects: list[SimSubject], cut: dt.date) -> None:
        for s in subjects:
            if s.enrollment <= cut:
                self.course(s, cut)
        for i in range(self.spec.n_screen_fail):
            screened = self.spec.start + days(self.u(5, max(10, (cut - self.spec.start).days - 5)))
            self.rows["subjects"].append(dict(
                study_id=self.sid, subject_id=f"{self.sid}-S{i + 1:02d}",
                site_id=self.choose([x[0] for x in self.spec.sites]), sex=self.choose(["M", "F"]),
                age=int(self.u(38, 76)), screening_date=screened, enrollment_date=None,
                screen_fail_reason=self.spec.screen_fail_reasons[i % len(self.spec.screen_fail_reasons)],
                dose_level=None, phase=None))
        self.contact_after_records()

    RECORD_DATES = {"administrations": ("admin_date", "end_date"), "adverse_events": ("onset_date", "end_date"),
                    "tumor_assessments": ("assessment_date",), "lab_results": ("collected_at",)}

    def contact_after_records(self) -> None:
        """last_contact_date is the last date known alive, so never before the subject's own dated records."""
        latest: dict[str, dt.date] = {}
        for table, columns in self.RECORD_DATES.items():
            for row in self.rows[table]:
                for column in columns:
                    when = row.get(column)
                    if when is None:
                        continue
                    when = when.date() if isinstance(when, dt.datetime) else when
                    latest[row["subject_id"]] = max(when, latest.get(row["subject_id"], when))
        for row in self.rows["subjects"]:
            if row.get("last_contact_date") and row["subject_id"] in latest:
                row["last_contact_date"] = max(row["last_contact_date"], latest[row["subject_id"]])

    def course(self, s: SimSubject, cut: dt.date) -> None:
        rng, fd = self.rng, s.first_dose
        rank = self.level_rank[s.level] / max(1, len(self.level_rank) - 1)
        # Tumor behaviour: higher doses respond a little more often.
        p_resp = 0.08 + 0.25 * rank
        behaviour = self.choose(["responder", "stable", "progressor"], p=[p_resp, 0.5 - p_resp / 2, 0.5 - p_resp / 2])
        pd_day = {"responder": self.u(200, 420), "stable": self.u(100, 240), "progressor": self.u(38, 60)}[behaviour]
        off_tx_reason, off_tx_day = "Progressive disease", pd_day
        if s.fate == "T":
            off_tx_reason, off_tx_day = "Adverse event", s.dlt_day + self.u(1, 4)
        elif s.combination_dlt_day is not None:  # stopped three days after a DLT of the combination
            off_tx_reason = "Adverse event"
            off_tx_day = (s.combination_start - s.first_dose).days + s.combination_dlt_day + 3
        elif s.fate == "X":  # missed the second monotherapy infusion: replaced, no combination
            off_tx_reason, off_tx_day = "Monotherapy not completed (catheter occlusion)", self.u(28, 32)
        death_day = pd_day + float(rng.exponential(150)) if rng.random() < 0.8 else None
        off_study_day, off_study_reason = None, None
        if s.fate == "D":
            off_study_day = s.leave_day
            off_study_reason = self.choose(["Withdrawal by subject", "Clinical deterioration"])
            off_tx_day, off_tx_reason = s.leave_day, off_study_reason
            death_day = None
        if death_day is not None:
            off_study_day, off_study_reason = death_day, "Death"

        def on(day):  # a date that exists at the cut
            d = fd + days(day)
            return d if d <= cut else None

        death = on(death_day) if death_day is not None else None
        off_study = on(off_study_day) if off_study_day is not None else None
        off_tx = on(off_tx_day)
        end_of_data = min(d for d in (cut, death, off_study) if d)
        treatment_end = min(d for d in (end_of_data, off_tx) if d)
        screening = s.enrollment - days(self.u(4, 14) if self.spec.modality != "tcrt" else self.u(10, 20))
        tumor = self.choose(self.spec.tumor_types)
        s.extra.update(behaviour=behaviour, pd_day=pd_day, tumor=tumor, treatment_end=treatment_end, screening=screening)

        self.rows["subjects"].append(dict(
            study_id=self.sid, subject_id=s.subject_id, site_id=self.choose([x[0] for x in self.spec.sites]),
            sex="F" if tumor == "Ovarian" else self.choose(["M", "F"]), age=int(self.u(34, 78)),
            screening_date=screening, enrollment_date=s.enrollment, screen_fail_reason=None,
            dose_level=s.level, phase=s.phase, cohort=s.cohort,
            dlt_evaluable="N" if s.fate == "X" else None,
            off_treatment_date=off_tx, off_treatment_reason=off_tx_reason if off_tx else None,
            off_study_date=off_study, off_study_reason=off_study_reason if off_study else None,
            death_date=death, death_cause="Disease progression" if death else None,
            last_contact_date=None if death else (off_study or max(s.enrollment, cut - days(self.u(0, 25))))))
        if s.first_dose > cut:
            return
        if s.combination_start is not None and s.combination_start <= treatment_end:
            self.rows["subject_stages"].append(dict(
                study_id=self.sid, subject_id=s.subject_id, stage=self.spec.stages[1]["stage"],
                dose_level=s.combination_level, start_date=s.combination_start))
        self.dosing(s, treatment_end)
        excursions = self.adverse_events(s, end_of_data)
        self.safety_labs(s, end_of_data, excursions, off_tx)
        self.tumor(s, end_of_data)
        self.biomarkers(s, end_of_data)

    # ---- dosing
    def dosing(self, s: SimSubject, until: dt.date) -> None:
        fd, dose = s.first_dose, self.doses[s.level]
        add = self.rows["administrations"].append
        agent = self.spec.study["agent"]

        def give(name, start, dose_, unit, route, cycle, day, end=None, time="09:30"):
            if start <= until:
                add(dict(study_id=self.sid, subject_id=s.subject_id, agent=name, admin_date=start,
                         admin_time=time, end_date=min(end, until) if end else None, dose=dose_, unit=unit,
                         route=route, cycle=cycle, day=day))

        if self.spec.modality == "virus":  # IV day 1 of each 21-day course
            for c in range(12):
                give(agent, fd + days(21 * c), dose["dose"], "PFU", "IV", c + 1, 1)
        elif self.spec.modality == "hai_combo":
            give(agent, fd, dose["dose"], "VP", "HAI", 0, 1)  # monotherapy D1, D15
            if s.fate != "X":  # X: the second infusion was missed (catheter occlusion)
                give(agent, fd + days(14), dose["dose"], "VP", "HAI", 0, 15)
            if s.combination_start is None:  # combination only after a complete, DLT-free monotherapy
                return
            combined = self.doses[s.combination_level]["dose"]
            for c in range(1, 8):  # combination cycles of 28 days
                c1 = s.combination_start + days(28 * (c - 1))
                give("toripalimab", c1, 80, "mg", "IV", c, 1)
                give("regorafenib", c1, 80, "mg", "PO", c, 1, end=c1 + days(20), time="08:00")
                give(agent, c1 + DAY, combined, "VP", "HAI", c, 2)
                give("toripalimab", c1 + days(14), 80, "mg", "IV", c, 15)
                give(agent, c1 + days(15), combined, "VP", "HAI", c, 16)
        else:  # lymphodepletion D-5..D-3, TCR-T D0, IL-2 D0..D9
            give("cyclophosphamide", fd - days(5), 500, "mg/m2", "IV", 1, -5, end=fd - days(3))
            give("fludarabine", fd - days(5), 30, "mg/m2", "IV", 1, -5, end=fd - days(3))
            give(agent, fd, dose["dose"], "cells", "IV", 1, 0, time="10:00")
            give("IL-2", fd, 500000, "IU", "SC", 1, 0, end=fd + days(9))

    # ---- adverse events, returning the lab excursions they imply
    def adverse_events(self, s: SimSubject, end: dt.date) -> list[tuple]:
        rng, fd = self.rng, s.first_dose
        rank = self.level_rank[s.level] / max(1, len(self.level_rank) - 1)
        catalog = list(MODALITY_AES[self.spec.modality]) + BACKGROUND_AES
        if self.spec.modality == "hai_combo" and s.fate != "T":
            catalog += COMBO_AES
        events = []
        for ae in catalog:
            if rng.random() > min(1.0, ae.p * (0.8 + 0.4 * rank)):
                continue
            probs = np.array(ae.grades, float)
            grade = int(rng.choice(len(probs), p=probs / probs.sum())) + 1
            if ae.onset[0] >= 0 and grade >= 3 and self.spec.modality != "tcrt" and fd + days(ae.onset[1]) < fd + days(self.window):
                grade = 2  # a grade ≥3 event inside the window would be a DLT: only scripted DLTs are
            onset = fd + days(self.u(*ae.onset))
            event = (ae.term, ae.soc, grade, onset, onset + days(self.u(*ae.duration)),
                     "Y" if rng.random() < ae.related else "N", "N")
            if ae in COMBO_AES:  # drawn for every subject, so the later draws stay as they were
                if s.combination_start is None:
                    continue
                event = self.in_combination(event, s)
            events.append(event)
        if s.combination_dlt_day is not None:
            term, soc, grade = COMBINATION_DLT
            events = [e for e in events if e[0] != term]
            onset = s.combination_start + days(s.combination_dlt_day)
            events.append((term, soc, grade, onset, onset + days(21), "Y", "Y"))
        if self.spec.recurring_aes:
            events += self.recurring_events(s, end)
        first_treatment = fd - days(5) if self.spec.modality == "tcrt" else fd  # lymphodepletion starts day -5
        for ae in PRE_DOSE_AES:
            if self.pre_dose_rng.random() < ae.p:
                grade = int(self.pre_dose_rng.choice(len(ae.grades), p=ae.grades)) + 1
                # Never before consent: an event before screening is medical history, not an AE.
                onset = max(s.extra["screening"], first_treatment + days(float(self.pre_dose_rng.uniform(*ae.onset))))
                stop = onset + days(float(self.pre_dose_rng.uniform(*ae.duration)))
                events.append((ae.term, ae.soc, grade, onset, stop, "N", "N"))
        if s.fate == "T":
            term, soc, grade = self.choose(self.spec.dlt_terms)
            events = [e for e in events if e[0] != term]
            onset = s.dlt_date
            events.append((term, soc, grade, onset, onset + days(self.u(6, 16)), "Y", "Y"))
        if s.fate == "D" and self.spec.modality != "tcrt":
            events.append(("General physical health deterioration", "General disorders and administration site conditions",
                           3, s.leave_date - days(2), None, "N", "N"))
        excursions = []
        for seq, (term, soc, grade, onset, stop, related, dlt) in enumerate(sorted(events, key=lambda e: e[3]), 1):
            if onset > end:
                continue
            serious = "Y" if dlt == "Y" or (grade >= 3 and rng.random() < 0.6) else "N"
            ongoing = stop is None or stop > end
            self.rows["adverse_events"].append(dict(
                study_id=self.sid, subject_id=s.subject_id, ae_seq=seq, term=term, soc=soc,
                onset_date=onset, end_date=None if ongoing else stop, grade=grade, serious=serious,
                related=related, dlt=dlt, outcome="Not recovered/not resolved" if ongoing else "Recovered/resolved",
                action_taken="Drug withdrawn" if dlt == "Y" else ("Dose delayed" if grade >= 3 else "None")))
            test = ctcae.TEST_FOR_AE_TERM.get(term) or ("ALT" if term == "Immune-mediated hepatitis" else None)
            if test:
                excursions.append((test, grade, onset, stop))
        return excursions

    def in_combination(self, event: tuple, s: SimSubject) -> tuple:
        """A combination AE drawn as days from the first monotherapy dose, moved with a late combination start;
        inside the combination's DLT window no worse than grade 2 (only scripted DLTs are DLTs)."""
        term, soc, grade, onset, stop, related, dlt = event
        shift = s.combination_start - (s.first_dose + days(COMBINATION_DAY))
        onset, stop = onset + shift, stop + shift
        window = self.spec.stages[1]["dlt_window_days"]
        if grade >= 3 and onset < s.combination_start + days(window):
            grade = 2
        return term, soc, grade, onset, stop, related, dlt

    def recurring_events(self, s: SimSubject, end: dt.date) -> list[tuple]:
        """Portfolio studies treat until progression: infusion reactions (early-onset AEs) come back after
        each later course, and disease-related events recur through follow-up. Grade 1-2 only: outside the
        DLT window they would not be DLTs anyway, and the lab excursions stay mild."""
        period, courses = COURSES.get(self.spec.modality, (0, 0))
        reactions = [ae for ae in MODALITY_AES[self.spec.modality] if ae.onset[1] <= 10]
        treated = [(s.first_dose + days(period * c), reactions) for c in range(1, courses)]
        followed = [(s.first_dose + days(BACKGROUND_EVERY_DAYS * m), BACKGROUND_AES)
                    for m in range(1, 730 // BACKGROUND_EVERY_DAYS)]
        events = []
        for start, catalog in [(d, c) for d, c in treated if d <= s.extra["treatment_end"]] + \
                [(d, c) for d, c in followed if d <= end]:
            for ae in catalog:
                if self.rng.random() < ae.p:
                    grade = 1 if self.rng.random() < ae.grades[0] / (sum(ae.grades[:2]) or 1) else 2
                    onset = start + days(self.u(0, min(ae.onset[1], 20)))
                    events.append((ae.term, ae.soc, grade, onset, onset + days(self.u(*ae.duration)),
                                   "Y" if self.rng.random() < ae.related else "N", "N"))
        return events

    # ---- safety labs that agree with the AEs
    def safety_labs(self, s: SimSubject, end: dt.date, excursions: list[tuple], off_tx: dt.date | None) -> None:
        fd = s.first_dose
        first, then = LAB_DAYS[self.spec.modality]
        then = self.spec.lab_interval_days or then
        last_visit = min(end, (off_tx + days(30)) if off_tx else end)
        visit_days = first + list(range(first[-1] + then, (last_visit - fd).days + 1, then))
        dates = {fd + days(d) for d in visit_days} | {e[2] for e in excursions}
        dates = sorted(d for d in dates if d <= last_visit)
        for test, category, unit, ref_low, ref_high, mean, sd in SAFETY_LABS:
            baseline = max(mean - 1.5 * sd, min(mean + 1.5 * sd, float(self.rng.normal(mean, sd))))
            mine = [e for e in excursions if e[0] == test]
            low = ctcae.GRADINGS[test].direction == "low"
            for d in dates:
                value = baseline * self.u(0.93, 1.07)
                for _, grade, onset, stop in mine:
                    worst = ctcae.value_for_grade(test, grade, ref_low, ref_high, self.u(0.2, 0.8))
                    if d == onset:
                        value = worst
                    elif onset - days(3) <= d < onset or (onset < d and (stop is None or d <= stop)):
                        # On the way to and back from the worst value: milder than at onset.
                        span = 3 if d < onset else max(1, ((stop or end) - onset).days)
                        frac = 1 - abs((d - onset).days) / (span + 1)
                        partial = baseline + (worst - baseline) * frac * 0.7
                        value = min(value, partial) if low else max(value, partial)
                if s.fate != "T" or not any(e[1] >= 3 for e in mine):
                    # Without a graded AE of this test, keep results below grade 2.
                    g = ctcae.grade(test, value, ref_low, ref_high)
                    if g and g >= 2 and not any(abs((d - e[2]).days) <= 40 for e in mine):
                        value = ctcae.value_for_grade(test, 1, ref_low, ref_high, 0.3)
                when = dt.datetime.combine(d, dt.time(8, 0))
                self.lab(s, when, category, test, "whole blood" if category == "hematology" else "serum",
                         value, unit, ref_low=ref_low, ref_high=ref_high,
                         grade=ctcae.grade(test, value, ref_low, ref_high) if self.spec.lab_grades_reported else None)

    # ---- RECIST assessments and tumor markers
    def tumor(self, s: SimSubject, end: dt.date) -> None:
        fd, behaviour, pd_day = s.first_dose, s.extra["behaviour"], s.extra["pd_day"]
        clinical_pd = False
        baseline = round(self.u(35, 160))
        best = {"responder": self.u(-0.75, -0.38), "stable": self.u(-0.25, 0.12), "progressor": self.u(0.0, 0.1)}[behaviour]
        if behaviour == "responder" and self.reading_rng.random() < 0.3:
            best = -1.0  # every target lesion gone by day 90: a complete response
        first, then = SCAN_DAYS[self.spec.modality]
        scan_days = [-int(self.u(3, 14))] + first + list(range(first[-1] + then, 730, then))
        nadir, rows = float(baseline), []
        for day in scan_days:
            d = fd + days(day + (self.u(-3, 3) if day > 0 else 0))
            if d > end:
                break
            if day <= 0:
                total, new = float(baseline), "N"
            else:
                progressing = day >= pd_day
                frac = min(1.0, day / 90)
                total = baseline * (1 + best * frac) * self.u(0.97, 1.03)
                new = "N"
                if progressing:
                    new = "Y" if self.rng.random() < 0.35 else "N"
                    total = max(nadir * self.u(1.22, 1.45), nadir + 6) if new == "N" else total
                    clinical_pd = new == "N" and self.reading_rng.random() < 0.3
                    if clinical_pd:  # the investigator calls PD on symptoms before the sum grows 20%
                        total = nadir * (1.05 + 0.1 * self.reading_rng.random())
            total = round(max(total, 0.0))
            if day > 0:
                response = "PD" if clinical_pd else self.investigator_read(
                    self.recist(baseline, nadir, total, new == "Y"), baseline, total)
            else:
                response = None
            rows.append(dict(study_id=self.sid, subject_id=s.subject_id, assessment_date=d, target_sum_mm=total,
                             new_lesions=new, nontarget_response="PD" if new == "Y" else "NON-CR/NON-PD",
                             overall_response=response))
            nadir = min(nadir, total)
            if response == "PD":
                break
        self.rows["tumor_assessments"].extend(rows)
        for test, unit, log_mean, uln in MARKERS[s.extra["tumor"]]:
            base = float(np.exp(self.rng.normal(log_mean, 0.6)))
            for r in rows:
                change = r["target_sum_mm"] / baseline - 1
                value = base * max(0.05, 1 + 1.4 * change) * self.u(0.9, 1.1)
                self.lab(s, dt.datetime.combine(r["assessment_date"], dt.time(8, 0)), "tumor_marker", test,
                         "serum", value, unit, ref_high=uln)

    def investigator_read(self, response: str, baseline: float, total: float) -> str:
        """Now and then the investigator calls a near-PR a PR: a data issue the Efficacy page must flag, not fix."""
        if response == "SD" and total <= 0.8 * baseline and self.reading_rng.random() < 0.5:
            return "PR"
        return response

    @staticmethod
    def recist(baseline: float, nadir: float, total: float, new_lesion: bool) -> str:
        """Time-point response from target sums (RECIST 1.1; non-target lesions never decide here)."""
        if new_lesion or (total >= 1.2 * nadir and total - nadir >= 5):
            return "PD"
        if total == 0:
            return "CR"
        if total <= 0.7 * baseline:
            return "PR"
        return "SD"

    # ---- modality biomarkers
    def biomarkers(self, s: SimSubject, end: dt.date) -> None:
        dose = self.doses[s.level]["dose"]
        at = lambda hours: dt.datetime.combine(s.first_dose, dt.time(9, 30)) + dt.timedelta(hours=hours)  # noqa: E731
        rng, u = self.rng, self.u
        if self.spec.modality == "virus":
            peak = dose / 1e4 * u(0.5, 2)  # viral DNA copies/mL at the end of the infusion
            for h in (0, 1, 3, 6, 24, 48, 72):
                if at(h).date() <= end:
                    dna = 0 if h == 0 else peak * np.exp(-0.12 * (h - 1)) if h >= 1 else peak
                    self.lab(s, at(h), "pk", "Viral DNA", "whole blood", dna, "copies/mL", lloq=100)
                    live = 0 if h == 0 else dose / 1e7 * u(0.3, 1.5) * np.exp(-0.35 * (h - 1))
                    self.lab(s, at(h), "virology", "Live virus", "whole blood", live, "PFU/mL", lloq=10)
            rank = self.level_rank[s.level]
            em, ex = u(18, 30), u(8, 16)
            for d in (-7, 8, 22, 43, 85):
                when = at(24 * d)
                if when.date() <= end:
                    rise = 0 if d < 0 else (1 + 0.12 * rank) * (1 - np.exp(-d / 10))
                    self.lab(s, when, "t_cell", "CD8+ effector memory T cells", "PBMC", em * (1 + 0.6 * rise) * u(0.9, 1.1), "% of CD8+")
                    self.lab(s, when, "t_cell", "PD-1+TIM-3+ CD8+ T cells", "PBMC", ex * (1 - 0.35 * rise) * u(0.9, 1.1), "% of CD8+")
        elif self.spec.modality == "hai_combo":
            peak = dose / 1e3 * u(0.5, 2)
            for h in (0, 1, 4, 24, 72, 168, 336, 672):
                if at(h).date() <= end:
                    self.lab(s, at(h), "pk", "Adenovirus copies", "plasma",
                             0 if h == 0 else peak * np.exp(-0.05 * (h - 1)), "copies/mL", lloq=50)
            for specimen, scale, decay in (("injection-site swab", 3e-4, 0.5), ("throat swab", 2e-6, 0.6),
                                           ("rectal swab", 1e-5, 0.4), ("urine", 5e-6, 0.5)):
                for d in (0, 1, 3, 7, 14, 28):
                    if at(24 * d).date() <= end:
                        copies = 0 if d == 0 else dose * scale * np.exp(-decay * d) * u(0.2, 3)
                        self.lab(s, at(24 * d + 2), "virology", "Adenovirus copies", specimen, copies, "copies/mL", lloq=50)
            il12_peak = 20 + 400 * self.level_rank[s.level] * u(0.6, 1.4)
            for h in (0, 24, 72, 168, 336, 672):
                if at(h).date() <= end:
                    val = u(1, 4) if h == 0 else il12_peak * (h / 24) * np.exp(1 - h / 24 / 1.5) / 1.5 + u(1, 4)
                    self.lab(s, at(h), "cytokine", "IL-12", "serum", val, "pg/mL", lloq=1)
            base_titer = 2 ** int(rng.integers(2, 5))
            for d, boost in ((0, 1), (14, 8), (28, 64), (56, 128)):
                if at(24 * d).date() <= end:
                    self.lab(s, at(24 * d - 1), "immunogenicity", "Neutralizing antibody titer", "serum",
                             base_titer * boost * 2 ** int(rng.integers(0, 3)), "titer (1:x)", lloq=8)
        else:
            expansion = dose / 1e4 * u(0.4, 2.5)
            sample_days = [0, 1, 4, 7, 10, 14, 21, 28, 42, 56, 84] + list(range(112, 680, 28))
            for d in sample_days:
                when = at(24 * d + (2 if d == 0 else 0))
                if when.date() > end:
                    break
                kinetics = (d / 9) * np.exp(1 - d / 9) if d <= 9 else max(0.02, np.exp(-(d - 9) / 60))
                copies = 0 if d == 0 else expansion * kinetics * u(0.8, 1.25)
                self.lab(s, when, "pk", "TCR gene copies", "whole blood", copies, "copies/ug gDNA", lloq=50)
                self.lab(s, when, "pk", "TCR-T cells", "whole blood", copies / 400 * u(0.8, 1.2), "cells/uL", lloq=0.1)
                if d in (0, 28, 56, 84, 168, 336):
                    positive = d > 0 and rng.random() < 0.2
                    self.lab(s, when, "immunogenicity", "Anti-drug antibody", "serum",
                             float(2 ** int(rng.integers(5, 9))) if positive else 0, "titer (1:x)", lloq=16)
                if d in (0, 1, 4, 7, 14):
                    self.lab(s, when, "cytokine", "IL-6", "serum",
                             u(2, 6) if d == 0 else u(5, 30) * (8 if d in (1, 4) else 1), "pg/mL", lloq=1.5)


def simulate_trial(spec: TrialSpec, rng: np.random.Generator) -> dict[str, list[dict]]:
    subjects, events = simulate_escalation(spec, rng)
    add_expansion(spec, subjects, events, rng)
    plan_combination(spec, subjects, events["cleared_on"])
    anchor = [s for s in subjects if s.phase == spec.cut_after] or subjects
    cut = max(s.first_dose for s in anchor) + days(spec.cut_days)
    trial = Trial(spec, rng)
    trial.build(subjects, cut)
    study = dict(spec.study, data_cut_date=cut)
    rows = trial.rows
    rows["studies"] = [study]
    rows["dose_levels"] = [dict(study_id=trial.sid, **lv) for lv in spec.levels]
    rows["stages"] = [dict(study_id=trial.sid, **stage) for stage in spec.stages]
    return rows
