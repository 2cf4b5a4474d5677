"""LB (and any other findings domain the mapping names, e.g. PC, IS) -> lab_results."""
from __future__ import annotations

import pandas as pd

from smc.ingest.load import ERROR
from smc.ingest.sdtm.common import (
    ORIGIN,
    SdtmImport,
    column,
    first_present,
    number_text,
    origins,
    parse_dates,
    subject_rows,
)
from smc.ingest.sdtm.mapping import LAB_CATEGORIES

# A result below the limit of quantification, as SDTM writes it in --STRESC: "<5", "< 0.5", "BLQ<10".
BELOW_LIMIT = r"<\s*=?\s*(\d+(?:\.\d+)?)"


def _category(ctx: SdtmImport, frame: pd.DataFrame, d: str) -> pd.Series:
    """The mapping's category for the test code, else for the test name, else --CAT when it is a
    contract category (HEMATOLOGY, CHEMISTRY), else other."""
    categories = ctx.mapping.lab_categories
    by_code = column(frame, f"{d}TESTCD").map(categories)
    by_name = column(frame, f"{d}TEST").map(categories)
    own = column(frame, f"{d}CAT").str.lower()
    own = own.where(own.isin(LAB_CATEGORIES), "other")
    return by_code.fillna(by_name).fillna(own)


def lab_results(ctx: SdtmImport, study_id: str, domain: str) -> pd.DataFrame:
    d = domain
    frame = subject_rows(ctx, d, ctx.dataset(d))
    if f"{d}STAT" in frame.columns:  # NOT DONE: no result to show
        frame = frame[frame[f"{d}STAT"].str.upper() != "NOT DONE"]
    when = parse_dates(ctx, d, frame, f"{d}DTC", required=True)
    text = column(frame, f"{d}STRESC")
    numeric = pd.to_numeric(column(frame, f"{d}STRESN"), errors="coerce")
    numeric = numeric.fillna(pd.to_numeric(text, errors="coerce"))
    below = text.str.extract(BELOW_LIMIT, expand=False)
    lloq = column(frame, f"{d}LLOQ").where(column(frame, f"{d}LLOQ") != "", below.fillna(""))
    no_result = numeric.isna() & below.isna()
    if no_result.any():
        ctx.warn(d, "", None, None, f"{int(no_result.sum())} result(s) are not numbers (e.g. "
                 f'"{text[no_result].iloc[0]}") and were left out; lab_results holds numeric results')
    keep = ~no_result
    frame, when, numeric, lloq = frame[keep], when.timestamp_text[keep], numeric[keep], lloq[keep]
    grade = column(frame, f"{d}TOXGR").str.extract(r"(\d)", expand=False).fillna("")
    test = first_present(frame, f"{d}TEST", f"{d}TESTCD")
    ctx.rows(ERROR, d, frame, test == "", f"{d}TEST", "is empty and so is the test code")
    out = pd.DataFrame({
        "study_id": study_id,
        "subject_id": frame["USUBJID"],
        "collected_at": when,
        "category": _category(ctx, frame, d),
        "test": test,
        "specimen": column(frame, f"{d}SPEC").str.lower(),
        "value": number_text(numeric),  # empty below the limit: the limit is in lloq (the contract's way)
        "unit": first_present(frame, f"{d}STRESU", f"{d}ORRESU"),
        "lloq": lloq,
        "ref_low": column(frame, f"{d}STNRLO"),
        "ref_high": column(frame, f"{d}STNRHI"),
        "grade": grade,
    }, index=frame.index)
    out[ORIGIN] = origins(d, frame)
    return out
