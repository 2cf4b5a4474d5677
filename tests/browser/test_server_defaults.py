"""The served app's defaults in a real browser and on the network: no Deploy button or developer menu, no
traceback or error details, the upload limit of the settings, and this machine only unless told otherwise."""
from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from smc import settings
from smc.tools import server as server_module
from tests.helpers import ROOT

pytestmark = pytest.mark.browser

SIDEBAR = '[data-testid="stSidebar"]'
EXCEPTION = '[data-testid="stException"]'
# What a traceback or a Python error detail looks like in a page's text.
TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', ".py\", line ", "site-packages")
# The main menu's developer items in Streamlit 1.67 ("developer" toolbar mode), and the Deploy button.
DEVELOPER_ITEMS = ("Rerun", "Auto rerun", "Clear cache", "Deploy", "Developer options")


def _menu_items(page) -> list[str]:
    page.locator('[data-testid="stMainMenu"]').click()
    menu = page.locator('[data-testid="stMainMenuList"]')
    menu.wait_for(timeout=10_000)
    return [line.strip() for line in menu.inner_text().splitlines() if line.strip()]


def _no_traceback(page) -> None:
    text = page.locator("body").inner_text()
    assert page.locator(EXCEPTION).count() == 0
    assert not [sign for sign in TRACEBACK_SIGNS if sign in text], text[:2000]


@pytest.mark.parametrize("path", ["", "escalation", "explore", "import"])
def test_no_deploy_button_nor_developer_options_in_the_menu(server, page, path):
    page.goto(f"{server}/{path}")
    page.wait_for_selector(SIDEBAR, timeout=60_000)
    page.wait_for_load_state("networkidle")
    assert page.locator('[data-testid="stAppDeployButton"]').count() == 0
    items = _menu_items(page)
    assert "Print" in items  # the viewer's items stay
    assert [item for item in items if item in DEVELOPER_ITEMS] == []
    page.keyboard.press("Escape")
    # Nor their keyboard shortcuts: C would open "Clear caches", R rerun.
    page.locator("body").press("c")
    page.wait_for_timeout(500)
    assert page.get_by_text("Clear caches").count() == 0
    assert page.get_by_role("dialog").count() == 0


def test_the_import_page_states_the_upload_limit_of_the_settings(server, page_as):
    page = page_as("admin")
    page.goto(f"{server}/import")
    page.get_by_role("heading", name="Import SDTM").wait_for(timeout=60_000)
    dropzones = page.locator('[data-testid="stFileUploaderDropzoneInstructions"]')
    dropzones.first.wait_for(timeout=30_000)
    assert all(f"{settings.UPLOAD_MAX_MB}MB per file" in text for text in dropzones.all_inner_texts())


# Failures a reader can provoke with a link or the console: each gets a message, never a traceback.
PROVOKED = {
    "date-before-any": "?study=IX001&as_of=1999-01-01",
    "date-not-a-date": "?study=IX001&as_of=2024-13-45",
    "date-far-future": "?study=IX001&as_of=9999-12-31",
    "unknown-study": "?study=%3Cscript%3Ealert(1)%3C/script%3E",
    "unknown-subject": "subject?study=IX001&subject=..%2F..%2Fetc%2Fpasswd",
    "unknown-page-view": "efficacy?study=IX001&efficacy_view=%00%FF",
}


@pytest.mark.parametrize("link", PROVOKED.values(), ids=PROVOKED.keys())
def test_a_crafted_link_shows_no_traceback(server, page, link):
    page.goto(f"{server}/{link}")
    page.wait_for_selector(SIDEBAR, timeout=60_000)
    page.wait_for_load_state("networkidle")
    _no_traceback(page)


