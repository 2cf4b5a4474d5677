"""Helpers the test modules share: paths, the demo studies, the app run through AppTest, the command line, the served app, and
independent SQL readings of the contract tables that both a page test and a report test compare with.

Plain functions and constants only; fixtures live in conftest.py (tests/conftest.py for all kinds, tests/pages/
conftest.py and tests/browser/conftest.py for one kind). No test module imports another test module.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import secrets
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta
from streamlit.testing.v1 import AppTest

from smc.tools import demo_sign_in
from smc.tools import server as server_module

ROOT = Path(__file__).resolve().parent.parent  # the repository
DATA = ROOT / "tests" / "data"  # test data kept in the repository
STUDIES = ("IDOV-SAFE", "BIOTTT001", "IX001")


# --------------------------------------------------------------------------- the demo database and studies


def data_cut(sql, study_id: str):
    return sql("SELECT data_cut_date FROM studies WHERE study_id = ?", study_id)[0][0]


def as_of_dates(sql, study_id: str) -> list:
    """The data cut, a date mid-escalation, and a date before anyone was enrolled."""
    first, cut = sql("SELECT min(enrollment_date), any_value(st.data_cut_date) FROM subjects s "
                     "JOIN studies st USING (study_id) WHERE study_id = ?", study_id)[0]
    return [cut, first + (cut - first) / 2, first - (cut - first) / 20]


def one_study_db(path: Path, **tables: list[dict]):
    """A database of study S1 (3+3, agent VIRUS, 28-day DLT window, levels 1-3, cut 2025-03-15)
    plus the given tables as lists of row dicts (``studies`` or ``dose_levels`` replace the defaults);
    returns (Database, Study of S1)."""
    from smc.ingest.load import as_text, import_tables
    from smc.store.db import Database
    from smc.store.study import load_study
    tables = dict(
        studies=[dict(study_id="S1", design="3+3", agent="VIRUS", dlt_window_days=28, data_cut_date="2025-03-15")],
        dose_levels=[dict(study_id="S1", level=lv, label=f"1e{7 + lv} PFU") for lv in (1, 2, 3)]) | tables
    import_tables({name: as_text(pd.DataFrame(rows)) for name, rows in tables.items()}, path, "test")
    db = Database(path)
    return db, load_study(db, "S1")


# --------------------------------------------------------------------------- the app and the command line


TEST_ISSUER = "https://idp.test"
TEST_COOKIE_SECRET = secrets.token_urlsafe(32)  # AppTest signs in by claims; the browser tests sign in at the real provider


def demo_users() -> dict[str, dict]:
    """The demo provider's users (dev/idp/users.toml) by user name."""
    return {u["username"]: u for u in tomllib.loads((ROOT / "dev" / "idp" / "users.toml").read_text())["users"]}


def claims(username: str = "chair", signed_in_s_ago: float = 60, **extra) -> dict:
    """``st.user`` as the provider's ID token gives it for a demo user, signed in ``signed_in_s_ago`` seconds ago."""
    user = demo_users()[username]
    return {"is_logged_in": True, "iss": TEST_ISSUER, "sub": user["username"], "name": user["name"],
            "email": user["email"], "groups": user["groups"], "sites": user.get("sites", []),
            "auth_time": int(time.time() - signed_in_s_ago), **extra}


def signer(username: str = "chair", **change):
    """A demo user's identity as the ledger takes it from a sign-in a minute ago (``change``: other fields)."""
    from smc.access.identity import Identity, from_claims, load_roles
    who = from_claims(claims(username), load_roles(ROOT / "config" / "roles.toml"))
    return Identity(**{**who.__dict__, **change})


