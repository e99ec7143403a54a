"""`paired_bootstrap`: how much one model beats another on the same papers, with a paired bootstrap interval.

Two models scored on one test set are not independent: a hard paper is hard for both. Their own intervals overlap
even when one is better on almost every resample, so the honest interval of a difference resamples the papers once
and scores both models on each resample (the same rows), then takes percentiles of the differences. An interval
that excludes 0 says the gain is not an accident of which papers were drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
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


def stratified_paired_bootstrap(
    probabilities_a: Sequence[Any],
    probabilities_b: Sequence[Any],
    labels: Sequence[Any],
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Difference]:
    """The mean over strata (e.g. months) of accuracy and macro-F1, A minus B, resampling papers within each stratum.

    Each stratum is scored on its own and the strata are averaged with equal weight, as a per-month table's mean
    is; a resample draws every stratum's papers with replacement (the same rows for both models), so the interval
    keeps the months apart and pairs the models.

    Args:
        probabilities_a: per stratum, model A's ``(N_s, C)`` probabilities.
        probabilities_b: per stratum, model B's, for the same papers in the same order.
        labels: per stratum, the ``N_s`` true class indices.
        resamples: resamples of every stratum.
        level: the interval's coverage, in (0, 1).
        seed: the seed of the generator.

    Returns:
        ``{"accuracy": Difference, "macro_f1": Difference}`` of the strata's mean.

    Raises:
        ValueError: for no strata, mismatched shapes, fewer than one resample or a level outside (0, 1).

    Examples:
        >>> a = [np.eye(2)[[0, 1, 1]], np.eye(2)[[0, 0]]]
        >>> b = [np.eye(2)[[1, 1, 1]], np.eye(2)[[0, 0]]]
        >>> round(stratified_paired_bootstrap(a, b, [[0, 1, 1], [0, 0]], resamples=50)["accuracy"].difference, 3)
        0.167
    """
    if not len(probabilities_a) or not len(probabilities_a) == len(probabilities_b) == len(labels):
        raise ValueError("the stratified bootstrap needs one (A, B, labels) triple per stratum, and at least one")
    points: dict[str, float] = dict.fromkeys(BOOTSTRAP_METRICS, 0.0)
    sums: dict[str, np.ndarray] = {}
    for index, (a_s, b_s, truth_s) in enumerate(zip(probabilities_a, probabilities_b, labels, strict=True)):
        a, b, truth = np.asarray(a_s), np.asarray(b_s), np.asarray(truth_s)
        if a.shape != b.shape or a.ndim != 2 or len(truth) != len(a):
            raise ValueError(f"stratum {index}: two (N, C) arrays and N labels are needed, got {a.shape}, {b.shape}")
        whole = np.arange(len(truth))[None, :]
        for name in BOOTSTRAP_METRICS:
            points[name] += resampled_scores(a, truth, whole)[name][0] - resampled_scores(b, truth, whole)[name][0]

        def differences(rows: np.ndarray, a: np.ndarray = a, b: np.ndarray = b, truth: np.ndarray = truth) -> Any:
            scores_a, scores_b = resampled_scores(a, truth, rows), resampled_scores(b, truth, rows)
            return {name: scores_a[name] - scores_b[name] for name in BOOTSTRAP_METRICS}

        for name, values in bootstrap_draws(differences, len(truth), resamples, level, seed + index).items():
            sums[name] = sums.get(name, 0) + values
    strata = len(labels)
    return {
        name: Difference(
            float(points[name] / strata),
            *percentile_interval(sums[name] / strata, level),
            float((sums[name] > 0).mean()),
        )
        for name in BOOTSTRAP_METRICS
    }
