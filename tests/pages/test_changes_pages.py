"""AppTest on the demo registry (three cuts): every page's "Since …" banner, the Changes page's listing and review
status, who may see what of them, and marking a subject as reviewed from its profile. Every expected number is
read with SQL of our own over the two cut files, attached side by side in a plain DuckDB connection."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import shutil
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pandas as pd
import pytest

from smc.store.cuts import Registry
from smc.ui import pages
from tests.helpers import STUDIES, app_test, demo_users, run_app

PAGE_KEYS = [p.key for p in pages.PAGES if p.key != "import"]
SITE = "CN-GZ-01"  # the demo investigator's site
TABLE_NAMES = {"subjects": "subject", "administrations": "administration", "adverse_events": "adverse event",
               "tumor_assessments": "tumor assessment", "lab_results": "lab result"}  # as the listing names them
SUBJECT_TABLES = ("subjects", "administrations", "adverse_events", "tumor_assessments", "lab_results")


# --------------------------------------------------------------------------- our own SQL over two cut files


@contextlib.contextmanager
def two_cuts(old, new):
    """A plain DuckDB connection with the older cut attached as ``a`` and the newer as ``b``."""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{old.path}' AS a (READ_ONLY)")
        con.execute(f"ATTACH '{new.path}' AS b (READ_ONLY)")
        yield lambda text, *params: con.execute(text, list(params)).fetchall()
    finally:
        con.close()


NEW_AES = """
SELECT n.subject_id, n.ae_spid, n.term, n.grade, n.onset_date FROM b.adverse_events n
LEFT JOIN a.adverse_events o ON o.study_id = n.study_id AND o.subject_id = n.subject_id AND o.ae_spid = n.ae_spid
JOIN b.subjects s ON s.study_id = n.study_id AND s.subject_id = n.subject_id
WHERE n.study_id = $1 AND o.subject_id IS NULL AND ($2 IS NULL OR s.site_id = $2)
"""
NEW_DLTS = """
SELECT n.subject_id, n.ae_spid, n.term, n.onset_date, o.subject_id IS NULL AS added FROM b.adverse_events n
LEFT JOIN a.adverse_events o ON o.study_id = n.study_id AND o.subject_id = n.subject_id AND o.ae_spid = n.ae_spid
WHERE n.study_id = $1 AND n.dlt = 'Y' AND o.dlt IS DISTINCT FROM 'Y'
"""


def expected_counts(old, new, study_id: str) -> dict:
    """What the banner should count from cut ``old`` to ``new`` for the whole study."""
    with two_cuts(old, new) as q:
        new_aes = q(NEW_AES, study_id, None)
        moves = q("SELECT o.grade || '→' || n.grade, count(*) FROM b.adverse_events n JOIN a.adverse_events o "
                  "USING (study_id, subject_id, ae_spid) WHERE study_id = $1 AND o.grade <> n.grade GROUP BY 1",
                  study_id)
        dlts = q(NEW_DLTS, study_id)
        (deaths, enrolled), = q(
            "SELECT count(*) FILTER (WHERE n.death_date IS NOT NULL AND o.death_date IS NULL), "
            "count(*) FILTER (WHERE n.enrollment_date IS NOT NULL AND o.enrollment_date IS NULL) "
            "FROM b.subjects n LEFT JOIN a.subjects o USING (study_id, subject_id) WHERE study_id = $1", study_id)
    return {"new_ae": len(new_aes), "new_ae_grade3": sum(1 for r in new_aes if r[3] >= 3), "grade_moves": dict(moves),
            "new_dlt": len(dlts), "death": deaths, "new_subject": enrolled}


def study_cut_date(cut, study_id: str) -> dt.date:
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{cut.path}' AS c (READ_ONLY)")
        return con.execute("SELECT data_cut_date FROM c.studies WHERE study_id = ?", [study_id]).fetchone()[0]
    finally:
        con.close()


# --------------------------------------------------------------------------- what the app shows


def banners(at) -> list[str]:
    return [i.value for i in at.info if i.value.startswith("Since ")]


def the_banner(at) -> str:
    (text,) = banners(at)
    return text


def shown_counts(text: str) -> dict:
    """The banner's numbers (0 for a category it does not name)."""
    def one(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    new_ae = re.search(r"(\d+) new AEs?\b(?: \((\d+) of grade ≥3\))?", text)
    return {"new_ae": int(new_ae.group(1)) if new_ae else 0,
            "new_ae_grade3": int(new_ae.group(2)) if new_ae and new_ae.group(2) else 0,
            "grade_moves": {move: int(n) for n, move in re.findall(r"(\d+) grade changes? (\d+→\d+)", text)},
            "new_dlt": one(r"(\d+) new DLTs?\b"), "death": one(r"(\d+) deaths?\b"),
            "new_subject": one(r"\+(\d+) subjects? enrolled")}


def banner_links(text: str) -> dict[str, dict]:
    """{category: the link's query} of each linked count."""
    return {q["show"][0]: {k: v[0] for k, v in q.items()}
            for q in (parse_qs(urlparse(url).query) for url in re.findall(r"\]\((changes\?[^)]*)\)", text))}


def frame_with(at, *columns: str) -> pd.DataFrame:
    """The one dataframe on the page that has these columns (AppTest finds dataframes by position only)."""
    (frame,) = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    return frame


def listing(at) -> pd.DataFrame:
    return frame_with(at, "table", "change", "record", "what_changed")


def status_table(at) -> pd.DataFrame:
    return frame_with(at, "status", "reviewed_by", "changed_since")


def subject_of(url) -> str | None:
    if not isinstance(url, str):
        return None
    return parse_qs(urlparse(url).query).get("subject", [None])[0]


def metrics(at) -> dict[str, int]:
    return {m.label: int(m.value) for m in at.metric if m.label in ("Reviewed", "Needs re-review", "Never reviewed")}


@pytest.fixture()
def registry(cuts_env) -> Registry:
    return Registry.of_folder(cuts_env)


# --------------------------------------------------------------------------- 5. every page's banner, latest cut


@pytest.mark.parametrize("page_key", PAGE_KEYS)
@pytest.mark.parametrize("study_id", STUDIES)
def test_every_page_shows_the_changes_since_the_last_review(registry, study_id, page_key):
    first, second, latest = registry.cuts
    expected = expected_counts(second, latest, study_id)  # the simulated SMC decided on transfer 2
    at = run_app(study_id, study_cut_date(latest, study_id), pages.script(page_key))
    text = the_banner(at)
    assert text.startswith(f"Since **{second.title}**:")
    assert shown_counts(text) == expected
    links = banner_links(text)
    for category in ("new_ae", "new_dlt", "death", "new_subject"):
        assert (category in links) == (expected[category] > 0)
    assert ("grade_change" in links) == bool(expected["grade_moves"])
    for query in links.values():
        assert (query["study"], query["cut"], query["since"]) == (study_id, latest.short_id, second.short_id)


def test_the_demo_has_changes_of_every_kind_the_banner_counts(registry):
    """The demo data exercise the banner: over the three studies, each category is non-zero somewhere."""
    _, second, latest = registry.cuts
    totals = [expected_counts(second, latest, s) for s in STUDIES]
    for category in ("new_ae", "new_ae_grade3", "new_dlt", "death", "new_subject"):
        assert sum(t[category] for t in totals) > 0, category
    assert any(t["grade_moves"] for t in totals)


# --------------------------------------------------------------------------- 6. other cuts and as-of dates


@pytest.mark.parametrize("study_id", STUDIES)
def test_an_earlier_cut_compares_with_the_one_before_it(registry, study_id):
    first, second, _ = registry.cuts
    expected = expected_counts(first, second, study_id)
    cut_date = study_cut_date(second, study_id)
    for as_of in (cut_date, cut_date - dt.timedelta(days=40)):
        at = run_app(study_id, as_of, cut=second.short_id)
        assert at.selectbox(key="cut").value == second.short_id
        assert at.selectbox(key=f"since::{study_id}::{second.short_id}").value == first.short_id
        text = the_banner(at)
        assert text.startswith(f"Since **{first.title}**:")
        assert shown_counts(text) == expected  # a comparison of two cuts, whatever the as-of date
        assert all(q["cut"] == second.short_id and q["since"] == first.short_id for q in banner_links(text).values())


@pytest.mark.parametrize("study_id", STUDIES)
def test_since_from_the_link_overrides_the_last_review(registry, study_id):
    first, _, latest = registry.cuts
    at = run_app(study_id, study_cut_date(latest, study_id), since=first.short_id)
    text = the_banner(at)
    assert text.startswith(f"Since **{first.title}**:")
    assert shown_counts(text) == expected_counts(first, latest, study_id)


@pytest.mark.parametrize("study_id", STUDIES)
def test_the_first_cut_has_nothing_to_compare_with(registry, study_id):
    first = registry.cuts[0]
    cut_date = study_cut_date(first, study_id)
    for page_key in ("overview", "safety", "changes"):
        for as_of in (cut_date, cut_date - dt.timedelta(days=20)):
            at = run_app(study_id, as_of, pages.script(page_key), cut=first.short_id)
            assert not banners(at)
            assert not any("Since" in i.value for i in at.info)
            assert f"since::{study_id}::{first.short_id}" not in [s.key for s in at.sidebar.selectbox]
    assert any("nothing to compare it with" in i.value and first.title in i.value for i in at.info)
    assert not [d for d in at.dataframe if "what_changed" in d.value.columns]  # no listing


# --------------------------------------------------------------------------- 7. the Changes page and who sees what


@pytest.mark.parametrize("study_id", STUDIES)
def test_changes_page_lists_exactly_the_new_dlts(registry, study_id):
    _, second, latest = registry.cuts
    with two_cuts(second, latest) as q:
        dlts = q(NEW_DLTS, study_id)
    assert dlts or study_id != "IX001"  # the demo has at least one (IX001's adjudicated DLT)
    at = run_app(study_id, study_cut_date(latest, study_id), pages.script("changes"), show="new_dlt")
    assert at.selectbox(key="changes_show").value == "new_dlt"
    shown = listing(at)
    assert len(shown) == len(dlts)
    assert set(shown["table"]) <= {"adverse event"}  # the listing names a table's record
    rows = sorted(zip(shown["subject_id"].map(subject_of), shown["change"], shown["record"]))
    expected = sorted((s, "added" if added else "changed", term, onset) for s, _, term, onset, added in dlts)
    for (subject, change, record), (e_subject, e_change, term, onset) in zip(rows, expected):
        assert (subject, change) == (e_subject, e_change)
        assert record.startswith(f"{term} (grade ") and "DLT" in record and f"onset {onset:%Y-%m-%d}" in record
    changed = shown[shown["change"] == "changed"]
    assert all("dlt N → Y" in w for w in changed["what_changed"])


@pytest.mark.parametrize("study_id", ["IDOV-SAFE", "BIOTTT001"])
def test_the_investigator_sees_only_their_sites_subjects(registry, study_id):
    _, second, latest = registry.cuts
    with two_cuts(second, latest) as q:
        site_subjects = {s for (s,) in q("SELECT subject_id FROM b.subjects WHERE study_id = ? AND site_id = ?",
                                         study_id, SITE)}
        enrolled = sorted(s for (s,) in q("SELECT subject_id FROM b.subjects WHERE study_id = ? AND site_id = ? "
                                          "AND enrollment_date IS NOT NULL", study_id, SITE))
        everyone = {s for (s,) in q("SELECT subject_id FROM b.subjects WHERE study_id = ?", study_id)}
        new_aes = sorted((s, term) for s, _, term, _, _ in q(NEW_AES, study_id, SITE))
    assert enrolled and everyone - site_subjects  # the site has subjects, and others have some too
    as_of = study_cut_date(latest, study_id)

    at = run_app(study_id, as_of, pages.script("changes"), user="investigator")
    shown = listing(at)
    of_subjects = shown[shown["table"].isin([TABLE_NAMES[t] for t in SUBJECT_TABLES])]
    assert len(of_subjects)
    assert set(of_subjects["subject_id"].map(subject_of)) <= site_subjects
    status = status_table(at)
    assert list(status["subject_id"].map(subject_of)) == enrolled
    assert sum(metrics(at).values()) == len(enrolled)
    assert not at.get("multiselect") or "review_subjects" not in [m.key for m in at.multiselect]

    at = run_app(study_id, as_of, pages.script("changes"), user="investigator", show="new_ae")
    shown = listing(at)
    assert sorted(zip(shown["subject_id"].map(subject_of), [r.split(" (grade")[0] for r in shown["record"]])) == \
        new_aes


def test_the_sponsor_may_not_open_the_changes_page(registry):
    latest = registry.latest
    at = app_test("sponsor")
    at.query_params.update({"study": "IX001", "as_of": study_cut_date(latest, "IX001").isoformat()})
    at.run()
    at.switch_page(pages.script("changes")).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["No access: the Changes page is not open to the sponsor role."]
    assert not [d for d in at.dataframe if "what_changed" in d.value.columns or "status" in d.value.columns]


@pytest.mark.parametrize("study_id", STUDIES)
def test_the_sponsors_banner_has_no_links(registry, study_id):
    latest = registry.latest
    at = run_app(study_id, study_cut_date(latest, study_id), user="sponsor")
    text = the_banner(at)
    assert text.startswith(f"Since **{registry.cuts[1].title}**:")
    assert "](" not in text and "changes?" not in text


@pytest.mark.parametrize("study_id", STUDIES)
def test_the_sponsors_banner_counts_the_whole_study(registry, study_id):
    _, second, latest = registry.cuts
    at = run_app(study_id, study_cut_date(latest, study_id), user="sponsor")
    assert shown_counts(the_banner(at)) == expected_counts(second, latest, study_id)


def test_a_study_level_change_has_no_subject_link(registry):
    latest = registry.latest
    at = run_app("IDOV-SAFE", study_cut_date(latest, "IDOV-SAFE"), pages.script("changes"))
    shown = listing(at)
    study_rows = shown[shown["table"] == "study"]
    assert len(study_rows) == 1  # the study's data cut date moved on
    assert study_rows["subject_id"].isna().all()


@pytest.mark.parametrize("study_id", STUDIES)
def test_safety_listings_mark_the_new_aes(registry, study_id):
    _, second, latest = registry.cuts
    with two_cuts(second, latest) as q:
        new = {(s, term, onset) for s, _, term, _, onset in q(NEW_AES, study_id, None)}
    at = run_app(study_id, study_cut_date(latest, study_id), pages.script("safety"))
    listings = [d.value for d in at.dataframe if "since_review" in d.value.columns]
    assert listings
    seen = set()
    for frame in listings:
        assert list(frame.columns)[0] == "since_review"
        for r in frame.itertuples():
            row = (subject_of(r.subject_id), r.term, pd.Timestamp(r.onset_date).date())
            assert (r.since_review == "new") == (row in new), row
            seen.add(row)
    assert seen & new  # some listed AE is new since transfer 2


def test_the_subject_profile_marks_the_regraded_and_the_new_aes(registry):
    _, second, latest = registry.cuts
    with two_cuts(second, latest) as q:
        ((subject, regraded),) = q("SELECT subject_id, ae_spid FROM b.adverse_events n JOIN a.adverse_events o "
                                   "USING (study_id, subject_id, ae_spid) WHERE study_id = 'IX001' "
                                   "AND o.grade <> n.grade")
        new = {spid for s, spid, *_ in q(NEW_AES, "IX001", None) if s == subject}
        changed = {spid for (spid,) in q(
            "SELECT ae_spid FROM b.adverse_events n JOIN a.adverse_events o USING (study_id, subject_id, ae_spid) "
            "WHERE study_id = 'IX001' AND subject_id = ? AND (o.grade, o.dlt, o.related, o.outcome, o.end_date, "
            "o.serious, o.term, o.onset_date, o.action_taken, o.soc, o.ae_seq) IS DISTINCT FROM (n.grade, n.dlt, "
            "n.related, n.outcome, n.end_date, n.serious, n.term, n.onset_date, n.action_taken, n.soc, n.ae_seq)",
            subject)}
    assert regraded in changed
    at = run_app("IX001", study_cut_date(latest, "IX001"), pages.script("subject"), subject=subject)
    aes = frame_with(at, "since_review", "ae_spid", "term")
    assert list(aes.columns)[0] == "since_review"
    marks = dict(zip(aes["ae_spid"], aes["since_review"]))
    assert marks[regraded] == "changed"
    assert {k for k, v in marks.items() if v == "new"} == new
    assert {k for k, v in marks.items() if v == "changed"} == changed


# --------------------------------------------------------------------------- 8. review through the UI


@pytest.fixture()
def writable_registry(demo_cuts, tmp_path, monkeypatch) -> Registry:
    """A copy of the demo registry the app serves, so marks can be written (the session's stays as built)."""
    folder = tmp_path / "registry"
    shutil.copytree(demo_cuts, folder)
    monkeypatch.delenv("SMC_DB", raising=False)
    monkeypatch.setenv("SMC_CUTS", str(folder))
    return Registry.of_folder(folder)


def stored_marks(registry: Registry) -> list[dict]:
    log = registry.folder / "decisions.sqlite"
    with contextlib.closing(sqlite3.connect(f"file:{log}?mode=ro", uri=True)) as con:
        con.row_factory = sqlite3.Row
        if not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'review_marks'").fetchone():
            return []
        return [dict(r) for r in con.execute("SELECT * FROM review_marks ORDER BY id")]


def enrolled_subjects(cut, study_id: str) -> list[str]:
    with two_cuts(cut, cut) as q:
        return [s for (s,) in q("SELECT subject_id FROM b.subjects WHERE study_id = ? AND enrollment_date IS NOT NULL "
                                "ORDER BY subject_id", study_id)]


def test_a_member_marks_a_subject_on_its_profile(writable_registry):
    registry, study_id = writable_registry, "IX001"
    latest = registry.latest
    as_of = study_cut_date(latest, study_id)
    enrolled = enrolled_subjects(latest, study_id)
    subject = enrolled[2]

    at = run_app(study_id, as_of, pages.script("changes"), user="member")
    before = metrics(at)
    assert before == {"Reviewed": 0, "Needs re-review": 0, "Never reviewed": len(enrolled)}  # nothing marked yet

    at = run_app(study_id, as_of, pages.script("subject"), user="member", subject=subject)
    assert any(f"## {subject}" in m.value for m in at.markdown)
    at.button(key="review_subject").click().run()
    assert not at.exception and not at.error
    assert [s.value for s in at.success] == [f"Marked 1 as reviewed on {latest.title}, by Dr Ben Member."]

    at.switch_page(pages.script("changes")).run()
    after = metrics(at)
    assert after == {"Reviewed": 1, "Needs re-review": 0, "Never reviewed": len(enrolled) - 1}
    status = status_table(at)
    row = status[status["subject_id"].map(subject_of) == subject].iloc[0]
    assert (row["status"], row["reviewed_by"], row["reviewed_on_cut"]) == ("reviewed", "Dr Ben Member",
                                                                           Path(latest.path).name)
    by_reviewer = frame_with(at, "reviewer")
    assert by_reviewer.set_index("reviewer").loc["Dr Ben Member", "reviewed"] == 1

    (stored,) = stored_marks(registry)
    user = demo_users()["member"]
    assert (stored["study_id"], stored["subject_id"], stored["record_table"]) == (study_id, subject, "")
    assert (stored["reviewer_subject"], stored["reviewer_name"], stored["reviewer_role"]) == (
        user["username"], user["name"], "smc_member")
    assert stored["cut_sha256"] == hashlib.sha256(Path(latest.path).read_bytes()).hexdigest()
    marked_at = dt.datetime.fromisoformat(stored["marked_at_utc"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - marked_at).total_seconds()) < 300


def test_a_member_marks_subjects_on_the_changes_page(writable_registry):
    registry, study_id = writable_registry, "BIOTTT001"
    latest = registry.latest
    enrolled = enrolled_subjects(latest, study_id)
    chosen = enrolled[:2]
    at = run_app(study_id, study_cut_date(latest, study_id), pages.script("changes"), user="member")
    at.multiselect(key="review_subjects").set_value(chosen)
    at.button[[b.label for b in at.button].index("Mark as reviewed")].click().run()
    assert not at.exception and not at.error
    assert metrics(at) == {"Reviewed": 2, "Needs re-review": 0, "Never reviewed": len(enrolled) - 2}
    assert [m["subject_id"] for m in stored_marks(registry)] == chosen


def test_a_mark_on_the_previous_cut_needs_re_review_after_a_grade_change(writable_registry):
    """Marked on transfer 2 through the UI; on transfer 3 the subject whose AE was regraded needs re-review."""
    registry, study_id = writable_registry, "IX001"
    _, second, latest = registry.cuts
    with two_cuts(second, latest) as q:
        regraded = q("SELECT subject_id, o.grade, n.grade FROM b.adverse_events n JOIN a.adverse_events o "
                     "USING (study_id, subject_id, ae_spid) WHERE study_id = ? AND o.grade <> n.grade", study_id)
    ((subject, old, new),) = regraded
    at = run_app(study_id, study_cut_date(second, study_id), pages.script("subject"), user="member",
                 cut=second.short_id, subject=subject)
    at.button(key="review_subject").click().run()
    assert [s.value for s in at.success] == [f"Marked 1 as reviewed on {second.title}, by Dr Ben Member."]

    at = run_app(study_id, study_cut_date(latest, study_id), pages.script("changes"), user="member")
    assert metrics(at)["Needs re-review"] == 1
    status = status_table(at)
    row = status[status["subject_id"].map(subject_of) == subject].iloc[0]
    assert row["status"] == "needs re-review"
    assert f"grade {old} → {new}" in row["changed_since"]
    assert stored_marks(registry)[0]["cut_sha256"] == second.sha256


def test_a_member_marks_one_ae(writable_registry):
    registry, study_id = writable_registry, "IDOV-SAFE"
    latest = registry.latest
    with two_cuts(latest, latest) as q:
        (subject,) = q("SELECT min(subject_id) FROM b.adverse_events WHERE study_id = ?", study_id)[0]
        aes = {spid: (term, grade) for spid, term, grade in q(
            "SELECT ae_spid, term, grade FROM b.adverse_events WHERE study_id = ? AND subject_id = ?",
            study_id, subject)}
    at = run_app(study_id, study_cut_date(latest, study_id), pages.script("subject"), user="member", subject=subject)
    label = at.selectbox(key="review_ae").options[0]  # the AE picked by default, as the picker shows it
    at.button(key="review_ae_button").click().run()
    assert [s.value for s in at.success] == [f"Marked 1 as reviewed on {latest.title}, by Dr Ben Member."]
    (stored,) = stored_marks(registry)
    assert (stored["subject_id"], stored["record_table"]) == (subject, "adverse_events")
    spid = re.fullmatch(r'\{"ae_spid": "([^"]+)"\}', stored["record_key"]).group(1)
    term, grade = aes[spid]
    assert label.startswith(f"AE: {term} (grade {grade}")
    at.switch_page(pages.script("changes")).run()
    assert metrics(at)["Reviewed"] == 0  # one AE's mark does not mark the subject


def test_the_sponsor_and_investigator_get_no_review_buttons(writable_registry):
    registry = writable_registry
    latest = registry.latest
    with two_cuts(latest, latest) as q:
        (subject,) = q("SELECT min(subject_id) FROM b.subjects WHERE study_id = 'IDOV-SAFE' AND site_id = ? "
                       "AND enrollment_date IS NOT NULL", SITE)[0]
    at = run_app("IDOV-SAFE", study_cut_date(latest, "IDOV-SAFE"), pages.script("subject"), user="investigator",
                 subject=subject)
    assert "review_subject" not in [b.key for b in at.button]
    assert any(m.value.startswith("**Never reviewed**") for m in at.markdown)
    assert stored_marks(registry) == []


def test_a_key_entered_twice_in_a_new_cut_is_named_on_the_changes_page(demo_cuts, tmp_path, monkeypatch):
    """A fourth cut: transfer 3 again, with one IX001 AE entered twice (same sponsor id). The Changes page names the
    repeated key and leaves that AE out of the comparison; nothing else of IX001 changed."""
    from smc.ingest.load import as_text, import_tables
    from smc.ingest.register import add_cut

    folder = tmp_path / "registry"
    shutil.copytree(demo_cuts, folder)
    latest = Registry.of_folder(folder).latest
    con = duckdb.connect(latest.path, read_only=True)
    try:
        tables = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table().to_pandas() for t in (  # dates as dates
            "studies", "dose_levels", "sites", "subjects", "administrations", "adverse_events", "tumor_assessments",
            "lab_results")}
        spid, subject = con.execute("SELECT ae_spid, subject_id FROM adverse_events WHERE study_id = 'IX001' "
                                    "ORDER BY ae_spid LIMIT 1").fetchone()
    finally:
        con.close()
    ae = tables["adverse_events"]
    twice = ae[ae["ae_spid"] == spid].assign(ae_seq=ae["ae_seq"].max() + 1)
    tables["adverse_events"] = pd.concat([ae, twice], ignore_index=True)
    raw = {t: as_text(f) for t, f in tables.items()}
    add_cut(folder, lambda path: import_tables(raw, path, "test"), "transfer 3, an AE entered twice")
    monkeypatch.delenv("SMC_DB", raising=False)
    monkeypatch.setenv("SMC_CUTS", str(folder))
    at = run_app("IX001", dt.date.fromisoformat(latest.studies["IX001"]), pages.script("changes"), since=latest.short_id)
    warnings = [w.value for w in at.warning]
    assert any("adverse event records: 1 record key(s) appear more than once" in w for w in warnings), warnings
    repeated = next(d.value for d in at.dataframe if list(d.value.columns) == ["cut", "subject_id", "key", "records"])
    assert repeated[["cut", "subject_id", "records"]].values.tolist() == [["shown", subject, 2]]
    assert spid in repeated["key"].iloc[0]
    listing = next(d.value for d in at.dataframe if "what_changed" in d.value.columns)
    assert listing.empty  # the same data otherwise: nothing added, removed or changed
