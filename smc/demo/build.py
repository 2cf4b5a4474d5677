"""``python -m smc build-demo``: the seed trials (and, with ``--scale``, the portfolio) simulated, loaded
through the same validator and atomic loader as a CSV import, and given the SMC's decision log."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from smc.demo.decisions import record_demo_decisions
from smc.demo.portfolio import portfolio_specs
from smc.demo.simulate import simulate_trial
from smc.demo.specs import SPECS
from smc.ingest import load


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


def build_demo(db_path: str | Path, seed: int = 2024, scale: int = 1) -> list[load.Problem]:
    """Simulate and load the demo data through the same validator and loader as a CSV import, and give it a
    decision log (unless one is there already)."""
    raw = {table: load.as_text(frame) for table, frame in demo_tables(seed, scale).items()}
    source = f"demo:seed={seed}" + (f",scale={scale}" if scale > 1 else "")
    warnings = load.import_tables(raw, db_path, source)
    record_demo_decisions(db_path)
    return warnings
