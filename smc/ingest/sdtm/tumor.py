"""RS, TR and TU -> tumor_assessments: one row per subject and assessment.

RS (RSTESTCD OVRLRESP) gives the time-point response, NTRGRESP the non-target
response and NEWLPROG new lesions; TR gives the sum of target diameters
(SUMDIAM, else the summed LDIAM of target lesions); TU marks new lesions.
Only the evaluator named in the mapping counts (the investigator by default).
Records of one visit (VISITNUM) are one assessment, dated by RS, else by TR.
"""
from __future__ import annotations

import pandas as pd

from smc.ingest.load import ERROR
from smc.ingest.sdtm.common import ORIGIN, SdtmImport, column, first_present, number_text, parse_dates, subject_rows

RESPONSES = {"CR": "CR", "PR": "PR", "SD": "SD", "PD": "PD", "NE": "NE", "NOT EVALUABLE": "NE",
             "UNKNOWN": "NE", "NON-CR/NON-PD": "SD"}
RS_RESULTS = ("overall_response", "nontarget_response", "new_lesions")
NONTARGET = {"CR": "CR", "NON-CR/NON-PD": "NON-CR/NON-PD", "PD": "PD", "NE": "NE", "NOT EVALUABLE": "NE"}
TO_MM = {"MM": 1.0, "CM": 10.0, "": 1.0}


