"""``python -m smc bench-changes``: what comparing two data cuts costs, for the biggest study of a registry.

- diff_ms: :func:`smc.analysis.changes.load_changes` and its record listing, of the latest cut against its
  compared cut (the last review's, else the previous), on databases opened afresh each run: the comparison
  computed, as an import computes it;
- changes_cold_ms: the Changes page's first run under AppTest, every Streamlit cache cleared (a new session on a
  server that has not read these cuts yet), the comparison kept by the import as it is after one;
- banner_warm_ms: a warm rerun of the Overview page serving the registry (banner drawn from the shared cache)
  minus the same rerun serving the latest cut alone (no banner): what the banner adds to a warm page.
Budgets: changes_cold_ms ≤ 1,500; banner_warm_ms ≤ 50.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from smc.analysis.changes import keep_comparisons, load_changes, record_changes
from smc.decision_log.reviews import comparison_cut
from smc.store.cuts import Registry
from smc.store.db import Database
from smc.tools.bench import PAGES, BenchStudy, _app, _median, bench_studies

BUDGETS = {"changes_cold_ms": 1500, "banner_warm_ms": 50}


@dataclass
class ChangesBench:
    study: BenchStudy
    cut: str
    since: str
    records: int
    diff_ms: float
    changes_cold_ms: float
    banner_warm_ms: float
    errors: list[str]

    def markdown(self) -> str:
        over = [f"{k} {getattr(self, k):,.0f} > {v:,}" for k, v in BUDGETS.items() if getattr(self, k) > v]
        return (f"Comparing {self.cut} with {self.since} for {self.study.study_id} ({self.study.enrolled:,} "
                f"enrolled): {self.records:,} records added, removed or changed.\n\n"
                "| measure | median ms | budget |\n|---|---|---|\n"
                f"| diff computed (both cuts read, records matched, listed), as at import | {self.diff_ms:,.0f} | |\n"
                f"| Changes page, cold | {self.changes_cold_ms:,.0f} | ≤ {BUDGETS['changes_cold_ms']:,} |\n"
                f"| banner on a warm page | {self.banner_warm_ms:,.1f} | ≤ {BUDGETS['banner_warm_ms']} |\n\n"
                + ("All budgets hold." if not over else "Over budget: " + "; ".join(over))
                + ("" if not self.errors else "\n\nErrors: " + "; ".join(self.errors)))


def _banner_ms(page, study: BenchStudy, cut_path: str, link: dict[str, str], runs: int) -> tuple[float, list[str]]:
    """The median warm rerun of ``page`` serving the registry (with its banner) minus serving the same cut alone
    (none), the two sessions' reruns interleaved so that drift in the machine's speed falls on both."""
    sessions = {}
    for kind in ("registry", "alone"):
        _serve(kind, cut_path)
        sessions[kind] = _app(page, study)
        sessions[kind].query_params.update(link if kind == "registry" else {})
        sessions[kind].run()
    times: dict[str, list[float]] = {"registry": [], "alone": []}
    for _ in range(runs):
        for kind, at in sessions.items():
            _serve(kind, cut_path)
            started = time.perf_counter()
            at.run()
            times[kind].append((time.perf_counter() - started) * 1000)
    errors = [e.message for at in sessions.values() for e in at.exception]
    return round(_median(times["registry"]) - _median(times["alone"]), 1), errors


def _serve(kind: str, cut_path: str) -> None:
    if kind == "alone":
        os.environ["SMC_DB"] = cut_path
    else:
        os.environ.pop("SMC_DB", None)


def run_changes_bench(folder: str | Path, runs: int = 5) -> ChangesBench:
    import streamlit as st

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    registry = Registry.of_folder(folder)
    if len(registry.cuts) < 2:
        raise ValueError(f"{folder} holds {len(registry.cuts)} data cut(s); comparing needs two")
    cut = registry.latest
    study = bench_studies(Database(cut.path))[0]
    since = comparison_cut(registry, cut, study.study_id)
    if since is None:
        raise ValueError(f"{study.study_id} is in no cut before {cut.title}")
    diffs, found = [], None
    for _ in range(runs):
        started = time.perf_counter()
        found = record_changes(load_changes(Database(since.path), Database(cut.path), study.study_id))
        diffs.append((time.perf_counter() - started) * 1000)
    keep_comparisons(folder, cut)  # as the import of the cut did: the page reads what it kept

    by_name = {p.name: p for p in PAGES}
    link = {"cut": cut.short_id, "since": since.short_id}
    os.environ.pop("SMC_DB", None)
    os.environ["SMC_CUTS"] = str(Path(folder).resolve())
    cold, errors = [], []
    for _ in range(runs):
        st.cache_resource.clear()
        at = _app(by_name["changes"], study)
        at.query_params.update(link)
        started = time.perf_counter()
        at.run()
        cold.append((time.perf_counter() - started) * 1000)
        errors = [e.message for e in at.exception] + [e.value for e in at.error]
    banner, more = _banner_ms(by_name["overview"], study, cut.path, link, 4 * runs)
    return ChangesBench(study, cut.title, since.title, len(found), _median(diffs), _median(cold), banner,
                        errors + more)
