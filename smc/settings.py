"""Every path, environment variable and limit of the app, in one place.

Each setting has a name that carries its unit (``_s``, ``_ms``, ``_mb``, ``_rows``, …), a default, a one-line
help and, where an operator may change it, the environment variable that overrides it.
``python -m smc settings`` prints them all with their current values.

Limits are read once, when this module is imported (as the server starts); paths are read on every call, so a
test or the bench can point the app at another data cut by setting ``SMC_DB``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smc import SettingError

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
QUERIES_DIR = ROOT / "queries"
SCHEMA_SQL = ROOT / "data" / "schema.sql"
APP_SCRIPT = ROOT / "app.py"
DEMO_DB = ROOT / "data" / "demo.duckdb"  # what build-demo writes without --cuts
DEMO_CUTS = ROOT / "data" / "cuts"  # the registry `make run` builds (three demo cuts) and serves


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any  # a value, or a function of no arguments for a default that depends on another setting
    help: str
    env: str | None = None

    def value(self) -> Any:
        default = self.default() if callable(self.default) else self.default
        raw = os.environ.get(self.env, "") if self.env else ""
        if raw == "":
            return default
        try:
            return type(default)(raw)
        except ValueError:
            kind = {int: "a whole number", float: "a number"}.get(type(default), type(default).__name__)
            raise SettingError(f"environment variable {self.env}={raw!r} is not {kind} (setting {self.name})") from None


def _default_import_dir() -> Path:
    return store_dir() / "imports"


SETTINGS: tuple[Setting, ...] = (
    # Paths
    Setting("cuts_dir", DEMO_CUTS, "the registry of data cuts the app serves: a folder of read-only DuckDB files "
            "with their manifests, and the committee's decision log, review marks and access log", "SMC_CUTS"),
    Setting("db_path", DEMO_DB, "one data cut file to serve instead of a registry (set: served alone, with its "
            "decision log beside it)", "SMC_DB"),
    Setting("cut_cache_entries", 4, "data cuts a server keeps open at once (the sidebar's cut and the one it is "
            "compared with, for a few sessions); the least recently used closes first"),
    Setting("import_dir", _default_import_dir, "where the Import page writes new databases (default: imports/ "
            "beside the served database)", "SMC_IMPORT_DIR"),
    Setting("chromium_path", Path("/usr/bin/chromium"), "the Chromium the browser tests and the bench drive",
            "CHROMIUM"),
    # SQL console (Explore page)
    Setting("console_time_limit_s", 5.0, "a console query is interrupted after this long",
            "SMC_CONSOLE_TIME_LIMIT_SECONDS"),
    Setting("console_row_cap_rows", 10_000, "the console shows at most this many rows of a result",
            "SMC_CONSOLE_ROW_CAP"),
    Setting("console_statement_max_chars", 20_000, "a longer console statement is refused before parsing"),
    Setting("console_memory_limit_mb", 512, "memory the console's own DuckDB may use (the served data is apart)",
            "SMC_CONSOLE_MEMORY_LIMIT_MB"),
    Setting("console_temp_limit_mb", 64, "disk the console's DuckDB may spill to"),
    Setting("console_threads", 1, "threads the console's DuckDB may use"),
    Setting("console_result_max_mb", 20, "a console result is fetched up to this many bytes (then truncated)"),
    Setting("console_concurrent_queries", 2, "console queries run at once on one server; the next is told to wait",
            "SMC_CONSOLE_CONCURRENT_QUERIES"),
    Setting("pivot_filter_choices_values", 200, "distinct values the pivot offers per filter column"),
    Setting("quick_chart_max_colours", 30, "a quick chart with more colour groups than this drops colour"),
    # Imports (CSV and SDTM): checked before anything is parsed
    Setting("upload_max_mb", 200, "largest file the Import page accepts (Streamlit's server.maxUploadSize)"),
    Setting("import_max_mb", 1_000, "largest set of files one import may read, all files together"),
    Setting("import_max_columns", 1_000, "a CSV or SAS transport file with more columns is refused"),
    Setting("import_max_rows", 10_000_000, "a file with more rows is refused"),
    Setting("mapping_max_chars", 200_000, "a longer SDTM mapping file is refused before parsing"),
    Setting("mapping_max_levels", 8, "an SDTM mapping nested deeper is refused before it is walked (the format "
            "nests four deep)"),
    # Sign-in and roles (the provider itself is configured in .streamlit/secrets.toml: docs/access.md)
    Setting("roles_file", ROOT / "config" / "roles.toml", "the provider's groups mapped to roles, and the studies "
            "each role may see", "SMC_ROLES_FILE"),
    Setting("auth_provider_section", "smc", "the [auth.<name>] section of secrets.toml that signs users in",
            "SMC_AUTH_PROVIDER"),
    Setting("auth_fresh_provider_section", "smcfresh", "the [auth.<name>] section that asks the provider for the password "
            "again (prompt = \"login\"): before a signature, and after a sign-in expired", "SMC_AUTH_FRESH_PROVIDER"),
    Setting("demo_idp_port", 9400, "the port `make run` starts the demo sign-in provider on (127.0.0.1 only)",
            "SMC_DEMO_IDP_PORT"),
    Setting("demo_secrets_file", ROOT / "data" / ".demo-secrets.toml", "the [auth] secrets `make run` writes for "
            "the demo provider (a fresh cookie secret each start)"),
    Setting("sign_in_max_age_s", 8 * 3600, "a sign-in older than this (the token's auth_time) must be renewed",
            "SMC_SIGN_IN_MAX_AGE_S"),
    Setting("signature_max_auth_age_s", 300, "a decision is signed only within this long of typing the password "
            "at the provider (auth_time)", "SMC_SIGNATURE_MAX_AUTH_AGE_S"),
    # Decision log
    Setting("decision_log_key_file", Path(".decision_log.key"),
            "the secret that keys the decision log's hash chain (HMAC-SHA-256); kept outside the log (default: "
            "this name beside the log, in the registry's folder)",
            "SMC_DECISION_LOG_KEY_FILE"),
    Setting("decision_log_busy_timeout_s", 30, "a writer waits this long for another process's append to finish"),
    Setting("decision_text_max_chars", 5_000, "longest rationale, attendee list or name a decision may hold"),
    # Caches shared by every session of one server
    Setting("loader_cache_entries", 8, "loaded data cuts kept per loader (study × as-of date × data cut file)"),
    Setting("loader_cache_ttl_s", 3_600, "a loaded result is dropped after this long"),
    Setting("shared_cache_entries", 48, "charts and summaries kept per builder, one per distinct input"),
    # Charts
    Setting("chart_page_lanes", 50, "lanes or bars per chart page: more make a smear at 2,000 subjects"),
    Setting("max_subject_lines", 200, "past this many subjects a line (or labelled bar) per subject becomes a "
            "per-level summary"),
    Setting("webgl_above_points", 1_500, "a trace with more marks is drawn with WebGL: SVG slows down past this"),
    # Bench
    Setting("bench_sessions", 5, "concurrent sessions the bench opens per page"),
)


def setting(name: str) -> Setting:
    for s in SETTINGS:
        if s.name == name:
            return s
    raise KeyError(f"no setting named {name!r}")


def current() -> dict[str, Any]:
    """Every setting by name with its value now (what ``python -m smc settings`` prints)."""
    return {s.name: s.value() for s in SETTINGS}


def db_path() -> Path:
    return setting("db_path").value()


def single_db() -> Path | None:
    """The one file SMC_DB names, served instead of the registry; None when unset."""
    return db_path() if os.environ.get("SMC_DB") else None


def cuts_dir() -> Path:
    return setting("cuts_dir").value()


def store_dir() -> Path:
    """The folder of what is written (decision log, review marks, access log, the log's key by default): the
    registry's, or the single file's."""
    single = single_db()
    return single.parent if single else cuts_dir()


def import_dir() -> Path:
    return setting("import_dir").value()


def decision_log_key_file(log: Path | None = None) -> Path:
    """The decision log's key: SMC_DECISION_LOG_KEY_FILE, else ``.decision_log.key`` beside ``log`` (the
    registry's or single file's log), else in :func:`store_dir`."""
    path = setting("decision_log_key_file").value()
    if path.is_absolute():
        return path
    return (log.parent if log is not None else store_dir()) / path


def roles_file() -> Path:
    return setting("roles_file").value()


def chromium_path() -> Path:
    return setting("chromium_path").value()


def _at_start(name: str) -> Any:
    return setting(name).value()


CUT_CACHE_ENTRIES: int = _at_start("cut_cache_entries")
CONSOLE_TIME_LIMIT_S: float = _at_start("console_time_limit_s")
CONSOLE_ROW_CAP_ROWS: int = _at_start("console_row_cap_rows")
CONSOLE_STATEMENT_MAX_CHARS: int = _at_start("console_statement_max_chars")
CONSOLE_MEMORY_LIMIT_MB: int = _at_start("console_memory_limit_mb")
CONSOLE_TEMP_LIMIT_MB: int = _at_start("console_temp_limit_mb")
CONSOLE_THREADS: int = _at_start("console_threads")
CONSOLE_RESULT_MAX_MB: int = _at_start("console_result_max_mb")
CONSOLE_CONCURRENT_QUERIES: int = _at_start("console_concurrent_queries")
UPLOAD_MAX_MB: int = _at_start("upload_max_mb")
IMPORT_MAX_MB: int = _at_start("import_max_mb")
IMPORT_MAX_COLUMNS: int = _at_start("import_max_columns")
IMPORT_MAX_ROWS: int = _at_start("import_max_rows")
MAPPING_MAX_CHARS: int = _at_start("mapping_max_chars")
MAPPING_MAX_LEVELS: int = _at_start("mapping_max_levels")
PIVOT_FILTER_CHOICES_VALUES: int = _at_start("pivot_filter_choices_values")
QUICK_CHART_MAX_COLOURS: int = _at_start("quick_chart_max_colours")
AUTH_PROVIDER: str = _at_start("auth_provider_section")
AUTH_FRESH_PROVIDER: str = _at_start("auth_fresh_provider_section")
SIGN_IN_MAX_AGE_S: int = _at_start("sign_in_max_age_s")
SIGNATURE_MAX_AUTH_AGE_S: int = _at_start("signature_max_auth_age_s")
DECISION_LOG_BUSY_TIMEOUT_S: int = _at_start("decision_log_busy_timeout_s")
DECISION_TEXT_MAX_CHARS: int = _at_start("decision_text_max_chars")
LOADER_CACHE_ENTRIES: int = _at_start("loader_cache_entries")
LOADER_CACHE_TTL_S: int = _at_start("loader_cache_ttl_s")
SHARED_CACHE_ENTRIES: int = _at_start("shared_cache_entries")
CHART_PAGE_LANES: int = _at_start("chart_page_lanes")
MAX_SUBJECT_LINES: int = _at_start("max_subject_lines")
WEBGL_ABOVE_POINTS: int = _at_start("webgl_above_points")
BENCH_SESSIONS: int = _at_start("bench_sessions")


def too_many_subjects(points: pd.DataFrame | pd.Series) -> bool:
    """Whether ``points`` (rows with a subject_id, or the ids) hold more than :data:`MAX_SUBJECT_LINES`
    subjects: a chart then draws a per-level summary instead of a line per subject. Here, below both the
    analyses and the charts, because both decide by it."""
    subjects = points["subject_id"] if hasattr(points, "columns") else points
    return subjects.nunique() > MAX_SUBJECT_LINES
