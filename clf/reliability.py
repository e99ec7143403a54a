"""The one binning of top-1 confidence behind every reliability diagram and expected calibration error in clf.

`clf test` (`clf.model.metrics.Reliability`, over torch batches) and `clf evaluate` (`clf.evaluation.metrics`, over
numpy arrays) both put a confidence into a bin here, so one model's predictions give one ECE and the same bins
whichever command reports them. Bins are equal-width and right-closed: bin ``m`` of ``M`` holds
``(m/M, (m+1)/M]``, and a confidence of exactly 0 goes into the first.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def bin_edges(bins: int) -> np.ndarray:
    """The ``bins + 1`` edges ``0, 1/M, …, 1``.

    Args:
        bins: the number of bins ``M`` (at least 1).

    Returns:
        The edges, float64.

    Raises:
        ValueError: for fewer than one bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    return np.linspace(0.0, 1.0, bins + 1)


def confidence_bins(confidence: Any, bins: int) -> np.ndarray:
    """The bin of each confidence: the number of inner edges strictly below it, so ``(m/M, (m+1)/M]`` is bin ``m``.

    Args:
        confidence: top-1 probabilities in [0, 1], any shape (read as float64; float32 converts exactly).
        bins: the number of bins ``M``.

    Returns:
        Bin indices in ``[0, M)``, same shape.

    Raises:
        ValueError: for fewer than one bin.
    """
    values = np.asarray(confidence, dtype=np.float64)
    return np.clip(np.searchsorted(bin_edges(bins)[1:-1], values, side="left"), 0, bins - 1)


def calibration_error(counts: Any, confidences: Any, accuracies: Any) -> float | None:
    """The expected calibration error of binned predictions: ``Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|``.

    Args:
        counts: predictions in each bin.
        confidences: each bin's mean confidence (ignored where the bin is empty).
        accuracies: each bin's accuracy (ignored where the bin is empty).

    Returns:
        The ECE in [0, 1]; None when every bin is empty.
    """
    n = np.asarray(counts, dtype=np.float64)
    total = n.sum()
    if not total:
        return None
    filled = n > 0
    gaps = np.abs(np.asarray(accuracies, dtype=np.float64)[filled] - np.asarray(confidences, dtype=np.float64)[filled])
    return float((n[filled] / total * gaps).sum())
