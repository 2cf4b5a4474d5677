"""The three seed trials (docs/seeds/) as simulation specs: design, dose ladder,
what happens to each subject inside the DLT window, sites and timing. Data only: the simulation
(:mod:`smc.demo.simulate`) and the portfolio (:mod:`smc.demo.portfolio`) both read these."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class TrialSpec:
    study: dict
    levels: list[dict]
    script: dict[int, str]  # level -> fates of the subjects enrolled there, in order
    modality: str  # "virus", "hai_combo", "tcrt"
    start: dt.date
    dose_delay: tuple[int, int]  # days from enrollment to first dose of the agent
    stagger: tuple[int, int]  # days between enrollments inside a cohort
    expansion: tuple[int, int, str] | None  # (level, n, start when the level is "cleared" or "mtd")
    cut_after: str  # "escalation" or "expansion": whose last first dose anchors the cut
    cut_days: int  # data cut this many days after that first dose
    sites: list[tuple[str, str, str]]
    tumor_types: list[str]
    n_screen_fail: int
    screen_fail_reasons: list[str]
    dlt_terms: list[tuple[str, str, int]]  # (term, soc, grade)
    lab_grades_reported: bool = True  # False: the lab sends values only; the dashboard grades them
    expansion_days: int | None = None  # the expansion enrolls over this many days (default: one every 5-9 days)
    recurring_aes: bool = False  # infusion reactions come back with each later course (portfolio studies)
    lab_interval_days: int | None = None  # safety labs after the first visits every this many days (else LAB_DAYS)
    stages: tuple[dict, ...] = ()  # a staged regimen's stages-table rows (without study_id); () one stage
    combination_script: dict[int, str] = field(default_factory=dict)  # combination level -> fates, as `script`


SITES_CN = [("CN-GZ-01", "Guangzhou Cancer Center", "China"),
            ("CN-SH-02", "Shanghai Oncology Hospital", "China"),
            ("CN-BJ-03", "Beijing Tumor Institute", "China")]

SPECS: list[TrialSpec] = [
    TrialSpec(
        study=dict(study_id="IDOV-SAFE", design="ATD+3+3", agent="IDOV-SAFE", dlt_window_days=21,
                   title="Safety and Efficacy of Intravenous IDOV-SAFE in Advanced Solid Tumors",
                   target_dlt_rate=0.30, planned_enrollment=32, min_sd_days=42,
                   enrollment_target_date=dt.date(2025, 6, 30),
                   indication="Advanced solid tumors"),
        levels=[dict(level=i + 1, label=label, dose=dose, unit="PFU") for i, (label, dose) in enumerate([
            ("3×10^8 PFU", 3e8), ("7×10^8 PFU", 7e8), ("1×10^9 PFU", 1e9), ("3×10^9 PFU", 3e9),
            ("7×10^9 PFU", 7e9), ("1×10^10 PFU", 1e10), ("3×10^10 PFU", 3e10)])],
        script={1: "N", 2: "N", 3: "N", 4: "N", 5: "TNNDNNN", 6: "TNT"},
        modality="virus", start=dt.date(2024, 3, 4), dose_delay=(1, 4), stagger=(4, 8),
        expansion=(5, 6, "mtd"), cut_after="expansion", cut_days=9,
        sites=SITES_CN[:2], tumor_types=["Colorectal", "Pancreatic", "Ovarian", "Gastric", "Lung"],
        n_screen_fail=3,
        screen_fail_reasons=["Inadequate hepatic function", "ECOG performance status 2",
                             "Active hepatitis B infection"],
        dlt_terms=[("Alanine aminotransferase increased", "Investigations", 3),
                   ("Platelet count decreased", "Investigations", 4),
                   ("Hypotension", "Vascular disorders", 3)],
    ),
    TrialSpec(
        study=dict(study_id="BIOTTT001", design="3+3", agent="BioTTT001", dlt_window_days=28,
                   title="BioTTT001 with Toripalimab and Regorafenib in Colorectal Cancer Liver Metastases",
                   target_dlt_rate=0.30, planned_enrollment=30, min_sd_days=42,
                   enrollment_target_date=dt.date(2025, 4, 30),
                   indication="Metastatic colorectal cancer with liver metastases"),
        levels=[dict(level=i + 1, label=label, dose=dose, unit="VP") for i, (label, dose) in enumerate([
            ("5×10^7 VP", 5e7), ("5×10^8 VP", 5e8), ("5×10^9 VP", 5e9), ("1×10^10 VP", 1e10)])],
        script={1: "NNN", 2: "NXNN", 3: "TNNNN"},
        modality="hai_combo", start=dt.date(2024, 6, 10), dose_delay=(3, 7), stagger=(5, 9),
        lab_grades_reported=False,
        expansion=(2, 9, "cleared"), cut_after="escalation", cut_days=12,
        sites=SITES_CN, tumor_types=["Colorectal"], n_screen_fail=3,
        screen_fail_reasons=["Hepatic tumor burden > 50%", "Portal vein thrombosis",
                             "Uncontrolled hypertension"],
        dlt_terms=[("Aspartate aminotransferase increased", "Investigations", 3),
                   ("Abdominal pain", "Gastrointestinal disorders", 3)],
        # The protocol's two DLT windows: 28 days from the first monotherapy infusion, and 28 days from the first
        # toripalimab of the combination, whose BioTTT001 dose is one cleared in monotherapy.
        stages=(dict(stage="monotherapy", stage_order=1, agent="BioTTT001", dlt_window_days=28),
                dict(stage="combination", stage_order=2, agent="toripalimab", dlt_window_days=28,
                     ceiling_stage="monotherapy")),
        combination_script={2: "T"},
    ),
    TrialSpec(
        study=dict(study_id="IX001", design="3+3", agent="IX001", dlt_window_days=28,
                   title="IX001 TCR-T in KRAS-mutant Advanced Pancreatic and Colorectal Cancer",
                   target_dlt_rate=0.30, planned_enrollment=18, min_sd_days=42,
                   indication="KRAS G12V advanced pancreatic and colorectal cancer"),
        levels=[dict(level=lv, label=label, dose=dose, unit="cells") for lv, label, dose in [
            (-1, "1×10^9 cells", 1e9), (1, "3×10^9 cells", 3e9), (2, "1×10^10 cells", 1e10),
            (3, "3×10^10 cells", 3e10)]],
        script={1: "NNNDN", 2: "NTT"},
        modality="tcrt", start=dt.date(2024, 9, 2), dose_delay=(24, 32), stagger=(6, 12),
        expansion=None, cut_after="escalation", cut_days=10,
        sites=[("CN-HZ-01", "Hangzhou Cell Therapy Center", "China")],
        tumor_types=["Pancreatic", "Colorectal"], n_screen_fail=5,
        screen_fail_reasons=["HLA-A*11:01 negative", "KRAS G12V not detected", "HLA-A*11:01 negative",
                             "Manufacturing failure", "Rapid clinical deterioration"],
        dlt_terms=[("Cytokine release syndrome", "Immune system disorders", 4),
                   ("Capillary leak syndrome", "Vascular disorders", 3)],
    ),
]