def app_test(user: str | dict | None = "chair", timeout: float = 60) -> AppTest:
    """The app under AppTest, signed in as a demo user (a name), with given claims (a dict), or not (None)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.user = {"is_logged_in": False} if user is None else claims(user) if isinstance(user, str) else user
    return at


def run_app(study_id: str, as_of: dt.date, page: str | None = None, user: str | dict | None = "chair",
            **query: str) -> AppTest:
    """The app opened by a link ``?study=…&as_of=…`` (plus ``query``) as ``user``, then switched to ``page``."""
    at = app_test(user)
    at.query_params.update({"study": study_id, "as_of": as_of.isoformat(), **query})
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A plotly array from the chart spec: a plain list, or {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict):
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = value.get("shape")
        return data.reshape([int(n) for n in str(shape).split(",")]) if shape else data
    return np.array(value, dtype=float)


def smc_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smc", *args], cwd=ROOT, capture_output=True, text=True)


# --------------------------------------------------------------------------- overview and escalation


def enrolled_per_level(sql, study_id, as_of, phase=None):
    rows = sql("SELECT dose_level, count(*) FROM subjects WHERE study_id = ? AND enrollment_date <= ? "
               "AND (? IS NULL OR phase = ?) GROUP BY 1", study_id, as_of, phase, phase)
    return dict(rows)


def in_window_dlt_subjects(sql, study_id, as_of):
    """Escalation subjects with an adjudicated DLT inside [first dose, +window) known by as_of, per level."""
    return dict(sql("""
        WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
                    JOIN studies s ON s.study_id = a.study_id AND a.agent = s.agent
                    WHERE a.study_id = $1 AND a.admin_date <= $2 GROUP BY 1)
        SELECT sub.dose_level, count(DISTINCT sub.subject_id)
        FROM subjects sub JOIN fd USING (subject_id) JOIN adverse_events ae USING (study_id, subject_id)
        JOIN studies st USING (study_id)
        WHERE sub.study_id = $1 AND sub.phase = 'escalation' AND ae.dlt = 'Y' AND ae.onset_date <= $2
          AND ae.onset_date >= fd.d AND ae.onset_date < fd.d + st.dlt_window_days
        GROUP BY 1""", study_id, as_of))


# --------------------------------------------------------------------------- biomarkers

# Results of dosed subjects by $2, with hours from the agent's first dose at its clock time and the
# agent's second dose time (the end of the first-dose profile).
RESULTS_SQL = """
WITH agent_doses AS (
    SELECT a.subject_id, a.admin_date + CAST(a.admin_time AS TIME) AS given_at,
           row_number() OVER (PARTITION BY a.subject_id ORDER BY a.admin_date, a.admin_time) AS nth
    FROM administrations a JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
    WHERE a.study_id = $1 AND a.admin_date <= $2),
results AS (
    SELECT l.*, s.dose_level, d1.given_at AS t0, d2.given_at AS t1,
           epoch(l.collected_at - d1.given_at) / 3600 AS hours
    FROM lab_results l JOIN subjects s USING (study_id, subject_id)
    JOIN agent_doses d1 ON d1.subject_id = l.subject_id AND d1.nth = 1
    LEFT JOIN agent_doses d2 ON d2.subject_id = l.subject_id AND d2.nth = 2
    WHERE l.study_id = $1 AND l.collected_at::DATE <= $2 AND s.enrollment_date <= $2
      AND l.category IN ('pk', 'virology', 't_cell', 'cytokine', 'immunogenicity')
      AND (l.value IS NOT NULL OR l.lloq IS NOT NULL))
"""


def cmax_by_subject(sql, study_id, as_of) -> dict[tuple, float]:
    """{(subject, test, specimen): Cmax} over the first-dose profile of PK-like tests."""
    rows = sql(RESULTS_SQL + "SELECT subject_id, test, specimen, max(value) FROM results WHERE category = 'pk' "
               "AND hours >= 0 AND (t1 IS NULL OR collected_at <= t1) GROUP BY ALL HAVING max(value) > 0",
               study_id, as_of)
    return {(s, t, sp): v for s, t, sp, v in rows}


def shedding_counts(sql, study_id, as_of) -> dict[tuple, tuple[int, int]]:
    """{(specimen, level): (subjects tested after dosing, subjects with detectable virus)}."""
    rows = sql(RESULTS_SQL + "SELECT specimen, dose_level, count(DISTINCT subject_id), "
               "count(DISTINCT subject_id) FILTER (WHERE value > 0) FROM results "
               "WHERE category = 'virology' AND hours > 0 GROUP BY ALL", study_id, as_of)
    return {(sp, lv): (n, d) for sp, lv, n, d in rows}


# --------------------------------------------------------------------------- efficacy (RECIST 1.1)

# Per subject dosed with the agent by $2: level label, whether it has a baseline scan, its BOR and best
# % change. BOR: confirmed CR, else confirmed PR, else SD (CR/PR/SD on or after day min_sd_days), else PD,
# else NE; only time points up to the first PD count.
BOR_SQL = """
WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
            JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
            WHERE a.study_id = $1 AND a.admin_date <= $2 GROUP BY 1),
dosed AS (SELECT s.subject_id, dl.label, fd.d FROM subjects s JOIN fd USING (subject_id)
          JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
          WHERE s.study_id = $1 AND s.enrollment_date <= $2),
ta AS (SELECT t.subject_id, t.assessment_date AS day_date, coalesce(t.overall_response, 'NE') AS r,
              t.target_sum_mm AS mm, dosed.d
       FROM tumor_assessments t JOIN dosed USING (subject_id)
       WHERE t.study_id = $1 AND t.assessment_date <= $2),
