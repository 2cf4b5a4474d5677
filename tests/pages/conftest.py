"""Fixtures of the AppTest page tests: the app reads the session's demo database."""
from __future__ import annotations

import pytest


@pytest.fixture()
def app_env(demo_db, monkeypatch):
    monkeypatch.setenv("SMC_DB", str(demo_db))
    return demo_db
