"""AppTest: the gate of app.py. Nobody sees anything of a study before signing in; a sign-in that gives no role,
an expired one, or a link to a study the role may not see gets a plain message, logged; each role's sidebar lists
the pages its role may open (smc.access.permissions)."""
from __future__ import annotations

import pytest

from smc.access import audit, permissions
from smc.access.identity import load_roles
from smc.ui import pages
from tests.helpers import ROOT, STUDIES, app_test, claims, demo_users

SECRETS = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
           "smc": {"client_id": "c", "client_secret": "s",
                   "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"}}


def everything_shown(at) -> str:
    return " ".join(str(e.value) for kind in ("title", "markdown", "caption", "info", "warning", "error", "metric")
                    for e in getattr(at, kind))


def test_without_sign_in_configured_nothing_is_shown_but_the_reason(app_env):
    at = app_test(None).run()
    assert [e.value for e in at.error] == [
        "Sign-in is not configured on this server, so nothing is shown. An administrator adds an OpenID Connect "
        "provider to `.streamlit/secrets.toml` (docs/access.md); `make run` starts the demo's."]
    assert not at.sidebar.selectbox and not at.dataframe and not at.get("plotly_chart")


@pytest.mark.parametrize("page", [None, *[p.script for p in pages.PAGES]])
def test_an_anonymous_visitor_gets_the_sign_in_button_only(app_env, sql, page):
    at = app_test(None)
    at.secrets["auth"] = SECRETS
    at.query_params.update({"study": "IX001", "subject": "IX001-005"})
    at.run()
    if page:
        at.switch_page(page).run()
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.sidebar.selectbox and not at.dataframe and not at.get("plotly_chart") and not at.exception
    shown = everything_shown(at)
    assert not [s for s, in sql("SELECT study_id FROM studies") if s in shown]


def test_groups_that_give_no_role_are_refused_and_logged(app_env):
    at = app_test(claims("chair", groups=["marketing"])).run()
    assert any("no access to this dashboard: none of your groups (marketing) gives a role" in e.value for e in at.error)
    assert [b.label for b in at.button] == ["Sign out"] and not at.sidebar.selectbox
    (row,) = [r for r in audit.read(audit.log_path(app_env)) if r["event"] == "denied" and r["what"] == "sign-in"][-1:]
    assert row["subject"] == "chair" and "marketing" in row["detail"]


def test_an_expired_sign_in_asks_for_a_new_one(app_env):
    at = app_test(claims("member", signed_in_s_ago=8 * 3600 + 60))  # settings.sign_in_max_age_s is 8 h
    at.secrets["auth"] = SECRETS
    at.run()
    assert any("Your sign-in has expired (a sign-in lasts 8 h): sign in again." in w.value for w in at.warning)
    assert [b.label for b in at.button] == ["Sign in"] and not at.sidebar.selectbox


@pytest.mark.parametrize("username", list(demo_users()))
def test_each_roles_sidebar_lists_the_pages_it_may_open(app_env, username):
    role = load_roles(ROOT / "config" / "roles.toml").role_of(demo_users()[username]["groups"])
    at = app_test(username).run()
    assert [link.proto.label for link in at.get("page_link")] == [
        p.title for p in pages.PAGES if p.key != "subject" and permissions.may_open(role, p.key)]
    assert at.sidebar.markdown[0].value == f"**{demo_users()[username]['name']}** · {permissions.ROLE_TITLES[role]}"


def test_a_link_to_a_study_the_role_may_not_see_is_refused_and_logged(app_env, tmp_path, monkeypatch):
    roles = tmp_path / "roles.toml"
    roles.write_text('[groups]\n"sponsor" = "sponsor"\n[studies]\nsponsor = ["IX001"]\n')
    monkeypatch.setenv("SMC_ROLES_FILE", str(roles))
    at = app_test("sponsor")
    at.query_params["study"] = "BIOTTT001"
    at.run()
    assert [e.value for e in at.error] == ["No access: the sponsor role may not see study BIOTTT001."]
    assert not at.dataframe and "BIOTTT001 ·" not in everything_shown(at)
    assert audit.read(audit.log_path(app_env))[-1]["what"] == "study BIOTTT001"
    at = app_test("sponsor").run()  # without the link: the one study it may see
    assert at.sidebar.selectbox(key="study").options == ["IX001"]


@pytest.mark.parametrize("study_id", STUDIES)
def test_a_page_the_role_may_not_open_draws_nothing_of_it(app_env, study_id):
    at = app_test("investigator")
    at.query_params["study"] = study_id
    at.run()
    at.switch_page(pages.script("explore")).run()
    assert [e.value for e in at.error] == ["No access: the Explore page is not open to the investigator role."]
    assert not at.title and not at.dataframe and not at.text_area  # no console
    row = audit.read(audit.log_path(app_env))[-1]
    assert (row["event"], row["subject"], row["what"]) == ("denied", "investigator", "page explore")