base AS (SELECT DISTINCT ON (subject_id) subject_id, day_date AS bdate, mm AS bmm FROM ta WHERE day_date <= d
         ORDER BY subject_id, day_date DESC),
post AS (SELECT ta.*, base.bmm FROM ta JOIN base USING (subject_id) WHERE ta.day_date > base.bdate),
first_pd AS (SELECT subject_id, min(day_date) AS pd_date FROM post WHERE r = 'PD' GROUP BY 1),
counted AS (SELECT post.* FROM post LEFT JOIN first_pd USING (subject_id)
            WHERE pd_date IS NULL OR day_date <= pd_date),
cr AS (SELECT DISTINCT a.subject_id FROM counted a JOIN counted b USING (subject_id)
       WHERE a.r = 'CR' AND b.r = 'CR' AND b.day_date - a.day_date >= 28
         AND NOT EXISTS (SELECT 1 FROM counted c WHERE c.subject_id = a.subject_id
                         AND c.day_date > a.day_date AND c.day_date < b.day_date AND c.r NOT IN ('CR', 'NE'))),
pr AS (SELECT DISTINCT a.subject_id FROM counted a JOIN counted b USING (subject_id)
       WHERE a.r IN ('CR', 'PR') AND b.r IN ('CR', 'PR') AND b.day_date - a.day_date >= 28
         AND NOT EXISTS (SELECT 1 FROM counted c WHERE c.subject_id = a.subject_id AND c.day_date > a.day_date
                         AND c.day_date < b.day_date AND c.r NOT IN ('CR', 'PR', 'NE'))),
sd AS (SELECT DISTINCT subject_id FROM counted, studies st
       WHERE st.study_id = $1 AND r IN ('CR', 'PR', 'SD') AND day_date - d >= coalesce(st.min_sd_days, 42))
SELECT dosed.subject_id, dosed.label, base.subject_id IS NOT NULL AS evaluable,
       CASE WHEN cr.subject_id IS NOT NULL THEN 'CR' WHEN pr.subject_id IS NOT NULL THEN 'PR'
            WHEN sd.subject_id IS NOT NULL THEN 'SD' WHEN first_pd.subject_id IS NOT NULL THEN 'PD'
            ELSE 'NE' END AS bor,
       (SELECT min((mm - bmm) / bmm * 100) FROM post WHERE post.subject_id = dosed.subject_id) AS best_pct
FROM dosed LEFT JOIN base USING (subject_id) LEFT JOIN cr USING (subject_id) LEFT JOIN pr USING (subject_id)
LEFT JOIN sd USING (subject_id) LEFT JOIN first_pd USING (subject_id)
"""


def expected_subjects(sql, study_id, as_of) -> dict[str, tuple]:
    return {subject: (label, evaluable, bor, best) for subject, label, evaluable, bor, best
            in sql(BOR_SQL, study_id, as_of)}


def expected_counts(subjects: dict) -> dict[str, dict[str, int]]:
    """{label or 'Total': {n, CR, PR, SD, PD, NE}} over evaluable subjects."""
    counts: dict[str, dict[str, int]] = {}
    for label, evaluable, bor, _ in subjects.values():
        if evaluable:
            for key in (label, "Total"):
                row = counts.setdefault(key, dict.fromkeys(["n", "CR", "PR", "SD", "PD", "NE"], 0))
                row["n"] += 1
                row[bor] += 1
    return counts


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    return (0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)), (1.0 if k == n else beta.ppf(0.975, k + 1, n - k))


# --------------------------------------------------------------------------- survival

DOSED = """
WITH fd AS (SELECT a.subject_id, min(a.admin_date) AS d FROM administrations a
            JOIN studies st ON st.study_id = a.study_id AND st.agent = a.agent
            WHERE a.study_id = $1 AND a.admin_date <= $2 GROUP BY 1),
dosed AS (SELECT s.subject_id, s.phase, dl.label, fd.d,
                 CASE WHEN s.death_date <= $2 THEN s.death_date END AS death
          FROM subjects s JOIN fd USING (subject_id)
          JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
          WHERE s.study_id = $1 AND s.enrollment_date <= $2)
"""

# OS: death by the as-of date, else the last contact date if known by then, else the latest dated record.
OS_SQL = DOSED + """,
records AS (SELECT subject_id, admin_date AS r FROM administrations WHERE study_id = $1
            UNION ALL SELECT subject_id, end_date FROM administrations WHERE study_id = $1
            UNION ALL SELECT subject_id, assessment_date FROM tumor_assessments WHERE study_id = $1
            UNION ALL SELECT subject_id, collected_at::DATE FROM lab_results WHERE study_id = $1
            UNION ALL SELECT subject_id, onset_date FROM adverse_events WHERE study_id = $1
            UNION ALL SELECT subject_id, end_date FROM adverse_events WHERE study_id = $1)
