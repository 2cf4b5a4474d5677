"""Who may do what (smc.access): the permission function against the table in docs/access.md, cell by cell; the
roles file; the identity from the provider's claims; investigators' subject scope; the access log."""
from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3

import pytest

from smc.access import audit, permissions
from smc.access.identity import AccessRefused, Identity, from_claims, load_roles
from smc.access.scope import subject_scope
from smc.store.db import Database
from smc.ui import pages
from tests.helpers import ROOT, claims, demo_users

DOCS = (ROOT / "docs" / "access.md").read_text()
ROLE_COLUMNS = {"SMC chair": "smc_chair", "SMC member": "smc_member", "sponsor": "sponsor",
                "investigator": "investigator", "data manager": "data_manager", "admin": "admin"}


def docs_table() -> dict[str, dict[str, str]]:
    """The 'What each role may do' table of docs/access.md: row label -> role -> cell."""
    section = DOCS.split("## What each role may do", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[1:] == list(ROLE_COLUMNS), header
    table = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        table[cells[0]] = {ROLE_COLUMNS[h]: cell for h, cell in zip(header[1:], cells[1:])}
    return table


TABLE = docs_table()
CELLS = [(what, role) for what in TABLE for role in permissions.ROLES]


def test_the_docs_table_names_every_page_and_action_once():
    assert {w.removesuffix(" page") for w in TABLE if w.endswith(" page")} == {p.key for p in pages.PAGES}
    assert {w.replace(" ", "_") for w in TABLE if not w.endswith(" page") and w != "subject-level data"} == set(
        permissions.ACTIONS)


@pytest.mark.parametrize("what, role", CELLS, ids=[f"{w}-{r}" for w, r in CELLS])
def test_each_cell_of_the_docs_table_is_what_the_function_answers(what, role):
    cell = TABLE[what][role]
    if what == "subject-level data":
        assert permissions.subject_scope(role) == cell
    elif what.endswith(" page"):
        assert permissions.may_open(role, what.removesuffix(" page")) is (cell == "yes")
    else:
        assert permissions.may(role, what.replace(" ", "_")) is (cell == "yes")


def test_unknown_roles_and_actions_are_never_allowed():
    assert not permissions.may(None, "page:overview")
    assert not permissions.may("superuser", "page:overview")
    assert not permissions.may("smc_chair", "page:nonexistent")
    assert not permissions.may("smc_chair", "delete_decision")
    assert permissions.subject_scope("superuser") == permissions.NO_SUBJECTS


# --------------------------------------------------------------------------- roles file and claims


def roles_file(tmp_path, text: str):
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return load_roles(path)


def test_the_repository_roles_file_gives_each_demo_user_the_role_its_name_says():
    roles = load_roles(ROOT / "config" / "roles.toml")
    expected = {"chair": "smc_chair", "member": "smc_member", "sponsor": "sponsor", "investigator": "investigator",
                "datamanager": "data_manager", "admin": "admin"}
    assert {name: roles.role_of(u["groups"]) for name, u in demo_users().items()} == expected


def test_no_role_or_two_roles_are_refused_with_the_groups_named(tmp_path):
    roles = roles_file(tmp_path, '[groups]\n"a" = "smc_chair"\n"b" = "sponsor"\n')
    assert roles.role_of(["x", "a"]) == "smc_chair"
    with pytest.raises(AccessRefused, match=r"none of your groups \(x, y\) gives a role"):
        roles.role_of(["x", "y"])
    with pytest.raises(AccessRefused, match=r"more than one role \(smc_chair, sponsor\)"):
        roles.role_of(["a", "b"])


@pytest.mark.parametrize("text, words", [
    ('[groups]\n"a" = "god"\n', "group 'a' maps to 'god', which is not a role"),
    ('[studies]\nchair = ["*"]\n', "[studies] names 'chair', which is not a role"),
    ('[studies]\nsponsor = "IX001"\n', "[studies] sponsor must be a list"),
    ('[groups\n', "cannot be read"),
])
def test_a_broken_roles_file_is_refused_with_what_is_wrong(tmp_path, text, words):
    with pytest.raises(AccessRefused) as caught:
        roles_file(tmp_path, text)
    assert words in str(caught.value) and "roles.toml" in str(caught.value)


def test_studies_per_role(tmp_path):
    roles = roles_file(tmp_path, '[groups]\n"s" = "sponsor"\n[studies]\nsponsor = ["IX001"]\nsmc_chair = ["*"]\n')
    assert roles.may_see_study("sponsor", "IX001") and not roles.may_see_study("sponsor", "BIOTTT001")
    assert roles.may_see_study("smc_chair", "BIOTTT001")
    assert not roles.may_see_study("investigator", "IX001")  # a role the file gives no study sees none


def test_the_identity_is_the_tokens_issuer_and_subject_with_its_role_sites_and_auth_time():
    roles = load_roles(ROOT / "config" / "roles.toml")
    token = claims("investigator", signed_in_s_ago=0) | {"auth_time": 1_764_000_000}
    who = from_claims(token, roles)
    assert (who.issuer, who.subject, who.name, who.email, who.role) == (
        "https://idp.test", "investigator", "Dr Ines Investigator", "investigator@site.example", "investigator")
    assert who.sites == frozenset(demo_users()["investigator"]["sites"])
    assert who.auth_time == dt.datetime(2025, 11, 24, 16, 0, tzinfo=dt.UTC)  # 1,764,000,000 s after 1970
    with pytest.raises(AccessRefused, match="names no issuer and subject"):
        from_claims({k: v for k, v in token.items() if k != "sub"}, roles)
    assert from_claims({**token, "auth_time": None}, roles).auth_time is None


# --------------------------------------------------------------------------- subject scope


def identity(role: str, sites=()) -> Identity:
    return Identity("https://idp.test", role, role, "", role, frozenset(sites), None)


def test_an_investigators_scope_is_the_subjects_of_their_sites_by_sql(demo_db, sql):
    db = Database(demo_db)
    for study_id, in sql("SELECT study_id FROM studies"):
        at_site = {s for s, in sql("SELECT subject_id FROM subjects WHERE study_id = ? AND site_id = 'CN-GZ-01'",
                                   study_id)}
        scope = subject_scope(db, study_id, identity("investigator", ["CN-GZ-01"]))
        assert scope.subjects == at_site
        assert subject_scope(db, study_id, identity("investigator")).subjects == frozenset()
        assert subject_scope(db, study_id, identity("sponsor")).nothing
        assert subject_scope(db, study_id, identity("smc_member")).whole_study
    assert sql("SELECT count(*) FROM subjects WHERE study_id = 'IX001' AND site_id = 'CN-GZ-01'") == [(0,)]


# --------------------------------------------------------------------------- access log


def test_the_access_log_is_append_only_and_keeps_one_sign_in_per_provider_sign_in(tmp_path):
    log = tmp_path / "t.access.sqlite"
    who = Identity("https://idp.test", "ada", "Dr Ada", "", "smc_chair", frozenset(),
                   dt.datetime(2026, 1, 1, 9, 0, tzinfo=dt.UTC))
    audit.append(log, "sign-in", who, "session")
    audit.append(log, "sign-in", who, "session")  # the same sign-in seen again by another rerun or tab
    audit.append(log, "denied", who, "page import", "not open to the SMC chair role")
    audit.append(log, "sign-in", Identity(**{**who.__dict__, "auth_time": dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)}))
    audit.append(log, "sign-out", who, "session")
    assert [(r["event"], r["subject"], r["auth_time"]) for r in audit.read(log)] == [
        ("sign-in", "ada", "2026-01-01T09:00:00.000000Z"), ("denied", "ada", "2026-01-01T09:00:00.000000Z"),
        ("sign-in", "ada", "2026-01-01T10:00:00.000000Z"), ("sign-out", "ada", "2026-01-01T09:00:00.000000Z")]
    with contextlib.closing(sqlite3.connect(log)) as con:
        for statement in ("UPDATE access_log SET subject = 'eve'", "DELETE FROM access_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(statement)
    with pytest.raises(ValueError, match="unknown access event"):
        audit.append(log, "peek", who)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", audit.read(log)[0]["at_utc"])
