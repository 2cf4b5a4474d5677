"""AppTest: subject-level views follow the viewer's subject scope. An investigator sees the subjects of their own
sites (dev/idp/users.toml) on every listing, swimlane, per-subject chart mark and profile, and the study's
aggregates unchanged; a sponsor sees no subject of any study; the SMC chair still sees every site's subjects. A
shareable link to another site's subject is a logged "No access" that names nothing of it."""
from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator

import pytest
from google.protobuf.json_format import MessageToDict
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Dataframe, Table

from smc.access import audit, permissions
from smc.ui import pages
from tests.helpers import (
    STUDIES,
    app_test,
    as_of_dates,
    data_cut,
    demo_users,
    enrolled_per_level,
    in_window_dlt_subjects,
    run_app,
)

ROLES = {"chair": permissions.SMC_CHAIR, "investigator": permissions.INVESTIGATOR, "sponsor": permissions.SPONSOR}
LAZY_TABS = {"efficacy": "efficacy_view", "biomarkers": "biomarkers_view"}  # pages drawing only the open tab
SKIPPED = ("explore", "import")  # gated whole-page by role: whole-study roles only
TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # a subject id is one token (letters, digits, hyphens)

# Treatment-emergent AEs (onset on or after the first dose of any study treatment) and dosed subjects, per level.
TEAE_SUBJECTS_SQL = """
    WITH fd AS (SELECT subject_id, min(admin_date) AS d FROM administrations
                WHERE study_id = $1 AND admin_date <= $2 GROUP BY 1)
    SELECT dl.label, count(DISTINCT ae.subject_id)
    FROM adverse_events ae JOIN subjects s USING (study_id, subject_id) JOIN fd USING (subject_id)
    JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
    WHERE ae.study_id = $1 AND ae.onset_date <= $2 AND ae.onset_date >= fd.d AND s.enrollment_date <= $2
    GROUP BY 1"""
DOSED_SQL = """
    SELECT dl.label, count(DISTINCT s.subject_id) FROM subjects s
    JOIN dose_levels dl ON dl.study_id = s.study_id AND dl.level = s.dose_level
    WHERE s.study_id = $1 AND s.enrollment_date <= $2 AND EXISTS (
        SELECT 1 FROM administrations a WHERE a.study_id = s.study_id AND a.subject_id = s.subject_id
        AND a.admin_date <= $2)
    GROUP BY 1"""


def investigator_sites() -> list[str]:
    return list(demo_users()["investigator"]["sites"])


def study_subjects(sql, study_id: str) -> set[str]:
    return {s for (s,) in sql("SELECT subject_id FROM subjects WHERE study_id = ?", study_id)}


def site_subjects(sql, study_id: str, sites: list[str], enrolled_by=None) -> set[str]:
    """The study's subjects at ``sites`` (enrolled by ``enrolled_by`` when given)."""
    if not sites:
        return set()
    marks = ", ".join("?" for _ in sites)
    rows = sql(f"SELECT subject_id FROM subjects WHERE study_id = ? AND site_id IN ({marks}) "
               "AND (? IS NULL OR enrollment_date <= ?)", study_id, *sites, enrolled_by, enrolled_by)
    return {s for (s,) in rows}


def enrolled(sql, study_id: str, as_of) -> set[str]:
    return {s for (s,) in sql("SELECT subject_id FROM subjects WHERE study_id = ? AND enrollment_date <= ?",
                              study_id, as_of)}


def _strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def page_text(at: AppTest) -> Iterator[str]:
    """Every text the page sent: each dataframe's cells, columns and index, each plotly spec (customdata, tick
    text, hover text, text, names), and every other element's fields (labels, options, Markdown, captions)."""
    for root in (at.main, at.sidebar):
        for node in root:
            if isinstance(node, Dataframe | Table):
                frame = node.value
                yield from map(str, frame.columns)
                yield from map(str, frame.index)
                yield from (str(cell) for cell in frame.to_numpy().ravel())
            elif node.type == "plotly_chart":
                yield from _strings(json.loads(node.proto.spec))
            elif node.proto is not None:
                yield from _strings(MessageToDict(node.proto))