SELECT dosed.subject_id, label, dosed.phase,
       coalesce(death, CASE WHEN s.last_contact_date <= $2 THEN s.last_contact_date END,
                (SELECT max(r) FROM records WHERE records.subject_id = dosed.subject_id AND r <= $2)) - d,
       death IS NOT NULL
FROM dosed JOIN subjects s ON s.study_id = $1 AND s.subject_id = dosed.subject_id
"""

# PFS: the first PD time point after the first dose or death, whichever first; else censored at the last scan
# after the first dose, or day 0 without one.
PFS_SQL = DOSED + """,
scans AS (SELECT t.subject_id, t.assessment_date, t.overall_response FROM tumor_assessments t
          JOIN dosed USING (subject_id) WHERE t.study_id = $1 AND t.assessment_date <= $2
          AND t.assessment_date > dosed.d),
first_pd AS (SELECT subject_id, min(assessment_date) AS pd FROM scans WHERE overall_response = 'PD' GROUP BY 1),
last_scan AS (SELECT subject_id, max(assessment_date) AS l FROM scans GROUP BY 1)
SELECT subject_id, label, phase, coalesce(least(pd, death), l, d) - d, least(pd, death) IS NOT NULL
FROM dosed LEFT JOIN first_pd USING (subject_id) LEFT JOIN last_scan USING (subject_id)
"""


def expected_times(sql, endpoint: str, study_id: str, as_of: dt.date) -> dict[str, tuple]:
    """{subject_id: (level label, phase, days, event)}."""
    return {s: (label, phase, days, event)
            for s, label, phase, days, event in sql({"os": OS_SQL, "pfs": PFS_SQL}[endpoint], study_id, as_of)}


def km_median(times: list[tuple[int, bool]]) -> int | None:
    """Product-limit estimate, stepped by hand: the first event time where S(t) <= 0.5."""
    surviving = 1.0
    for t in sorted({d for d, event in times if event}):
        at_risk = sum(1 for d, _ in times if d >= t)
        deaths = sum(1 for d, event in times if d == t and event)
        surviving *= 1 - deaths / at_risk
        if surviving <= 0.5:
            return t
    return None


def by_group(expected: dict[str, tuple], index: int) -> dict[str, list[tuple[int, bool]]]:
    groups: dict[str, list] = {}
    for row in expected.values():
        groups.setdefault(row[index], []).append((row[2], row[3]))
    return groups


# --------------------------------------------------------------------------- enrollment

COUNTS_SQL = """
SELECT count(*) FILTER (WHERE coalesce(screening_date, enrollment_date) <= $2),
       count(*) FILTER (WHERE enrollment_date IS NULL AND screening_date <= $2),
       count(*) FILTER (WHERE enrollment_date <= $2),
       count(*) FILTER (WHERE enrollment_date <= $2 AND EXISTS (
           SELECT 1 FROM administrations a WHERE a.study_id = s.study_id AND a.subject_id = s.subject_id
           AND a.admin_date <= $2))
FROM subjects s WHERE study_id = $1
"""


@contextlib.contextmanager
def served_app(db_path, issuer: str | None = None, **env: str):
    """The app served on a free port for the database at ``db_path``, signing in at the provider ``issuer``, with
    more settings as environment ``env``; a server that does not start fails the test with its log. Every test
    server has the same cookie secret, so one sign-in holds on each (as on replicas behind a load balancer)."""
    try:
        with server_module.serve(db_path, issuer=issuer, cookie_secret=TEST_COOKIE_SECRET, env=env) as (url, _):
            yield url
    except server_module.ServerFailed as failed:
        pytest.fail(str(failed))


def sign_in(page, url: str, username: str) -> None:
    """Sign in at ``url`` as a demo user through the provider's own login form, as a person does."""
    demo_sign_in.sign_in(page, url, username)


def signed_in_state(browser, url: str, username: str) -> dict:
    """The browser state (cookies) of a demo user signed in at the server ``url`` through the provider's form:
    Streamlit ties its sign-in cookie to the server's origin, so a test with a server of its own signs in there."""
    context = browser.new_context()
    try:
        sign_in(context.new_page(), url, username)
        return context.storage_state()
    finally:
        context.close()


def type_password(page, username: str, password: str | None = None) -> None:
    """Fill in and send the provider's login form (the page is on its way there): it is the provider's own."""
    page.wait_for_selector("#username", timeout=30_000)
    assert page.title() == "SMC demo sign-in"
    demo_sign_in.type_password(page, username, password)
