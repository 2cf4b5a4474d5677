"""More studies of the seed trials' kinds, for measuring the dashboard at a sponsor's portfolio scale.

``build-demo --scale N`` adds these to the three seed trials: about 0.37·N studies holding about
100·N subjects, one of them 20·N (2,000 at N = 100). Each is a copy of a seed trial's design and
modality with its own seed, a short escalation that ends in an MTD or a cleared level, and an
expansion cohort at that level that enrolls over a year or two from many sites; infusion reactions
recur with each course. The seed trials themselves are unchanged, so their tests still hold.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

from smc.demo.specs import SPECS, TrialSpec

# (template study, escalation script that ends in a decision, expansion level, when it opens)
TEMPLATES = [
    (SPECS[0], {1: "N", 2: "N", 3: "N", 4: "N", 5: "TNNNNN", 6: "TNT"}, 5, "mtd"),
    (SPECS[1], {1: "NNN", 2: "NXNN", 3: "TNNNNN", 4: "NTT"}, 3, "mtd"),
    (SPECS[2], {1: "NNN", 2: "NTNNNN", 3: "TT"}, 2, "mtd"),
]
COUNTRIES = [("US", "United States"), ("CN", "China"), ("DE", "Germany"), ("ES", "Spain"), ("AU", "Australia"),
             ("KR", "Republic of Korea"), ("FR", "France"), ("GB", "United Kingdom")]
SUBJECTS_PER_SCALE = 100  # enrolled subjects per unit of scale, across the portfolio
LARGEST_PER_SCALE = 20  # the largest study's subjects per unit of scale
STUDIES_PER_SCALE = 0.37


def site_pool(n: int) -> list[tuple[str, str, str]]:
    """Site ids like ``DE-014``, spread over countries."""
    return [(f"{code}-{i + 1:03d}", f"{country} oncology site {i + 1}", country)
            for i in range(n) for code, country in [COUNTRIES[i % len(COUNTRIES)]]]


def portfolio_specs(scale: int) -> list[TrialSpec]:
    """The extra studies for ``--scale`` (none at scale 1, the plain demo)."""
    n_studies = round(STUDIES_PER_SCALE * scale) if scale > 1 else 0
    if n_studies == 0:
        return []
    largest = LARGEST_PER_SCALE * scale
    others = max(12, round((SUBJECTS_PER_SCALE - LARGEST_PER_SCALE) * scale / max(1, n_studies - 1)))
    pool = site_pool(max(8, n_studies * 3))
    specs = []
    for k in range(n_studies):
        template, script, level, opens = TEMPLATES[k % len(TEMPLATES)]
        escalated = sum(len(fates) for fates in script.values())
        size = largest if k == 0 else others
        expansion = max(3, size - escalated)
        n_sites = min(len(pool), max(2, size // 60))
        sites = [pool[(k * 7 + j) % len(pool)] for j in range(n_sites)]
        study_id = f"{template.study['study_id']}-P{k + 1:02d}"
        start = template.start - dt.timedelta(days=3 * 365 + 45 * k)  # data cuts in the past; older studies opened earlier
        specs.append(dataclasses.replace(
            template,
            study=dict(template.study, study_id=study_id, title=f"{template.study['title']} (portfolio study {k + 1})",
                       planned_enrollment=size + size // 10, enrollment_target_date=None),
            script=script, start=start, expansion=(level, expansion, opens), cut_after="expansion", cut_days=30,
            expansion_days=int(180 + expansion * 0.35), recurring_aes=True, lab_interval_days=7, sites=sites,
            n_screen_fail=max(3, size // 6)))
    return specs
