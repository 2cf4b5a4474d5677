"""Sign-in with Streamlit's own OpenID Connect (``st.login``), the viewer's role, and the "no access" page.

Nothing of the app is drawn before :func:`require_viewer` has a signed-in identity with a role: without one the
page is the sign-in page and the script stops there, so no study data reaches the browser.
"""
from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import streamlit as st

from smc import settings
from smc.access import audit
from smc.access.identity import AccessRefused, Identity, from_claims, load_roles
from smc.ui.text import md

log = logging.getLogger("smc")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _auth_configured() -> bool:
    try:
        return bool(st.secrets.get("auth"))
    except (FileNotFoundError, KeyError):  # no secrets file at all
        return False
    except Exception:  # noqa: BLE001 - a secrets file Streamlit cannot parse: not configured either
        log.exception("the secrets file cannot be read")
        return False


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


def _claims() -> dict:
    return {k: v for k, v in st.user.to_dict().items() if k != "tokens"}


def _sign_in_page(why: str | None = None) -> None:
    st.title("SMC Dashboard")
    if not _auth_configured():
        st.error("Sign-in is not configured on this server, so nothing is shown. An administrator adds an OpenID "
                 "Connect provider to `.streamlit/secrets.toml` (docs/access.md); `make run` starts the demo's.")
        st.stop()
    if why:
        st.warning(why, icon=":material/lock_clock:")
    st.markdown("Sign in with your organisation's account to see the trials you review.")
    # After an expiry the provider may still hold a session of the old sign-in: ask for the password again.
    provider = settings.AUTH_FRESH_PROVIDER if why else settings.AUTH_PROVIDER
    st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, args=(provider,),
              key="sign_in")
    st.stop()


def log_event(log_file: Path, event: str, who: Identity | None, what: str = "", detail: str = "") -> None:
    """Append to the access log; a log that cannot be written is reported in the server's log, never to the user
    as a traceback (and does not let anyone in: callers log before they refuse, not instead)."""
    try:
        audit.append(log_file, event, who, what, detail)
    except Exception:  # noqa: BLE001
        log.exception("the access log %s could not be written (%s %s)", log_file, event, what)


def require_viewer(log_file: Path) -> Identity:
    """The signed-in identity with its role; otherwise the sign-in page (or the reason there is no role), and stop."""
    if not st.user.is_logged_in:
        _sign_in_page()
    try:
        viewer = from_claims(_claims(), load_roles(settings.roles_file()))
    except AccessRefused as refused:
        claims = _claims()
        anonymous = Identity(str(claims.get("iss", "")), str(claims.get("sub", "")), str(claims.get("name", "")),
                             str(claims.get("email", "")), "", frozenset(), None)
        log_event(log_file, "denied", anonymous, "sign-in", str(refused))
        st.error(f"Signed in, but with no access to this dashboard: {md(refused)}.", icon=":material/block:")
        st.button("Sign out", on_click=st.logout, key="sign_out_refused")
        st.stop()
    age = viewer.signed_in_for_s(_now())
    if age is None or age > settings.SIGN_IN_MAX_AGE_S:
        if st.session_state.get("_signed_in_as") == (viewer.issuer, viewer.subject, viewer.auth_time):
            log_event(log_file, "expired", viewer, "session", f"signed in {age:.0f} s ago" if age else "no auth_time")
        st.session_state.pop("_signed_in_as", None)
        _sign_in_page(f"Your sign-in has expired (a sign-in lasts {_duration(settings.SIGN_IN_MAX_AGE_S)}): "
                      "sign in again.")
    seen = (viewer.issuer, viewer.subject, viewer.auth_time)
    if st.session_state.get("_signed_in_as") != seen:  # once per sign-in and session, not per rerun
        log_event(log_file, "sign-in", viewer, "session")
        st.session_state["_signed_in_as"] = seen
    return viewer


def _sign_out(log_file: Path, viewer: Identity) -> None:
    log_event(log_file, "sign-out", viewer, "session")
    st.session_state.pop("_signed_in_as", None)
    st.logout()


def account(log_file: Path, viewer: Identity) -> None:
    """Who is signed in, in the sidebar, with the sign-out button."""
    with st.sidebar.container(border=True):
        st.markdown(f"**{md(viewer.name)}** · {md(viewer.role_title)}")
        st.caption(md(viewer.email) + (f" · sites {md(', '.join(sorted(viewer.sites)))}" if viewer.sites else ""))
        st.button("Sign out", icon=":material/logout:", key="sign_out", on_click=_sign_out, args=(log_file, viewer))


def no_access(log_file: Path, viewer: Identity, what: str, why: str) -> None:
    """The plain refusal for a link to something this viewer may not see: logged, nothing else drawn."""
    log_event(log_file, "denied", viewer, what, why)
    st.error(f"No access: {md(why)}", icon=":material/block:")
    st.stop()
