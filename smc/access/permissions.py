"""What each role may do: the one table that every page, the decision log and the tests ask.

docs/access.md prints the same table (tests/unit/test_permissions.py compares the two). Pages are the keys of
``smc.ui.pages.PAGES``; subject-level data (listings, swimlanes, profiles, per-subject chart marks, CSVs, the
packet's listings) follow :data:`SUBJECT_SCOPE`, whatever the page.
"""
from __future__ import annotations

SMC_CHAIR, SMC_MEMBER, SPONSOR, INVESTIGATOR, DATA_MANAGER, ADMIN = (
    "smc_chair", "smc_member", "sponsor", "investigator", "data_manager", "admin")
ROLES = (SMC_CHAIR, SMC_MEMBER, SPONSOR, INVESTIGATOR, DATA_MANAGER, ADMIN)
ROLE_TITLES = {SMC_CHAIR: "SMC chair", SMC_MEMBER: "SMC member", SPONSOR: "sponsor", INVESTIGATOR: "investigator",
               DATA_MANAGER: "data manager", ADMIN: "admin"}

# Subject-level data: every subject of the study, the subjects of the user's own sites, or none (aggregates only).
ALL_SUBJECTS, OWN_SITES, NO_SUBJECTS = "all", "own sites", "none"
SUBJECT_SCOPE = {SMC_CHAIR: ALL_SUBJECTS, SMC_MEMBER: ALL_SUBJECTS, SPONSOR: NO_SUBJECTS, INVESTIGATOR: OWN_SITES,
                 DATA_MANAGER: ALL_SUBJECTS, ADMIN: ALL_SUBJECTS}

_EVERYONE = frozenset(ROLES)
_WHOLE_STUDY = frozenset(r for r in ROLES if SUBJECT_SCOPE[r] == ALL_SUBJECTS)
_ALLOWED: dict[str, frozenset[str]] = {
    # pages
    "page:overview": _EVERYONE,
    "page:escalation": _EVERYONE,
    "page:safety": _EVERYONE,
    "page:labs": _EVERYONE,
    "page:efficacy": _EVERYONE,
    "page:biomarkers": _EVERYONE,
    "page:survival": _EVERYONE,
    "page:enrollment": _EVERYONE,
    "page:explore": _WHOLE_STUDY,  # the console and pivot read every row: only for roles that may see them all
    "page:import": frozenset({DATA_MANAGER, ADMIN}),
    "page:subject": frozenset(r for r in ROLES if SUBJECT_SCOPE[r] != NO_SUBJECTS),
    "page:changes": frozenset(r for r in ROLES if SUBJECT_SCOPE[r] != NO_SUBJECTS),  # its rows follow the scope
    # actions
    "download_packet": _EVERYONE,  # its listings follow the subject scope
    "record_decision": frozenset({SMC_CHAIR, SMC_MEMBER}),
    "approve_decision": frozenset({SMC_CHAIR}),
    "supersede_decision": frozenset({SMC_CHAIR}),
    "review_subjects": frozenset({SMC_CHAIR, SMC_MEMBER}),  # mark subjects (or records) as reviewed on a cut
}
PAGE_KEYS = tuple(a.removeprefix("page:") for a in _ALLOWED if a.startswith("page:"))
ACTIONS = tuple(a for a in _ALLOWED if not a.startswith("page:"))

# What a signature by each role means, stored in the record it seals.
MEANINGS = {SMC_MEMBER: "recorded as SMC member", SMC_CHAIR: "approved as SMC chair"}
APPROVAL_MEANING = "approved as SMC chair"
CORRECTION_MEANING = "corrected as SMC chair"


def may(role: str | None, action: str) -> bool:
    """Whether ``role`` may do ``action``: ``"page:<key>"`` to open a page, or one of :data:`ACTIONS`. An unknown
    action or role is never allowed."""
    return role in _ALLOWED.get(action, ())


def may_open(role: str | None, page_key: str) -> bool:
    return may(role, f"page:{page_key}")


def subject_scope(role: str | None) -> str:
    return SUBJECT_SCOPE.get(role, NO_SUBJECTS)


def table() -> list[dict[str, str]]:
    """The permission table as docs/access.md shows it: one row per page or action, a column per role."""
    rows = [{"What": f"{key} page", **{ROLE_TITLES[r]: "yes" if may_open(r, key) else "—" for r in ROLES}}
            for key in PAGE_KEYS]
    rows.append({"What": "subject-level data", **{ROLE_TITLES[r]: SUBJECT_SCOPE[r] for r in ROLES}})
    rows += [{"What": action.replace("_", " "), **{ROLE_TITLES[r]: "yes" if may(r, action) else "—" for r in ROLES}}
             for action in ACTIONS]
    return rows
