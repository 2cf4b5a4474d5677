"""Playwright and Chromium against the served app (marker ``browser``)."""
