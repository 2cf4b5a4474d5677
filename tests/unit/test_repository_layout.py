"""Layout rules of the repository that no import would catch."""
from __future__ import annotations

from smc.ui import pages
from tests.helpers import ROOT


def test_there_is_no_top_level_pages_folder():
    """Streamlit serves a top-level ``pages/`` folder as legacy pages on a deep link before st.navigation runs, and
    the sidebar is lost (smc.ui.pages): the page scripts live in ``views/``."""
    assert not (ROOT / "pages").exists(), f"{ROOT / 'pages'} would be served as legacy pages; use views/"


def test_every_registered_page_script_is_a_file_in_views():
    views = ROOT / "views"
    assert [p.script for p in pages.PAGES if (ROOT / p.script).parent != views or not (ROOT / p.script).is_file()] == []
