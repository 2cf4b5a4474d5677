"""AppTest: the Import SDTM page turns uploaded datasets and a mapping into a new
database whose numbers are those of the SDTM files, lists every problem when it
refuses, and never touches the served database or an existing file on refusal."""
from __future__ import annotations

import hashlib

import duckdb
import pytest

from smc.ingest.sdtm import synthetic
from smc.ui import pages
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
    return run_app("IDOV-SAFE", data_cut(sql, "IDOV-SAFE"), PAGE)


def submit(at, uploads, mapping: str, name: str = "trial"):
    at.file_uploader(key="sdtm_files").set_value(uploads)
    at.text_area(key="mapping_text").set_value(mapping)
    at.text_input(key="db_name").set_value(name)
    at.run()
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
    assert [s.value for s in at.success] == [f"Imported into {imports / 'trial.duckdb'}."]
    target = imports / "trial.duckdb"
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

    at = submit(open_page(sql), broken, synthetic.mapping_text(N_SUBJECTS))
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