def subjects_shown(at: AppTest, subjects: set[str]) -> set[str]:
    """Which of ``subjects`` the page names anywhere."""
    tokens = set()
    for text in page_text(at):
        tokens.update(TOKEN.findall(html.unescape(text).replace("\u2060", "")))
    return tokens & subjects


def page_runs(study_id: str, as_of, user: str) -> Iterator[tuple[str, AppTest]]:
    """(page, AppTest) for every page ``user`` may open (but Explore and Import) and every tab of a page that
    draws only its open tab, the page's elements read before the next is drawn."""
    role = ROLES[user]
    at = run_app(study_id, as_of, user=user)  # the default page: overview
    yield "overview", at
    lazy: dict[str, list[str]] = {}
    for key in permissions.PAGE_KEYS:
        if key == "overview" or key in SKIPPED or not permissions.may_open(role, key):
            continue
        at.switch_page(pages.script(key)).run()
        assert not at.exception, [e.message for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        yield key, at
        if key in LAZY_TABS:
            lazy[key] = [tab.label for tab in at.tabs][1:]  # the first is open and was just read
    for key, labels in lazy.items():
        for label in labels:
            yield f"{key} · {label}", run_app(study_id, as_of, pages.script(key), user=user,
                                             **{LAZY_TABS[key]: label})


def percent_text(n: int, total: int) -> str:
    return f"{n} ({100 * n / total:.0f}%)" if total else str(n)


def assert_aggregates_are_the_studys(sql, study_id: str, as_of, key: str, at: AppTest) -> None:
    """The page's aggregates equal the whole study's per SQL, whoever looks."""
    esc = enrolled_per_level(sql, study_id, as_of, "escalation")
    dlts = in_window_dlt_subjects(sql, study_id, as_of)
    if key == "overview":
        exp = enrolled_per_level(sql, study_id, as_of, "expansion")
        ladder = at.dataframe[0].value
        first_stage_dlts = next(c for c in ladder.columns if c.startswith("DLTs"))  # a staged study: "DLTs (monotherapy)"
        for _, row in ladder.iterrows():
            assert (row["Escalation"], row["Expansion"], row[first_stage_dlts]) == (
                esc.get(row["Level"], 0), exp.get(row["Level"], 0), dlts.get(row["Level"], 0)), row
    elif key == "escalation":
        table = at.dataframe[0].value  # the level table
        assert dict(zip(table["Level"], table["Enrolled"])) == {lv: esc.get(lv, 0) for lv in table["Level"]}
        assert dict(zip(table["Level"], table["DLT"])) == {lv: dlts.get(lv, 0) for lv in table["Level"]}
    elif key == "safety":
        summary = at.dataframe[0].value  # the AE summary: its "Any TEAE" row, per level and in total
        first = summary.iloc[0]
        assert first["System organ class / term"] == "Any TEAE"
        teae, dosed = dict(sql(TEAE_SUBJECTS_SQL, study_id, as_of)), dict(sql(DOSED_SQL, study_id, as_of))
        teae["Total"], dosed["Total"] = sum(teae.values()), sum(dosed.values())
        columns = [m for c in summary.columns if (m := re.fullmatch(r"(.*) \(N=(\d+)\) any grade", c))]
        assert columns
        for match in columns:
            label, n = match.group(1), int(match.group(2))
            assert n == dosed.get(label, 0), label
            assert first[match.group(0)] == percent_text(teae.get(label, 0), n), label


@pytest.mark.parametrize("study_id", STUDIES)
def test_investigator_sees_only_own_sites_subjects_and_the_studys_aggregates(app_env, sql, study_id):
    sites = investigator_sites()
    everyone, own = study_subjects(sql, study_id), site_subjects(sql, study_id, sites)
    for as_of in as_of_dates(sql, study_id)[:2]:  # the data cut and a date mid-escalation
        seen = set()
        for key, at in page_runs(study_id, as_of, "investigator"):
            shown = subjects_shown(at, everyone)
            assert shown <= own, f"{key} as of {as_of} shows other sites' subjects {sorted(shown - own)}"
            seen |= shown
            assert_aggregates_are_the_studys(sql, study_id, as_of, key, at)
            if key == "subject":
                mine = site_subjects(sql, study_id, sites, as_of)
                picker = at.selectbox(key=f"subject::{study_id}") if mine else None
                assert (set(picker.options) if picker else set()) == mine  # the picker lists exactly theirs
        assert site_subjects(sql, study_id, sites, as_of) <= seen  # their own subjects are still shown


@pytest.mark.parametrize("study_id", STUDIES)
def test_sponsor_sees_no_subject_on_any_page(app_env, sql, study_id):
    everyone = study_subjects(sql, study_id)
    cut = data_cut(sql, study_id)
    opened = set()
    for key, at in page_runs(study_id, cut, "sponsor"):
        opened.add(key.split(" · ")[0])
        assert not subjects_shown(at, everyone), f"{key} shows subjects {sorted(subjects_shown(at, everyone))}"
        assert_aggregates_are_the_studys(sql, study_id, cut, key, at)
    assert opened == {"overview", "escalation", "safety", "labs", "efficacy", "biomarkers", "survival", "enrollment"}
    at = app_test("sponsor")  # the profile is not open to the role at all
    at.query_params.update({"study": study_id})
    at.run()
    at.switch_page(pages.script("subject")).run()
    assert [e.value for e in at.error] and at.error[0].value.startswith("No access")
    assert not subjects_shown(at, everyone)


@pytest.mark.parametrize("study_id", STUDIES)
def test_chair_still_sees_every_sites_subjects(app_env, sql, study_id):
    """What the investigator tests leave out is there for a whole-study role: the test can fail."""
    everyone, own = study_subjects(sql, study_id), site_subjects(sql, study_id, investigator_sites())
    cut = data_cut(sql, study_id)
    all_enrolled = enrolled(sql, study_id, cut)
    shown = {key: subjects_shown(at, everyone) for key, at in page_runs(study_id, cut, "chair")}
    assert all_enrolled - own, "the demo study has no subject outside the investigator's sites"
    assert shown["escalation"] >= all_enrolled  # a lane per enrolled subject
    assert shown["subject"] >= all_enrolled  # the picker lists them all
    for key in ("safety", "labs", "survival", "efficacy · Over time"):
        assert shown[key] - own, f"{key} shows no subject of another site to the chair"


@pytest.mark.parametrize("study_id", [s for s in STUDIES if s != "IX001"])
def test_link_to_another_sites_subject_is_a_logged_no_access(app_env, sql, study_id):
    sites = investigator_sites()
    cut = data_cut(sql, study_id)
    others = sorted(enrolled(sql, study_id, cut) - site_subjects(sql, study_id, sites))
    other = others[0]
    log = audit.log_path(app_env)
    before = len(audit.read(log))

    at = app_test("investigator")
    at.query_params.update({"study": study_id, "as_of": cut.isoformat(), "subject": other})
    at.run()
    at.switch_page(pages.script("subject")).run()
    assert not at.exception
    assert len(at.error) == 1 and at.error[0].value.startswith("No access"), [e.value for e in at.error]
    assert not at.title and not at.get("plotly_chart") and not at.dataframe  # nothing of the profile is drawn
    assert not subjects_shown(at, study_subjects(sql, study_id)), "the refusal names a subject"

    denied = [r for r in audit.read(log)[before:] if r["event"] == "denied"]
    assert [(r["subject"], r["role"], r["what"]) for r in denied] == [
        ("investigator", permissions.INVESTIGATOR, f"{study_id}: subject {other}")]

    mine = sorted(site_subjects(sql, study_id, sites, cut))  # their own subject's link opens its profile
    if mine:
        at = run_app(study_id, cut, pages.script("subject"), user="investigator", subject=mine[0])
        assert at.selectbox(key=f"subject::{study_id}").value == mine[0]
        assert subjects_shown(at, study_subjects(sql, study_id)) <= set(mine)
