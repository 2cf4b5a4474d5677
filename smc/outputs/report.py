"""``python -m smc report``: the numbers the pages show, as one JSON object."""
from __future__ import annotations

import datetime as dt

from smc.analysis.biomarkers import biomarkers_json, load_biomarkers
from smc.analysis.dose_decision import escalation_json, load_dose_decision
from smc.analysis.efficacy import efficacy_json, load_efficacy
from smc.analysis.enrollment import enrollment_json, load_enrollment
from smc.analysis.labs import labs_json, load_safety_labs
from smc.analysis.overview import load_overview, overview_json
from smc.analysis.safety import load_safety, safety_json
from smc.analysis.survival import load_survival, survival_json
from smc.store.db import Database
from smc.store.study import default_as_of, load_study


def build_report(db: Database, study_id: str, as_of: dt.date | None = None) -> dict:
    study = load_study(db, study_id)
    as_of = as_of or default_as_of(study)
    decision = load_dose_decision(db, study, as_of)
    efficacy = load_efficacy(db, study, as_of)
    return {
        "study_id": study_id,
        "as_of": as_of.isoformat(),
        "overview": overview_json(load_overview(db, study, decision)),
        "escalation": escalation_json(decision),
        "safety": safety_json(load_safety(db, study, as_of)),
        "labs": labs_json(load_safety_labs(db, study, as_of)),
        "efficacy": efficacy_json(efficacy),
        "biomarkers": biomarkers_json(load_biomarkers(db, study, as_of)),
        "survival": survival_json(load_survival(db, study, as_of, efficacy)),
        "enrollment": enrollment_json(load_enrollment(db, study, as_of)),
    }
