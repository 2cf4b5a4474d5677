"""EX -> administrations; AE (with the DLT flag from SUPPAE) -> adverse_events."""
from __future__ import annotations

import pandas as pd

from smc.ingest.load import ERROR, WARNING
from smc.ingest.sdtm import dates
from smc.ingest.sdtm.common import (
    NOT_A_DATE,
    ORIGIN,
    SdtmImport,
    column,
    first_present,
    origins,
    parse_dates,
    subject_rows,
)

SEVERITY_GRADES = {"MILD": "1", "MODERATE": "2", "SEVERE": "3"}
FLAGS = {"Y", "N", ""}


def administrations(ctx: SdtmImport, study_id: str) -> pd.DataFrame:
    ex = subject_rows(ctx, "EX", ctx.dataset("EX"))
    start = parse_dates(ctx, "EX", ex, "EXSTDTC", required=True)
    end = parse_dates(ctx, "EX", ex, "EXENDTC", end=True)
    agent = ctx.mapping.study.get("agent", "")
    treatments = set(ex["EXTRT"])
    if agent and len(ex) and agent not in treatments:
        ctx.error("mapping file", "", "study.agent", agent,
                  f"is not an EXTRT value in EX (EX has: {', '.join(sorted(treatments))}); "
                  "no subject would count as dosed")
    doses = ex[(ex["EXTRT"] == agent) & (start.date_text != "")]
    ctx.first_dose = start.date_text[doses.index].groupby(doses["USUBJID"]).min()
    out = pd.DataFrame({
        "study_id": study_id,
        "subject_id": ex["USUBJID"],
        "agent": ex["EXTRT"],
        "admin_date": start.date_text,
        "admin_time": start.clock_text,
        "end_date": end.date_text,
        "dose": column(ex, "EXDOSE"),
        "unit": column(ex, "EXDOSU"),
        "route": column(ex, "EXROUTE"),
    }, index=ex.index)
    out[ORIGIN] = origins("EX", ex)
    return out


def _dlt_flags(ctx: SdtmImport, ae: pd.DataFrame) -> pd.Series:
    """Y/N per AE from the SUPPAE QNAM named in the mapping; N with a warning when there is none."""
    qnam = ctx.mapping.dlt_qnam
    supp = ctx.dataset("SUPPAE")
    none = pd.Series("N", index=ae.index)
    if not qnam:
        ctx.warn("AE", "", None, None, "the mapping names no DLT flag ([ae] dlt_qnam): every AE is imported "
                 "with dlt = N, so the escalation rule will count no DLT")
        return none
    # The mapping says where the DLTs are; not finding them there must stop the import, not zero the DLTs.
    if supp is None:
        ctx.error("SUPPAE", "", "QNAM", qnam, "is named as the DLT flag ([ae] dlt_qnam) but there is no SUPPAE "
                  "dataset; give SUPPAE, or remove dlt_qnam if the data hold no DLT flag")
        return none
    supp = supp[supp["QNAM"].str.upper() == qnam.upper()]
    if supp.empty:
        ctx.error("SUPPAE", "", "QNAM", qnam, "is named as the DLT flag ([ae] dlt_qnam) but no SUPPAE record "
                  "has it; check the name, or remove dlt_qnam if the data hold no DLT flag")
        return none
    value = supp["QVAL"].str.upper().map({"Y": "Y", "N": "N", "YES": "Y", "NO": "N"})
    ctx.rows(ERROR, "SUPPAE", supp, value.isna(), "QVAL", f"is not Y or N (the {qnam} DLT flag)")
    flags = none.copy()
    for idvar, group in supp[value.notna()].groupby("IDVAR"):
        if idvar not in ae.columns:
            ctx.rows(ERROR, "SUPPAE", group, [True] * len(group), "IDVAR", "is not a variable of AE")
            continue
        keys = pd.Series(list(zip(group["USUBJID"], group["IDVARVAL"])), index=group.index)
        conflicting = keys.map(value[group.index].groupby(keys).nunique()) > 1
        ctx.rows(ERROR, "SUPPAE", group, conflicting, "QVAL",
                 lambda r, v=idvar: f"disagrees with another {qnam} record for the same AE ({v} {r['IDVARVAL']})")
        lookup = dict(zip(keys, value[group.index]))
        ae_keys = pd.Series(list(zip(ae["USUBJID"], ae[idvar])), index=ae.index)
        flags = ae_keys.map(lookup).fillna(flags)
        unmatched = ~keys.isin(set(ae_keys))
        ctx.rows(ERROR, "SUPPAE", group, unmatched, "IDVARVAL",
                 lambda r, v=idvar: f"names no AE record ({v} of {r['USUBJID']})")
    return flags


