"""How right a model is: measured from true labels, or estimated from its calibrated confidence before they arrive.

    estimated_accuracy([0.9, 0.7, 0.8])                 # Estimate(value=0.8, low=..., high=..., n=3)
    measured_scores(["cs.CL", "cs.CV"], ["cs.CL", "cs.LG"])   # accuracy 0.5 (Wilson interval), macro-F1

With calibrated probabilities, paper i is right with probability p_i (its top-1 probability), so the expected
accuracy of n papers is the mean of the p_i and the number right is a sum of independent Bernoulli(p_i): its
standard deviation is √Σp_i(1−p_i), which gives the estimate's interval. The estimate is only as good as the
calibration: on papers unlike the training data (drift, out-of-scope papers) a model is usually over-confident and
the estimate too high; that is what measured accuracy, once labels arrive, checks.

Examples:
    >>> [round(x, 3) for x in wilson_interval(80, 100)]
    [0.711, 0.867]
    >>> estimate = estimated_accuracy([0.9, 0.7, 0.8])
    >>> round(estimate.value, 3), estimate.n
    (0.8, 3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Estimate:
    """A proportion (an accuracy) with its interval.

    Attributes:
        value: the point estimate, in [0, 1].
        low: the interval's lower end.
        high: the interval's upper end.
        n: how many papers it rests on.
    """

    value: float
    low: float
    high: float
    n: int

    def to_json(self) -> dict[str, Any]:
        """The estimate as JSON.

        Returns:
            ``{"value", "low", "high", "n"}``.
        """
        return {"value": self.value, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class MeasuredScores:
    """Accuracy and macro-F1 measured on papers whose true label is known.

    Attributes:
        accuracy: the share predicted right, with its Wilson interval.
        macro_f1: the unweighted mean F1 over the classes that occur (true or predicted); a true label outside the
            model's classes (an out-of-scope paper) counts as a wrong answer for the class predicted.
        n: how many papers.
    """

    accuracy: Estimate
    macro_f1: float
    n: int

    def to_json(self) -> dict[str, Any]:
        """The scores as JSON.

        Returns:
            ``{"accuracy": Estimate.to_json(), "macro_f1", "n"}``.
        """
        return {"accuracy": self.accuracy.to_json(), "macro_f1": self.macro_f1, "n": self.n}


def z_quantile(confidence: float) -> float:
    """The two-sided normal critical value: 1.96 for 0.95.

    Args:
        confidence: the interval's confidence level, in (0, 1).

    Returns:
        The standard normal quantile at ``0.5 + confidence / 2``.

    Raises:
        ValueError: for a level outside (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion.

    Chosen over the textbook Wald interval (p ± z·√(p(1−p)/n)) because it stays inside [0, 1] and keeps close to
    its nominal coverage for small samples and accuracies near 0 or 1, where Wald collapses to a width of zero.

    Args:
        successes: how many were correct.
        n: how many there were.
        confidence: the interval's confidence level.

    Returns:
        ``(low, high)``; ``(0.0, 1.0)`` when `n` is 0 (nothing is known).

    Raises:
        ValueError: when the counts are impossible.
    """
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = z_quantile(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def estimated_accuracy(top1: Sequence[float], z: float = 1.96) -> Estimate | None:
    """The accuracy calibrated top-1 probabilities predict: their mean, ± z·√(Σp(1−p))/n.

    Args:
        top1: each paper's top-1 (calibrated) probability.
        z: the interval's normal critical value (1.96: 95 %).

    Returns:
        The estimate, clipped to [0, 1]; None for no papers.

    Raises:
        ValueError: for a probability outside [0, 1] or a negative `z`.
    """
    values = [float(p) for p in top1]
    if not values:
        return None
    if z < 0:
        raise ValueError(f"z must be >= 0, got {z}")
    if any(not 0.0 <= p <= 1.0 for p in values):  # NaN fails this too
        raise ValueError("top-1 probabilities must lie in [0, 1]")
    n = len(values)
    mean = math.fsum(values) / n
    half = z * math.sqrt(math.fsum(p * (1 - p) for p in values)) / n
    return Estimate(value=mean, low=max(0.0, mean - half), high=min(1.0, mean + half), n=n)


def measured_scores(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None
) -> MeasuredScores:
    """Accuracy (with its 95 % Wilson interval) and macro-F1 of predictions against true labels.

    Args:
        true: each paper's true label (may lie outside the model's classes: an out-of-scope paper).
        predicted: the label the model answered, in the same order.
        labels: the classes macro-F1 averages over (the model's); only those that occur, true or predicted, count,
            so a class absent from a window does not pull the mean down. None: every label that occurs.

    Returns:
        The scores.

    Raises:
        ValueError: for lengths that differ or no papers.
    """
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predicted labels")
    if not true:
        raise ValueError("no labelled papers to measure")
    n = len(true)
    correct = sum(t == p for t, p in zip(true, predicted, strict=True))
    low, high = wilson_interval(correct, n)
    occurring = set(true) | set(predicted)
    classes = sorted(occurring if labels is None else occurring & set(labels))
    f1s = []
    for label in classes:
        hits = sum(t == p == label for t, p in zip(true, predicted, strict=True))
        support = sum(t == label for t in true) + sum(p == label for p in predicted)
        f1s.append(2 * hits / support)
    macro_f1 = math.fsum(f1s) / len(f1s) if f1s else 0.0
    return MeasuredScores(accuracy=Estimate(correct / n, low, high, n), macro_f1=macro_f1, n=n)
