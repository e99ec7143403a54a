"""The statistics behind an A/B verdict: Wilson intervals, the two-proportion z-test and its sample size.

Plain functions of counts, standard library only, so each is easy to check by hand. The Wilson interval lives
with the accuracy estimates (`clf.monitoring.estimates`), which production monitoring shares.

Examples:
    >>> test = two_proportion_z_test(80, 100, 90, 100)  # control 80/100 correct, treatment 90/100
    >>> round(test.z, 3), round(test.p_value, 4), round(test.difference, 2)
    (1.98, 0.0477, 0.1)
    >>> sample_size_two_proportions(0.80, 0.02)  # per arm, to see 80 % -> 82 % at alpha 0.05 with power 0.8
    6039
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from clf.monitoring.estimates import z_quantile

_NORMAL = NormalDist()


@dataclass(frozen=True)
class ProportionTest:
    """A two-sided two-proportion z-test of treatment against control.

    Attributes:
        difference: treatment proportion minus control proportion.
        z: the statistic, (p_t − p_c) / SE with the pooled standard error.
        p_value: two-sided, from the standard normal.
        ci_low: lower end of the difference's confidence interval (unpooled standard error).
        ci_high: upper end.
        confidence: the interval's confidence level.
    """

    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    confidence: float


def two_proportion_z_test(
    control_successes: int, control_n: int, treatment_successes: int, treatment_n: int, confidence: float = 0.95
) -> ProportionTest:
    """Tests whether two proportions differ (here: the two arms' accuracies).

    Under the null hypothesis the arms share one proportion, so the test's standard error pools them:
    ``p = (x_c + x_t) / (n_c + n_t)``, ``SE = √(p(1−p)(1/n_c + 1/n_t))``. The confidence interval of the difference
    makes no such assumption and uses the unpooled ``√(p_c(1−p_c)/n_c + p_t(1−p_t)/n_t)``. When the pooled SE is
    zero (both arms all right or all wrong) there is no evidence of a difference: z = 0, p = 1.

    Args:
        control_successes: correct predictions of the control arm.
        control_n: control predictions with feedback.
        treatment_successes: correct predictions of the treatment arm.
        treatment_n: treatment predictions with feedback.
        confidence: the level of the difference's interval.

    Returns:
        The difference, z, two-sided p-value and the difference's interval.

    Raises:
        ValueError: when an arm has no observations or the counts are impossible.
    """
    for name, successes, n in (
        ("control", control_successes, control_n),
        ("treatment", treatment_successes, treatment_n),
    ):
        if n <= 0 or not 0 <= successes <= n:
            raise ValueError(f"{name}: need n > 0 and 0 <= successes <= n, got {successes} of {n}")
    p_c, p_t = control_successes / control_n, treatment_successes / treatment_n
    difference = p_t - p_c
    pooled = (control_successes + treatment_successes) / (control_n + treatment_n)
    pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control_n + 1 / treatment_n))
    z = difference / pooled_se if pooled_se > 0 else 0.0
    p_value = math.erfc(abs(z) / math.sqrt(2))
    margin = z_quantile(confidence) * math.sqrt(p_c * (1 - p_c) / control_n + p_t * (1 - p_t) / treatment_n)
    return ProportionTest(difference, z, p_value, difference - margin, difference + margin, confidence)


def sample_size_two_proportions(baseline: float, improvement: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm for a two-sided two-proportion z-test to detect `improvement` over `baseline`.

    The standard formula (Fleiss, without continuity correction), with p₁ = baseline, p₂ = baseline + improvement
    and p̄ their mean: ``n = (z_{1−α/2}·√(2p̄(1−p̄)) + z_{1−β}·√(p₁(1−p₁) + p₂(1−p₂)))² / improvement²``.

    Args:
        baseline: the control arm's proportion; kept within [0.01, 0.99 − improvement] so that p₂ is a proportion.
        improvement: the absolute difference to detect, e.g. 0.02 for two accuracy points.
        alpha: the test's two-sided significance level.
        power: the chance of detecting a true difference of that size.

    Returns:
        The number per arm, rounded up.

    Raises:
        ValueError: when a setting is out of range.
    """
    if not 0.0 < improvement < 0.98:
        raise ValueError(f"improvement must be in (0, 0.98), got {improvement}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be in (0, 1), got {alpha} and {power}")
    p1 = min(max(baseline, 0.01), 0.99 - improvement)
    p2 = p1 + improvement
    mean = (p1 + p2) / 2
    z_alpha = _NORMAL.inv_cdf(1 - alpha / 2)
    z_beta = _NORMAL.inv_cdf(power)
    root = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(root * root / (improvement * improvement))