def _by_evaluator(ctx: SdtmImport, frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    evaluator = column(frame, f"{prefix}EVAL").str.upper()
    kept = (evaluator == "") | (evaluator == ctx.mapping.evaluator)
    _warn_left_out(ctx, prefix, f"{prefix}EVAL", evaluator[~kept], "[tumor] evaluator")
    return frame[kept]


def _warn_left_out(ctx: SdtmImport, domain: str, variable: str, values: pd.Series, setting: str) -> None:
    """Records left out by a mapping setting are counted, so a misspelt setting cannot hide them."""
    if len(values):
        counts = ", ".join(f"{v} ({n})" for v, n in values.value_counts().items())
        ctx.warn(domain, "", variable, None, f"records not used, as {setting} does not name them: {counts}")


def _keyed(frame: pd.DataFrame, when) -> pd.DataFrame:
    """Add the assessment key: the visit when VISITNUM is given, else the date."""
    visit = column(frame, "VISITNUM")
    return frame.assign(_date=when.when, _key=("V" + visit).where(visit != "", "D" + when.date_text))


def _key_text(key: str) -> str:
    return f"VISITNUM {key[1:]}" if key[0] == "V" else f"date {key[1:]}"


def _responses(ctx: SdtmImport) -> pd.DataFrame:
    rs = ctx.dataset("RS")
    if rs is None:
        return pd.DataFrame({"USUBJID": [], "_key": [], "_date": pd.Series(dtype="datetime64[ns]"),
                             **{c: pd.Series(dtype=object) for c in RS_RESULTS}})
    rs = _by_evaluator(ctx, subject_rows(ctx, "RS", rs), "RS")
    category = column(rs, "RSCAT").str.upper()
    in_category = (category == "") | category.isin(ctx.mapping.rs_categories)
    _warn_left_out(ctx, "RS", "RSCAT", category[~in_category], "[tumor] rs_categories")
    rs = rs[in_category]
    rs = _keyed(rs, parse_dates(ctx, "RS", rs, "RSDTC", required=True))
    result = first_present(rs, "RSSTRESC", "RSORRES").str.upper()
    test = rs["RSTESTCD"].str.upper()
    overall = test == "OVRLRESP"
    ctx.rows(ERROR, "RS", rs, overall & ~result.isin(RESPONSES), "RSSTRESC",
             f"is not a RECIST time-point response ({', '.join(RESPONSES)})")
    mapped = overall & (result == "NON-CR/NON-PD")
    if mapped.any():
        ctx.warn("RS", "", "RSSTRESC", "NON-CR/NON-PD", f"({int(mapped.sum())} overall responses, non-target "
                 "disease only) imported as SD, as RECIST 1.1 counts them for the best overall response")
    nontarget = test == "NTRGRESP"
    ctx.rows(ERROR, "RS", rs, nontarget & ~result.isin(NONTARGET), "RSSTRESC", "is not a non-target response")
    newl = test == "NEWLPROG"
    frame = pd.DataFrame({"USUBJID": rs["USUBJID"], "_key": rs["_key"], "_date": rs["_date"],
                          "overall_response": result.map(RESPONSES).where(overall),
                          "nontarget_response": result.map(NONTARGET).where(nontarget),
                          "new_lesions": result.map({"Y": "Y", "N": "N"}).where(newl)})
    _warn_disagreements(ctx, frame, rs)
    return frame.groupby(["USUBJID", "_key"], as_index=False).agg(
        _date=("_date", "max"), overall_response=("overall_response", "first"),
        nontarget_response=("nontarget_response", "first"), new_lesions=("new_lesions", "first"))


def _warn_disagreements(ctx: SdtmImport, frame: pd.DataFrame, rs: pd.DataFrame) -> None:
    """Two overall responses for one assessment (e.g. the same RS data in two files) that differ:
    the first, in file order, is used; say which."""
    overall = frame[frame["overall_response"].notna()].assign(_FILE=rs["_FILE"])
    counts = overall.groupby(["USUBJID", "_key"])["overall_response"].nunique()
    for subject, key in counts[counts > 1].index:
        rows = overall[(overall["USUBJID"] == subject) & (overall["_key"] == key)]
        given = "; ".join(f"{r} in {f}" for r, f in zip(rows["overall_response"], rows["_FILE"]))
        ctx.warn("RS", f"USUBJID {subject} {_key_text(key)}", "RSSTRESC", None,
                 f"holds different overall responses ({given}); the first is used")


def _target_sums(ctx: SdtmImport) -> pd.DataFrame:
    tr = ctx.dataset("TR")
    if tr is None:
        return pd.DataFrame({"USUBJID": [], "_key": [], "_date": pd.Series(dtype="datetime64[ns]"),
                             "target_sum_mm": pd.Series(dtype=float)})
    tr = _by_evaluator(ctx, subject_rows(ctx, "TR", tr), "TR")
    tr = _keyed(tr, parse_dates(ctx, "TR", tr, "TRDTC", required=True))
    test = tr["TRTESTCD"].str.upper()
    group = column(tr, "TRGRPID").str.upper()
    value = pd.to_numeric(tr["TRSTRESN"], errors="coerce")
    unit = column(tr, "TRSTRESU").str.upper()
    measured = test.isin({"SUMDIAM", "LDIAM"})
    ctx.rows(ERROR, "TR", tr, measured & (tr["TRSTRESN"] != "") & value.isna(), "TRSTRESN", "is not a number")
    ctx.rows(ERROR, "TR", tr, measured & ~unit.isin(TO_MM), "TRSTRESU", "is not mm or cm")
    tr = tr.assign(mm=value * unit.map(TO_MM))
    # Every TR visit is an assessment (a non-target-only baseline included); its target sum is
    # SUMDIAM where the data give it, else the sum of the target lesions' longest diameters.
    visits = tr.groupby(["USUBJID", "_key"]).agg(_date=("_date", "max"))
    visits["sumdiam"] = tr[test == "SUMDIAM"].groupby(["USUBJID", "_key"])["mm"].max()
    target = (test == "LDIAM") & group.isin({"TARGET", ""})
    visits["ldiam"] = tr[target].groupby(["USUBJID", "_key"])["mm"].sum(min_count=1)
    visits["target_sum_mm"] = visits["sumdiam"].fillna(visits["ldiam"])
    return visits[["_date", "target_sum_mm"]].reset_index()


def _new_lesions(ctx: SdtmImport) -> pd.DataFrame:
    tu = ctx.dataset("TU")
    if tu is None:
        return pd.DataFrame(columns=["USUBJID", "_key"])
    tu = _by_evaluator(ctx, subject_rows(ctx, "TU", tu), "TU")
    new = tu[first_present(tu, "TUSTRESC", "TUORRES").str.upper() == "NEW"]
    when = parse_dates(ctx, "TU", new, "TUDTC")
    new = _keyed(new, when)
    return new.loc[new["_key"].str.len() > 1, ["USUBJID", "_key"]].drop_duplicates()


def tumor_assessments(ctx: SdtmImport, study_id: str) -> pd.DataFrame:
    responses, sums, new = _responses(ctx), _target_sums(ctx), _new_lesions(ctx)
    merged = responses.merge(sums, on=["USUBJID", "_key"], how="outer", suffixes=("", "_tr"))
    if merged.empty:
        return pd.DataFrame(columns=["study_id", "subject_id", "assessment_date", "target_sum_mm",
                                     "new_lesions", "nontarget_response", "overall_response", ORIGIN])
    merged["_date"] = merged["_date"].fillna(merged["_date_tr"]).dt.strftime("%Y-%m-%d")
    new_keys = set(zip(new["USUBJID"], new["_key"]))
    assessment_keys = pd.Series(list(zip(merged["USUBJID"], merged["_key"])))
    tu_new = assessment_keys.isin(new_keys)
    new_lesions = merged["new_lesions"].where(merged["new_lesions"].notna(), tu_new.map({True: "Y"}))
    unmatched = new_keys - set(assessment_keys)
    if unmatched:
        ctx.warn("TU", "", "TUSTRESC", "NEW", f"{len(unmatched)} new-lesion record(s) match no RS or TR "
                 "assessment (same VISITNUM or date) and were not used")
    out = pd.DataFrame({
        "study_id": study_id,
        "subject_id": merged["USUBJID"],
        "assessment_date": merged["_date"].fillna(""),
        "target_sum_mm": number_text(merged["target_sum_mm"]),
        "new_lesions": new_lesions.fillna(""),
        "nontarget_response": merged["nontarget_response"].fillna(""),
        "overall_response": merged["overall_response"].fillna(""),
    })
    out[ORIGIN] = [("RS/TR", f"USUBJID {s} {_key_text(k)}") for s, k in assessment_keys]
    return out.sort_values(["subject_id", "assessment_date"]).reset_index(drop=True)

