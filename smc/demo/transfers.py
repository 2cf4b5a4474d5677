"""The demo's successive data cuts: what each seed trial's data said one and two months before its final cut.

An earlier cut holds what had been collected by its date (subjects screened, doses given, AEs with onset, scans
and samples taken by then; end, off-study and death dates after it not yet known), and the corrections a real
transfer later brings are undone in it: an AE graded 2 that is 3 in the next cut (1 and 2 where a trial has no
grade 3 to correct), relatedness not yet assessed,
a DLT not yet adjudicated, a duplicate AE later removed, a lab value later corrected. The final cut is exactly
the single-file demo, so its numbers do not depend on how many cuts were built.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.demo.specs import SPECS

CUT_SPACING_DAYS = 28  # "about a month apart"
N_CUTS = 3
SEED_STUDIES = tuple(spec.study["study_id"] for spec in SPECS)


@dataclass(frozen=True)
class Transfer:
    number: int  # 1 = the oldest
    months_before_final: int

    @property
    def label(self) -> str:
        return f"demo transfer {self.number}"


TRANSFERS = tuple(Transfer(n, N_CUTS - n) for n in range(1, N_CUTS + 1))


def with_sponsor_ids(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every AE given a sponsor identifier that stays with it from cut to cut."""
    ae = tables["adverse_events"].copy()
    ae["ae_spid"] = ae["subject_id"] + "-AE" + ae["ae_seq"].astype(int).map("{:03d}".format)
    return {**tables, "adverse_events": ae}


def as_known_at(final: dict[str, pd.DataFrame], transfer: Transfer) -> dict[str, pd.DataFrame]:
    """The tables as the ``transfer``'s cut held them (the final tables for the last transfer)."""
    if transfer.months_before_final == 0:
        return final
    days = dt.timedelta(days=CUT_SPACING_DAYS * transfer.months_before_final)
    cut = {r.study_id: r.data_cut_date - days for r in final["studies"].itertuples()}
    tables = {name: frame.copy() for name, frame in final.items()}
    tables["studies"]["data_cut_date"] = tables["studies"]["study_id"].map(cut)

    def by_cut(frame: pd.DataFrame, column: str) -> pd.DataFrame:
        when = pd.to_datetime(frame[column])
        return frame[when.isna() | (when <= pd.to_datetime(frame["study_id"].map(cut)))]

    def unknown_after(frame: pd.DataFrame, columns: dict[str, tuple[str, ...]]) -> None:
        limit = pd.to_datetime(frame["study_id"].map(cut))
        for column, also in columns.items():
            later = pd.to_datetime(frame[column]) > limit
            for c in (column, *also):
                frame[c] = frame[c].astype(object).where(~later, None)

    subjects = tables["subjects"]
    subjects = subjects[pd.to_datetime(subjects["screening_date"]) <= pd.to_datetime(subjects["study_id"].map(cut))]
    subjects = subjects.copy()
    unknown_after(subjects, {"enrollment_date": ("dose_level", "cohort", "dlt_evaluable"),
                             "off_treatment_date": ("off_treatment_reason",), "off_study_date": ("off_study_reason",),
                             "death_date": ("death_cause",), "last_contact_date": ()})
    tables["subjects"] = subjects
    known = set(zip(subjects["study_id"], subjects["subject_id"]))

    def of_known(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[[k in known for k in zip(frame["study_id"], frame["subject_id"])]].copy()

    if "subject_stages" in tables:
        tables["subject_stages"] = of_known(by_cut(tables["subject_stages"], "start_date"))
    tables["administrations"] = of_known(by_cut(tables["administrations"], "admin_date"))
    unknown_after(tables["administrations"], {"end_date": ()})
    ae = of_known(by_cut(tables["adverse_events"], "onset_date"))
    ongoing = pd.to_datetime(ae["end_date"]) > pd.to_datetime(ae["study_id"].map(cut))
    ae.loc[ongoing, "outcome"] = "Not recovered/not resolved"
    unknown_after(ae, {"end_date": ()})
    tables["adverse_events"] = ae
    tables["tumor_assessments"] = of_known(by_cut(tables["tumor_assessments"], "assessment_date"))
    tables["lab_results"] = of_known(by_cut(tables["lab_results"], "collected_at"))
    if transfer.months_before_final == 1:
        _not_yet_corrected(tables)
    return tables


def _not_yet_corrected(tables: dict[str, pd.DataFrame]) -> None:
    """In the cut before the final one, each seed trial's later corrections not yet made: the first qualifying
    record of each kind, in record order, so the demo is the same on every build."""
    ae = tables["adverse_events"]
    for study_id in SEED_STUDIES:
        mine = ae[ae["study_id"] == study_id]
        # Upgraded at the final cut: a grade 3 (else a grade 2) that is no DLT, graded one lower here.
        graded = next((g for g in (mine[(mine["grade"] == grade) & (mine["dlt"] == "N")] for grade in (3, 2))
                       if len(g)), mine.iloc[0:0])
        if len(graded):
            ae.loc[graded.index[0], "grade"] = graded["grade"].iloc[0] - 1
        dlts = mine[mine["dlt"] == "Y"]
        if len(dlts):
            ae.loc[dlts.index[-1], "dlt"] = "N"  # adjudicated a DLT after this cut
        related = mine[(mine["related"] == "Y") & (mine["dlt"] == "N")]
        if len(related):
            ae.loc[related.index[-1], "related"] = "N"  # relatedness revised at the final cut
        if len(mine):
            original = mine.iloc[-1]
            seqs = mine.loc[mine["subject_id"] == original["subject_id"], "ae_seq"]
            duplicate = original.copy()
            duplicate["ae_seq"] = int(seqs.max()) + 1
            duplicate["ae_spid"] = f"{original['ae_spid']}-DUP"  # entered twice; removed in data cleaning
            ae = pd.concat([ae, duplicate.to_frame().T], ignore_index=True)
    tables["adverse_events"] = ae
    labs = tables["lab_results"]
    for study_id in SEED_STUDIES:
        hematology = labs[(labs["study_id"] == study_id) & (labs["test"] == "Hemoglobin") & labs["value"].notna()]
        if len(hematology):
            labs.loc[hematology.index[-1], "value"] = hematology["value"].iloc[-1] * 10  # g/L typed for g/dL
