"""Review marks on data cuts: who reviewed which subject on which cut, what "needs re-review" means when a subject's
records change from cut to cut, the marks kept append-only, progress counts, and the cut "since the last review"
compares with."""
from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from smc.analysis.changes import load_changes, record_changes
from smc.decision_log import ledger, reviews
from smc.demo.decisions import record_demo_decisions_on_cuts
from smc.ingest.load import as_text, import_tables
from smc.ingest.register import add_cut
from smc.store.cuts import MANIFEST_SUFFIX, Registry
from smc.store.db import Database
from tests.helpers import STUDIES, TEST_ISSUER, demo_users, signer

# --------------------------------------------------------------------------- a small study on three cuts

CUT_DATES = ("2025-01-15", "2025-02-12", "2025-03-12")  # 28 days apart
GRADED_AE = "S1-001-AE001"  # grade 2 on cut 1, 3 from cut 2 on


def _subject(sid: str, enrolled: str) -> dict:
    return dict(study_id="S1", subject_id=sid, dose_level=1, enrollment_date=enrolled, phase="escalation",
                site_id="SITE-A")


def _ae(sid: str, seq: int, term: str, onset: str, grade: int) -> dict:
    return dict(study_id="S1", subject_id=sid, ae_seq=seq, ae_spid=f"{sid}-AE{seq:03d}", term=term,
                soc="General disorders and administration site conditions", onset_date=onset, grade=grade,
                serious="N", related="N", dlt="N", outcome="Recovered")


def _tables(n: int) -> dict[str, list[dict]]:
    """Cut ``n`` (1-3) of study S1, by hand:
    S1-001: AE001 grade 2 on cut 1, regraded 3 on cut 2, as on cut 2 on cut 3;
    S1-002: one AE, the same on every cut (untouched);
    S1-003: no AE on any cut (never marked in the tests);
    S1-004: one AE on cuts 1 and 2, a second AE added on cut 3."""
    aes = [_ae("S1-001", 1, "Pyrexia", "2025-01-05", 2 if n == 1 else 3),
           _ae("S1-002", 1, "Nausea", "2025-01-06", 1),
           _ae("S1-004", 1, "Fatigue", "2025-01-07", 1)]
    if n == 3:
        aes.append(_ae("S1-004", 2, "Diarrhoea", "2025-03-01", 2))
    return dict(
        studies=[dict(study_id="S1", design="3+3", agent="VIRUS", dlt_window_days=28, data_cut_date=CUT_DATES[n - 1])],
        dose_levels=[dict(study_id="S1", level=lv, label=f"1e{7 + lv} PFU") for lv in (1, 2, 3)],
        subjects=[_subject(s, d) for s, d in (("S1-001", "2025-01-01"), ("S1-002", "2025-01-02"),
                                              ("S1-003", "2025-01-03"), ("S1-004", "2025-01-04"))],
        adverse_events=aes)


