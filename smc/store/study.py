"""A study's settings and dose ladder, as the pages and report need them."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from smc.rules.escalation import DoseLevel
from smc.store.db import Database


@dataclass(frozen=True)
class Stage:
    """One stage of the regimen: its own DLT window, started by the first administration of ``agent`` in the
    stage, and its own escalation (docs/rules.md#staged-regimens). A study without ``stages`` rows has one, unnamed."""

    name: str | None
    order: int
    agent: str
    dlt_window_days: int
    start_level: int | None = None  # None: level 1 when the stage may use it, else its lowest allowed level
    ceiling_stage: str | None = None  # an earlier stage whose cleared levels cap this one

    def title(self) -> str:
        return self.name or "escalation"


@dataclass(frozen=True)
class Study:
    study_id: str
    title: str | None
    design: str
    agent: str
    dlt_window_days: int
    target_dlt_rate: float
    planned_enrollment: int | None
    enrollment_target_date: dt.date | None
    min_sd_days: int
    indication: str | None
    data_cut_date: dt.date | None
    levels: tuple[DoseLevel, ...]
    stages: tuple[Stage, ...] = ()  # in stage order; () is read as the study's one stage (:attr:`regimen`)

    @property
    def regimen(self) -> tuple[Stage, ...]:
        """The stages in order: those of the ``stages`` table, else the study's one stage (its agent and window)."""
        return self.stages or (Stage(None, 1, self.agent, self.dlt_window_days),)

    @property
    def staged(self) -> bool:
        """Whether the study runs more than one stage, each with its own window and escalation."""
        return len(self.stages) > 1

    def stage(self, name: str | None) -> Stage:
        return next(s for s in self.regimen if s.name == name)

    def label(self, level: int | None) -> str:
        return next((d.label for d in self.levels if d.level == level), "—" if level is None else str(level))

    def labels(self, levels: pd.Series) -> pd.Series:
        """:meth:`label` of every level in a column, looked up once per distinct level: a column can hold
        hundreds of thousands of rows. Text even when empty."""
        return levels.map({level: self.label(level) for level in levels.unique()}).astype(object)

    @property
    def level_order(self) -> list[int]:
        return [d.level for d in self.levels]


def study_subject_ids(db: Database, study_id: str) -> pd.DataFrame:
    """The study's enrolled subjects in this cut (``subject_id``), in id order."""
    return db.query("study_subjects", study_id=study_id)


def study_ids(db: Database) -> list[str]:
    return [r["study_id"] for r in db.rows("studies")]


def _stage_rows(db: Database) -> list[dict]:
    return db.rows_since_contract_had("stages")  # none: one stage per study


def load_studies(db: Database) -> dict[str, Study]:
    """Every study in the data cut, by id in id order (three queries however many studies)."""
    ladders: dict[str, list[DoseLevel]] = {}
    for lv in db.rows("dose_levels"):
        ladders.setdefault(lv["study_id"], []).append(DoseLevel(lv["level"], lv["label"]))
    stages: dict[str, list[Stage]] = {}
    for st in _stage_rows(db):
        stages.setdefault(st["study_id"], []).append(Stage(
            st["stage"], st["stage_order"], st["agent"], st["dlt_window_days"], st["start_level"],
            st["ceiling_stage"]))
    return {r["study_id"]: Study(
        study_id=r["study_id"], title=r["title"], design=r["design"], agent=r["agent"],
        dlt_window_days=r["dlt_window_days"], target_dlt_rate=r["target_dlt_rate"],
        planned_enrollment=r["planned_enrollment"], enrollment_target_date=r["enrollment_target_date"],
        min_sd_days=r["min_sd_days"], indication=r["indication"], data_cut_date=r["data_cut_date"],
        levels=tuple(ladders.get(r["study_id"], ())), stages=tuple(stages.get(r["study_id"], ())),
    ) for r in db.rows("studies")}


def load_study(db: Database, study_id: str) -> Study:
    studies = load_studies(db)
    if study_id not in studies:
        raise KeyError(f"study {study_id!r} is not in the database (it has: {', '.join(studies)})")
    return studies[study_id]


def default_as_of(study: Study) -> dt.date:
    return study.data_cut_date or dt.date.today()
