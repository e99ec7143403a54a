"""Tests for clf/experiments/stats.py against numbers worked out by hand (and SciPy as an outside reference)."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from clf.experiments.stats import sample_size_two_proportions, two_proportion_z_test
from clf.monitoring.estimates import wilson_interval


def test_z_test_matches_the_hand_computation_for_80_of_100_against_90_of_100():
    # Pooled proportion (80 + 90) / 200 = 0.85; SE = sqrt(0.85 * 0.15 * (1/100 + 1/100)) = sqrt(0.00255).
    se = math.sqrt(0.85 * 0.15 * 0.02)
    z = (0.90 - 0.80) / se
    assert z == pytest.approx(1.980295, abs=1e-6)
    p_value = 2 * scipy_stats.norm.sf(z)
    assert p_value == pytest.approx(0.047670, abs=1e-6)
    # The interval of the difference uses the unpooled SE: sqrt(0.8 * 0.2 / 100 + 0.9 * 0.1 / 100) = 0.05.
    margin = scipy_stats.norm.ppf(0.975) * 0.05

    test = two_proportion_z_test(80, 100, 90, 100)

    assert test.z == pytest.approx(z, rel=1e-12)
    assert test.p_value == pytest.approx(p_value, rel=1e-9)
    assert test.difference == pytest.approx(0.10)
    assert (test.ci_low, test.ci_high) == pytest.approx((0.10 - margin, 0.10 + margin))
    assert test.ci_low == pytest.approx(0.002002, abs=1e-6)


def test_z_test_is_symmetric_and_unequal_arms_work():
    forward, backward = two_proportion_z_test(80, 100, 90, 100), two_proportion_z_test(90, 100, 80, 100)
    assert backward.z == pytest.approx(-forward.z) and backward.p_value == pytest.approx(forward.p_value)
    # 45/50 vs 160/200: pooled 205/250 = 0.82.
    test = two_proportion_z_test(45, 50, 160, 200)
    expected = (0.8 - 0.9) / math.sqrt(0.82 * 0.18 * (1 / 50 + 1 / 200))
    assert test.z == pytest.approx(expected)
    assert test.p_value == pytest.approx(2 * scipy_stats.norm.sf(abs(expected)))


def test_identical_perfect_arms_are_no_evidence_of_a_difference():
    test = two_proportion_z_test(50, 50, 30, 30)
    assert (test.z, test.p_value, test.difference) == (0.0, 1.0, 0.0)


@pytest.mark.parametrize(("successes", "n"), [(0, 0), (5, 3), (-1, 3)])
def test_z_test_refuses_impossible_counts(successes, n):
    with pytest.raises(ValueError, match="successes"):
        two_proportion_z_test(successes, n, 1, 2)


def test_wilson_interval_matches_the_hand_computation():
    # z = 1.959964; centre (0.8 + z²/200) / (1 + z²/100); half-width z / (1 + z²/100) * sqrt(0.0016 + z²/40000).
    z = 1.959964
    centre = (0.8 + z * z / 200) / (1 + z * z / 100)
    half = z / (1 + z * z / 100) * math.sqrt(0.8 * 0.2 / 100 + z * z / 40000)
    assert wilson_interval(80, 100) == pytest.approx((centre - half, centre + half), abs=1e-6)
    assert wilson_interval(80, 100) == pytest.approx((0.7112, 0.8666), abs=1e-4)
    low, high = wilson_interval(0, 10)  # stays inside [0, 1] where the Wald interval would be (0, 0)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(11, 10)


def test_sample_size_matches_the_power_formula_by_hand():
    # p1 = 0.8, p2 = 0.82, mean 0.81; z_0.975 = 1.959964, z_0.8 = 0.841621.
    root = 1.959964 * math.sqrt(2 * 0.81 * 0.19) + 0.841621 * math.sqrt(0.8 * 0.2 + 0.82 * 0.18)
    assert sample_size_two_proportions(0.80, 0.02) == math.ceil(root**2 / 0.02**2) == 6039
    # The worst case, p1 = 0.5, needs the most.
    assert sample_size_two_proportions(0.5, 0.02) == 9806
    assert sample_size_two_proportions(0.5, 0.02) > sample_size_two_proportions(0.9, 0.02)
    # A control already at 99 % cannot gain two points; the baseline is held at 0.97.
    assert sample_size_two_proportions(0.99, 0.02) == sample_size_two_proportions(0.97, 0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"improvement": 0.0}, "improvement"), ({"alpha": 1.5}, "alpha"), ({"power": 0.0}, "power")],
)
def test_sample_size_refuses_settings_out_of_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_size_two_proportions(**{"baseline": 0.8, "improvement": 0.02, **kwargs})
