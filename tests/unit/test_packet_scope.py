"""The meeting packet follows the reader's subject scope: an investigator's packet names no subject of another site
(swimlanes, escalation history marks, waterfall, exposure points, Kaplan–Meier censor ticks) and says what it
left out, a sponsor's names no subject at all, and both keep the study's aggregates; the default packet (the report
command, every existing caller) is the whole study's."""
from __future__ import annotations

import datetime as dt
import html
import re

import pytest

from smc.access import permissions
from smc.access.identity import Identity
from smc.access.scope import WHOLE_STUDY, subject_scope
from smc.outputs.packet import build_packet
from smc.store.db import Database
from tests.helpers import STUDIES, data_cut, demo_users

NOW = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
AGGREGATE_SECTIONS = ("recommendation", "levels", "safety")  # nothing per subject in these


def viewer(role: str, sites=()) -> Identity:
    return Identity("https://idp.test", role, role, f"{role}@example", role, frozenset(sites), None)


def investigator_sites() -> list[str]:
    return list(demo_users()["investigator"]["sites"])


def named(packet: str, subjects: set[str]) -> set[str]:
    return set(TOKEN.findall(html.unescape(packet))) & subjects


def section(packet: str, key: str) -> str:
    """One section's markup, its figures' div ids (numbered through the packet) left out."""
    return re.sub(r"figure-\d+", "figure", re.search(rf'<section id="{key}">.*?</section>', packet, re.S).group(0))


def subjects_by_site(sql, study_id: str, sites: list[str]) -> tuple[set[str], set[str]]:
    """(the study's subjects at ``sites``, the others), of those enrolled by the data cut."""
    rows = sql("SELECT subject_id, site_id FROM subjects WHERE study_id = ? AND enrollment_date <= ?",
               study_id, data_cut(sql, study_id))
    return {s for s, site in rows if site in sites}, {s for s, site in rows if site not in sites}


@pytest.fixture(scope="module")
def db(demo_db) -> Database:
    return Database(demo_db)


@pytest.mark.parametrize("study_id", [s for s in STUDIES if s != "IX001"])
def test_investigator_packet_names_only_their_sites_subjects(db, sql, study_id):
    sites = investigator_sites()
    own, others = subjects_by_site(sql, study_id, sites)
    assert own and others, "the demo study needs subjects at the investigator's site and at others"
    scope = subject_scope(db, study_id, viewer(permissions.INVESTIGATOR, sites))

    whole = build_packet(db, study_id, now=NOW)
    theirs = build_packet(db, study_id, now=NOW, scope=scope)

    assert named(whole, others), "the whole-study packet names other sites' subjects (so this test can fail)"
    assert not named(theirs, others), sorted(named(theirs, others))
    assert own <= named(theirs, own)  # a swimlane for each of theirs
    note = html.escape(f"Subject-level rows: {scope.description} ({len(own)} of {len(own | others)} subjects).")
    assert note in section(theirs, "swimlanes")
    assert html.escape(scope.description) in section(theirs, "study")
    for key in AGGREGATE_SECTIONS:
        assert section(theirs, key) == section(whole, key), key


@pytest.mark.parametrize("study_id", STUDIES)
def test_sponsor_packet_names_no_subject_and_keeps_the_aggregates(db, sql, study_id):
    everyone = {s for (s,) in sql("SELECT subject_id FROM subjects WHERE study_id = ?", study_id)}
    scope = subject_scope(db, study_id, viewer(permissions.SPONSOR))
    assert scope.nothing
    whole = build_packet(db, study_id, now=NOW)
    theirs = build_packet(db, study_id, now=NOW, scope=scope)
    assert not named(theirs, everyone), sorted(named(theirs, everyone))
    assert html.escape(f"Subject-level data are not shown here ({scope.description}).") in theirs
    for key in AGGREGATE_SECTIONS:
        assert section(theirs, key) == section(whole, key), key


def test_the_default_packet_is_the_whole_studys(db):
    assert build_packet(db, "IDOV-SAFE", now=NOW) == build_packet(db, "IDOV-SAFE", now=NOW, scope=WHOLE_STUDY)
    assert "Subject-level" not in build_packet(db, "IDOV-SAFE", now=NOW)
