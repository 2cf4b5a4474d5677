"""Sign-in through the demo provider's own form (dev/idp, npm oidc-provider), in Chromium: what an anonymous
browser gets, what each demo user sees and may do page by page (from smc.access.permissions, the table of
docs/access.md), refused links, sign-out, a second tab, expiry, and signatures that need a fresh sign-in."""
from __future__ import annotations

import re
import time

import pytest

from smc.access import audit, permissions
from smc.access.identity import load_roles
from smc.decision_log import ledger
from smc.tools.server import ERRORS
from smc.ui import pages
from tests.helpers import ROOT, STUDIES, demo_users, served_app, sign_in, type_password

SIDEBAR_LINKS = '[data-testid="stSidebarNav"] a, [data-testid="stPageLink-NavLink"]'
NO_ACCESS = '[data-testid="stAlertContentError"]:has-text("No access")'
TITLE = "h1"
ROLES = load_roles(ROOT / "config" / "roles.toml")


def role_of(username: str) -> str:
    return ROLES.role_of(demo_users()[username]["groups"])


def _frames(page) -> list[bytes]:
    """Every websocket message the server sends this page from now on."""
    received: list[bytes] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda payload: received.append(payload if isinstance(payload, bytes) else payload.encode())))
    return received


def _settled(page) -> None:
    """The script has run and the page is drawn (Streamlit's own mark on its app element)."""
    page.wait_for_function("document.querySelector('[data-test-script-state]')?.getAttribute("
                           "'data-test-script-state') === 'notRunning'", timeout=60_000)
    page.wait_for_timeout(300)


# --------------------------------------------------------------------------- anonymous


@pytest.mark.parametrize("path", ["", "escalation?study=IX001", "subject?study=IX001&subject=IX001-005", "import"])
def test_an_anonymous_browser_gets_only_the_sign_in_page(server, browser, sql, path):
    page = browser.new_context().new_page()
    frames = _frames(page)
    page.goto(f"{server}/{path}")
    page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    _settled(page)
    body = page.locator("body").inner_text()
    assert page.locator(SIDEBAR_LINKS).count() == 0 and page.locator("select, [data-testid=stSelectbox]").count() == 0
    traffic = b"".join(frames)
    for study_id, in sql("SELECT study_id FROM studies"):
        assert study_id not in body and study_id.encode() not in traffic
    for subject_id, in sql("SELECT subject_id FROM subjects WHERE study_id = 'IX001'"):
        assert subject_id.encode() not in traffic


# --------------------------------------------------------------------------- each demo user, page by page


@pytest.mark.parametrize("username", list(demo_users()))
def test_each_demo_user_sees_the_pages_their_role_may_open_and_is_refused_the_others(server, page_as, username):
    role, page = role_of(username), page_as(username)
    page.goto(f"{server}/?study=BIOTTT001")
    page.get_by_text(demo_users()[username]["name"]).first.wait_for(timeout=60_000)
    page.locator('[data-testid="stPageLink-NavLink"]').first.wait_for(timeout=60_000)
    _settled(page)
    links = {link.inner_text().split("\n")[-1].strip() for link in page.locator('[data-testid="stPageLink-NavLink"]').all()}
    assert links == {p.title for p in pages.PAGES if permissions.may_open(role, p.key) and p.key != "subject"}
    for spec in pages.PAGES:
        page.goto(f"{server}/{spec.url_path}?study=BIOTTT001")
        _settled(page)
        if permissions.may_open(role, spec.key):
            page.locator(TITLE).first.wait_for(timeout=60_000)
            assert page.locator(NO_ACCESS).count() == 0, (username, spec.key)
            assert page.locator(ERRORS).count() == 0, (username, spec.key, page.locator(ERRORS).all_inner_texts())
        else:
            page.locator(NO_ACCESS).wait_for(timeout=60_000)
            assert page.locator(TITLE).count() == 0, (username, spec.key)  # nothing of the page was drawn


