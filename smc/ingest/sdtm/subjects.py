"""DM, DS, SV and TS -> studies, dose_levels, sites and subjects."""
from __future__ import annotations

import pandas as pd

from smc.ingest.load import ERROR, WARNING
from smc.ingest.sdtm.common import ORIGIN, RECORD, SdtmImport, column, origins, parse_dates, subject_rows

# SDTM's own arm codes for subjects without an arm (SDTMIG 3.2; 3.3+ moves them to ARMNRS).
SCREEN_FAILURE_ARMS = {"SCRNFAIL", "NOTASSGN"}
# Not treated: the planned arm (ARMCD) gives the level. UNPLAN is not here: an unplanned treatment
# has no known level, so it must be mapped like any arm (else it is an unmapped arm).
NOT_TREATED_ARMS = {"NOTTRT", ""}
ENROLLMENT_MILESTONES = {"RANDOMIZED", "ENROLLED", "ENROLLMENT", "RANDOMISED"}
TS_FIELDS = {"TITLE": "title", "INDIC": "indication", "PLANSUB": "planned_enrollment",
             "DCUTDTC": "data_cut_date"}


def _status(ctx: SdtmImport, dm: pd.DataFrame) -> pd.DataFrame:
    """Each DM subject's arm, level, phase and whether it is imported, a screen failure or excluded."""
    armcd, actarmcd = column(dm, "ARMCD"), column(dm, "ACTARMCD")
    nrs = column(dm, "ARMNRS").str.upper()
    screen_failure = (armcd.str.upper().isin(SCREEN_FAILURE_ARMS)
                      | column(dm, "ARM").str.upper().eq("SCREEN FAILURE")
                      | nrs.isin({"SCREEN FAILURE", "NOT ASSIGNED"}))
    use_actual = ~actarmcd.str.upper().isin(NOT_TREATED_ARMS | SCREEN_FAILURE_ARMS)
    arm = actarmcd.where(use_actual, armcd)
    arm_variable = pd.Series("ACTARMCD", index=dm.index).where(use_actual, "ARMCD")
    arms = ctx.mapping.arm_levels()
    excluded = ~screen_failure & arm.isin(ctx.mapping.exclude_arms)
    level = arm.map(lambda a: arms.get(a, (None, None))[0])
    phase = arm.map(lambda a: arms.get(a, (None, None))[1])
    unmapped = ~screen_failure & ~excluded & level.isna()
    for idx in dm.index[unmapped]:
        ctx.error("DM", dm.at[idx, RECORD], arm_variable[idx], arm[idx],
                  "is not an arm of any [[levels]] in the mapping file (nor a screen failure or an "
                  "exclude_arms arm): add it to a level's arms")
    if excluded.any():
        counts = arm[excluded].value_counts()
        ctx.warn("DM", "", None, None, "subjects of excluded arms were left out with all their records: "
                 + ", ".join(f"{a} ({n})" for a, n in counts.items()))
    status = pd.Series("imported", index=dm.index)
    status[screen_failure] = "screen failure"
    status[excluded] = "excluded"
    return pd.DataFrame({"USUBJID": dm["USUBJID"], "status": status, "arm": arm,
                         "level": level, "phase": phase}).set_index("USUBJID")


def _disposition(ctx: SdtmImport, ds: pd.DataFrame | None) -> dict[str, pd.Series]:
    """Per subject from DS: enrollment milestone, screen-failure reason, off-study and off-treatment
    date and reason, death date and cause."""
    out: dict[str, pd.Series] = {}
    if ds is None or ds.empty:
        return out
    ds = subject_rows(ctx, "DS", ds)
    when = parse_dates(ctx, "DS", ds, "DSSTDTC", required=True)
    ds = ds.assign(_date=when.date_text, _decod=ds["DSDECOD"].str.upper())
    category = column(ds, "DSCAT").str.upper()
    milestone = ds["_decod"].isin(ENROLLMENT_MILESTONES)
    out["enrolled_on"] = ds[milestone & (ds["_date"] != "")].groupby("USUBJID")["_date"].min()
    failed = ds[ds["_decod"] == "SCREEN FAILURE"]
    reason = column(failed, "DSTERM").where(column(failed, "DSTERM").str.upper() != "SCREEN FAILURE", "")
    out["screen_fail_reason"] = reason.groupby(failed["USUBJID"]).first()
    out["screen_failed_on"] = failed[failed["_date"] != ""].groupby("USUBJID")["_date"].min()
    # Leaving the study is a DISPOSITION EVENT (all non-milestone records when DS has no DSCAT), but not
    # a screen failure or the end of the screening epoch.
    disposition = (category == "DISPOSITION EVENT") if "DSCAT" in ds.columns else ~milestone
    event = disposition & ~ds["_decod"].isin({"SCREEN FAILURE", "INFORMED CONSENT OBTAINED"}) \
        & (column(ds, "EPOCH").str.upper() != "SCREENING") & (ds["_date"] != "")
    events = ds[event].sort_values("_date")
    treatment = column(events, "EPOCH").str.upper() == "TREATMENT"
    last_study = events[~treatment].groupby("USUBJID").last()
    last_treatment = events[treatment].groupby("USUBJID").last()
    out["off_study_date"], out["off_study_reason"] = last_study["_date"], last_study["DSDECOD"]
    out["off_treatment_date"], out["off_treatment_reason"] = last_treatment["_date"], last_treatment["DSDECOD"]
    deaths = ds[(ds["_decod"] == "DEATH") & (ds["_date"] != "")].sort_values("_date").groupby("USUBJID").first()
    out["death_date"] = deaths["_date"]
    term = column(deaths, "DSTERM")
    out["death_cause"] = term.where(term.str.upper() != "DEATH", "")
    out["dated_records"] = ds[~(ds["_decod"] == "DEATH") & (ds["_date"] != "")].groupby("USUBJID")["_date"].max()
    return out


