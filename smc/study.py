"""A study's settings and dose ladder, as the pages and report need them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from smc.db import Database
from smc.escalation import DoseLevel


@dataclass(frozen=True)
class Study:
    study_id: str
    title: str | None
    design: str
    agent: str
    dlt_window_days: int
    target_dlt_rate: float
    planned_enrollment: int | None
    min_sd_days: int
    indication: str | None
    data_cut_date: dt.date | None
    levels: tuple[DoseLevel, ...]

    def label(self, level: int | None) -> str:
        return next((d.label for d in self.levels if d.level == level), "—" if level is None else str(level))

    @property
    def level_order(self) -> list[int]:
        return [d.level for d in self.levels]


def _none(value):
    return None if value is None or value != value else value  # NaN/NaT -> None


def _date(value) -> dt.date | None:
    value = _none(value)
    return value.date() if hasattr(value, "date") else value


def study_ids(db: Database) -> list[str]:
    return db.query("studies")["study_id"].tolist()


def load_study(db: Database, study_id: str) -> Study:
    studies = db.query("studies")
    row = studies[studies.study_id == study_id]
    if row.empty:
        raise KeyError(f"study {study_id!r} is not in the database (it has: {', '.join(studies.study_id)})")
    r = row.iloc[0]
    levels = db.query("dose_levels", study_id=study_id)
    return Study(
        study_id=study_id,
        title=_none(r.title),
        design=r.design,
        agent=r.agent,
        dlt_window_days=int(r.dlt_window_days),
        target_dlt_rate=float(r.target_dlt_rate),
        planned_enrollment=None if _none(r.planned_enrollment) is None else int(r.planned_enrollment),
        min_sd_days=int(r.min_sd_days),
        indication=_none(r.indication),
        data_cut_date=_date(r.data_cut_date),
        levels=tuple(DoseLevel(int(lv.level), lv.label) for lv in levels.itertuples()),
    )


def default_as_of(study: Study) -> dt.date:
    return study.data_cut_date or dt.date.today()
