"""One binning and one ECE for clf test (torch, clf.model.metrics) and clf evaluate (numpy, clf.evaluation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clf.evaluation.metrics import expected_calibration_error, reliability_bins
from clf.model.metrics import Reliability
from clf.reliability import calibration_error, confidence_bins


def predictions(seed: int = 0, rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(4) * 0.4, size=rows).astype(np.float32)
    # Confidences exactly on bin edges: where left- and right-closed binnings part ways.
    for i, edge in enumerate(np.linspace(0.25, 1.0, 12)):
        row = np.full(4, (1 - edge) / 3, dtype=np.float32)
        row[i % 4] = edge
        probabilities[i] = row
    probabilities[12:14] = np.array([[0.5, 0.5, 0, 0], [0.75, 0.25, 0, 0]], dtype=np.float32)  # edges of 4 bins
    labels = rng.integers(0, 4, size=rows)
    return probabilities, labels


@pytest.mark.parametrize(("seed", "bins"), [(0, 15), (1, 15), (2, 4), (3, 8)])
def test_the_same_predictions_give_the_same_bins_and_ece_through_both_commands(seed, bins):
    probabilities, labels = predictions(seed)
    metric = Reliability(bins=bins)
    for start in range(0, len(labels), 64):  # in batches, as clf test feeds it
        metric.update(torch.from_numpy(probabilities[start : start + 64]), torch.from_numpy(labels[start : start + 64]))
    tested = metric.compute()
    evaluated = reliability_bins(probabilities, labels, bins=bins)
    assert [row["count"] for row in tested["bins"]] == [b.count for b in evaluated]
    for row, expected in zip(tested["bins"], evaluated, strict=True):
        assert (row["lower"], row["upper"]) == (expected.lower, expected.upper)
        if expected.count:
            assert row["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
            assert row["accuracy"] == pytest.approx(expected.accuracy, abs=1e-12)
    assert tested["ece"] == pytest.approx(expected_calibration_error(probabilities, labels, bins=bins), abs=1e-6)


def test_bins_are_right_closed_and_zero_goes_first():
    assert confidence_bins([0.0, 0.1, 0.2, 0.2000001, 1.0], bins=5).tolist() == [0, 0, 0, 1, 4]


def test_the_calibration_error_weighs_each_bins_gap_by_its_count_and_skips_empty_bins():
    assert calibration_error([3, 0, 1], [0.5, float("nan"), 0.9], [0.5, float("nan"), 0.1]) == pytest.approx(0.2)
    assert calibration_error([0, 0], [0, 0], [0, 0]) is None
