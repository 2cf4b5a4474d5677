"""CTCAE v5.0 grading of the common safety labs from value and reference range.

Thresholds (Common Terminology Criteria for Adverse Events v5.0, 2017):
- Neutrophil count decreased: G1 <LLN–1.5; G2 <1.5–1.0; G3 <1.0–0.5; G4 <0.5 ×10^9/L
- Lymphocyte count decreased: G1 <LLN–0.8; G2 <0.8–0.5; G3 <0.5–0.2; G4 <0.2 ×10^9/L
- Platelet count decreased:   G1 <LLN–75; G2 <75–50; G3 <50–25; G4 <25 ×10^9/L
- Anemia (hemoglobin):        G1 <LLN–100; G2 <100–80; G3 <80 g/L (G4 is clinical, not a value)
- ALT / AST increased (normal baseline): G1 >ULN–3; G2 >3–5; G3 >5–20; G4 >20 ×ULN
- Blood bilirubin increased (normal baseline): G1 >ULN–1.5; G2 >1.5–3; G3 >3–10; G4 >10 ×ULN
- Creatinine increased:       G1 >ULN–1.5; G2 >1.5–3; G3 >3–6; G4 >6 ×ULN
"""
from __future__ import annotations

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


def grade(test: str, value: float | None, ref_low: float | None, ref_high: float | None) -> int | None:
    """CTCAE grade 0–4 of one result, or None when the test or its reference range is unknown."""
    rule = GRADINGS.get(test)
    if rule is None or value is None:
        return None
    if rule.direction == "low":
        if ref_low is None or value >= ref_low:
            return 0
        # cuts are the lower edges of grades 1..3: below cut k means at least grade k + 2.
        return 1 + sum(value < c for c in rule.cuts)
    if ref_high is None or value <= ref_high:
        return 0
    return 1 + sum(value > c * ref_high for c in rule.cuts)


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
