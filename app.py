"""SMC Dashboard: entry point (``streamlit run app.py``)."""
import streamlit as st

from smc import SettingError

st.set_page_config(page_title="SMC Dashboard", page_icon=":material/monitor_heart:", layout="wide")
try:
    from smc import ui
    from smc.ui import pages, review, sign_in
except SettingError as exc:  # the limits are read as smc.settings is imported
    st.error("The server is misconfigured:")
    st.code(str(exc), language=None, wrap_lines=True)  # literal text: smc.ui (and its md) did not import
    st.stop()

access_log = ui.access_log_path()
viewer = sign_in.require_viewer(access_log)  # the sign-in page, and stop, for anyone not signed in

# Every page is routed (a link to one this viewer may not open gets a logged "no access", not a silent other
# page); the sidebar lists only those they may open.
PAGES = {p.key: st.Page(p.script, title=p.title, icon=p.icon, url_path=p.url_path or None, default=not p.url_path)
         for p in pages.PAGES}
navigation = st.navigation(list(PAGES.values()), position="hidden")
ui.page_links(viewer, PAGES)
sign_in.account(access_log, viewer)
page_key = next(key for key, page in PAGES.items() if page.url_path == navigation.url_path)
if not ui.may_open(viewer, page_key):
    sign_in.no_access(access_log, viewer, f"page {page_key}", f"the {pages.page(page_key).title} page is not open "
                      f"to the {viewer.role_title} role.")
try:
    context = ui.sidebar(ui.open_registry(), viewer, access_log)
except Exception as exc:  # noqa: BLE001 - a broken file must not show a traceback
    ui.log.exception("could not open the database")
    st.error(f"The database could not be read: {type(exc).__name__}: {ui.md(exc)}")
    st.stop()
ui.set_context(context)
ui.banner(context)
review.changes_banner(context)  # what changed since the last review: every page, under the as-of note
ui.run_page(navigation)
