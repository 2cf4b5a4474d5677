"""The study overview as of a date: enrollment against plan, subjects per
level and phase, DLTs per level (from the escalation rule) and deaths."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.analysis.dose_decision import DoseDecision
from smc.store.db import Database
from smc.store.study import Study


@dataclass(frozen=True)
class Overview:
    study: Study
    as_of: dt.date
    screened: int
    screen_failures: int
    enrolled: int
    planned: int | None
    deaths: int
    per_level: pd.DataFrame  # level, label, escalation, expansion, n_dosed, n_died, n_dlt (+ n_dlt:<stage> per later stage)


def load_overview(db: Database, study: Study, decision: DoseDecision) -> Overview:
    as_of = decision.as_of
    totals = db.rows("subject_counts", study_id=study.study_id, as_of=as_of)[0]
    levels = db.query("subject_counts_by_level", study_id=study.study_id, as_of=as_of)
    per_level = (levels.pivot_table(index=["level", "label"], columns="phase", values="n_enrolled",
                                    aggfunc="sum", fill_value=0)
                 .reindex(columns=["escalation", "expansion"], fill_value=0).reset_index())
    per_level.columns.name = None
    sums = levels.groupby("level")[["n_dosed", "n_died"]].sum()
    per_level = per_level.join(sums, on="level")
    dlts = {row.level: row.n_dlt for row in decision.rows}
    per_level["n_dlt"] = per_level["level"].map(dlts).fillna(0).astype(int)
    for stage in decision.stages[1:]:  # a staged regimen's later stages: DLTs counted there, by the stage's level
        later = {row.level: row.n_dlt for row in stage.rows}
        per_level[f"n_dlt:{stage.stage.title()}"] = per_level["level"].map(later).fillna(0).astype(int)
    per_level["n_enrolled"] = per_level["escalation"] + per_level["expansion"]
    return Overview(study, as_of, totals["screened"], totals["screen_failures"], totals["enrolled"],
                    study.planned_enrollment, totals["deaths"],
                    per_level.sort_values("level").reset_index(drop=True))


def overview_json(ov: Overview) -> dict:
    return {
        "title": ov.study.title,
        "design": ov.study.design,
        "agent": ov.study.agent,
        "dlt_window_days": ov.study.dlt_window_days,
        "data_cut_date": ov.study.data_cut_date.isoformat() if ov.study.data_cut_date else None,
        "screened": int(ov.screened),
        "screen_failures": int(ov.screen_failures),
        "enrolled": int(ov.enrolled),
        "planned": ov.planned,
        "deaths": int(ov.deaths),
        "subjects_per_level": [{
            "level": int(r.level), "label": r.label, "escalation": int(r.escalation),
            "expansion": int(r.expansion), "n_enrolled": int(r.n_enrolled), "n_dosed": int(r.n_dosed),
            "n_dlt": int(r.n_dlt), "n_died": int(r.n_died),
        } for r in ov.per_level.itertuples()],
    }
