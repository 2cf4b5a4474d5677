"""smc.settings: every path, environment variable and limit in one place, each named with its unit, printed by
``python -m smc settings``; an environment variable that does not parse is refused in words."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from smc import settings
from tests.helpers import ROOT

UNITS = ("_path", "_dir", "_file", "_s", "_ms", "_mb", "_rows", "_columns", "_chars", "_values", "_colours",
         "_entries", "_lanes", "_levels", "_lines", "_points", "_sessions", "_queries", "_threads",
         "_port", "_section")


def settings_cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smc", "settings", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **env})


def test_every_setting_names_its_unit_and_has_a_help_line():
    for s in settings.SETTINGS:
        assert s.name.endswith(UNITS), s.name
        assert s.help and "\n" not in s.help, s.name
    assert len({s.name for s in settings.SETTINGS}) == len(settings.SETTINGS)
    assert len({s.env for s in settings.SETTINGS if s.env}) == sum(1 for s in settings.SETTINGS if s.env)


def test_settings_command_prints_current_values_with_environment_overrides(tmp_path):
    db = tmp_path / "cut.duckdb"
    done = settings_cli("--json", SMC_DB=str(db), SMC_CONSOLE_ROW_CAP="42", SMC_CONSOLE_TIME_LIMIT_SECONDS="2.5")
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)
    assert set(values) == {s.name for s in settings.SETTINGS}
    assert values["db_path"] == str(db)
    assert values["import_dir"] == str(tmp_path / "imports")  # beside the served database unless set
    assert values["console_row_cap_rows"] == 42 and values["console_time_limit_s"] == 2.5


def test_settings_command_text_names_each_environment_variable():
    done = settings_cli()
    assert done.returncode == 0, done.stderr
    for s in settings.SETTINGS:
        assert s.name in done.stdout and s.help in done.stdout
        if s.env:
            assert f"[{s.env}]" in done.stdout


def test_an_unparsable_environment_variable_is_refused_in_words_not_a_traceback():
    for variable, value in [("SMC_CONSOLE_ROW_CAP", "abc"), ("SMC_CONSOLE_ROW_CAP", "1.5"),
                            ("SMC_CONSOLE_TIME_LIMIT_SECONDS", "five"), ("SMC_CONSOLE_TIME_LIMIT_SECONDS", "5s")]:
        for command in (["settings"], ["report", "--study", "IX001"]):
            done = subprocess.run([sys.executable, "-m", "smc", *command], cwd=ROOT, capture_output=True, text=True,
                                  env={**os.environ, variable: value})
            assert done.returncode != 0
            assert "Traceback" not in done.stderr, done.stderr
            assert variable in done.stderr and repr(value) in done.stderr, done.stderr


def test_environment_is_read_only_in_settings():
    """No module reads an environment variable on its own: smc.settings is the one place."""
    for path in (ROOT / "smc").rglob("*.py"):
        if path.name == "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = ast.unparse(node.func)
                assert target not in ("os.environ.get", "os.getenv"), f"{path}: {target}"
            if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ" \
                    and isinstance(node.ctx, ast.Load):
                raise AssertionError(f"{path}: reads os.environ[...]")


def test_the_app_shows_a_misconfiguration_in_words():
    """The app reads its settings as it starts: a bad value is a message on the page, not a traceback. In a fresh
    interpreter, since this one imported smc.settings with the test environment."""
    script = ("from streamlit.testing.v1 import AppTest\n"
              "at = AppTest.from_file('app.py', default_timeout=60).run()\n"
              "print(len(at.exception), '|', ' '.join(e.value for e in at.error), '|', ' '.join(c.value for c in at.code))")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "SMC_CONSOLE_ROW_CAP": "<b>ten</b>"})
    assert done.returncode == 0, done.stderr
    exceptions, errors, code = done.stdout.strip().splitlines()[-1].split(" | ")
    assert exceptions == "0"
    assert "misconfigured" in errors
    assert "SMC_CONSOLE_ROW_CAP" in code and "'<b>ten</b>'" in code and "console_row_cap_rows" in code


def test_every_setting_is_in_the_cli_reference():
    """docs/cli.md lists each setting with its environment variable: an operator reads the limits there."""
    reference = (ROOT / "docs" / "cli.md").read_text()
    for s in settings.SETTINGS:
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{s.name}` |")), None)
        assert row is not None, s.name
        assert s.help in row and (f"`{s.env}`" in row if s.env else True), row
