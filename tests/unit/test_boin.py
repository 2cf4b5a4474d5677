"""BOIN (Liu & Yuan 2015) second opinion and the Clopper–Pearson interval, checked against the specification.

Expected values come from the closed-form formulas, the BOIN authors' published decision table,
scipy.stats.beta used directly, or hand arithmetic, never from running the module under test.
"""
from __future__ import annotations

import math

import pytest
from scipy.stats import beta

from smc.rules import boin, stats

PHI = 0.30


def lambda_e_by_hand(phi: float) -> float:
    phi1 = 0.6 * phi
    return math.log((1 - phi1) / (1 - phi)) / math.log(phi * (1 - phi1) / (phi1 * (1 - phi)))


def lambda_d_by_hand(phi: float) -> float:
    phi2 = 1.4 * phi
    return math.log((1 - phi) / (1 - phi2)) / math.log(phi2 * (1 - phi) / (phi * (1 - phi2)))


def pr_above_by_binomial(d: int, n: int, phi: float) -> float:
    """Pr(p > φ | d of n) under Beta(1, 1): the posterior is Beta(d+1, n-d+1), and
    Pr(Beta(a, b) > x) = Pr(Binomial(a+b-1, x) <= a-1) = Pr(Binomial(n+1, φ) <= d)."""
    return sum(math.comb(n + 1, j) * phi ** j * (1 - phi) ** (n + 1 - j) for j in range(d + 1))


def pava_by_hand(values: list[float], weights: list[float]) -> list[float]:
    """Pool adjacent violators: merge neighbouring blocks while a block's mean exceeds the next one's."""
    blocks: list[list[float]] = []  # [weighted mean, total weight, size]
    for v, w in zip(values, weights):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, k2 = blocks.pop()
            v1, w1, k1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, k1 + k2])
    out: list[float] = []
    for v, _, k in blocks:
        out += [v] * k
    return out


def boin_rate(d: int, n: int) -> float:
    return (d + 0.05) / (n + 0.1)


def boin_weight(d: int, n: int) -> float:
    # inverse of the variance (d+0.05)(n-d+0.05) / ((n+0.1)^2 (n+0.1+1))
    return (n + 0.1) ** 2 * (n + 0.1 + 1) / ((d + 0.05) * (n - d + 0.05))


# ---------------------------------------------------------------------------
# Boundaries
# ---------------------------------------------------------------------------

class TestBoundaries:
    def test_default_target_boundaries_match_closed_form(self):
        lambda_e, lambda_d = boin.boundaries()
        assert lambda_e == pytest.approx(lambda_e_by_hand(PHI), abs=1e-12)
        assert lambda_d == pytest.approx(lambda_d_by_hand(PHI), abs=1e-12)

    def test_published_values_for_target_030(self):
        lambda_e, lambda_d = boin.boundaries(0.30)
        assert round(lambda_e, 4) == 0.2365
        assert round(lambda_d, 4) == 0.3585
        assert round(lambda_e_by_hand(0.30), 4) == 0.2365
        assert round(lambda_d_by_hand(0.30), 4) == 0.3585

    @pytest.mark.parametrize("phi", [0.20, 0.25, 0.33])
    def test_other_targets_match_closed_form(self, phi):
        lambda_e, lambda_d = boin.boundaries(phi)
        assert lambda_e == pytest.approx(lambda_e_by_hand(phi), abs=1e-12)
        assert lambda_d == pytest.approx(lambda_d_by_hand(phi), abs=1e-12)
        assert 0.6 * phi < lambda_e < phi < lambda_d < 1.4 * phi


# ---------------------------------------------------------------------------
# Elimination
# ---------------------------------------------------------------------------

