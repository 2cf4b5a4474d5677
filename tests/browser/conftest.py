"""Fixtures of the browser tests: Debian's Chromium for pytest-playwright, the demo's real sign-in provider, and
the app served on a free port signing in there. A browser test's page is signed in as the SMC chair unless it asks
for another demo user (``signed_in``): the sign-in went through the provider's own form once per user."""
from __future__ import annotations

import os
import shutil

import pytest

from smc.tools import demo_sign_in
from smc.tools.server import CHROMIUM_ARGS, chromium_path
from tests.helpers import served_app, sign_in


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    path = chromium_path()
    if path is None:
        if os.environ.get("SMC_REQUIRE_BROWSER"):
            pytest.fail("SMC_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); browser tests skipped")
    return {**browser_type_launch_args, "executable_path": path, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def identity_provider() -> str:
    """The demo provider (dev/idp, npm oidc-provider) on a free port: its issuer URL."""
    try:
        with demo_sign_in.demo_provider() as issuer:
            yield issuer
    except demo_sign_in.ProviderFailed as failed:
        pytest.fail(str(failed))


@pytest.fixture(scope="session")
def server(demo_db, identity_provider):
    with served_app(demo_db, identity_provider) as url:
        yield url


@pytest.fixture(scope="session")
def signed_in(browser, server):
    """user name -> the browser state (cookies) of that demo user signed in at the provider's form."""
    states: dict[str, dict] = {}

    def state(username: str) -> dict:
        if username not in states:
            context = browser.new_context()
            sign_in(context.new_page(), server, username)
            states[username] = context.storage_state()
            context.close()
        return states[username]
    return state


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args, signed_in):
    return {**browser_context_args, "storage_state": signed_in("chair")}


@pytest.fixture()
def decision_server(demo_db, tmp_path, identity_provider):
    """A server on a copy of the demo database, so recorded decisions stay out of the session's."""
    shutil.copy(demo_db, tmp_path / "cut.duckdb")
    with served_app(tmp_path / "cut.duckdb", identity_provider) as url:
        yield url, tmp_path


@pytest.fixture()
def page_as(browser, signed_in):
    """user name -> a new page signed in as that demo user (its own context, closed after the test)."""
    contexts = []

    def new_page(username: str):
        contexts.append(browser.new_context(storage_state=signed_in(username)))
        return contexts[-1].new_page()
    yield new_page
    for context in contexts:
        context.close()
