"""Small statistical helpers shared by every page: the exact (Clopper–Pearson) CI of a proportion.

Rules: docs/rules.md#exact-confidence-intervals
"""
from __future__ import annotations

import functools

from scipy.stats import binomtest


@functools.lru_cache(maxsize=4096)  # pure, and the same few (k, n) recur on every page and study
def exact_ci(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float] | tuple[None, None]:
    """Clopper–Pearson exact confidence interval of a proportion; (None, None) when n = 0."""
    if n == 0:
        return None, None
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)
