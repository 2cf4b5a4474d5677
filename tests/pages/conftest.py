"""Fixtures of the AppTest page tests: the app reads the session's demo database."""
from __future__ import annotations

import pytest


@pytest.fixture()
def app_env(demo_db, monkeypatch):
    monkeypatch.setenv("SMC_DB", str(demo_db))
    return demo_db


@pytest.fixture()
def cuts_env(demo_cuts, monkeypatch):
    """The app serves the demo registry (three cuts) instead of one file."""
    monkeypatch.delenv("SMC_DB", raising=False)
    monkeypatch.setenv("SMC_CUTS", str(demo_cuts))
    return demo_cuts
