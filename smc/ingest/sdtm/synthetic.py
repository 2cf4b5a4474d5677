"""A synthetic SDTM set of any size, for the import benchmark and tests: a 3+3
trial in four levels whose DLT flags sit in SUPPAE (QNAM AEDLT), with DS, RS,
TR and LB, written as XPT (or CSV) with its mapping file. ``staged=True`` adds a
second stage: every other dosed subject takes its last three cycles as DRUGX
10 mg with PD1 (EPOCH COMBINATION, SE element COMBO), and the mapping names
the two [[stages]]; the default set is unchanged."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

STUDY = "SYNTH-001"
ARMS = {"L1": 1, "L2": 2, "L3": 3, "L4": 4}
MAPPING = """\
[study]
design = "3+3"
agent = "DRUGX"
dlt_window_days = 28
planned_enrollment = {planned}
data_cut_date = 2026-06-30
{levels}
[ae]
dlt_qnam = "AEDLT"

[lab_categories]
CA199 = "tumor_marker"
"""
LEVEL = """
[[levels]]
level = {level}
label = "{dose} mg"
dose = {dose}
unit = "mg"
arms = ["{arm}"]
"""
STAGES = """
[[stages]]
stage = "monotherapy"
agent = "DRUGX"
dlt_window_days = 28
epochs = ["MONOTHERAPY"]

[[stages]]
stage = "combination"
agent = "PD1"
dlt_window_days = 28
ceiling_stage = "monotherapy"
epochs = ["COMBINATION"]
"""
COMBINATION_CYCLE = 3  # the first cycle a combination subject gets PD1
TERMS = [("Fatigue", "GENERAL DISORDERS"), ("Nausea", "GASTROINTESTINAL DISORDERS"),
         ("Rash", "SKIN DISORDERS"), ("Neutropenia", "BLOOD DISORDERS"), ("ALT increased", "INVESTIGATIONS")]
LABS = [("NEUT", "Neutrophils", "HEMATOLOGY", "10^9/L", 4.0, 1.5, 8.0), ("ALT", "ALT", "CHEMISTRY", "U/L", 25, 0, 40),
        ("CA199", "CA19-9", "TUMOR MARKERS", "U/mL", 300, 0, 37)]


def _dates(start: np.ndarray, days) -> np.ndarray:
    return (pd.to_datetime(start) + pd.to_timedelta(days, unit="D")).strftime("%Y-%m-%d").to_numpy()


def build(n_subjects: int, seed: int = 1, staged: bool = False) -> dict[str, pd.DataFrame]:
    """Domains for ``n_subjects`` (one in ten a screen failure), reproducible from ``seed``; ``staged``: in two
    stages (the random draws are the same either way)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"{STUDY}-{i:05d}" for i in range(1, n_subjects + 1)])
    failed = rng.random(n_subjects) < 0.1
    arms = np.where(failed, "SCRNFAIL", rng.choice(list(ARMS), n_subjects))
    consent = _dates(np.full(n_subjects, "2024-01-01"), rng.integers(0, 700, n_subjects))
    first = _dates(consent, rng.integers(7, 21, n_subjects))
    dm = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "DM", "USUBJID": ids, "SITEID": rng.choice(["01", "02", "03"],
                       n_subjects), "SEX": rng.choice(["M", "F"], n_subjects),
                       "AGE": rng.integers(30, 80, n_subjects).astype(float), "AGEU": "YEARS",
                       "RFICDTC": consent, "RFSTDTC": np.where(failed, "", first), "ARMCD": arms, "ACTARMCD": arms,
                       "ARM": np.where(failed, "Screen Failure", arms), "COUNTRY": "USA"})
    dosed = ~failed
    cycles = 6
    ex_ids = np.repeat(ids[dosed], cycles)
    ex_first = np.repeat(first[dosed], cycles)
    cycle = np.tile(np.arange(cycles), dosed.sum())
    ex = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "EX", "USUBJID": ex_ids, "EXSEQ": (cycle + 1).astype(float),
                       "EXTRT": "DRUGX", "EXDOSE": np.repeat([ARMS[a] * 10.0 for a in arms[dosed]], cycles),
                       "EXDOSU": "mg", "EXROUTE": "ORAL", "EXSTDTC": _dates(ex_first, cycle * 21)})
    n_ae = 30
    ae_ids = np.repeat(ids[dosed], n_ae)
    onset_day = rng.integers(0, 120, len(ae_ids))
    term = rng.integers(0, len(TERMS), len(ae_ids))
    grade = rng.choice([1, 2, 3, 4], len(ae_ids), p=[0.6, 0.25, 0.12, 0.03])
    ae_seq = np.tile(np.arange(1, n_ae + 1), dosed.sum()).astype(float)
    ae = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "AE", "USUBJID": ae_ids, "AESEQ": ae_seq,
                       "AETERM": [TERMS[t][0] for t in term], "AEDECOD": [TERMS[t][0] for t in term],
                       "AEBODSYS": [TERMS[t][1] for t in term], "AETOXGR": grade.astype(str),
                       "AESER": np.where(grade >= 3, "Y", "N"), "AEREL": rng.choice(["RELATED", "NOT RELATED"],
                                                                                    len(ae_ids)),
                       "AESTDTC": _dates(np.repeat(first[dosed], n_ae), onset_day),
                       "AEENDTC": _dates(np.repeat(first[dosed], n_ae), onset_day + 5)})
    dlt = (grade >= 3) & (onset_day < 28)
    suppae = pd.DataFrame({"STUDYID": STUDY, "RDOMAIN": "AE", "USUBJID": ae_ids[dlt], "IDVAR": "AESEQ",
                           "IDVARVAL": ae_seq[dlt].astype(int).astype(str), "QNAM": "AEDLT",
                           "QLABEL": "Dose-limiting toxicity", "QVAL": "Y"})
    ds = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "DS", "USUBJID": ids[failed], "DSSEQ": 1.0,
                       "DSTERM": "Inclusion criteria not met", "DSDECOD": "SCREEN FAILURE",
                       "DSCAT": "DISPOSITION EVENT", "DSSTDTC": consent[failed]})
    scans = 4
    tr_ids = np.repeat(ids[dosed], scans)
    visit = np.tile(np.arange(scans), dosed.sum())
    scan_dates = _dates(np.repeat(first[dosed], scans), visit * 42 - 3 * (visit == 0))
    sums = np.round(rng.uniform(40, 120, len(tr_ids)) * (1 - 0.08 * visit), 1)
    tr = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "TR", "USUBJID": tr_ids, "TRSEQ": (visit + 1).astype(float),
                       "TRTESTCD": "SUMDIAM", "TRSTRESN": sums, "TRSTRESU": "mm", "VISITNUM": visit.astype(float),
                       "TRDTC": scan_dates, "TREVAL": "INVESTIGATOR"})
    post = visit > 0
    rs = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "RS", "USUBJID": tr_ids[post],
                       "RSSEQ": visit[post].astype(float), "RSTESTCD": "OVRLRESP",
                       "RSSTRESC": rng.choice(["PR", "SD", "PD"], post.sum(), p=[0.2, 0.6, 0.2]),
                       "VISITNUM": visit[post].astype(float), "RSDTC": scan_dates[post], "RSEVAL": "INVESTIGATOR"})
    draws = 50
    lb_ids = np.repeat(ids[dosed], draws)
    lab = rng.integers(0, len(LABS), len(lb_ids))
    base = np.array([LABS[i][4] for i in lab])
    lb = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "LB", "USUBJID": lb_ids,
                       "LBSEQ": np.tile(np.arange(1, draws + 1), dosed.sum()).astype(float),
                       "LBTESTCD": [LABS[i][0] for i in lab], "LBTEST": [LABS[i][1] for i in lab],
                       "LBCAT": [LABS[i][2] for i in lab], "LBSTRESN": np.round(base * rng.lognormal(0, 0.3,
                                                                                           len(lb_ids)), 2),
                       "LBSTRESU": [LABS[i][3] for i in lab], "LBSTNRLO": [float(LABS[i][5]) for i in lab],
                       "LBSTNRHI": [float(LABS[i][6]) for i in lab],
                       "LBDTC": _dates(np.repeat(first[dosed], draws), np.tile(np.arange(draws) * 3, dosed.sum()))})
    domains = {"DM": dm, "EX": ex, "AE": ae, "SUPPAE": suppae, "DS": ds, "TR": tr, "RS": rs, "LB": lb}
    return _in_two_stages(domains, ids[dosed], first[dosed]) if staged else domains


