"""SMC Dashboard: entry point (``streamlit run app.py``)."""
import streamlit as st

from smc import SettingError

st.set_page_config(page_title="SMC Dashboard", page_icon=":material/monitor_heart:", layout="wide")
try:
    from smc import ui
    from smc.ui import pages
except SettingError as exc:  # the limits are read as smc.settings is imported
    st.error("The server is misconfigured:")
    st.code(str(exc), language=None, wrap_lines=True)  # literal text: smc.ui (and its md) did not import
    st.stop()

PAGES = [st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
         for p in pages.PAGES]

navigation = st.navigation(PAGES)
try:
    database = ui.open_database()
    context = ui.sidebar(database)
except Exception as exc:  # noqa: BLE001 - a broken file must not show a traceback
    ui.log.exception("could not open the database")
    st.error(f"The database could not be read: {type(exc).__name__}: {ui.md(exc)}")
    st.stop()
ui.set_context(context)
ui.banner(context)
ui.run_page(navigation)
