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
from smc.store import cuts
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
    return _meetings_on(Database(db_path), log, {}, dt.datetime.now(dt.UTC))


def record_demo_decisions_on_cuts(folder: str | Path) -> int:
    """The simulated SMC met on each of the registry's cuts, oldest first: on each, it decided on every cohort
    completed since the previous cut, and at least once (the rule's call at that cut), so every cut but the
    first has a previous review to compare with. Nothing is recorded if the registry has a log already."""
    registry = cuts.Registry.of_folder(folder)
    if not registry.cuts:
        return 0
    log = ledger.log_path(registry.cuts[0].path)
    if log.exists():
        return 0
    now, since, recorded = dt.datetime.now(dt.UTC), {}, 0
    for cut in registry.cuts:
        recorded += _meetings_on(Database(cut.path), log, since, now, at_cut=True)
    return recorded


def _meetings_on(db: Database, log: Path, since: dict[str, dt.date], now: dt.datetime, at_cut: bool = False) -> int:
    """The decisive calls of each study's escalation history after ``since[study]`` (updated), recorded as taken
    on ``db``'s cut; with ``at_cut``, the rule's call at the cut too when nothing decisive happened."""
    today, signer, recorded = now.date(), simulated_chair(now), 0
    source = ledger.data_source(db)
    for study_id in study_ids(db):
        study = load_study(db, study_id)
        at_data_cut = load_dose_decision(db, study, study.data_cut_date)
        for part in at_data_cut.stages:  # a staged study's SMC decides on each stage
            stage = part.stage.name if study.staged else None
            points = [p for p in decision_history(at_data_cut, stage)
                      if study_id not in since or p.as_of > since[study_id]]
            calls, previous = [], None
            for point in points:
                call = (point.recommendation.action, recommended_level(point))
                if call[0] in DECISIVE and call != previous and call[1] is not None:
                    calls.append((point.as_of, call))
                    previous = call
            if at_cut and not calls and recommended_level(part.assessment) is not None:
                calls.append((study.data_cut_date, (part.assessment.recommendation.action,
                                                    recommended_level(part.assessment))))
            for as_of, (action, level) in calls:
                draft = ledger.Draft(
                    study_id=study_id, meeting_date=min(as_of + dt.timedelta(days=MEETING_AFTER_DAYS), today),
                    data_cut_date=as_of, level=level, decision=action, attendees=ATTENDEES, signer=signer, stage=stage,
                    rationale="Simulated meeting: the SMC reviewed the cohort's DLT data and followed the protocol "
                              "rule.")
                ledger.append(log, draft, load_dose_decision(db, study, as_of), source)
                recorded += 1
        since[study_id] = study.data_cut_date
    return recorded