def test_what_the_escalation_page_lets_each_role_do(server, page_as):
    """Members and the chair get the decision form; only the chair the approval and the correction; the others
    read the log."""
    for username in demo_users():
        role, page = role_of(username), page_as(username)
        page.goto(f"{server}/escalation?study=IX001")
        page.get_by_role("heading", name="SMC decisions").wait_for(timeout=60_000)
        _settled(page)
        for locator, action in ((page.get_by_role("button", name="Sign and record the decision"), "record_decision"),
                                (page.get_by_role("heading", name="Approve a decision"), "approve_decision"),
                                (page.get_by_text("Corrects record"), "supersede_decision")):
            if permissions.may(role, action):
                locator.first.wait_for(timeout=60_000)  # drawn, however loaded the machine
            else:
                assert locator.count() == 0, (username, action)


def test_an_investigator_sees_their_own_sites_subjects_and_is_refused_another_sites_link(server, page_as, sql,
                                                                                          demo_db):
    sites = demo_users()["investigator"]["sites"]
    own = {s for s, in sql(f"SELECT subject_id FROM subjects WHERE study_id = 'BIOTTT001' AND site_id IN "
                           f"({', '.join('?' * len(sites))})", *sites)}
    other = sorted({s for s, in sql("SELECT subject_id FROM subjects WHERE study_id = 'BIOTTT001'")} - own)
    assert own and other
    page = page_as("investigator")
    frames = _frames(page)
    page.goto(f"{server}/escalation?study=BIOTTT001")
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 1", timeout=60_000)
    page.locator(".js-plotly-plot .ytick text").first.wait_for(timeout=30_000)
    lanes = {t.text_content().split(" · ")[0] for t in page.locator(".js-plotly-plot").first.locator(".ytick text").all()}
    assert lanes and lanes <= own
    _settled(page)
    assert not [s for s in other if s.encode() in b"".join(frames)]  # not in the page's traffic either

    frames.clear()
    page.goto(f"{server}/subject?study=BIOTTT001&subject={other[0]}")
    page.locator(NO_ACCESS).wait_for(timeout=60_000)
    _settled(page)
    assert other[0] not in page.locator("[data-testid=stMain]").first.inner_text()
    # Nothing about any other subject is sent; the one asked for comes back only as the link's own query string.
    assert not [s for s in other[1:] if s.encode() in b"".join(frames)]
    denied = [r for r in audit.read(audit.log_path(demo_db)) if r["event"] == "denied" and r["subject"] == "investigator"]
    assert any(other[0] in r["what"] for r in denied), denied


# --------------------------------------------------------------------------- sign-out, tabs, expiry


def test_sign_out_ends_the_session_and_a_second_tab_shares_the_sign_in(server, browser, demo_db):
    context = browser.new_context()
    first = context.new_page()
    sign_in(first, server, "member")
    second = context.new_page()  # a second tab: the same browser's cookie, no second sign-in
    second.goto(f"{server}/safety?study=IX001")
    second.get_by_role("heading", name="IX001 · Safety").wait_for(timeout=60_000)
    first.get_by_role("button", name="Sign out").click()
    first.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    second.reload()
    second.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
    assert second.locator(TITLE).inner_text() == "SMC Dashboard"
    events = [r["event"] for r in audit.read(audit.log_path(demo_db)) if r["subject"] == "member"]
    assert "sign-in" in events and "sign-out" in events
    # Signed out at the provider too: signing in again asks for the password.
    first.get_by_role("button", name="Sign in").click()
    type_password(first, "member")
    first.get_by_text("Dr Ben Member").first.wait_for(timeout=60_000)
    context.close()


