"""Fixtures of the browser tests: Debian's Chromium for pytest-playwright, and the app served on a free port."""
from __future__ import annotations

import os
import shutil

import pytest

from smc.tools.server import CHROMIUM_ARGS, chromium_path
from tests.helpers import served_app


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    path = chromium_path()
    if path is None:
        if os.environ.get("SMC_REQUIRE_BROWSER"):
            pytest.fail("SMC_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
        pytest.skip("no Chromium at /usr/bin/chromium (apt-get install chromium); browser tests skipped")
    return {**browser_type_launch_args, "executable_path": path, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def server(demo_db):
    with served_app(demo_db) as url:
        yield url


@pytest.fixture()
def decision_server(demo_db, tmp_path):
    """A server on a copy of the demo database, so recorded decisions stay out of the session's."""
    shutil.copy(demo_db, tmp_path / "cut.duckdb")
    with served_app(tmp_path / "cut.duckdb") as url:
        yield url, tmp_path