class TestElimination:
    @pytest.mark.parametrize("d,n", [(0, 3), (1, 3), (2, 3), (3, 3), (3, 6), (4, 6), (4, 9), (5, 9), (7, 18)])
    def test_posterior_probability_is_beta_1_1_update(self, d, n):
        got = boin.prob_above_target(d, n, PHI)
        assert got == pytest.approx(beta.sf(PHI, d + 1, n - d + 1), abs=1e-12)
        assert got == pytest.approx(pr_above_by_binomial(d, n, PHI), abs=1e-12)

    def test_three_of_three_is_eliminated(self):
        # Beta(4, 1): Pr(p > 0.3) = 1 - 0.3^4 = 0.9919 > 0.95
        assert 1 - 0.3 ** 4 > 0.95
        assert boin.eliminated(3, 3)

    def test_two_of_three_is_not_eliminated(self):
        # Beta(3, 2): Pr(p > 0.3) = Pr(Bin(4, 0.3) <= 2) = 0.2401 + 0.4116 + 0.2646 = 0.9163 <= 0.95
        assert boin.prob_above_target(2, 3, PHI) == pytest.approx(0.9163, abs=1e-4)
        assert not boin.eliminated(2, 3)

    def test_fewer_than_three_subjects_never_eliminate(self):
        # 2 of 2: Beta(3, 1): Pr(p > 0.3) = 1 - 0.3^3 = 0.973 > 0.95, but n < 3
        assert boin.prob_above_target(2, 2, PHI) == pytest.approx(1 - 0.3 ** 3, abs=1e-12)
        assert not boin.eliminated(2, 2)
        assert not boin.eliminated(1, 1)

    @pytest.mark.parametrize("n", range(3, 19))
    def test_elimination_threshold_agrees_with_scipy_beta(self, n):
        expected = next((d for d in range(n + 1) if beta.sf(PHI, d + 1, n - d + 1) > 0.95), None)
        got = next((d for d in range(n + 1) if boin.eliminated(d, n)), None)
        assert got == expected


# ---------------------------------------------------------------------------
# Decision table
# ---------------------------------------------------------------------------

# Published by the BOIN authors for φ = 0.30.
PUBLISHED = {  # n: (escalate if DLTs <=, de-escalate if >=, eliminate if >=)
    1: (0, 1, None),
    2: (0, 1, None),
    3: (0, 2, 3),
    6: (1, 3, 4),
    9: (2, 4, 5),
    12: (2, 5, 7),
    15: (3, 6, 8),
    18: (4, 7, 9),
}


class TestDecisionTable:
    def rows(self):
        return {row["n"]: row for row in boin.decision_table(0.30, max_n=18)}

    @pytest.mark.parametrize("n", sorted(PUBLISHED))
    def test_matches_published_boin_table(self, n):
        row = self.rows()[n]
        assert (row["escalate_if_dlt_le"], row["deescalate_if_dlt_ge"], row["eliminate_if_dlt_ge"]) == PUBLISHED[n]

    def test_covers_n_1_to_18(self):
        assert sorted(self.rows()) == list(range(1, 19))

    @pytest.mark.parametrize("n", range(1, 19))
    def test_every_row_follows_the_boundaries(self, n):
        lambda_e, lambda_d = lambda_e_by_hand(PHI), lambda_d_by_hand(PHI)
        row = self.rows()[n]
        # largest d with d/n <= λe, smallest d with d/n >= λd
        assert row["escalate_if_dlt_le"] == max(d for d in range(n + 1) if d / n <= lambda_e)
        assert row["deescalate_if_dlt_ge"] == min(d for d in range(n + 1) if d / n >= lambda_d)
        expected_elim = (next((d for d in range(n + 1) if beta.sf(PHI, d + 1, n - d + 1) > 0.95), None)
                         if n >= 3 else None)
        assert row["eliminate_if_dlt_ge"] == expected_elim


# ---------------------------------------------------------------------------
# Isotonic regression and the MTD estimate
# ---------------------------------------------------------------------------

