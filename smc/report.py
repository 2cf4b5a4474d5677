"""``python -m smc report``: the numbers the pages show, as one JSON object."""
from __future__ import annotations

import datetime as dt

from smc.biomarkers import biomarkers_json, load_biomarkers
from smc.db import Database
from smc.efficacy import efficacy_json, load_efficacy
from smc.enrollment import enrollment_json, load_enrollment
from smc.labs import labs_json, load_safety_labs
from smc.dose_decision import dose_decision, escalation_json
from smc.overview import overview, overview_json
from smc.safety import load_safety, safety_json
from smc.study import default_as_of, load_study
from smc.survival import load_survival, survival_json


def build_report(db: Database, study_id: str, as_of: dt.date | None = None) -> dict:
    study = load_study(db, study_id)
    as_of = as_of or default_as_of(study)
    decision = dose_decision(db, study, as_of)
    efficacy = load_efficacy(db, study, as_of)
    return {
        "study_id": study_id,
        "as_of": as_of.isoformat(),
        "overview": overview_json(overview(db, study, decision)),
        "escalation": escalation_json(decision),
        "safety": safety_json(load_safety(db, study, as_of)),
        "labs": labs_json(load_safety_labs(db, study, as_of)),
        "efficacy": efficacy_json(efficacy),
        "biomarkers": biomarkers_json(load_biomarkers(db, study, as_of)),
        "survival": survival_json(load_survival(db, study, as_of, efficacy)),
        "enrollment": enrollment_json(load_enrollment(db, study, as_of)),
    }
