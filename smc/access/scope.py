"""Whose subject-level rows a viewer may see in a study: every subject, their own sites' subjects, or none.

Aggregates (counts per level, AE tables, the rule's recommendation) are always of the whole study; subject-level
views (listings, swimlanes, profiles, per-subject chart marks, CSVs, the packet's listings) pass their rows through
:meth:`SubjectScope.rows`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from smc.access import permissions
from smc.access.identity import Identity
from smc.store.db import Database


@dataclass(frozen=True)
class SubjectScope:
    subjects: frozenset[str] | None  # None: every subject of the study
    description: str  # for the caption under a view that was narrowed

    @property
    def whole_study(self) -> bool:
        return self.subjects is None

    @property
    def nothing(self) -> bool:
        return self.subjects is not None and not self.subjects

    def admits(self, subject_id: str) -> bool:
        return self.subjects is None or subject_id in self.subjects

    def rows(self, frame: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame:
        """The rows of ``frame`` about subjects this scope admits (all of them for the whole study)."""
        if self.subjects is None:
            return frame
        return frame[frame[column].isin(self.subjects)]

    def with_study_rows(self, frame: pd.DataFrame, column: str = "subject_id") -> pd.DataFrame:
        """:meth:`rows`, and the rows about no subject (a study-level record), which every scope shows."""
        if self.subjects is None:
            return frame
        return frame[frame[column].isna() | frame[column].isin(self.subjects)]


WHOLE_STUDY = SubjectScope(None, "every subject")


def subject_scope(db: Database, study_id: str, viewer: Identity) -> SubjectScope:
    kind = permissions.subject_scope(viewer.role)
    if kind == permissions.ALL_SUBJECTS:
        return WHOLE_STUDY
    if kind == permissions.NO_SUBJECTS:
        return SubjectScope(frozenset(), f"no subject-level data for the {viewer.role_title} role")
    sites = sorted(viewer.sites)
    at_sites = db.query("subject_sites", study_id=study_id)
    subjects = frozenset(at_sites.loc[at_sites["site_id"].isin(sites), "subject_id"])
    where = f"site{'s' if len(sites) != 1 else ''} {', '.join(sites)}" if sites else "no site"
    return SubjectScope(subjects, f"only the subjects of your {where}")
