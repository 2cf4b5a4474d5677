"""The server's defaults in .streamlit/config.toml: this machine only, no error details, no developer menu, the
upload limit of the settings; and that `make run`, the tests' server and AppTest all get them."""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from streamlit.testing.v1 import AppTest

from smc import settings
from tests.helpers import ROOT

CONFIG = ROOT / ".streamlit" / "config.toml"
EXPECTED = {
    "server.address": "127.0.0.1",
    "server.headless": True,
    "server.maxUploadSize": settings.UPLOAD_MAX_MB,
    "client.showErrorDetails": "none",
    "client.toolbarMode": "viewer",
    "browser.gatherUsageStats": False,
}
# Streamlit's own protections, which the defaults must leave on.
KEPT_ON = ("server.enableXsrfProtection", "server.enableCORS")
# What Streamlit 1.67 accepts (its config.py): showErrorDetails "full", "stacktrace", "type", "none" (and the
# deprecated True / False); toolbarMode "auto", "developer", "viewer", "minimal".
HIDES_DETAILS = {"none"}  # "type" still shows the exception's type; "stacktrace" and "full" the traceback
HIDES_DEVELOPER_MENU = {"viewer", "minimal"}


def _file() -> dict:
    return tomllib.loads(CONFIG.read_text())


def _value(config: dict, key: str):
    section, name = key.split(".")
    return config.get(section, {}).get(name)


@pytest.mark.parametrize("key", EXPECTED)
def test_the_config_file_sets_each_default(key):
    assert _value(_file(), key) == EXPECTED[key]


def test_error_details_and_developer_menu_take_values_that_hide_them():
    from streamlit.config import ShowErrorDetailsConfigOptions

    config = _file()
    assert _value(config, "client.showErrorDetails") in {option.value for option in ShowErrorDetailsConfigOptions}
    assert _value(config, "client.showErrorDetails") in HIDES_DETAILS
    assert _value(config, "client.toolbarMode") in HIDES_DEVELOPER_MENU


def test_the_file_sets_nothing_else_and_leaves_streamlits_protections_on():
    config = _file()
    assert {f"{section}.{name}" for section, names in config.items() for name in names} == set(EXPECTED)
    assert all(_value(config, key) is None for key in KEPT_ON)


_READ_OPTIONS = """
import json, sys
from streamlit import config
print(json.dumps({key: config.get_option(key) for key in sys.argv[1:]}))
"""


def test_streamlit_reads_the_defaults_from_the_repository_root():
    """Streamlit parses the file (a misspelt key would fall back to its default) from the repository root, where
    `make run` and the tests' server start it."""
    keys = [*EXPECTED, *KEPT_ON]
    out = subprocess.run([sys.executable, "-c", _READ_OPTIONS, *keys], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    options = json.loads(out.stdout)
    assert {key: options[key] for key in EXPECTED} == EXPECTED
    assert all(options[key] is True for key in KEPT_ON)


@pytest.mark.parametrize("failure", [
    'raise RuntimeError("patient IX001-004 at /srv/data/cut.duckdb")',
    'import json\njson.loads("{patient IX001-004")',
    'd = {}\nd["patient IX001-004"]',
    'import streamlit as st\nst.number_input("x", min_value=10, value=1, key="patient IX001-004")',
])
def test_an_uncaught_error_under_apptest_shows_neither_its_message_nor_its_traceback(failure):
    """AppTest reads the same file (the page tests run from the repository root): what escapes a page shows
    Streamlit's generic line only."""
    at = AppTest.from_string(failure).run()
    assert len(at.exception) == 1
    shown = at.exception[0]
    assert "IX001-004" not in shown.message and "redacted" in shown.message
    assert list(shown.stack_trace) == []
    assert shown.proto.type == ""  # not even the exception's type


def _make_run(*variables: str) -> str:
    """The command `make run` would run (make -n prints it without running it)."""
    out = subprocess.run(["make", "--no-print-directory", "-n", "run", "DB=data/schema.sql", *variables], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)  # DB: a file that exists, so no demo build is planned
    return out.stdout.strip().splitlines()[-1]


def test_make_run_serves_this_machine_unless_told_otherwise():
    assert "--address 127.0.0.1 " in _make_run()
    assert "--address 0.0.0.0 " in _make_run("ADDRESS=0.0.0.0")
    assert "--address 192.0.2.7 " in _make_run("ADDRESS=192.0.2.7")
    assert "--port 8601" in _make_run("PORT=8601")
    assert _make_run().split()[:4] == [".venv/bin/python", "-m", "smc", "serve-demo"]