def _study_fields(ctx: SdtmImport, dm: pd.DataFrame) -> dict[str, str]:
    fields: dict[str, str] = {}
    ts = ctx.dataset("TS")
    if ts is not None:
        for parm, name in TS_FIELDS.items():
            values = ts.loc[ts["TSPARMCD"].str.upper() == parm, "TSVAL"]
            if len(values) and values.iloc[0]:
                fields[name] = values.iloc[0][:10] if name == "data_cut_date" else values.iloc[0]
    fields.update(ctx.mapping.study)  # the mapping file has the last word
    if "study_id" not in fields:
        ids = sorted(set(dm["STUDYID"]) - {""})
        if len(ids) != 1:
            ctx.error("DM", "", "STUDYID", ", ".join(ids),
                      "must hold exactly one study (or give study_id in the mapping's [study])")
        fields["study_id"] = ids[0] if ids else ""
    return fields


def convert(ctx: SdtmImport) -> dict[str, pd.DataFrame]:
    """studies, dose_levels, sites and subjects (last_contact_date is added later, from every domain)."""
    dm = ctx.dataset("DM")
    duplicated = dm["USUBJID"].duplicated(keep="first")
    ctx.rows(ERROR, "DM", dm, duplicated, "USUBJID", "repeats a subject given in an earlier DM record")
    ctx.rows(ERROR, "DM", dm, dm["USUBJID"] == "", "USUBJID", "is empty")
    dm = dm[~duplicated]
    status = _status(ctx, dm)
    ctx.subjects = status
    study = _study_fields(ctx, dm)
    study_id = study["study_id"]
    disposition = _disposition(ctx, ctx.dataset("DS"))

    def per_subject(name: str) -> pd.Series:
        found = disposition.get(name)
        return dm["USUBJID"].map(found).fillna("") if found is not None else pd.Series("", index=dm.index)

    state = status["status"].reindex(dm["USUBJID"]).to_numpy()
    kept, failed = state != "excluded", state == "screen failure"
    consent = parse_dates(ctx, "DM", dm, "RFICDTC")
    start = parse_dates(ctx, "DM", dm, "RFSTDTC")
    exposure_start = parse_dates(ctx, "DM", dm, "RFXSTDTC")
    exposure_end = parse_dates(ctx, "DM", dm, "RFXENDTC", end=True)
    death = parse_dates(ctx, "DM", dm, "DTHDTC")

    # A screen failure is counted from its screening date; lacking RFICDTC, the DS SCREEN FAILURE
    # date is the latest it can have been screened.
    screened_on = consent.date_text.where((consent.date_text != "") | ~failed, per_subject("screen_failed_on"))
    undated = failed & kept & (screened_on == "")
    ctx.rows(WARNING, "DM", dm, undated, "RFICDTC", "is empty for a screen failure and DS gives no SCREEN "
             "FAILURE date: the subject cannot be placed in time and is not counted as screened")
    enrolled_on = per_subject("enrolled_on")
    enrolled_on = enrolled_on.where(enrolled_on != "", start.date_text)
    enrolled_on = enrolled_on.where(enrolled_on != "", exposure_start.date_text)
    no_enrollment = ~failed & kept & (enrolled_on == "")
    ctx.rows(WARNING, "DM", dm, no_enrollment, "RFSTDTC",
             "is empty and DS has no RANDOMIZED or ENROLLED record: the subject is shown as not yet enrolled")
    off_study = per_subject("off_study_date")
    off_treatment = per_subject("off_treatment_date")
    # Without a treatment-epoch DS record, a subject off study stopped treatment at the last exposure.
    infer_off_treatment = (off_treatment == "") & (off_study != "")
    off_treatment = off_treatment.where(~infer_off_treatment, exposure_end.date_text)
    off_treatment_reason = per_subject("off_treatment_reason").where(~infer_off_treatment,
                                                                     per_subject("off_study_reason"))
    off_treatment_reason = off_treatment_reason.where(off_treatment != "", "")
    death_date = death.date_text.where(death.date_text != "", per_subject("death_date"))
    age_unit = column(dm, "AGEU").str.upper()
    bad_unit = (age_unit != "") & (age_unit != "YEARS") & (column(dm, "AGE") != "")
    ctx.rows(WARNING, "DM", dm, bad_unit, "AGEU", "is not YEARS; the age was left empty")
    sex = column(dm, "SEX").str.upper()
    ctx.rows(WARNING, "DM", dm, ~sex.isin({"M", "F", ""}), "SEX", "is not M or F; left empty")
    screen_fail_reason = per_subject("screen_fail_reason")
    screen_fail_reason = screen_fail_reason.where(screen_fail_reason != "", column(dm, "ARMNRS"))
    screen_fail_reason = screen_fail_reason.where(screen_fail_reason != "", "Screen failure")
    level = dm["USUBJID"].map(status["level"])

    subjects = pd.DataFrame({
        "study_id": study_id,
        "subject_id": dm["USUBJID"],
        "site_id": column(dm, "SITEID"),
        "sex": sex.where(sex.isin({"M", "F"}), ""),
        "age": column(dm, "AGE").where(~bad_unit, ""),
        "screening_date": screened_on,
        "enrollment_date": enrolled_on.where(~failed, ""),
        "screen_fail_reason": screen_fail_reason.where(failed, ""),
        "dose_level": level.map(lambda v: "" if pd.isna(v) else str(int(v))).where(~failed, ""),
        "phase": dm["USUBJID"].map(status["phase"]).fillna(""),
        "off_treatment_date": off_treatment,
        "off_treatment_reason": off_treatment_reason,
        "off_study_date": off_study,
        "off_study_reason": per_subject("off_study_reason"),
        "death_date": death_date,
        "death_cause": per_subject("death_cause").where(death_date != "", ""),
    }, index=dm.index)
    subjects[ORIGIN] = origins("DM", dm)
    subjects = subjects[kept]
    ctx.consent = pd.Series(screened_on.to_numpy(), index=dm["USUBJID"]).replace("", None).dropna()
    ctx.ds_dated = disposition.get("dated_records", pd.Series(dtype=object))

    levels = pd.DataFrame([{
        "study_id": study_id, "level": str(lv.level), "label": lv.label,
        "dose": "" if lv.dose is None else str(lv.dose), "unit": lv.unit or "",
    } for lv in ctx.mapping.levels])
    sites = (pd.DataFrame({"site_id": column(dm, "SITEID")[kept], "country": column(dm, "COUNTRY")[kept]})
             .query("site_id != ''").drop_duplicates("site_id"))
    studies = pd.DataFrame([study])
    return {"studies": studies, "dose_levels": levels, "sites": sites, "subjects": subjects}