class TestIsotonicAndMtd:
    def test_spec_example_estimate_is_third_level(self):
        # rates (d+0.05)/(n+0.1): 0.05/3.1 = 0.016, 0.016, 4.05/15.1 = 0.268, 4.05/9.1 = 0.445 (already monotone);
        # 4/9 is not eliminated: Pr(Bin(10, 0.3) <= 4) = 0.850
        index, rates = boin.mtd_estimate([3, 3, 15, 9, 0], [0, 0, 4, 4, 0])
        assert index == 2
        assert [round(r, 2) for r in rates[:4]] == [0.02, 0.02, 0.27, 0.45]
        assert rates[4] is None  # untried level

    def test_monotone_rates_are_unchanged(self):
        got = boin.isotonic_rates([3, 3, 15, 9], [0, 0, 4, 4])
        expected = [boin_rate(0, 3), boin_rate(0, 3), boin_rate(4, 15), boin_rate(4, 9)]
        assert got == pytest.approx(expected, abs=1e-9)

    def test_non_monotone_rates_are_pooled_with_inverse_variance_weights(self):
        # n = 3, 6, 6; d = 1, 0, 3. Raw: 1.05/3.1 = 0.339 > 0.05/6.1 = 0.008 violates the order.
        # w(1, 3) = 3.1^2 * 4.1 / (1.05 * 2.05) = 18.30;  w(0, 6) = 6.1^2 * 7.1 / (0.05 * 6.05) = 873.4
        # pooled = (18.30 * 0.3387 + 873.4 * 0.0082) / (18.30 + 873.4) = 0.0150; the third, 3.05/6.1 = 0.5, stays.
        n, d = [3, 6, 6], [1, 0, 3]
        w0, w1 = boin_weight(1, 3), boin_weight(0, 6)
        pooled = (w0 * boin_rate(1, 3) + w1 * boin_rate(0, 6)) / (w0 + w1)
        assert pooled == pytest.approx(0.0150, abs=1e-4)
        got = boin.isotonic_rates(n, d)
        assert got == pytest.approx([pooled, pooled, 0.5], abs=1e-9)

    def test_chain_of_violations_matches_hand_pava(self):
        n, d = [3, 3, 6, 3], [1, 0, 1, 0]
        # raw 0.339, 0.016, 0.172, 0.016: both adjacent pairs pool (about 0.037 and 0.041)
        expected = pava_by_hand([boin_rate(k, m) for k, m in zip(d, n)],
                                [boin_weight(k, m) for k, m in zip(d, n)])
        assert expected[0] == expected[1] and expected[2] == expected[3]
        assert expected[0] == pytest.approx(0.0375, abs=1e-3)
        assert expected[2] == pytest.approx(0.0413, abs=1e-3)
        assert boin.isotonic_rates(n, d) == pytest.approx(expected, abs=1e-9)

    def test_mtd_estimate_uses_pooled_rates(self):
        # pooled 0.0150, 0.0150, 0.5: |0.5 - 0.3| = 0.2 < |0.015 - 0.3| = 0.285 -> third level
        index, rates = boin.mtd_estimate([3, 6, 6], [1, 0, 3])
        assert index == 2
        assert rates[0] == pytest.approx(rates[1]) and rates[0] == pytest.approx(0.0150, abs=1e-4)

    def test_eliminated_level_and_all_above_are_excluded_from_the_mtd(self):
        # 3/3 at the second level is eliminated, so the third level (0/3) is too; only the first remains.
        # (Without elimination, 0.984 and 0.016 would pool to 0.5, closer to 0.3 than 0.016.)
        index, rates = boin.mtd_estimate([3, 3, 3], [0, 3, 0])
        assert index == 0
        assert rates[0] == pytest.approx(boin_rate(0, 3), abs=1e-9)

    def test_nothing_tried_has_no_estimate(self):
        index, rates = boin.mtd_estimate([0, 0, 0], [0, 0, 0])
        assert index is None
        assert rates == [None, None, None]


# ---------------------------------------------------------------------------
# advise()
# ---------------------------------------------------------------------------

LEVELS = [1, 2, 3, 4, 5]
LABELS = ["10 mg", "20 mg", "30 mg", "40 mg", "50 mg"]


def advise_at(current: int, n: list[int], d: list[int], target: float = PHI):
    return boin.advise(LEVELS, LABELS, n, d, current, target)


