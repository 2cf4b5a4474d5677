"""The app's pages, in sidebar order: the one list that ``app.py``, the bench and the tests read.

Page scripts live in ``views/``, not ``pages/``: Streamlit serves a ``pages/`` folder as legacy pages on a deep
link before ``st.navigation`` runs, and the sidebar is lost (measured on Streamlit 1.67).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    key: str  # short name: the bench's --pages, test ids
    script: str  # path from the repository root, as st.Page and AppTest.switch_page take it
    title: str
    icon: str
    url_path: str  # "" for the default page


PAGES: tuple[PageSpec, ...] = (
    PageSpec("overview", "views/overview.py", "Overview", ":material/summarize:", ""),
    PageSpec("escalation", "views/escalation.py", "Escalation", ":material/stacked_line_chart:", "escalation"),
    PageSpec("safety", "views/safety.py", "Safety", ":material/health_and_safety:", "safety"),
    PageSpec("labs", "views/labs.py", "Safety labs", ":material/biotech:", "labs"),
    PageSpec("efficacy", "views/efficacy.py", "Efficacy", ":material/trending_down:", "efficacy"),
    PageSpec("biomarkers", "views/biomarkers.py", "Biomarkers", ":material/science:", "biomarkers"),
    PageSpec("survival", "views/survival.py", "Survival", ":material/timeline:", "survival"),
    PageSpec("enrollment", "views/enrollment.py", "Enrollment", ":material/group_add:", "enrollment"),
    PageSpec("changes", "views/changes.py", "Changes", ":material/difference:", "changes"),
    PageSpec("explore", "views/explore.py", "Explore", ":material/query_stats:", "explore"),
    PageSpec("import", "views/import_sdtm.py", "Import SDTM", ":material/upload_file:", "import"),
    PageSpec("subject", "views/subject.py", "Subject profile", ":material/person:", "subject"),
)
_BY_KEY = {p.key: p for p in PAGES}
SUBJECT_PAGE = _BY_KEY["subject"].url_path  # the subject profile, linked from every listing
CHANGES_PAGE = _BY_KEY["changes"].url_path  # what changed since the last review, linked from every page's banner


def page(key: str) -> PageSpec:
    return _BY_KEY[key]


def script(key: str) -> str:
    """The page script of ``key``, e.g. ``script("safety") == "views/safety.py"``."""
    return _BY_KEY[key].script
