"""CTCAE v5.0 grading of the common safety labs from value, reference range and unit.

Rules: docs/rules.md#ctcae-v5-grading
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LabGrading:
    test: str
    ae_term: str
    direction: str  # "low": graded below LLN in absolute units; "high": graded in multiples of ULN
    cuts: tuple[float, ...]  # lower edge of grade 2, 3, 4 (low) or upper edge of grade 1, 2, 3 (high)
    unit: str


GRADINGS: dict[str, LabGrading] = {g.test: g for g in (
    LabGrading("Neutrophils", "Neutrophil count decreased", "low", (1.5, 1.0, 0.5), "10^9/L"),
    LabGrading("Lymphocytes", "Lymphocyte count decreased", "low", (0.8, 0.5, 0.2), "10^9/L"),
    LabGrading("Platelets", "Platelet count decreased", "low", (75, 50, 25), "10^9/L"),
    LabGrading("Hemoglobin", "Anemia", "low", (100, 80), "g/L"),
    LabGrading("ALT", "Alanine aminotransferase increased", "high", (3, 5, 20), "U/L"),
    LabGrading("AST", "Aspartate aminotransferase increased", "high", (3, 5, 20), "U/L"),
    LabGrading("Bilirubin", "Blood bilirubin increased", "high", (1.5, 3, 10), "umol/L"),
    LabGrading("Creatinine", "Creatinine increased", "high", (1.5, 3, 6), "umol/L"),
)}
TEST_FOR_AE_TERM = {g.ae_term: g.test for g in GRADINGS.values()}

# Multiply a value in this unit by the factor to get the grading unit (10^9/L or g/L).
_COUNT_UNITS = {"10^9/L": 1.0, "x10^9/L": 1.0, "10^3/uL": 1.0, "10^3/µL": 1.0, "x10^3/uL": 1.0, "K/uL": 1.0,
                "/uL": 1e-3, "cells/uL": 1e-3, "/µL": 1e-3, "cells/µL": 1e-3, "/mm3": 1e-3}
UNIT_FACTORS = {
    "Neutrophils": _COUNT_UNITS, "Lymphocytes": _COUNT_UNITS, "Platelets": _COUNT_UNITS,
    "Hemoglobin": {"g/L": 1.0, "g/dL": 10.0},
}


def grade(test: str, value: float | None, ref_low: float | None, ref_high: float | None,
          unit: str | None = None) -> int | None:
    """CTCAE grade 0–4 of one result; None when the test, its needed reference limit or its unit
    is unknown. ``unit`` matters for the absolute cut-offs of the "low" tests (empty: the grading unit)."""
    rule = GRADINGS.get(test)
    if rule is None or value is None or math.isnan(value):
        return None
    if rule.direction == "low":
        if ref_low is None:
            return None
        factor = UNIT_FACTORS[test].get(unit.strip(), None) if unit and unit.strip() else 1.0
        if factor is None:
            return None
        if value >= ref_low:
            return 0
        value *= factor
        # cuts are the lower edges of grades 1..3: below cut k means at least grade k + 2.
        return 1 + sum(value < c for c in rule.cuts)
    if ref_high is None:
        return None
    if value <= ref_high:
        return 0
    return 1 + sum(value > c * ref_high for c in rule.cuts)


def sql_rules() -> dict[str, list[dict]]:
    """GRADINGS and UNIT_FACTORS as the $rules and $unit_factors parameters of the SQL that grades a
    study's labs at once (queries/safety_lab_results.sql); a test holds it equal to :func:`grade`."""
    rules = [{"test": g.test, "low": g.direction == "low", **{f"cut{i}": c for i, c in enumerate(
        (*g.cuts, None, None)[:3], start=1)}} for g in GRADINGS.values()]
    factors = [{"test": test, "unit": unit, "factor": factor}
               for test, units in UNIT_FACTORS.items() for unit, factor in units.items()]
    return {"rules": rules, "unit_factors": factors}


def value_for_grade(test: str, target_grade: int, ref_low: float, ref_high: float, position: float = 0.5) -> float:
    """A value inside the band of ``target_grade`` (``position`` 0..1 from its mild to its severe edge)."""
    rule = GRADINGS[test]
    if rule.direction == "low":
        edges = [ref_low, *rule.cuts, rule.cuts[-1] * 0.3]  # grade g spans edges[g-1] (mild) .. edges[g]
        if target_grade <= 0:
            return ref_low * 1.1
        g = min(target_grade, len(rule.cuts) + 1)
        mild, severe = edges[g - 1], edges[g]
        return mild - (mild - severe) * (0.1 + 0.8 * position)
    edges = [1.0, *rule.cuts, rule.cuts[-1] * 2]
    if target_grade <= 0:
        return ref_high * 0.6
    g = min(target_grade, len(rule.cuts) + 1)
    mild, severe = edges[g - 1], edges[g]
    return ref_high * (mild + (severe - mild) * (0.1 + 0.8 * position))