@pytest.mark.parametrize("statement", [
    "SELECT * FROM no_such_table",
    "SELECT CAST('not a number' AS INTEGER)",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT (",
])
def test_a_failing_console_query_shows_a_message_and_no_traceback(server, page, statement):
    page.goto(f"{server}/explore?study=IX001")
    box = page.get_by_role("textbox", name="SQL")
    box.wait_for(timeout=60_000)
    box.fill(statement)
    box.press("Control+Enter")  # commits the text before the click
    page.get_by_role("button", name="Run").click()
    page.wait_for_selector('[data-testid="stAlertContentError"], [data-testid="stAlertContentWarning"]',
                           timeout=30_000)
    _no_traceback(page)


# An error that escapes every message of the app: Streamlit shows it as configured (client.showErrorDetails).
UNCAUGHT = """
import json
import streamlit as st


def runtime():
    raise RuntimeError("patient IX001-004 at /srv/data/cut.duckdb")


def key():
    return {}["patient IX001-004"]


def json_text():
    return json.loads("{patient IX001-004")


def streamlit_call():
    st.number_input("x", min_value=10, value=1, key="patient IX001-004")


{"runtime": runtime, "key": key, "json": json_text, "streamlit": streamlit_call}[st.query_params.get("failure")]()
"""


@pytest.fixture(scope="module")
def failing_server(demo_db, tmp_path_factory):
    """A script that fails on purpose, served from the repository root as the app is (its config applies)."""
    script = tmp_path_factory.mktemp("failing") / "failing.py"
    script.write_text(UNCAUGHT)
    try:
        with server_module.serve(demo_db, script=script) as (url, _):
            yield url
    except server_module.ServerFailed as failed:
        pytest.fail(str(failed))


@pytest.mark.parametrize("failure", ["runtime", "key", "json", "streamlit"])
def test_an_uncaught_error_shows_neither_its_message_nor_its_type_nor_a_traceback(failing_server, page, failure):
    page.goto(f"{failing_server}/?failure={failure}")
    shown = page.locator(EXCEPTION)
    shown.wait_for(timeout=60_000)
    text = page.locator("body").inner_text()
    assert "redacted" in shown.inner_text()
    assert "IX001-004" not in text and "/srv/data" not in text
    assert not [name for name in ("RuntimeError", "KeyError", "JSONDecodeError", "StreamlitAPIException",
                                  "StreamlitValueBelowMinError") if name in text]
    assert not [sign for sign in TRACEBACK_SIGNS if sign in text]


# --------------------------------------------------------------------------- where the server listens


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _other_address() -> str | None:
    """An address of this machine that is not a loopback one: the source address of a route out (nothing is
    sent), or None when there is none."""
    for target in ("10.255.255.254", "203.0.113.1"):  # unicast addresses nobody answers (RFC 1918, RFC 5737)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.connect((target, 9))
            except OSError:
                continue
            address = s.getsockname()[0]
        if not ipaddress.ip_address(address).is_loopback and address != "0.0.0.0":
            return address
    return None


def _listening(port: int) -> set[str]:
    """The local addresses listening on ``port``, from /proc/net/tcp and tcp6 (state 0A: LISTEN)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # each 32-bit word is host-order
            found.add(str(ipaddress.ip_address(words)))
    return found


def _answers(address: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/_stcore/health", timeout=3) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _started(command: list[str], cwd: Path, port: int, log: Path, env: dict | None = None):
    """A server started by ``command`` (in a session of its own, so make and its child end together), once it
    answers on 127.0.0.1 or ``env``'s address."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=dict(os.environ, **(env or {})), stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not _listening(port):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.3)
        time.sleep(0.5)  # every socket of the server is open
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


@pytest.fixture()
def other_address():
    address = _other_address()
    if address is None:
        pytest.skip("this machine has no address but loopback")
    return address


def _make_is_ready() -> None:
    if subprocess.run(["make", "-q", ".venv/.runtime"], cwd=ROOT).returncode != 0:
        pytest.skip("make run would install packages first (.venv/.runtime is out of date)")


@pytest.mark.parametrize("address", [None, "0.0.0.0"], ids=["default", "ADDRESS=0.0.0.0"])
def test_make_run_listens_on_this_machine_only_unless_told(demo_db, tmp_path, other_address, address):
    _make_is_ready()
    port = _free_port()
    command = ["make", "run", f"PORT={port}", f"DB={demo_db}"] + ([f"ADDRESS={address}"] if address else [])
    with _started(command, ROOT, port, tmp_path / "server.log", env={"SMC_DB": str(demo_db)}):
        listening = _listening(port)
        assert _answers("127.0.0.1", port)
        if address is None:
            assert listening == {"127.0.0.1"}
            assert not _answers(other_address, port)
        else:
            assert listening == {"0.0.0.0"}
            assert _answers(other_address, port)  # the check above can tell a reachable server


def test_streamlit_run_without_flags_from_another_folder_still_listens_on_this_machine_only(demo_db, tmp_path,
                                                                                          other_address):
    """`streamlit run /path/to/app.py` started by hand elsewhere: the config beside app.py still applies."""
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(settings.APP_SCRIPT), "--server.port", str(port)]
    with _started(command, tmp_path, port, tmp_path / "server.log", env={"SMC_DB": str(demo_db)}):
        assert _listening(port) == {"127.0.0.1"}
        assert _answers("127.0.0.1", port)
        assert not _answers(other_address, port)
