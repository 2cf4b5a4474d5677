"""Import: uploaded SDTM datasets and a mapping file become a new database file."""
import shlex
from pathlib import Path

import streamlit as st

from smc import ui
from smc.analysis.changes import keep_comparisons
from smc.ingest.load import ERROR, ImportFailed
from smc.ingest.register import add_cut
from smc.ingest.sdtm.mapping import TEMPLATE
from smc.ingest.sdtm.upload import import_target, import_uploads, problems_table
from smc.ui.text import md

st.title("Import SDTM")
st.caption("CDISC SDTM datasets (SAS transport .xpt or CSV with SDTM variable names) and a mapping file become a "
           "new, separate database. DM, EX and AE are required; SUPPAE, DS, SV, TS, RS, TR, TU and LB are read "
           "when given. Every problem is listed at once, with the domain, record and variable; nothing is "
           "written unless there is no error. A data cut already stored is never changed here.")

files = st.file_uploader("SDTM datasets", type=["xpt", "csv"], accept_multiple_files=True, key="sdtm_files")
left, right = st.columns([1, 2])
with left:
    mapping_file = st.file_uploader("Mapping file (.toml)", type=["toml"], key="mapping_file",
                                    help="Replaces the text on the right when given. 'The mapping file' in docs/cli.md documents every key.")
    registry = ui.serving_registry()
    as_cut = registry is not None and st.toggle(
        "Add as a new data cut of the registry", value=True, key="as_cut",
        help=f"The import becomes the newest cut of {md(registry)}, listed in the sidebar at once; no cut is ever "
             "replaced. Off: a separate database file, served only when you point SMC_DB at it.")
    if as_cut:
        label = st.text_input("Label of the new cut", value="", key="cut_label", placeholder="e.g. transfer 2025-03",
                              help="Shown in the sidebar beside its cut date (default: its source and date).")
    name = st.text_input("New database name", value="sdtm_import", key="db_name", disabled=as_cut,
                         help=f"Written as {md('<name>.duckdb')} in {md(ui.imports_dir())}")
    # An existing database is replaced only when asked, per name: a tick for one name never carries to another.
    existing, _ = import_target(ui.imports_dir(), name, ui.database_path(), replace=True)
    replace = False
    if not as_cut and existing is not None and existing.exists():
        replace = st.checkbox(f"Replace the existing {md(existing.name)}", key=f"replace:{existing.name}",
                              help="Without this tick an existing database of this name is kept and the import "
                                   "is refused.")
with right:
    mapping_text = st.text_area("Mapping (TOML)", value=TEMPLATE, height=420, key="mapping_text")

clicked = st.button("Import", key="import_sdtm", type="primary", disabled=not files)
if clicked and as_cut:
    upload = (mapping_file.name, mapping_file.getvalue()) if mapping_file is not None else None
    try:
        with st.spinner("Importing…"):
            cut, (warnings, counts) = add_cut(registry, lambda path: import_uploads(
                [(f.name, f.getvalue()) for f in files], mapping_text, path, mapping_file=upload), label or None)
            keep_comparisons(registry, cut)
        st.session_state["import_result"] = {"target": Path(cut.path), "cut": cut, "warnings": warnings,
                                             "counts": counts}
    except ImportFailed as failed:
        st.session_state["import_result"] = {"failed": failed.problems, "target": registry}
elif clicked:
    target, refusal = import_target(ui.imports_dir(), name, ui.database_path(), replace=replace)
    if refusal:
        st.session_state["import_result"] = {"refusal": refusal}
    else:
        upload = (mapping_file.name, mapping_file.getvalue()) if mapping_file is not None else None
        try:
            with st.spinner("Importing…"):
                warnings, counts = import_uploads([(f.name, f.getvalue()) for f in files], mapping_text, target,
                                                  replace=replace, mapping_file=upload)
            st.session_state["import_result"] = {"target": target, "warnings": warnings, "counts": counts}
        except ImportFailed as failed:
            st.session_state["import_result"] = {"failed": failed.problems, "target": target}

result = st.session_state.get("import_result")
if result and "refusal" in result:
    st.error(md(result["refusal"]))
elif result and "failed" in result:
    problems = problems_table(result["failed"])
    n_errors = int((problems["severity"] == ERROR).sum())
    st.error(f"Import refused: {n_errors} error(s). Nothing was written; {md(result['target'].name)} is unchanged.")
    st.dataframe(problems, hide_index=True, key="import_problems")
    ui.download_csv(problems, "sdtm_import_problems.csv", key="import_problems_csv")
elif result:
    target = result["target"]
    if "cut" in result:
        st.success(f"Added the data cut {md(result['cut'].title)} ({md(target.name)}, sha256 "
                   f"{result['cut'].sha256[:12]}…): pick it in the sidebar's Data cut.")
    else:
        st.success(f"Imported into {md(target)}.")
    st.dataframe([{"table": t, "rows": n} for t, n in result["counts"].items()], hide_index=True,
                 key="import_counts")
    if "cut" not in result:
        st.markdown("Serve it with:")
        st.code(f"SMC_DB={shlex.quote(str(target))} make run", language="bash")  # a code block: no Markdown at all
    if result["warnings"]:
        st.subheader(f"{len(result['warnings'])} warning(s)")
        warnings = problems_table(result["warnings"])
        st.dataframe(warnings, hide_index=True, key="import_warnings")
        ui.download_csv(warnings, f"{target.stem}_warnings.csv", key="import_warnings_csv")