def _in_two_stages(domains: dict[str, pd.DataFrame], dosed: np.ndarray, first: np.ndarray) -> dict[str, pd.DataFrame]:
    """Every other dosed subject moves to DRUGX 10 mg (level 1) with PD1 from cycle COMBINATION_CYCLE on."""
    ex = domains["EX"].copy()
    combined = set(dosed[::2])
    later = ex["USUBJID"].isin(combined) & (ex["EXSEQ"] > COMBINATION_CYCLE)
    ex["EPOCH"] = np.where(later, "COMBINATION", "MONOTHERAPY")
    ex.loc[later, "EXDOSE"] = 10.0
    pd1 = ex[later].assign(EXTRT="PD1", EXDOSE=200.0, EXROUTE="INTRAVENOUS", EXSEQ=ex.loc[later, "EXSEQ"] + 100)
    ex = pd.concat([ex, pd1], ignore_index=True)
    switch = _dates(first, COMBINATION_CYCLE * 21)
    moved = np.isin(dosed, list(combined))
    mono = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "SE", "USUBJID": dosed, "SESEQ": 1.0, "ETCD": "MONO",
                         "EPOCH": "MONOTHERAPY", "SESTDTC": first, "SEENDTC": np.where(moved, switch, "")})
    combo = pd.DataFrame({"STUDYID": STUDY, "DOMAIN": "SE", "USUBJID": dosed[moved], "SESEQ": 2.0, "ETCD": "COMBO",
                          "EPOCH": "COMBINATION", "SESTDTC": switch[moved], "SEENDTC": ""})
    return domains | {"EX": ex, "SE": pd.concat([mono, combo], ignore_index=True)}


def mapping_text(planned: int, staged: bool = False) -> str:
    levels = "".join(LEVEL.format(level=lv, dose=lv * 10, arm=arm) for arm, lv in ARMS.items())
    return MAPPING.format(planned=planned, levels=levels) + (STAGES if staged else "")


def write(directory: str | Path, n_subjects: int, seed: int = 1, fmt: str = "xpt",
          staged: bool = False) -> dict[str, pd.DataFrame]:
    """Write the domains (``dm.xpt``, …) and ``mapping.toml``; return the frames written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    domains = build(n_subjects, seed, staged)
    for name, frame in domains.items():
        path = directory / f"{name.lower()}.{fmt}"
        if fmt == "xpt":
            pyreadstat.write_xport(frame, str(path), table_name=name, file_format_version=5)
        else:
            frame.to_csv(path, index=False)
    (directory / "mapping.toml").write_text(mapping_text(n_subjects, staged), encoding="utf-8")
    return domains
