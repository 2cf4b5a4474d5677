"""The signed-in identity: who the OpenID Connect provider says is looking, and the role the roles file gives them.

Claims are the ID token's (``st.user`` holds them): ``iss`` and ``sub`` name the person for good, ``groups`` gives
the role through the roles file (``settings.roles_file()``, config/roles.toml), and the claim the roles file names
(``sites``) the investigator's sites. ``auth_time`` is when they last typed their password at the provider.
"""
from __future__ import annotations

import datetime as dt
import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from smc.access import permissions

EVERY_STUDY = "*"


class AccessRefused(Exception):
    """A signed-in user the app cannot give a role (no group, or groups of two roles), or a broken roles file."""


@dataclass(frozen=True)
class RoleMap:
    """The roles file: group -> role, role -> the studies it may see, and the claim that carries sites."""

    groups: Mapping[str, str]
    studies: Mapping[str, tuple[str, ...]]
    site_claim: str = "sites"

    def role_of(self, groups: list[str]) -> str:
        roles = sorted({self.groups[g] for g in groups if g in self.groups})
        if not roles:
            raise AccessRefused("none of your groups (" + (", ".join(groups) or "no group") + ") gives a role in this "
                                "dashboard; ask its administrator to add you to one")
        if len(roles) > 1:
            raise AccessRefused(f"your groups give more than one role ({', '.join(roles)}); one person has one role "
                                "here: ask the administrator to fix your groups")
        return roles[0]

    def may_see_study(self, role: str, study_id: str) -> bool:
        allowed = self.studies.get(role, ())
        return EVERY_STUDY in allowed or study_id in allowed


@functools.lru_cache(maxsize=4)
def _parse_roles(path: Path, modified_ns: int) -> RoleMap:  # noqa: ARG001 - the file's mtime: an edit is reread
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AccessRefused(f"the roles file {path} cannot be read: {exc}") from None
    groups, studies = data.get("groups", {}), data.get("studies", {})
    problems = [f"group {g!r} maps to {r!r}, which is not a role ({', '.join(permissions.ROLES)})"
                for g, r in groups.items() if r not in permissions.ROLES]
    problems += [f"[studies] names {r!r}, which is not a role" for r in studies if r not in permissions.ROLES]
    problems += [f"[studies] {r} must be a list of study ids or [\"*\"]" for r, s in studies.items()
                 if not isinstance(s, list) or not all(isinstance(x, str) for x in s)]
    if problems:
        raise AccessRefused(f"the roles file {path}: " + "; ".join(problems))
    return RoleMap(groups=dict(groups), studies={r: tuple(s) for r, s in studies.items()},
                   site_claim=str(data.get("site_claim", "sites")))


def load_roles(path: Path) -> RoleMap:
    try:
        modified = path.stat().st_mtime_ns
    except OSError as exc:
        raise AccessRefused(f"the roles file {path} cannot be read: {exc.strerror or exc}") from None
    return _parse_roles(path, modified)


@dataclass(frozen=True)
class Identity:
    issuer: str
    subject: str
    name: str
    email: str
    role: str
    sites: frozenset[str]
    auth_time: dt.datetime | None  # when the provider last checked their password (UTC)

    @property
    def role_title(self) -> str:
        return permissions.ROLE_TITLES.get(self.role, self.role)

    def signed_in_for_s(self, now: dt.datetime) -> float | None:
        """Seconds since the provider last authenticated them, or None when the token did not say."""
        return None if self.auth_time is None else (now - self.auth_time).total_seconds()


def _list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def from_claims(claims: Mapping, roles: RoleMap) -> Identity:
    """The identity the ID token's claims describe; :class:`AccessRefused` when it gives no single role."""
    issuer, subject = str(claims.get("iss") or ""), str(claims.get("sub") or "")
    if not issuer or not subject:
        raise AccessRefused("the provider's token names no issuer and subject (iss, sub): the sign-in cannot be "
                            "tied to a person")
    auth_time = claims.get("auth_time")
    return Identity(
        issuer=issuer, subject=subject, name=str(claims.get("name") or claims.get("preferred_username") or subject),
        email=str(claims.get("email") or ""), role=roles.role_of(_list(claims.get("groups"))),
        sites=frozenset(_list(claims.get(roles.site_claim))),
        auth_time=dt.datetime.fromtimestamp(int(auth_time), dt.UTC) if isinstance(auth_time, int | float) else None)
