"""``python -m smc build-demo``: the seed trials (and, with ``--scale``, the portfolio) simulated, loaded
through the same validator and atomic loader as a CSV import, and given the SMC's decision log."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from smc.analysis.changes import keep_comparisons
from smc.demo.decisions import record_demo_decisions, record_demo_decisions_on_cuts
from smc.demo.portfolio import portfolio_specs
from smc.demo.simulate import simulate_trial
from smc.demo.specs import SPECS
from smc.demo.transfers import TRANSFERS, as_known_at, with_sponsor_ids
from smc.ingest import load
from smc.ingest.register import add_cut
from smc.store import cuts


def demo_tables(seed: int = 2024, scale: int = 1) -> dict[str, pd.DataFrame]:
    """The three seed trials (and at ``scale`` > 1 the portfolio studies) as contract tables (Python values,
    not yet text)."""
    combined: dict[str, list[dict]] = {}
    sites = {}
    for index, spec in enumerate(SPECS + portfolio_specs(scale)):
        rng = np.random.default_rng([seed, index])
        for table, rows in simulate_trial(spec, rng).items():
            combined.setdefault(table, []).extend(rows)
        sites.update({sid: dict(site_id=sid, name=name, country=country) for sid, name, country in spec.sites})
    combined["sites"] = list(sites.values())
    return {table: pd.DataFrame(rows) for table, rows in combined.items()}


def _source(seed: int, scale: int) -> str:
    return f"demo:seed={seed}" + (f",scale={scale}" if scale > 1 else "")


def build_demo(db_path: str | Path, seed: int = 2024, scale: int = 1) -> list[load.Problem]:
    """Simulate and load the demo data (its final cut) into one file through the same validator and loader as a
    CSV import, and give it a decision log (unless one is there already)."""
    tables = with_sponsor_ids(demo_tables(seed, scale))
    warnings = load.import_tables({t: load.as_text(f) for t, f in tables.items()}, db_path, _source(seed, scale))
    record_demo_decisions(db_path)
    return warnings


def build_demo_cuts(folder: str | Path, seed: int = 2024, scale: int = 1) -> tuple[list[cuts.Cut], list[load.Problem]]:
    """Add the demo's three successive cuts, a month apart, to the registry at ``folder`` (each through the
    loader, as an import), and the simulated SMC's decisions on each. A cut already registered (the same
    seed and scale built before) is refused, and nothing is written: a registry is never rewritten."""
    final = with_sponsor_ids(demo_tables(seed, scale))
    added, warnings = [], []
    for transfer in TRANSFERS:
        raw = {t: load.as_text(f) for t, f in as_known_at(final, transfer).items()}
        cut, problems = add_cut(folder, lambda path, raw=raw: load.import_tables(raw, path, _source(seed, scale)),
                                transfer.label)
        added.append(cut)
        warnings += problems
        keep_comparisons(folder, cut)
    record_demo_decisions_on_cuts(folder)
    return added, warnings