def last_contact(ctx: SdtmImport, subjects: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Last date known alive: the latest SV visit; for a subject without one (or without SV), the
    latest dated record."""
    parts = [pd.to_datetime(ctx.ds_dated)] if ctx.ds_dated is not None else []
    for table, columns in (("administrations", ("admin_date", "end_date")),
                           ("adverse_events", ("onset_date", "end_date")),
                           ("tumor_assessments", ("assessment_date",)),
                           ("lab_results", ("collected_at",))):
        frame = tables.get(table)
        if frame is None or frame.empty:
            continue
        for col in columns:
            when = pd.to_datetime(frame[col].str[:10], format="%Y-%m-%d", errors="coerce")
            parts.append(when.groupby(frame["subject_id"]).max())
    latest = pd.concat(parts).groupby(level=0).max() if parts else pd.Series(dtype="datetime64[ns]")
    sv = ctx.dataset("SV")
    if sv is not None:
        sv = subject_rows(ctx, "SV", sv)
        visits = [parse_dates(ctx, "SV", sv, "SVSTDTC").when, parse_dates(ctx, "SV", sv, "SVENDTC", end=True).when]
        latest_visit = pd.concat([when.groupby(sv["USUBJID"]).max() for when in visits]).groupby(level=0).max()
        latest = latest_visit.dropna().combine_first(latest)
    return subjects["subject_id"].map(latest.dt.strftime("%Y-%m-%d")).fillna("")
