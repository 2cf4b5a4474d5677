"""The mapping's [[stages]] -> stages; SE and EX records of a later stage -> subject_stages.

Every enrolled subject is in the first stage at its DM level, so only later stages get subject_stages rows. A
subject is in a later stage when it has an SE record of one of the stage's elements (ETCD) or epochs, or EX records
in one of its epochs. It entered the stage on its earliest SESTDTC there, else its earliest EXSTDTC there; its level
is the one whose ``dose`` is its first dose of the study's agent in the stage.
"""
from __future__ import annotations

import math

import pandas as pd

from smc.ingest.sdtm.common import ORIGIN, RECORD, SdtmImport, column, parse_dates, subject_rows
from smc.ingest.sdtm.mapping import Stage

COLUMNS = ["study_id", "subject_id", "stage", "dose_level", "start_date", ORIGIN]


def table(ctx: SdtmImport, study_id: str) -> pd.DataFrame:
    """One stages row per [[stages]] table, numbered in the order of the file."""
    return pd.DataFrame([{
        "study_id": study_id, "stage": s.stage, "stage_order": str(order), "agent": s.agent,
        "dlt_window_days": str(s.dlt_window_days),
        "start_level": "" if s.start_level is None else str(s.start_level), "ceiling_stage": s.ceiling_stage or "",
    } for order, s in enumerate(ctx.mapping.stages, start=1)])


def _se(ctx: SdtmImport) -> pd.DataFrame:
    """SE records of imported subjects, with their dates parsed (once, so each bad date is reported once)."""
    se = ctx.dataset("SE")
    if se is None:
        return pd.DataFrame(columns=["USUBJID", "ETCD", "EPOCH", "_start", "_end", RECORD])
    se = subject_rows(ctx, "SE", se)
    return se.assign(ETCD=column(se, "ETCD"), EPOCH=column(se, "EPOCH").str.upper(),
                     _start=parse_dates(ctx, "SE", se, "SESTDTC").date_text,
                     _end=parse_dates(ctx, "SE", se, "SEENDTC", end=True).date_text)


def _doses_in(stage: Stage, doses: pd.DataFrame, se_in: pd.DataFrame) -> pd.DataFrame:
    """The administrations of the stage: EX.EPOCH one of its epochs, or given within one of the subject's SE records
    of the stage (which is how EX, having no element, is placed in a stage known by its elements)."""
    by_epoch = doses["_epoch"].isin(stage.epochs)
    spans = se_in[se_in["_start"] != ""][["USUBJID", "_start", "_end"]]
    timed = doses.rename_axis("_row").reset_index().merge(spans, left_on="subject_id", right_on="USUBJID")
    within = timed[(timed["admin_date"] >= timed["_start"])
                   & ((timed["_end"] == "") | (timed["admin_date"] <= timed["_end"]))]
    return doses[by_epoch | doses.index.isin(within["_row"])]


def _level(dose: str, ladder: list[tuple[float, int]]) -> int | None:
    try:
        given = float(dose)
    except ValueError:
        return None
    return next((level for d, level in ladder if math.isclose(d, given)), None)


def subject_stages(ctx: SdtmImport, study_id: str, subjects: pd.DataFrame,
                   administrations: pd.DataFrame | None) -> pd.DataFrame:
    """subject_stages rows, each with the SE (else EX) record it came from; a warning for each stage no record is
    in (a cut before anyone entered it is legitimate) and for each level that had to be taken from DM."""
    se = _se(ctx)
    doses = administrations if administrations is not None else pd.DataFrame(
        columns=["subject_id", "agent", "admin_date", "dose", ORIGIN])
    ex = ctx.dataset("EX")
    doses = doses.assign(_epoch=column(ex, "EPOCH").str.upper().reindex(doses.index).fillna("")
                         if ex is not None else "")
    doses = doses[doses["admin_date"] != ""]  # an undated record (already an error) places no one
    own_level = dict(zip(subjects["subject_id"], subjects["dose_level"]))
    agent = ctx.mapping.study.get("agent", "")
    ladder = [(lv.dose, lv.level) for lv in ctx.mapping.levels if lv.dose is not None]
    rows = []
    for order, stage in enumerate(ctx.mapping.stages, start=1):
        se_in = se[se["ETCD"].isin(stage.elements) | se["EPOCH"].isin(stage.epochs)]
        ex_in = _doses_in(stage, doses, se_in)
        if (stage.epochs or stage.elements) and se_in.empty and ex_in.empty:
            key = f"stages[{order}].{'epochs' if stage.epochs else 'elements'}"
            ctx.warn("mapping file", "", key, ", ".join(stage.epochs or stage.elements),
                     f"matches no SE or EX record: nobody has entered the stage {stage.stage} yet")
        if order == 1:
            continue  # every subject is in the first stage, at its DM level
        se_in = se_in.sort_values(["_start", RECORD], key=lambda v: v.replace("", "9999"))  # undated last
        ex_in = ex_in.sort_values(["admin_date"], kind="stable")
        first_se = se_in.groupby("USUBJID").head(1).set_index("USUBJID")
        first_ex = ex_in.groupby("subject_id").head(1).set_index("subject_id")
        first_dose = ex_in[ex_in["agent"] == agent].groupby("subject_id").head(1).set_index("subject_id")
        for subject in sorted(set(first_se.index) | set(first_ex.index)):
            start = first_se.at[subject, "_start"] if subject in first_se.index else ""
            if not start and subject in first_ex.index:
                start, origin = first_ex.at[subject, "admin_date"], first_ex.at[subject, ORIGIN]
            else:
                origin = ("SE", first_se.at[subject, RECORD])
            level = None
            if subject in first_dose.index:
                dose = first_dose.loc[subject]
                level = _level(dose["dose"], ladder)
                if level is None:
                    ctx.warn(*dose[ORIGIN], "EXDOSE", dose["dose"],
                             f"is the dose of no [[levels]] (the subject's first dose of {agent} in the stage "
                             f"{stage.stage}); its level in that stage is taken as its DM level "
                             f"{own_level.get(subject) or '—'}")
            else:
                ctx.warn(*origin, None, None, f"has no dose of {agent} in the stage {stage.stage}; the subject's "
                         f"level in that stage is taken as its DM level {own_level.get(subject) or '—'}")
            rows.append([study_id, subject, stage.stage,
                         own_level.get(subject, "") if level is None else str(level), start, origin])
    return pd.DataFrame(rows, columns=COLUMNS)
