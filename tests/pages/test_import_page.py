"""AppTest: the Import SDTM page turns uploaded datasets and a mapping into a new
database whose numbers are those of the SDTM files, lists every problem when it
refuses, and never touches the served database or an existing file on refusal:
an existing name is replaced only when asked, a target another import is writing
is refused, and nothing is left behind in the imports folder or the temp dir."""
from __future__ import annotations

import hashlib
import re
import shlex
import tempfile

import duckdb
import pytest

from smc import settings
from smc.ingest.sdtm import synthetic
from smc.ingest.target import Target
from smc.ui import pages
from smc.ui.text import md
from tests.helpers import data_cut, run_app

PAGE = pages.script("import")
N_SUBJECTS = 40


@pytest.fixture()
def sdtm(tmp_path):
    """A synthetic SDTM set as uploads (XPT), with the frames it was written from."""
    folder = tmp_path / "sdtm"
    domains = synthetic.write(folder, N_SUBJECTS, seed=7, fmt="xpt")
    uploads = [(p.name, p.read_bytes(), "application/octet-stream") for p in sorted(folder.glob("*.xpt"))]
    return uploads, domains


@pytest.fixture()
def imports(tmp_path, monkeypatch, app_env):
    folder = tmp_path / "imports"
    monkeypatch.setenv("SMC_IMPORT_DIR", str(folder))
    return folder


def open_page(sql):
    return run_app("IDOV-SAFE", data_cut(sql, "IDOV-SAFE"), PAGE, user="datamanager")  # imports: data managers, admins


def submit(at, uploads, mapping: str, name: str = "trial", replace: bool = False):
    at.file_uploader(key="sdtm_files").set_value(uploads)
    at.text_area(key="mapping_text").set_value(mapping)
    at.text_input(key="db_name").set_value(name)
    at.run()
    if replace:
        at.checkbox(key=f"replace:{name}.duckdb").check().run()
    at.button(key="import_sdtm").click().run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def scalar(path, query):
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(query).fetchall()[0][0]
    finally:
        con.close()


def test_import_writes_a_database_whose_counts_are_those_of_the_sdtm_files(sql, imports, sdtm):
    uploads, domains = sdtm
    at = submit(open_page(sql), uploads, synthetic.mapping_text(N_SUBJECTS))
    assert [s.value for s in at.success] == [f"Imported into {md(imports / 'trial.duckdb')}."]
    target = imports / "trial.duckdb"
    assert [c.value for c in at.code] == [f"SMC_DB={shlex.quote(str(target))} make run"]
    dm, ex, ae, supp = domains["DM"], domains["EX"], domains["AE"], domains["SUPPAE"]
    failures = int((dm["ARMCD"] == "SCRNFAIL").sum())
    assert scalar(target, "SELECT count(*) FROM subjects") == N_SUBJECTS
    assert scalar(target, "SELECT count(*) FROM subjects WHERE enrollment_date IS NULL") == failures
    assert scalar(target, "SELECT count(DISTINCT subject_id) FROM administrations") == ex["USUBJID"].nunique()
    assert scalar(target, "SELECT count(*) FROM adverse_events") == len(ae)
    assert scalar(target, "SELECT count(*) FROM adverse_events WHERE dlt = 'Y'") == len(supp)
    per_level = dict(duckdb.connect(str(target), read_only=True).execute(
        "SELECT dose_level, count(*) FROM subjects WHERE dose_level IS NOT NULL GROUP BY 1").fetchall())
    expected = dm[dm["ARMCD"] != "SCRNFAIL"]["ARMCD"].map(synthetic.ARMS).value_counts().to_dict()
    assert per_level == expected
    counts = {row["table"]: row["rows"] for row in at.dataframe[0].value.to_dict("records")}
    assert counts["subjects"] == N_SUBJECTS and counts["adverse_events"] == len(ae)


def test_an_uploaded_mapping_file_replaces_the_text(sql, imports, sdtm):
    uploads, _ = sdtm
    mapping = synthetic.mapping_text(N_SUBJECTS).replace(f"planned_enrollment = {N_SUBJECTS}",
                                                         "planned_enrollment = 99")
    at = open_page(sql)
    at.file_uploader(key="mapping_file").set_value(("map.toml", mapping.encode(), "application/toml"))
    submit(at, uploads, "this text is not TOML [", name="mapped")
    assert at.success, [e.value for e in at.error]
    assert scalar(imports / "mapped.duckdb", "SELECT planned_enrollment FROM studies") == 99


