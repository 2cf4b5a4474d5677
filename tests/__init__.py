"""The test suite by kind: unit/ (functions, modules, the command line), pages/ (AppTest runs of views/*.py
through app.py), browser/ (Playwright and Chromium). Helpers for every kind: helpers.py; fixtures: conftest.py;
test data kept in the repository: data/."""
