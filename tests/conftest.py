"""Fixtures for every kind of test: one demo database per test session, and SQL on it.

Page-only fixtures are in pages/conftest.py, browser-only ones in browser/conftest.py; plain helpers in helpers.py.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import duckdb
import pytest

from smc.demo.build import build_demo, build_demo_cuts
from smc.store.db import READ_ONLY_CONFIG

_KEY_FOLDER = tempfile.TemporaryDirectory(prefix="smc-test-key-")


def pytest_configure(config):
    # The decision log's key defaults to one beside the served database (data/): tests, the servers and CLI
    # processes they start sign with a key of their own, never the installation's.
    os.environ.setdefault("SMC_DECISION_LOG_KEY_FILE", str(Path(_KEY_FOLDER.name) / "decision_log.key"))


@pytest.fixture(scope="session")
def demo_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    build_demo(path, seed=2024)
    return path


@pytest.fixture(scope="session")
def demo_cuts(tmp_path_factory) -> Path:
    """A registry folder holding the demo's three successive cuts and the simulated SMC's decisions on each
    (tests that write marks or decisions copy it first: it is shared by the session)."""
    folder = tmp_path_factory.mktemp("cuts") / "registry"
    build_demo_cuts(folder, seed=2024)
    return folder


@pytest.fixture(scope="session")
def sql(demo_db):
    """Run SQL on the demo database (an independent path to the numbers pages show)."""
    # Same configuration as the app: DuckDB refuses two configurations for one file in a process.
    con = duckdb.connect(str(demo_db), read_only=True, config=READ_ONLY_CONFIG)

    def run(text: str, *params):
        return con.execute(text, list(params)).fetchall()

    yield run
    con.close()
