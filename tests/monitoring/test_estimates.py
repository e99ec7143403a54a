"""Tests for clf/monitoring/estimates.py: the label-free accuracy estimate, its interval, and measured scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from clf.monitoring.estimates import Estimate, estimated_accuracy, measured_scores, wilson_interval


def test_the_estimate_is_the_mean_top1_probability_with_the_bernoulli_sum_interval():
    estimate = estimated_accuracy([0.9, 0.6, 0.75, 0.5])

    half = 1.96 * math.sqrt(0.9 * 0.1 + 0.6 * 0.4 + 0.75 * 0.25 + 0.5 * 0.5) / 4
    assert (estimate.value, estimate.low, estimate.high, estimate.n) == pytest.approx((0.6875, 0.6875 - half, 1.0, 4))
    assert estimate.to_json() == {"value": estimate.value, "low": estimate.low, "high": estimate.high, "n": 4}
    assert estimated_accuracy([]) is None
    assert estimated_accuracy([1.0, 1.0]) == Estimate(1.0, 1.0, 1.0, 2)  # certain answers: no spread
    assert estimated_accuracy([0.8] * 100, z=0).low == pytest.approx(0.8)


@pytest.mark.parametrize("bad", [[1.2], [-0.1], [float("nan")]])
def test_probabilities_outside_0_1_are_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        estimated_accuracy(bad)


def test_on_calibrated_probabilities_the_interval_covers_the_true_accuracy_in_at_least_90_of_100_draws():
    """Calibrated means: paper i is right with probability p_i. The 'true accuracy' of a window is the share of its
    papers that turned out right; the 95 % interval must hold it in about 95 of 100 windows."""
    covered, errors = 0, []
    for seed in range(100):
        rng = np.random.default_rng(seed)
        top1 = rng.beta(5, 1.6, size=300).clip(0.1, 1.0)  # like a ten-class model's top-1: mean about 0.76
        right = rng.random(300) < top1
        estimate = estimated_accuracy(top1.tolist())
        covered += estimate.low <= right.mean() <= estimate.high
        errors.append(abs(estimate.value - right.mean()))
    assert covered >= 90, covered
    assert float(np.mean(errors)) < 0.03  # the issue's ±3 points, on average over windows of 300


def test_an_overconfident_model_is_caught_by_measured_accuracy():
    """What the estimate cannot see: on papers unlike the training data the probabilities are too high."""
    rng = np.random.default_rng(7)
    top1 = rng.uniform(0.8, 1.0, size=400)
    right = rng.random(400) < top1 - 0.3
    estimate = estimated_accuracy(top1.tolist())
    truth = ["a"] * 400
    measured = measured_scores(truth, ["a" if r else "b" for r in right])
    assert measured.accuracy.high < estimate.low


def test_measured_scores_match_sklearn_and_the_wilson_interval():
    true = ["cs.CL", "cs.CL", "cs.CV", "cs.LG", "cs.LG", "cs.LG", "cs.CV"]
    predicted = ["cs.CL", "cs.LG", "cs.CV", "cs.LG", "cs.CL", "cs.LG", "cs.CL"]

    scores = measured_scores(true, predicted)

    assert scores.n == 7 and scores.accuracy.value == pytest.approx(4 / 7)
    assert (scores.accuracy.low, scores.accuracy.high) == pytest.approx(wilson_interval(4, 7))
    assert scores.macro_f1 == pytest.approx(f1_score(true, predicted, average="macro", zero_division=0))
    assert scores.to_json()["accuracy"]["n"] == 7


def test_an_out_of_scope_true_label_counts_wrong_but_is_no_class_of_the_macro_average():
    classes = ["cs.CL", "cs.CV"]
    true = ["cs.CL", "cs.CV", "math.AG"]
    predicted = ["cs.CL", "cs.CV", "cs.CV"]

    scores = measured_scores(true, predicted, labels=classes)

    assert scores.accuracy.value == pytest.approx(2 / 3)
    # cs.CL: F1 1; cs.CV: 1 right of 2 predicted, 1 true → F1 2/3; math.AG is not averaged in.
    assert scores.macro_f1 == pytest.approx((1 + 2 / 3) / 2)
    assert measured_scores(true, predicted).macro_f1 == pytest.approx((1 + 2 / 3 + 0) / 3)
    # A model class absent from the window (neither true nor predicted) does not pull the mean down.
    assert measured_scores(["cs.CL"], ["cs.CL"], labels=[*classes, "cs.LG"]).macro_f1 == 1.0


def test_measured_scores_refuse_mismatched_or_empty_inputs():
    with pytest.raises(ValueError, match="2 true labels but 1 predicted"):
        measured_scores(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no labelled papers"):
        measured_scores([], [])