def test_a_session_expires_after_the_sign_in_max_age(demo_db, identity_provider, browser):
    with served_app(demo_db, identity_provider, SMC_SIGN_IN_MAX_AGE_S="4") as url:
        page = browser.new_context().new_page()
        sign_in(page, url, "sponsor")
        time.sleep(5)
        page.goto(f"{url}/enrollment?study=IX001")
        page.get_by_text("Your sign-in has expired").wait_for(timeout=60_000)
        assert page.locator(SIDEBAR_LINKS).count() == 0
        page.get_by_role("button", name="Sign in").click()
        type_password(page, "sponsor")  # an expired sign-in is renewed with the password, not the old session
        page.get_by_text("Sam Sponsor").first.wait_for(timeout=60_000)


# --------------------------------------------------------------------------- signatures


def test_a_signature_needs_a_fresh_sign_in_and_names_the_signer_from_the_token(demo_db, identity_provider, browser,
                                                                            tmp_path):
    """A member records; the chair's approval without a fresh sign-in is refused; after signing in again at the
    provider's form it is recorded, with the chair's identity from the token."""
    db = tmp_path / "cut.duckdb"
    db.write_bytes(demo_db.read_bytes())
    with served_app(db, identity_provider, SMC_SIGNATURE_MAX_AUTH_AGE_S="20") as url:
        member = browser.new_context().new_page()
        sign_in(member, url, "member")
        member.goto(f"{url}/escalation?study=IX001")
        member.get_by_role("button", name="Sign and record the decision").click()
        member.get_by_text(re.compile(r"Recorded as #\d+ .* signed by Dr Ben Member \(recorded as SMC member\)")) \
            .wait_for(timeout=60_000)

        chair = browser.new_context().new_page()
        sign_in(chair, url, "chair")
        time.sleep(21)  # the chair's sign-in is now older than a signature allows
        chair.goto(f"{url}/escalation?study=IX001")
        chair.get_by_role("heading", name="Approve a decision").wait_for(timeout=60_000)
        chair.get_by_role("button", name="Sign the approval").click()
        refusal = chair.locator('[data-testid="stAlertContentError"]:has-text("Not approved")')
        refusal.wait_for(timeout=60_000)
        assert "sign in again first" in refusal.inner_text()

        chair.get_by_role("button", name="Sign in again to sign").first.click()
        type_password(chair, "chair")  # prompt=login: the provider asks for the password again
        chair.get_by_text("Dr Ada Chair").first.wait_for(timeout=60_000)
        chair.goto(f"{url}/escalation?study=IX001")
        chair.get_by_role("button", name="Sign the approval").click()
        chair.get_by_text(re.compile(r"Approved #\d+ as #\d+")).wait_for(timeout=60_000)

    records = ledger.read_log(ledger.log_path(db), "IX001")
    recorded, approval = records[-2], records[-1]
    assert (recorded.recorded_by, recorded.signer_subject, recorded.signer_issuer, recorded.signer_email,
            recorded.signer_role, recorded.signature_meaning) == (
        "Dr Ben Member", "member", identity_provider, "member@smc.example", "smc_member", "recorded as SMC member")
    assert (approval.kind, approval.approves, approval.signer_subject, approval.signer_role,
            approval.signature_meaning) == ("approval", recorded.id, "chair", "smc_chair", "approved as SMC chair")
    assert ledger.verify(ledger.log_path(db)) == []
    signatures = [r for r in audit.read(audit.log_path(db)) if r["event"] == "signature"]
    assert [(r["subject"], r["detail"]) for r in signatures][-2:] == [
        ("member", "recorded as SMC member"), ("chair", "approved as SMC chair")]


@pytest.mark.parametrize("study_id", STUDIES)
def test_the_sponsor_sees_aggregates_and_no_subject(server, page_as, sql, study_id):
    page = page_as("sponsor")
    frames = _frames(page)
    for path in ("escalation", "safety", "efficacy"):
        page.goto(f"{server}/{path}?study={study_id}")
        page.locator(TITLE).first.wait_for(timeout=60_000)
        _settled(page)
        assert page.locator(ERRORS).count() == 0
    traffic = b"".join(frames)
    leaked = [s for s, in sql("SELECT subject_id FROM subjects WHERE study_id = ?", study_id) if s.encode() in traffic]
    assert leaked == []
