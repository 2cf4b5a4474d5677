"""SMC Dashboard: entry point (``streamlit run app.py``)."""
import streamlit as st

from smc import ui

st.set_page_config(page_title="SMC Dashboard", page_icon=":material/monitor_heart:", layout="wide")

PAGES = [
    st.Page("views/overview.py", title="Overview", icon=":material/summarize:", default=True),
    st.Page("views/escalation.py", title="Escalation", icon=":material/stacked_line_chart:", url_path="escalation"),
    st.Page("views/safety.py", title="Safety", icon=":material/health_and_safety:", url_path="safety"),
    st.Page("views/labs.py", title="Safety labs", icon=":material/biotech:", url_path="labs"),
    st.Page("views/efficacy.py", title="Efficacy", icon=":material/trending_down:", url_path="efficacy"),
    st.Page("views/biomarkers.py", title="Biomarkers", icon=":material/science:", url_path="biomarkers"),
    st.Page("views/survival.py", title="Survival", icon=":material/timeline:", url_path="survival"),
    st.Page("views/enrollment.py", title="Enrollment", icon=":material/group_add:", url_path="enrollment"),
    st.Page("views/explore.py", title="Explore", icon=":material/query_stats:", url_path="explore"),
    st.Page("views/import_sdtm.py", title="Import SDTM", icon=":material/upload_file:", url_path="import"),
    st.Page("views/subject.py", title="Subject profile", icon=":material/person:", url_path=ui.SUBJECT_PAGE),
]

navigation = st.navigation(PAGES)
try:
    database = ui.open_database()
    context = ui.sidebar(database)
except Exception as exc:  # noqa: BLE001 - a broken file must not show a traceback
    ui.log.exception("could not open the database")
    st.error(f"The database could not be read: {type(exc).__name__}: {exc}")
    st.stop()
ui.set_context(context)
ui.banner(context)
ui.run_page(navigation)
