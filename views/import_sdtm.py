"""Import: uploaded SDTM datasets and a mapping file become a new database file."""
import streamlit as st

from smc import ui
from smc.ingest.load import ERROR, ImportFailed
from smc.ingest.sdtm.mapping import TEMPLATE
from smc.ingest.sdtm.upload import import_target, import_uploads, problems_table

st.title("Import SDTM")
st.caption("CDISC SDTM datasets (SAS transport .xpt or CSV with SDTM variable names) and a mapping file become a "
           "new, separate database. DM, EX and AE are required; SUPPAE, DS, SV, TS, RS, TR, TU and LB are read "
           "when given. Every problem is listed at once, with the domain, record and variable; nothing is "
           "written unless there is no error. The database this dashboard serves is never changed here.")

files = st.file_uploader("SDTM datasets", type=["xpt", "csv"], accept_multiple_files=True, key="sdtm_files")
left, right = st.columns([1, 2])
with left:
    mapping_file = st.file_uploader("Mapping file (.toml)", type=["toml"], key="mapping_file",
                                    help="Replaces the text on the right when given. 'The mapping file' in docs/cli.md documents every key.")
    name = st.text_input("New database name", value="sdtm_import", key="db_name",
                         help=f"Written as <name>.duckdb in {ui.imports_dir()}")
with right:
    mapping_text = st.text_area("Mapping (TOML)", value=TEMPLATE, height=420, key="mapping_text")

if st.button("Import", key="import_sdtm", type="primary", disabled=not files):
    target, refusal = import_target(ui.imports_dir(), name, ui.database_path())
    if refusal:
        st.session_state["import_result"] = {"refusal": refusal}
    else:
        text = mapping_text
        if mapping_file is not None:
            try:
                text = mapping_file.getvalue().decode("utf-8")
            except UnicodeDecodeError:
                text = None
                st.session_state["import_result"] = {"refusal": f"{mapping_file.name} is not UTF-8 text"}
        if text is not None:
            try:
                with st.spinner("Importing…"):
                    warnings, counts = import_uploads([(f.name, f.getvalue()) for f in files], text, target)
                st.session_state["import_result"] = {"target": target, "warnings": warnings, "counts": counts}
            except ImportFailed as failed:
                st.session_state["import_result"] = {"failed": failed.problems, "target": target}

result = st.session_state.get("import_result")
if result and "refusal" in result:
    st.error(result["refusal"])
elif result and "failed" in result:
    problems = problems_table(result["failed"])
    n_errors = int((problems["severity"] == ERROR).sum())
    st.error(f"Import refused: {n_errors} error(s). Nothing was written; {result['target'].name} is unchanged.")
    st.dataframe(problems, hide_index=True, key="import_problems")
    ui.download_csv(problems, "sdtm_import_problems.csv", key="import_problems_csv")
elif result:
    target = result["target"]
    st.success(f"Imported into {target}.")
    st.dataframe([{"table": t, "rows": n} for t, n in result["counts"].items()], hide_index=True,
                 key="import_counts")
    st.markdown(f"Serve it with `SMC_DB={target} make run`.")
    if result["warnings"]:
        st.subheader(f"{len(result['warnings'])} warning(s)")
        warnings = problems_table(result["warnings"])
        st.dataframe(warnings, hide_index=True, key="import_warnings")
        ui.download_csv(warnings, f"{target.stem}_warnings.csv", key="import_warnings_csv")