class TestAdvise:
    def test_no_subject_yet_starts_at_level_1(self):
        a = boin.advise(LEVELS, LABELS, [0] * 5, [0] * 5, None)
        assert (a.advice, a.to_level) == ("enroll", 1)

    def test_0_of_3_escalates(self):
        # 0/3 = 0 <= λe 0.2365
        a = advise_at(1, [3, 0, 0, 0, 0], [0, 0, 0, 0, 0])
        assert (a.advice, a.to_level) == ("escalate", 2)
        assert a.lambda_e == pytest.approx(lambda_e_by_hand(PHI))
        assert a.lambda_d == pytest.approx(lambda_d_by_hand(PHI))

    def test_1_of_3_stays(self):
        # 1/3 = 0.333: above λe 0.2365, below λd 0.3585
        a = advise_at(1, [3, 0, 0, 0, 0], [1, 0, 0, 0, 0])
        assert (a.advice, a.to_level) == ("stay", 1)

    def test_2_of_3_deescalates(self):
        # 2/3 = 0.667 >= λd 0.3585 (not eliminated: 0.916 <= 0.95)
        a = advise_at(2, [3, 3, 0, 0, 0], [0, 2, 0, 0, 0])
        assert (a.advice, a.to_level) == ("de-escalate", 1)

    def test_3_of_3_is_eliminated_and_deescalates(self):
        a = advise_at(2, [3, 3, 0, 0, 0], [0, 3, 0, 0, 0])
        assert (a.advice, a.to_level) == ("de-escalate", 1)

    def test_3_of_3_at_the_lowest_level_stops(self):
        # the lowest level and all above are eliminated: nothing left to give
        a = advise_at(1, [3, 0, 0, 0, 0], [3, 0, 0, 0, 0])
        assert a.advice == "stop"
        assert a.to_level is None

    def test_1_of_4_stays(self):
        # 1/4 = 0.25 > λe 0.2365 (just above), < λd
        a = advise_at(1, [4, 0, 0, 0, 0], [1, 0, 0, 0, 0])
        assert a.advice == "stay"

    def test_1_of_6_escalates(self):
        # 1/6 = 0.167 <= λe
        a = advise_at(1, [6, 0, 0, 0, 0], [1, 0, 0, 0, 0])
        assert (a.advice, a.to_level) == ("escalate", 2)

    def test_2_of_6_stays(self):
        # 2/6 = 0.333 in (λe, λd)
        a = advise_at(2, [3, 6, 0, 0, 0], [0, 2, 0, 0, 0])
        assert (a.advice, a.to_level) == ("stay", 2)

    def test_3_of_6_deescalates(self):
        # 3/6 = 0.5 >= λd (not eliminated: Pr(Bin(7, 0.3) <= 3) = 0.874)
        a = advise_at(2, [3, 6, 0, 0, 0], [0, 3, 0, 0, 0])
        assert (a.advice, a.to_level) == ("de-escalate", 1)

    def test_no_escalation_into_an_eliminated_level(self):
        # 4/6 at 20 mg: Pr(Bin(7, 0.3) <= 4) = 0.971 > 0.95 -> eliminated; 0/3 at 10 mg cannot go up
        a = advise_at(1, [3, 6, 0, 0, 0], [0, 4, 0, 0, 0])
        assert a.advice == "stay"
        assert a.to_level == 1

    def test_level_above_an_eliminated_level_is_eliminated_too(self):
        # "a level and all above are eliminated": 4/6 at 20 mg eliminates 20 mg, 30 mg, 40 mg, 50 mg.
        # Being at 30 mg with 0/3 therefore means the current level is eliminated: go back below 20 mg.
        a = advise_at(3, [3, 6, 3, 0, 0], [0, 4, 0, 0, 0])
        assert a.advice == "de-escalate"
        assert a.to_level == 1

    def test_top_level_at_0_of_3_stays(self):
        a = advise_at(5, [3, 3, 3, 3, 3], [0, 0, 0, 0, 0])
        assert (a.advice, a.to_level) == ("stay", 5)

    def test_advice_reports_the_mtd_estimate_as_a_level(self):
        a = advise_at(3, [3, 3, 15, 9, 0], [0, 0, 4, 4, 0])
        assert a.mtd_estimate == 3  # index 2 -> level 3
        # 4/15 = 0.267 in (λe, λd) -> stay
        assert a.advice == "stay"

    def test_other_target(self):
        # φ = 0.25: λe = 0.1968, λd = 0.2984 (closed form); 1/4 = 0.25 is between -> stay, 1/6 = 0.167 -> escalate
        assert round(lambda_e_by_hand(0.25), 4) == 0.1968
        assert round(lambda_d_by_hand(0.25), 4) == 0.2984
        assert advise_at(1, [4, 0, 0, 0, 0], [1, 0, 0, 0, 0], 0.25).advice == "stay"
        assert advise_at(1, [6, 0, 0, 0, 0], [1, 0, 0, 0, 0], 0.25).advice == "escalate"


# ---------------------------------------------------------------------------
# Clopper–Pearson exact interval
# ---------------------------------------------------------------------------

class TestExactCi:
    def test_one_of_six(self):
        low, high = stats.exact_ci(1, 6)
        assert low == pytest.approx(0.0042, abs=5e-5)
        assert high == pytest.approx(0.6412, abs=5e-5)
        # lower bound for x = 1: (1 - low)^6 = 0.975  ->  low = 1 - 0.975^(1/6)
        assert low == pytest.approx(1 - 0.975 ** (1 / 6), abs=1e-9)
        # upper bound solves Pr(Bin(6, high) <= 1) = 0.025
        assert (1 - high) ** 6 + 6 * high * (1 - high) ** 5 == pytest.approx(0.025, abs=1e-9)

    def test_zero_of_three(self):
        low, high = stats.exact_ci(0, 3)
        assert low == 0
        # upper bound for x = 0: (1 - high)^3 = 0.025  ->  high = 1 - 0.025^(1/3) = 0.7076
        assert high == pytest.approx(1 - 0.025 ** (1 / 3), abs=1e-9)
        assert high == pytest.approx(0.7076, abs=5e-5)

    def test_all_of_three(self):
        # symmetric to 0 of 3
        low, high = stats.exact_ci(3, 3)
        assert high == 1
        assert low == pytest.approx(0.025 ** (1 / 3), abs=1e-9)

    def test_no_subjects(self):
        assert stats.exact_ci(0, 0) == (None, None)
