"""`paired_bootstrap`: how much one model beats another on the same papers, with a paired bootstrap interval.

Two models scored on one test set are not independent: a hard paper is hard for both. Their own intervals overlap
even when one is better on almost every resample, so the honest interval of a difference resamples the papers once
and scores both models on each resample (the same rows), then takes percentiles of the differences. An interval
that excludes 0 says the gain is not an accident of which papers were drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clf.evaluation.metrics import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_METRICS,
    BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
    bootstrap_draws,
    percentile_interval,
    resampled_scores,
)


@dataclass(frozen=True)
class Difference:
    """One metric of model A minus model B on the same papers.

    Attributes:
        difference: A's score minus B's on every paper.
        low: the interval's lower end.
        high: its upper end.
        share_positive: the share of resamples on which A scored higher.
    """

    difference: float
    low: float
    high: float
    share_positive: float

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0."""
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    probabilities_a: Any,
    probabilities_b: Any,
    labels: Any,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Difference]:
    """Accuracy and macro-F1 of A minus B, with paired percentile-bootstrap intervals.

    Args:
        probabilities_a: model A's ``(N, C)`` probabilities.
        probabilities_b: model B's, for the same papers in the same order.
        labels: the ``N`` true class indices.
        resamples: resamples of ``N`` papers drawn with replacement, each scored for both models.
        level: the interval's coverage, in (0, 1).
        seed: the seed of the generator (`numpy.random.default_rng`).

    Returns:
        ``{"accuracy": Difference, "macro_f1": Difference}``.

    Raises:
        ValueError: for mismatched shapes, fewer than one resample or a level outside (0, 1).
    """
    a, b, truth = np.asarray(probabilities_a), np.asarray(probabilities_b), np.asarray(labels)
    if a.shape != b.shape or a.ndim != 2 or len(truth) != len(a):
        raise ValueError(f"paired scores need two (N, C) arrays and N labels, got {a.shape}, {b.shape}, {truth.shape}")
    whole = np.arange(len(truth))[None, :]
    point = {
        name: resampled_scores(a, truth, whole)[name][0] - resampled_scores(b, truth, whole)[name][0]
        for name in BOOTSTRAP_METRICS
    }

    def differences(rows: np.ndarray) -> dict[str, np.ndarray]:
        scores_a, scores_b = resampled_scores(a, truth, rows), resampled_scores(b, truth, rows)
        return {name: scores_a[name] - scores_b[name] for name in BOOTSTRAP_METRICS}

    draws = bootstrap_draws(differences, len(truth), resamples, level, seed)
    return {
        name: Difference(float(point[name]), *percentile_interval(values, level), float((values > 0).mean()))
        for name, values in draws.items()
    }