def test_problems_are_listed_and_nothing_is_written(sql, imports, sdtm, tmp_path):
    uploads, domains = sdtm
    dm = domains["DM"].copy()
    first_enrolled = dm.index[dm["ARMCD"] != "SCRNFAIL"][0]
    dm.loc[first_enrolled, ["ARMCD", "ACTARMCD"]] = "L9"
    ae = domains["AE"].copy()
    ae.loc[0, "AESTDTC"] = "2024-13-01"
    broken = [u for u in uploads if u[0] not in ("dm.xpt", "ae.xpt")]
    broken += [("dm.csv", dm.to_csv(index=False).encode(), "text/csv"),
               ("ae.csv", ae.to_csv(index=False).encode(), "text/csv")]
    imports.mkdir()
    existing = imports / "trial.duckdb"
    existing.write_bytes(b"an earlier import")
    before = hashlib.sha256(existing.read_bytes()).hexdigest()

    # Replace ticked: even when asked to replace it, a refused import keeps the earlier file.
    at = submit(open_page(sql), broken, synthetic.mapping_text(N_SUBJECTS), replace=True)
    assert len(at.error) == 1 and at.error[0].value.startswith("Import refused: 2 error(s)")
    problems = at.dataframe[0].value
    errors = problems[problems["severity"] == "error"]
    assert set(zip(errors["domain"], errors["record"], errors["variable"], errors["value"])) == {
        ("DM", f"USUBJID {dm.at[first_enrolled, 'USUBJID']} (dm.csv row {first_enrolled + 2})", "ACTARMCD", "L9"),
        ("AE", f"USUBJID {ae.at[0, 'USUBJID']} AESEQ 1", "AESTDTC", "2024-13-01"),
    }
    assert hashlib.sha256(existing.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in imports.iterdir()) == ["trial.duckdb"]


@pytest.mark.parametrize("name, message", [
    ("demo", "is the database this dashboard serves"),
    ("../escape", "is not a usable file name"),
], ids=["served-database", "path"])
def test_a_name_that_would_replace_the_served_database_or_leave_the_folder_is_refused(
        sql, app_env, monkeypatch, sdtm, name, message):
    monkeypatch.setenv("SMC_IMPORT_DIR", str(app_env.parent))  # the served demo.duckdb lives here
    before = hashlib.sha256(app_env.read_bytes()).hexdigest()
    at = submit(open_page(sql), sdtm[0], synthetic.mapping_text(N_SUBJECTS), name=name)
    assert len(at.error) == 1 and message in at.error[0].value
    assert hashlib.sha256(app_env.read_bytes()).hexdigest() == before


def test_the_import_button_waits_for_files(sql, imports):
    at = open_page(sql)
    assert at.button(key="import_sdtm").disabled


# --------------------------------------------------------------------------- names in use, locks, leftovers