def _grades(ctx: SdtmImport, ae: pd.DataFrame) -> pd.Series:
    """AETOXGR (CTCAE 1-5); where it is absent, AESEV MILD/MODERATE/SEVERE as 1/2/3, with a warning."""
    toxgr = column(ae, "AETOXGR").str.extract(r"(\d)", expand=False).fillna("")
    from_severity = (toxgr == "") & (column(ae, "AESEV") != "")
    severity = column(ae, "AESEV").str.upper().map(SEVERITY_GRADES)
    ctx.rows(ERROR, "AE", ae, from_severity & severity.isna(), "AESEV", "is not MILD, MODERATE or SEVERE")
    ctx.rows(ERROR, "AE", ae, (toxgr == "") & ~from_severity, "AETOXGR", "is empty and so is AESEV (no grade)")
    if from_severity.any():
        ctx.warn("AE", "", None, None, f"{int(from_severity.sum())} AE(s) have no AETOXGR; their grade is "
                 "AESEV mapped MILD → 1, MODERATE → 2, SEVERE → 3 (not a CTCAE grade: a SEVERE event may be "
                 "grade 3, 4 or 5)")
    return toxgr.where(~from_severity, severity.fillna(""))


def adverse_events(ctx: SdtmImport, study_id: str) -> pd.DataFrame:
    ae = ctx.dataset("AE")
    duplicated = ae.duplicated(["_FILE", "USUBJID", "AESEQ"], keep="first")
    ctx.rows(ERROR, "AE", ae, duplicated, "AESEQ", "repeats a sequence number of the same subject")
    dlt = _dlt_flags(ctx, ae)
    ae = subject_rows(ctx, "AE", ae)
    end = parse_dates(ctx, "AE", ae, "AEENDTC", end=True)
    onset = _onsets(ctx, ae, end.date_text)
    relation = column(ae, "AEREL").str.upper()
    related = pd.Series("Y", index=ae.index).where(~relation.isin(ctx.mapping.not_related), "N")
    related = related.where(relation != "", "")
    serious = column(ae, "AESER").str.upper()
    ctx.rows(ERROR, "AE", ae, ~serious.isin(FLAGS), "AESER", "is not Y or N")
    out = pd.DataFrame({
        "study_id": study_id,
        "subject_id": ae["USUBJID"],
        "ae_seq": ae["AESEQ"],
        "term": first_present(ae, "AEDECOD", "AETERM"),
        "soc": first_present(ae, "AEBODSYS", "AESOC"),
        "onset_date": onset,
        "end_date": end.date_text,
        "grade": _grades(ctx, ae),
        "serious": serious.where(serious.isin(FLAGS), ""),
        "related": related,
        "dlt": dlt[ae.index],
        "outcome": column(ae, "AEOUT"),
        "action_taken": column(ae, "AEACN"),
        "ae_spid": column(ae, "AESPID"),
    }, index=ae.index)
    ctx.rows(ERROR, "AE", ae, out["term"] == "", "AEDECOD", "is empty and so is AETERM (no term)")
    out[ORIGIN] = origins("AE", ae)
    return out


def _onsets(ctx: SdtmImport, ae: pd.DataFrame, end: pd.Series) -> pd.Series:
    """AESTDTC; a partial onset is imputed to the first day of its period, except that
    - when the period holds the first dose (and the AE had not ended before it), to the first dose, so
      an event that may have followed the dose stays on treatment;
    - else, when the period holds the informed consent, not before the consent (nor after the AE's end)."""
    parsed = dates.parse(column(ae, "AESTDTC"))
    latest = dates.parse(column(ae, "AESTDTC"), end=True).date_text
    onset = parsed.date_text
    partial = parsed.kind == dates.PARTIAL

    def in_period(per_subject: pd.Series | None) -> tuple[pd.Series, pd.Series]:
        when = ae["USUBJID"].map(per_subject if per_subject is not None else {}).fillna("")
        return when, (partial & (when != "") & (onset < when) & (when <= latest)
                      & ((end == "") | (when <= end)))

    first_dose, holds_dose = in_period(ctx.first_dose)
    consent, holds_consent = in_period(ctx.consent)
    holds_consent &= ~holds_dose
    onset = onset.where(~holds_dose, first_dose).where(~holds_consent, consent)
    ctx.rows(ERROR, "AE", ae, parsed.kind == dates.BAD, "AESTDTC", NOT_A_DATE)
    ctx.rows(ERROR, "AE", ae, parsed.kind == dates.EMPTY, "AESTDTC", "is empty (an onset date is required)")
    ctx.rows(WARNING, "AE", ae, partial & ~holds_dose & ~holds_consent, "AESTDTC",
             lambda r: f"is a partial date; imputed to {onset[r.name]}, the first day of the period")
    ctx.rows(WARNING, "AE", ae, holds_dose, "AESTDTC",
             lambda r: f"is a partial date; imputed to {onset[r.name]}, the first dose of the agent, "
                       "which falls in that period")
    ctx.rows(WARNING, "AE", ae, holds_consent, "AESTDTC",
             lambda r: f"is a partial date; imputed to {onset[r.name]}, the informed consent, "
                       "which falls in that period")
    return onset