@pytest.fixture(scope="module")
def small_registry(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reviews") / "registry"
    for n in (1, 2, 3):
        raw = {t: as_text(pd.DataFrame(rows)) for t, rows in _tables(n).items()}
        add_cut(folder, lambda path, raw=raw: import_tables(raw, path, "test"), f"transfer {n}")
    return folder


@pytest.fixture()
def registry(small_registry, tmp_path) -> Registry:
    """A fresh copy of the small registry (no marks yet) for each test."""
    folder = tmp_path / "registry"
    shutil.copytree(small_registry, folder)
    return Registry.of_folder(folder)


def changes_since(registry: Registry, cut, study_id: str = "S1"):
    def since(sha256: str):
        marked_on = registry.by_sha(sha256)
        return None if marked_on is None else record_changes(
            load_changes(Database(marked_on.path), Database(cut.path), study_id))
    return since


def status_of(registry: Registry, cut, subject_ids=("S1-001", "S1-002", "S1-003", "S1-004")) -> pd.DataFrame:
    log = ledger.log_path(cut.path)
    return reviews.review_status(list(subject_ids), reviews.read_marks(log, "S1"), cut,
                                 changes_since(registry, cut)).set_index("subject_id")


def test_the_small_registry_holds_three_cuts_in_date_order(registry):
    assert [c.label for c in registry.cuts] == ["transfer 1", "transfer 2", "transfer 3"]
    assert [c.cut_date for c in registry.cuts] == list(CUT_DATES)
    assert ledger.log_path(registry.cuts[0].path) == registry.folder / "decisions.sqlite"


def test_a_grade_change_makes_a_reviewed_subject_need_re_review_and_a_new_mark_holds(registry):
    cut1, cut2, cut3 = registry.cuts
    log = ledger.log_path(cut1.path)
    chair, member = signer("chair"), signer("member")
    assert reviews.mark(log, "S1", ["S1-001", "S1-002", "S1-004"], cut1, chair) == 3

    on_cut1 = status_of(registry, cut1)
    assert on_cut1["status"].to_dict() == {"S1-001": "reviewed", "S1-002": "reviewed", "S1-003": "never reviewed",
                                           "S1-004": "reviewed"}

    on_cut2 = status_of(registry, cut2)
    assert on_cut2.loc["S1-001", "status"] == "needs re-review"  # its AE went from grade 2 to 3
    assert "grade 2 → 3" in on_cut2.loc["S1-001", "changed_since"]
    assert "adverse events" in on_cut2.loc["S1-001", "changed_since"]
    assert on_cut2.loc["S1-002", "status"] == "reviewed"  # nothing of S1-002 changed
    assert on_cut2.loc["S1-002", "changed_since"] == ""
    assert on_cut2.loc["S1-004", "status"] == "reviewed"  # S1-004's new AE comes only on cut 3
    assert on_cut2.loc["S1-003", "status"] == "never reviewed"
    assert on_cut2.loc["S1-003", "reviewed_by"] == ""
    assert on_cut2.loc["S1-001", "reviewed_by"] == "Dr Ada Chair"
    assert on_cut2.loc["S1-001", "reviewed_on_cut"] == Path(cut1.path).name

    reviews.mark(log, "S1", ["S1-001"], cut2, member)  # re-reviewed on cut 2
    on_cut2 = status_of(registry, cut2)
    assert on_cut2.loc["S1-001", "status"] == "reviewed"
    assert on_cut2.loc["S1-001", "reviewed_by"] == "Dr Ben Member"
    assert on_cut2.loc["S1-001", "reviewed_on_cut"] == Path(cut2.path).name

    on_cut3 = status_of(registry, cut3)
    assert on_cut3.loc["S1-001", "status"] == "reviewed"  # nothing of S1-001 changed from cut 2 to cut 3
    assert on_cut3.loc["S1-001", "changed_since"] == ""
    assert on_cut3.loc["S1-002", "status"] == "reviewed"  # marked on cut 1, untouched through cut 3
    assert on_cut3.loc["S1-003", "status"] == "never reviewed"
    assert on_cut3.loc["S1-004", "status"] == "needs re-review"  # an AE added on cut 3, since its mark on cut 1
    assert "adverse events added" in on_cut3.loc["S1-004", "changed_since"]


def test_a_mark_on_a_cut_no_longer_in_the_registry_needs_re_review(registry):
    cut1, cut2, _ = registry.cuts
    log = ledger.log_path(cut1.path)
    reviews.mark(log, "S1", ["S1-002"], cut1, signer("chair"))
    status = reviews.review_status(["S1-002"], reviews.read_marks(log, "S1"), cut2, lambda sha: None)
    assert status.loc[0, "status"] == "needs re-review"
    assert "no longer in the registry" in status.loc[0, "changed_since"]


def test_a_record_mark_does_not_mark_the_whole_subject(registry):
    cut1 = registry.cuts[0]
    log = ledger.log_path(cut1.path)
    reviews.mark(log, "S1", ["S1-003"], cut1, signer("member"), "adverse_events", {"ae_spid": "S1-003-AE001"})
    (stored,) = reviews.read_marks(log, "S1")
    assert (stored.record_table, stored.record_key) == ("adverse_events", '{"ae_spid": "S1-003-AE001"}')
    assert status_of(registry, cut1).loc["S1-003", "status"] == "never reviewed"


# --------------------------------------------------------------------------- append-only, who may mark, what is kept


def test_marks_are_append_only(registry):
    cut1 = registry.cuts[0]
    log = ledger.log_path(cut1.path)
    reviews.mark(log, "S1", ["S1-001", "S1-002"], cut1, signer("chair"))
    with sqlite3.connect(log) as con:
        for statement in ("UPDATE review_marks SET reviewer_name = 'someone else'",
                          "UPDATE review_marks SET cut_sha256 = 'x' WHERE subject_id = 'S1-001'",
                          "DELETE FROM review_marks WHERE subject_id = 'S1-002'",
                          "DELETE FROM review_marks"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(statement)
        rows = con.execute("SELECT subject_id, reviewer_name, cut_sha256 FROM review_marks ORDER BY id").fetchall()
    assert rows == [("S1-001", "Dr Ada Chair", cut1.sha256), ("S1-002", "Dr Ada Chair", cut1.sha256)]


@pytest.mark.parametrize("username", ["sponsor", "investigator", "datamanager", "admin"])
def test_roles_without_review_permission_are_refused_and_nothing_is_stored(registry, username):
    cut1 = registry.cuts[0]
    log = ledger.log_path(cut1.path)
    with pytest.raises(reviews.MarkRefused):
        reviews.mark(log, "S1", ["S1-001"], cut1, signer(username))
    assert reviews.read_marks(log, "S1") == []
    reviews.mark(log, "S1", ["S1-002"], cut1, signer("member"))  # a log with a mark in it already
    with pytest.raises(reviews.MarkRefused):
        reviews.mark(log, "S1", ["S1-001", "S1-003"], cut1, signer(username))
    with sqlite3.connect(log) as con:
        assert con.execute("SELECT subject_id, reviewer_subject FROM review_marks").fetchall() == [("S1-002", "member")]


def test_a_mark_of_no_subject_is_refused(registry):
    cut1 = registry.cuts[0]
    with pytest.raises(reviews.MarkRefused):
        reviews.mark(ledger.log_path(cut1.path), "S1", [], cut1, signer("chair"))


def test_a_mark_of_several_subjects_keeps_who_when_and_which_cut(registry):
    cut2 = registry.cuts[1]
    log = ledger.log_path(cut2.path)
    at = dt.datetime(2025, 2, 13, 9, 30, 5, 123000, tzinfo=dt.UTC)
    subjects = ["S1-001", "S1-003", "S1-004"]
    assert reviews.mark(log, "S1", subjects, cut2, signer("member"), now=at) == 3
    sha = hashlib.sha256(Path(cut2.path).read_bytes()).hexdigest()  # the cut file's own digest
    user = demo_users()["member"]
    with sqlite3.connect(log) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM review_marks ORDER BY id")]
    assert [r["subject_id"] for r in rows] == subjects
    for r in rows:
        assert r["study_id"] == "S1"
        assert (r["reviewer_issuer"], r["reviewer_subject"], r["reviewer_name"], r["reviewer_role"]) == (
            TEST_ISSUER, user["username"], user["name"], "smc_member")
        assert r["marked_at_utc"] == "2025-02-13T09:30:05.123000Z"
        assert r["cut_sha256"] == sha
        assert r["cut_file"] == Path(cut2.path).name
        assert (r["record_table"], r["record_key"]) == ("", "")
    assert [m.subject_id for m in reviews.read_marks(log, "S1")] == subjects
    assert reviews.read_marks(log, "OTHER") == []


def test_a_mark_given_a_local_time_is_stored_in_utc(registry):
    cut1 = registry.cuts[0]
    log = ledger.log_path(cut1.path)
    paris = dt.timezone(dt.timedelta(hours=1))
    reviews.mark(log, "S1", ["S1-001"], cut1, signer("chair"), now=dt.datetime(2025, 1, 16, 10, 0, tzinfo=paris))
    assert reviews.read_marks(log, "S1")[0].marked_at_utc == "2025-01-16T09:00:00.000000Z"


def test_read_marks_without_a_log_is_empty(tmp_path):
    assert reviews.read_marks(tmp_path / "decisions.sqlite", "S1") == []


# --------------------------------------------------------------------------- progress


def test_progress_counts_and_progress_by_reviewer(registry):
    cut1, cut2, cut3 = registry.cuts
    log = ledger.log_path(cut1.path)
    reviews.mark(log, "S1", ["S1-001", "S1-002", "S1-004"], cut1, signer("chair"))
    reviews.mark(log, "S1", ["S1-001"], cut2, signer("member"))
    # On cut 3: S1-001 reviewed (member, cut 2, unchanged since), S1-002 reviewed (chair, cut 1, untouched),
    # S1-004 needs re-review (chair, cut 1, an AE added on cut 3), S1-003 never reviewed.
    status = status_of(registry, cut3).reset_index()
    assert reviews.progress(status) == {"reviewed": 2, "needs re-review": 1, "never reviewed": 1}
    by = reviews.progress_by_reviewer(status).set_index("reviewer")
    assert by.loc["Dr Ada Chair", "reviewed"] == 1 and by.loc["Dr Ada Chair", "needs re-review"] == 1
    assert by.loc["Dr Ben Member", "reviewed"] == 1 and by.loc["Dr Ben Member", "needs re-review"] == 0
    assert set(by.index) == {"Dr Ada Chair", "Dr Ben Member"}

    # On cut 2: S1-001 (member), S1-002 and S1-004 (chair) all still reviewed
    status = status_of(registry, cut2).reset_index()
    assert reviews.progress(status) == {"reviewed": 3, "needs re-review": 0, "never reviewed": 1}
    by = reviews.progress_by_reviewer(status).set_index("reviewer")
    assert by["reviewed"].to_dict() == {"Dr Ada Chair": 2, "Dr Ben Member": 1}
    assert by["needs re-review"].to_dict() == {"Dr Ada Chair": 0, "Dr Ben Member": 0}


def test_progress_before_any_mark(registry):
    status = status_of(registry, registry.latest).reset_index()
    assert reviews.progress(status) == {"reviewed": 0, "needs re-review": 0, "never reviewed": 4}
    assert reviews.progress_by_reviewer(status).empty
    assert list(reviews.progress_by_reviewer(status).columns) == ["reviewer", "reviewed", "needs re-review"]


# --------------------------------------------------------------------------- what "since the last review" compares with


def _decided_on(log: Path) -> dict[str, set[str]]:
    """{study: SHA-256 of the cuts its decisions name}, read off the log with plain sqlite3."""
    found: dict[str, set[str]] = {}
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as con:
        for study_id, source in con.execute("SELECT study_id, data_source FROM decisions"):
            found.setdefault(study_id, set()).add(source.split("sha256:", 1)[1].split()[0])
    return found


def test_comparison_cut_on_the_demo_registry(demo_cuts):
    registry = Registry.of_folder(demo_cuts)
    first, second, latest = registry.cuts
    assert [c.label for c in registry.cuts] == ["demo transfer 1", "demo transfer 2", "demo transfer 3"]
    decided = _decided_on(demo_cuts / "decisions.sqlite")
    for study_id in STUDIES:
        assert second.sha256 in decided[study_id]  # the simulated SMC decided on transfer 2
        assert reviews.comparison_cut(registry, latest, study_id).label == "demo transfer 2"
        assert reviews.comparison_cut(registry, second, study_id).label == "demo transfer 1"
        assert reviews.comparison_cut(registry, first, study_id) is None


def test_comparison_cut_without_a_decision_log_is_the_previous_cut(demo_cuts, tmp_path):
    folder = tmp_path / "registry"
    shutil.copytree(demo_cuts, folder, ignore=shutil.ignore_patterns("decisions.sqlite*"))
    assert not (folder / "decisions.sqlite").exists()
    registry = Registry.of_folder(folder)
    first, second, latest = registry.cuts
    for study_id in STUDIES:
        assert reviews.comparison_cut(registry, latest, study_id) == second
        assert reviews.comparison_cut(registry, second, study_id) == first
        assert reviews.comparison_cut(registry, first, study_id) is None


def test_comparison_cut_is_the_last_decided_cut_not_the_previous_one(demo_cuts, tmp_path):
    """Decisions recorded on transfer 1 only: transfer 3 compares with transfer 1, skipping transfer 2."""
    folder = tmp_path / "registry"
    folder.mkdir()
    stems = sorted(p.name.removesuffix(MANIFEST_SUFFIX) for p in demo_cuts.glob(f"*{MANIFEST_SUFFIX}"))
    assert len(stems) == 3

    def copy(stem):
        for suffix in (".duckdb", MANIFEST_SUFFIX):
            shutil.copy2(demo_cuts / (stem + suffix), folder / (stem + suffix))

    copy(stems[0])
    assert record_demo_decisions_on_cuts(folder) > 0  # the SMC met on transfer 1
    for stem in stems[1:]:
        copy(stem)
    registry = Registry.of_folder(folder)
    first, second, latest = registry.cuts
    decided = _decided_on(folder / "decisions.sqlite")
    for study_id in STUDIES:
        assert decided[study_id] == {first.sha256}
        assert reviews.comparison_cut(registry, latest, study_id) == first
        assert registry.previous(latest, study_id) == second
        assert reviews.comparison_cut(registry, second, study_id) == first
        assert reviews.comparison_cut(registry, first, study_id) is None


def test_comparison_cut_with_an_unreadable_log_is_the_previous_cut(registry):
    (registry.folder / "decisions.sqlite").write_bytes(b"not a database at all" * 100)
    _, second, latest = registry.cuts
    assert reviews.comparison_cut(registry, latest, "S1") == second


def test_one_record_marked_on_its_own_needs_re_review_only_when_it_changed(registry):
    """S1-001's AE001 is regraded 2 → 3 on cut 2; S1-002's AE001 never changes. Each marked on its own on cut 1."""
    cut1, cut2, _ = registry.cuts
    log = ledger.log_path(cut1.path)
    member = signer("member")
    reviews.mark(log, "S1", ["S1-001"], cut1, member, "adverse_events", {"ae_spid": GRADED_AE})
    reviews.mark(log, "S1", ["S1-002"], cut1, member, "adverse_events", {"ae_spid": "S1-002-AE001"})
    marks = reviews.read_marks(log, "S1")
    graded = reviews.record_status(marks, "S1-001", cut2, changes_since(registry, cut2))
    assert graded[["record", "status", "reviewed_by"]].values.tolist() == [
        [f"adverse events ae_spid {GRADED_AE}", "needs re-review", "Dr Ben Member"]]
    assert "grade 2 → 3" in graded["changed_since"].iloc[0]
    untouched = reviews.record_status(marks, "S1-002", cut2, changes_since(registry, cut2))
    assert untouched[["status", "changed_since"]].values.tolist() == [["reviewed", ""]]
    on_its_cut = reviews.record_status(marks, "S1-001", cut1, changes_since(registry, cut1))
    assert on_its_cut["status"].tolist() == ["reviewed"]
    # A record mark is not a mark of the subject.
    assert status_of(registry, cut2).loc["S1-001", "status"] == "never reviewed"
