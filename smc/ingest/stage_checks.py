"""The validator's rules for staged regimens (``stages``, ``subject_stages``): what the schema cannot say about a
stage's levels, its ceiling, its order and its agent. Called by :func:`smc.ingest.load.validate` with its checker.

Rules: docs/data-contract.md#stages
"""
from __future__ import annotations

import pandas as pd

from smc.ingest.problems import ERROR, WARNING


def _pairs(frame: pd.DataFrame, a: str, b: str) -> pd.Series:
    return pd.Series(list(zip(frame[a].astype(str), frame[b].astype(str))), index=frame.index)


def _level_known(typed: dict, frame: pd.DataFrame, column: str) -> pd.Series:
    """Whether each row's level in ``column`` is a level of its study (True where it is empty)."""
    if "dose_levels" not in typed:
        return pd.Series(True, index=frame.index)
    ladder = typed["dose_levels"]
    known = set(zip(ladder["study_id"].astype(str), ladder["level"].astype("string")))
    keys = zip(frame["study_id"].astype(str), frame[column].astype("string"))
    return frame[column].isna() | pd.Series([k in known for k in keys], index=frame.index)


def check_stages(check, typed: dict, text: dict) -> None:
    if "stages" in typed:
        _check_stage_table(check, typed, text)
    if "subject_stages" in typed:
        _check_subject_stages(check, typed, text)


def _check_stage_table(check, typed: dict, text: dict) -> None:
    stages, rows = typed["stages"], text["stages"]
    check.rows(ERROR, "stages", rows, ~_level_known(typed, stages, "start_level"), "start_level",
               lambda r: f"is not a dose level of {r['study_id']} in dose_levels.csv")

    order = dict(zip(_pairs(stages, "study_id", "stage"), stages["stage_order"]))
    ceiling = stages["ceiling_stage"]
    ceiling_order = pd.to_numeric(pd.Series(
        [order.get((s, c)) for s, c in zip(stages["study_id"].astype(str), ceiling)], index=stages.index,
        dtype=object), errors="coerce")
    unknown = ceiling.notna() & ceiling_order.isna()
    check.rows(ERROR, "stages", rows, unknown, "ceiling_stage", lambda r: f"is not a stage of {r['study_id']}")
    not_earlier = ceiling_order.notna() & (ceiling_order >= stages["stage_order"].astype(float)).fillna(False)
    check.rows(ERROR, "stages", rows, not_earlier, "ceiling_stage",
               "is not an earlier stage (its stage_order must be lower): a stage is capped by what came before it")

    repeated = stages["stage_order"].notna() & stages.duplicated(["study_id", "stage_order"], keep="first")
    check.rows(ERROR, "stages", rows, repeated, "stage_order",
               lambda r: f"repeats a stage_order of {r['study_id']} given in an earlier row")
    for study_id, orders in stages.dropna(subset=["stage_order"]).groupby("study_id")["stage_order"]:
        numbers = sorted(set(int(n) for n in orders))
        if numbers != list(range(1, len(numbers) + 1)):
            check.add(ERROR, "stages", None, "stage_order", None,
                      f"numbers the stages of {study_id} {', '.join(map(str, numbers))}: number them 1, 2, … "
                      "without gaps")

    if "studies" in typed:
        study = typed["studies"].drop_duplicates("study_id").set_index("study_id")
        first = stages["stage_order"] == 1
        for column in ("agent", "dlt_window_days"):
            theirs = stages["study_id"].map(study[column])
            differs = first & theirs.notna() & stages[column].notna() & (stages[column] != theirs)
            check.rows(ERROR, "stages", rows, differs, column,
                       lambda r, c=column, t=theirs: f"of the first stage differs from studies.{c} ({t[r.name]}): "
                                                     "the first stage is the study's own escalation")

    given = set()
    if "administrations" in typed:
        doses = typed["administrations"]
        given = set(zip(doses["study_id"].astype(str), doses["agent"].astype(str)))
    never = pd.Series([(s, a) not in given for s, a in zip(stages["study_id"].astype(str), stages["agent"].astype(str))],
                      index=stages.index) & stages["agent"].notna()
    check.rows(WARNING, "stages", rows, never, "agent",
               lambda r: f"is never given in administrations.csv of {r['study_id']}: no subject has begun the DLT "
                         f"window of the stage {r['stage']} yet")


def _check_subject_stages(check, typed: dict, text: dict) -> None:
    entries, rows = typed["subject_stages"], text["subject_stages"]
    stages = typed.get("stages", pd.DataFrame(columns=["study_id", "stage", "stage_order", "agent"]))
    by_key = stages.drop_duplicates(["study_id", "stage"]).set_index(["study_id", "stage"])
    keys = pd.MultiIndex.from_arrays([entries["study_id"].astype(str), entries["stage"].astype(str)])
    order = pd.Series(by_key["stage_order"].reindex(keys).to_numpy(), index=entries.index)
    agent = pd.Series(by_key["agent"].reindex(keys).to_numpy(), index=entries.index)

    unknown = entries["stage"].notna() & order.isna()
    check.rows(ERROR, "subject_stages", rows, unknown, "stage",
               lambda r: f"is not a stage of {r['study_id']} in stages.csv")
    check.rows(ERROR, "subject_stages", rows, order == 1, "stage",
               lambda r: f"is the first stage of {r['study_id']}: every enrolled subject is in it at "
                         "subjects.dose_level, so subject_stages lists the later stages only")
    check.rows(ERROR, "subject_stages", rows, ~_level_known(typed, entries, "dose_level"), "dose_level",
               lambda r: f"is not a dose level of {r['study_id']} in dose_levels.csv")

    # With no start_date the stage begins at its agent's first administration: ambiguous when an earlier stage
    # gives the same agent.
    lowest = stages.dropna(subset=["stage_order"]).groupby(["study_id", "agent"])["stage_order"].min()
    first_giving = lowest.reindex(pd.MultiIndex.from_arrays([entries["study_id"].astype(str), agent.astype(str)]))
    shared = pd.Series(first_giving.to_numpy(), index=entries.index) < order
    check.rows(ERROR, "subject_stages", rows, entries["start_date"].isna() & shared, "start_date",
               lambda r: f"is empty, and the agent of the stage {r['stage']} is given in an earlier stage too: give "
                         "the day the subject entered the stage", show_value=False)

    if "subjects" in typed:
        subjects = typed["subjects"].drop_duplicates(["study_id", "subject_id"]).set_index(["study_id", "subject_id"])
        who = pd.MultiIndex.from_arrays([entries["study_id"].astype(str), entries["subject_id"].astype(str)])
        known = pd.Series(who.isin(subjects.index), index=entries.index)
        enrolled = pd.Series(subjects["enrollment_date"].reindex(who).to_numpy(), index=entries.index)
        check.rows(ERROR, "subject_stages", rows, known & enrolled.isna(), "subject_id",
                   "has no enrollment_date (a screen failure is in no stage)")
        before = (entries["start_date"] < enrolled).fillna(False)
        check.rows(ERROR, "subject_stages", rows, before, "start_date",
                   lambda r: f"is before the subject's enrollment_date {enrolled[r.name]:%Y-%m-%d}")