@pytest.fixture()
def private_tmp(tmp_path, monkeypatch):
    """The temp dir the page's code would use (Python's and the C libraries'), private to this test, so that
    anything an import leaves there is seen even while other tests run."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("typed", ["trial", " trial ", "trial.duckdb"], ids=["name", "spaces", "suffix"])
def test_a_name_in_use_is_refused_until_replace_is_ticked(sql, imports, sdtm, private_tmp, typed):
    uploads, domains = sdtm
    mapping = synthetic.mapping_text(N_SUBJECTS)
    imports.mkdir()
    existing = imports / "trial.duckdb"
    existing.write_bytes(b"an earlier import")
    before = digest(existing)

    at = submit(open_page(sql), uploads, mapping, name=typed)
    assert len(at.error) == 1, [e.value for e in at.error]
    assert "trial.duckdb already exists" in at.error[0].value and "Replace the existing trial" in at.error[0].value
    assert not at.success
    assert digest(existing) == before
    assert sorted(p.name for p in imports.iterdir()) == ["trial.duckdb"]

    box = at.checkbox(key="replace:trial.duckdb")
    assert box.label == f"Replace the existing {md('trial.duckdb')}" and not box.value
    box.check().run()
    at.button(key="import_sdtm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert scalar(existing, "SELECT count(*) FROM subjects") == N_SUBJECTS
    assert scalar(existing, "SELECT count(*) FROM adverse_events") == len(domains["AE"])
    assert sorted(p.name for p in imports.iterdir()) == ["trial.duckdb"]
    assert list(private_tmp.iterdir()) == []


def test_a_replace_tick_for_one_name_does_not_carry_to_another(sql, imports, sdtm):
    uploads, _ = sdtm
    imports.mkdir()
    for name in ("first", "second"):
        (imports / f"{name}.duckdb").write_bytes(name.encode())
    at = submit(open_page(sql), uploads, synthetic.mapping_text(N_SUBJECTS), name="first", replace=False)
    at.checkbox(key="replace:first.duckdb").check().run()
    at.text_input(key="db_name").set_value("second").run()
    assert not at.checkbox(key="replace:second.duckdb").value
    at.button(key="import_sdtm").click().run()
    assert "second.duckdb already exists" in at.error[0].value
    assert [(imports / f"{n}.duckdb").read_bytes() for n in ("first", "second")] == [b"first", b"second"]


def test_a_target_another_import_is_writing_is_refused_at_once(sql, imports, sdtm, private_tmp):
    uploads, _ = sdtm
    imports.mkdir()
    with Target(imports / "trial.duckdb"):  # another import holds the target (the lock is per open file)
        at = submit(open_page(sql), uploads, synthetic.mapping_text(N_SUBJECTS))
        assert len(at.error) == 1 and at.error[0].value.startswith("Import refused: 1 error(s)")
        messages = at.dataframe[0].value["message"].tolist()
        assert len(messages) == 1 and "another import is writing" in messages[0]
        assert not (imports / "trial.duckdb").exists()
    assert sorted(p.name for p in imports.iterdir()) == []
    at.button(key="import_sdtm").click().run()  # once that import is done, the same click succeeds
    assert at.success and scalar(imports / "trial.duckdb", "SELECT count(*) FROM subjects") == N_SUBJECTS
    assert list(private_tmp.iterdir()) == []


def test_a_dead_imports_leftovers_are_swept_and_a_live_ones_kept(sql, imports, sdtm):
    uploads, _ = sdtm
    imports.mkdir()
    # What a killed server leaves: a work folder of uploads and a lock file nobody holds, for two names.
    for name in ("trial", "other"):
        work = imports / f".{name}.duckdb.k1ll3d_x.import"
        work.mkdir()
        (work / "dm.xpt").write_bytes(b"half an upload")
        (imports / f"{name}.duckdb.lock").touch()
    with Target(imports / "busy.duckdb"):  # a running import: its folder must survive the sweep
        live = imports / ".busy.duckdb.running1.import"
        live.mkdir()
        at = submit(open_page(sql), uploads, synthetic.mapping_text(N_SUBJECTS))
        assert at.success, [e.value for e in at.error]
        assert sorted(p.name for p in imports.iterdir()) == [
            ".busy.duckdb.running1.import", "busy.duckdb.lock", "trial.duckdb"]
        live.rmdir()


@pytest.mark.parametrize("limit, value, what", [
    ("UPLOAD_MAX_MB", 0, "setting upload_max_mb"),
    ("IMPORT_MAX_MB", 0, "setting import_max_mb"),
    ("IMPORT_MAX_COLUMNS", 5, "setting import_max_columns"),
    ("IMPORT_MAX_ROWS", 10, "setting import_max_rows"),
], ids=["upload-size", "set-size", "columns", "rows"])
def test_uploads_past_a_limit_are_refused_naming_the_limit(sql, imports, sdtm, private_tmp, monkeypatch,
                                                           limit, value, what):
    uploads, _ = sdtm
    monkeypatch.setattr(settings, limit, value)
    at = submit(open_page(sql), uploads, synthetic.mapping_text(N_SUBJECTS))
    assert len(at.error) == 1 and at.error[0].value.startswith("Import refused:")
    problems = at.dataframe[0].value
    errors = problems[problems["severity"] == "error"]
    assert len(errors) and all(what in m for m in errors["message"]), errors.to_dict("records")
    if limit in ("UPLOAD_MAX_MB", "IMPORT_MAX_COLUMNS", "IMPORT_MAX_ROWS"):  # each file is named
        assert set(errors["domain"]) <= {name for name, _, _ in uploads} and len(errors["domain"].iloc[0])
    assert not imports.exists() or sorted(p.name for p in imports.iterdir()) == []
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("mapping, message", [
    (b"a = " + b"[" * 5_000 + b"]" * 5_000, "levels deep"),
    (b"[study]\nx = " + b"{a = " * 50 + b"1" + b"}" * 50, "levels deep"),
    ("[study]\ntitle = \"caf\u00e9\"\n".encode("latin-1"), "is not UTF-8 text"),
    (b"# " + b"x" * 300_000, "setting mapping_max_chars"),
], ids=["deep-arrays", "deep-tables", "not-utf8", "too-long"])
def test_a_hostile_mapping_file_is_a_listed_problem_not_a_traceback(sql, imports, sdtm, mapping, message):
    uploads, _ = sdtm
    at = open_page(sql)
    at.file_uploader(key="mapping_file").set_value(("map.toml", mapping, "application/toml"))
    submit(at, uploads, synthetic.mapping_text(N_SUBJECTS))
    assert len(at.error) == 1 and at.error[0].value.startswith("Import refused: 1 error(s)")
    problems = at.dataframe[0].value
    assert problems["domain"].tolist() == ["mapping file"] and message in problems["message"].iloc[0]
    assert not imports.exists() or sorted(p.name for p in imports.iterdir()) == []


@pytest.mark.parametrize("name", ["![x](http://example.com/x.png)", "[x](javascript:alert(1))", "<b>x</b>"])
def test_a_name_is_shown_as_text_not_markdown(sql, imports, sdtm, name):
    at = submit(open_page(sql), sdtm[0], synthetic.mapping_text(N_SUBJECTS), name=name)
    (error,) = at.error
    assert "is not a usable file name" in error.value
    assert re.search(r"(?<!\\)[\[\]<>]", error.value) is None, error.value  # every bracket escaped
    assert "\\<name\\>.duckdb" in at.text_input(key="db_name").help


# --------------------------------------------------------------------------- serving a registry of data cuts


@pytest.fixture()
def registry(tmp_path, demo_cuts, monkeypatch):
    """A copy of the demo registry, served: the Import page adds a cut to it."""
    import shutil

    folder = tmp_path / "registry"
    shutil.copytree(demo_cuts, folder)
    monkeypatch.delenv("SMC_DB", raising=False)
    monkeypatch.setenv("SMC_CUTS", str(folder))
    return folder


def test_serving_a_registry_the_import_becomes_its_newest_cut_and_no_cut_is_touched(registry, sdtm):
    from smc.store.cuts import file_sha256, list_cuts

    uploads, domains = sdtm
    before = {c.path: c.sha256 for c in list_cuts(registry)}
    at = run_app("IDOV-SAFE", dt_of_latest(registry, "IDOV-SAFE"), PAGE, user="datamanager")
    assert at.toggle(key="as_cut").value is True
    at.file_uploader(key="sdtm_files").set_value(uploads)
    at.text_area(key="mapping_text").set_value(synthetic.mapping_text(N_SUBJECTS))
    at.text_input(key="cut_label").set_value("March transfer")
    at.run()
    at.button(key="import_sdtm").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    after = list_cuts(registry)
    assert len(after) == len(before) + 1
    new = next(c for c in after if c.path not in before)
    assert new.label == "March transfer" and new.sha256 == file_sha256(new.path)
    assert {c.path: file_sha256(c.path) for c in after if c.path in before} == before  # every cut as it was
    assert any("March transfer" in s.value for s in at.success)
    dm = domains["DM"]
    assert scalar(new.path, "SELECT count(*) FROM subjects") == len(dm) == N_SUBJECTS


def test_a_refused_import_adds_no_cut(registry, sdtm):
    from smc.store.cuts import list_cuts

    uploads, _ = sdtm
    before = list_cuts(registry)
    at = run_app("IDOV-SAFE", dt_of_latest(registry, "IDOV-SAFE"), PAGE, user="datamanager")
    at.file_uploader(key="sdtm_files").set_value([u for u in uploads if not u[0].lower().startswith("dm")])
    at.text_area(key="mapping_text").set_value(synthetic.mapping_text(N_SUBJECTS))
    at.run()
    at.button(key="import_sdtm").click().run()
    assert not at.exception
    assert any("Import refused" in e.value for e in at.error)
    assert list_cuts(registry) == before
    assert not [p for p in registry.iterdir() if p.name.startswith(".new-cut.")]  # no private file left


def dt_of_latest(registry, study_id):
    import datetime as dt

    from smc.store.cuts import list_cuts

    return dt.date.fromisoformat(list_cuts(registry)[-1].studies[study_id])
