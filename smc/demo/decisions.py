"""The demo's decision log: the simulated SMC met after each cohort and followed the protocol rule,
so the demo shows decisions on the Escalation page and in the meeting packet."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from smc.access import permissions
from smc.access.identity import Identity
from smc.analysis.dose_decision import decision_history, load_dose_decision
from smc.decision_log import ledger
from smc.rules.escalation import recommended_level
from smc.store.db import Database
from smc.store.study import load_study, study_ids

DECISIVE = ("escalate", "de-escalate", "declare_mtd", "max_dose_cleared", "stop")
MEETING_AFTER_DAYS = 3  # the SMC meets a few days after the cohort's data are in
ATTENDEES = "Demo SMC: chair (independent oncologist), two investigators, sponsor physician, statistician"


def simulated_chair(now: dt.datetime) -> Identity:
    """Who signs the simulated meetings' records: an identity of the demo's own, named as such in every record."""
    return Identity(issuer="urn:smc:demo-simulation", subject="simulated-smc-chair", name="Simulated SMC chair (demo)",
                    email="", role=permissions.SMC_CHAIR, sites=frozenset(), auth_time=now)


def record_demo_decisions(db_path: str | Path) -> int:
    """Append the simulated SMC's decisions to the demo's log unless it has one; returns how many."""
    log = ledger.log_path(db_path)
    if log.exists():
        return 0  # a log is never rewritten, and a rebuilt demo (same seed) has the same history
    db, now, recorded = Database(db_path), dt.datetime.now(dt.UTC), 0
    today, signer = now.date(), simulated_chair(now)
    for study_id in study_ids(db):
        study = load_study(db, study_id)
        previous = None
        for point in decision_history(load_dose_decision(db, study, study.data_cut_date)):
            call = (point.recommendation.action, recommended_level(point))
            if call[0] not in DECISIVE or call == previous or call[1] is None:
                continue
            previous = call
            draft = ledger.Draft(
                study_id=study_id, meeting_date=min(point.as_of + dt.timedelta(days=MEETING_AFTER_DAYS), today),
                data_cut_date=point.as_of, level=call[1], decision=call[0], attendees=ATTENDEES,
                signer=signer,
                rationale="Simulated meeting: the SMC reviewed the cohort's DLT data and followed the protocol rule.")
            ledger.append(log, draft, load_dose_decision(db, study, point.as_of), ledger.data_source(db))
            recorded += 1
    return recorded
