"""BOIN (Liu & Yuan 2015) boundaries, elimination, MTD estimate and advice: a second opinion beside the protocol rule.

Rules: docs/rules.md#boin-advice
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.stats import beta

ELIMINATION_CUTOFF = 0.95
MIN_N_FOR_ELIMINATION = 3


def boundaries(target: float = 0.30) -> tuple[float, float]:
    """(λe, λd): escalate when d/n ≤ λe, de-escalate when d/n ≥ λd."""
    phi1, phi2 = 0.6 * target, 1.4 * target
    lambda_e = math.log((1 - phi1) / (1 - target)) / math.log(target * (1 - phi1) / (phi1 * (1 - target)))
    lambda_d = math.log((1 - target) / (1 - phi2)) / math.log(phi2 * (1 - target) / (target * (1 - phi2)))
    return lambda_e, lambda_d


def prob_above_target(n_dlt: int, n: int, target: float) -> float:
    """Pr(p > φ | d DLTs in n) under a Beta(1, 1) prior."""
    return float(beta.sf(target, n_dlt + 1, n - n_dlt + 1))


def eliminated(n_dlt: int, n: int, target: float = 0.30) -> bool:
    return n >= MIN_N_FOR_ELIMINATION and prob_above_target(n_dlt, n, target) > ELIMINATION_CUTOFF


def first_eliminated(n: list[int], n_dlt: list[int], target: float = 0.30) -> int:
    """Index of the lowest eliminated level (it and all above are out); len(n) when none is."""
    return next((j for j in range(len(n)) if eliminated(n_dlt[j], n[j], target)), len(n))


def call(n_dlt: int, n: int, target: float = 0.30) -> str | None:
    """BOIN's interval call on a level's data alone: escalate, stay or de-escalate (None when n = 0)."""
    if n == 0:
        return None
    lambda_e, lambda_d = boundaries(target)
    if n_dlt / n <= lambda_e:
        return "escalate"
    return "de-escalate" if n_dlt / n >= lambda_d else "stay"


def decision_table(target: float = 0.30, max_n: int = 18) -> list[dict]:
    """For n = 1..max_n: escalate if DLTs ≤ …, de-escalate if ≥ …, eliminate if ≥ … (None: never)."""
    lambda_e, lambda_d = boundaries(target)
    rows = []
    for n in range(1, max_n + 1):
        eliminate = next((d for d in range(n + 1) if eliminated(d, n, target)), None)
        rows.append({
            "n": n,
            # Rounded before flooring/ceiling so that d/n exactly on a boundary is not lost to float error.
            "escalate_if_dlt_le": math.floor(round(n * lambda_e, 9)),
            "deescalate_if_dlt_ge": math.ceil(round(n * lambda_d, 9)),
            "eliminate_if_dlt_ge": eliminate,
        })
    return rows


def isotonic_rates(n: list[int], n_dlt: list[int]) -> list[float]:
    """Pooled-adjacent-violators estimate of DLT rates, weighted by inverse variance (as select.mtd)."""
    n_arr, d_arr = np.asarray(n, float), np.asarray(n_dlt, float)
    rates = (d_arr + 0.05) / (n_arr + 0.1)
    variances = (d_arr + 0.05) * (n_arr - d_arr + 0.05) / ((n_arr + 0.1) ** 2 * (n_arr + 0.1 + 1))
    return list(isotonic_regression(rates, weights=1 / variances).x)


def mtd_estimate(n: list[int], n_dlt: list[int], target: float = 0.30) -> tuple[int | None, list[float | None]]:
    """Index of the estimated MTD among the levels, and the isotonic rate of each level.

    Untried levels (n = 0) get no rate; levels at or above the lowest eliminated
    one are excluded. Closest to φ wins; a tie goes to the higher level when the
    rates are below φ and to the lower when above (select.mtd).
    """
    out = first_eliminated(n, n_dlt, target)
    tried = [i for i, k in enumerate(n) if k > 0 and i < out]
    rates: list[float | None] = [None] * len(n)
    if not tried:
        return None, rates
    fitted = isotonic_rates([n[i] for i in tried], [n_dlt[i] for i in tried])
    for i, rate in zip(tried, fitted):
        rates[i] = float(rate)
    distance = [abs(r - target) for r in fitted]
    best = min(distance)
    ties = [i for i, dist in zip(tried, distance) if math.isclose(dist, best, abs_tol=1e-12)]
    chosen = ties[-1] if rates[ties[0]] < target else ties[0]
    return chosen, rates


@dataclass(frozen=True)
class BoinAdvice:
    target: float
    lambda_e: float
    lambda_d: float
    current_level: int | None
    advice: str  # escalate | stay | de-escalate | stop | enroll
    to_level: int | None
    mtd_estimate: int | None
    reason: str


def advise(levels: list[int], labels: list[str], n: list[int], n_dlt: list[int],
           current_level: int | None, target: float = 0.30, start_level: int | None = None) -> BoinAdvice:
    """BOIN's call for the current level (the level of the latest escalation subject); with nobody treated, to
    start at ``start_level`` (default: level 1, else the lowest)."""
    lambda_e, lambda_d = boundaries(target)
    mtd_index, _ = mtd_estimate(n, n_dlt, target)
    mtd = levels[mtd_index] if mtd_index is not None else None

    def result(advice, to_index, reason):
        return BoinAdvice(target, lambda_e, lambda_d, current_level, advice,
                          levels[to_index] if to_index is not None else None, mtd, reason)

    if current_level is None:
        start = levels.index(start_level) if start_level in levels else levels.index(1) if 1 in levels else 0
        return result("enroll", start, f"No subject treated yet: start at {labels[start]}.")
    i = levels.index(current_level)
    d, k = n_dlt[i], n[i]
    first_out = first_eliminated(n, n_dlt, target)
    if i >= first_out:
        why = (f"{labels[first_out]} is eliminated (Pr(DLT rate > {target:g}) > {ELIMINATION_CUTOFF})"
               + ("" if i == first_out else f" and {labels[i]} is above it"))
        if first_out == 0:
            return result("stop", None, f"{why}; no lower level remains: stop.")
        return result("de-escalate", first_out - 1, f"{why}: de-escalate to {labels[first_out - 1]}.")
    if k == 0:
        return result("stay", i, f"No evaluable subject at {labels[i]} yet: keep treating at it.")
    rate = f"{d}/{k} = {d / k:.2f}"
    interval = call(d, k, target)
    if interval == "escalate":
        nxt = i + 1
        if nxt < first_out:
            return result("escalate", nxt, f"DLT rate {rate} ≤ λe {lambda_e:.4f}: escalate to {labels[nxt]}.")
        return result("stay", i, f"DLT rate {rate} ≤ λe {lambda_e:.4f}, but no higher level is open: stay.")
    if interval == "de-escalate":
        if i > 0:
            return result("de-escalate", i - 1,
                          f"DLT rate {rate} ≥ λd {lambda_d:.4f}: de-escalate to {labels[i - 1]}.")
        return result("stay", i, f"DLT rate {rate} ≥ λd {lambda_d:.4f} at the lowest level: stay.")
    return result("stay", i, f"DLT rate {rate} is between λe {lambda_e:.4f} and λd {lambda_d:.4f}: stay.")
