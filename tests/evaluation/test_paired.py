"""Paired bootstrap of the difference between two models on the same papers (clf.evaluation.paired)."""

from __future__ import annotations

import numpy as np
import pytest

from clf.evaluation.paired import paired_bootstrap


def one_hot(classes: np.ndarray, num_classes: int = 3) -> np.ndarray:
    return np.eye(num_classes)[classes]


def test_a_model_right_wherever_the_other_is_plus_more_papers_wins_on_every_resample():
    truth = np.arange(300) % 3
    b_answers = np.where(np.arange(300) % 5 == 0, (truth + 1) % 3, truth)  # wrong on every 5th paper
    a_answers = np.where(np.arange(300) % 10 == 0, (truth + 1) % 3, truth)  # wrong on half of those only
    result = paired_bootstrap(one_hot(a_answers), one_hot(b_answers), truth, resamples=200)
    assert result["accuracy"].difference == pytest.approx(0.1)
    # A is never wrong where B is right, so no resample can favour B: the interval excludes 0.
    assert result["accuracy"].low > 0 and result["accuracy"].excludes_zero
    assert result["accuracy"].share_positive == 1.0
    assert result["macro_f1"].low > 0


def test_identical_models_differ_by_exactly_zero_on_every_resample():
    truth = np.arange(90) % 3
    probabilities = one_hot((truth + (np.arange(90) % 4 == 0)) % 3)
    result = paired_bootstrap(probabilities, probabilities.copy(), truth, resamples=50)
    for difference in result.values():
        assert (difference.difference, difference.low, difference.high) == (0.0, 0.0, 0.0)
        assert not difference.excludes_zero


def test_the_paired_interval_is_narrower_than_the_unpaired_overlap_suggests():
    # Two models that agree on 95 % of papers: each one's own interval is wide, their difference's is not.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, 1000)
    shared = rng.random(1000) < 0.75  # both right here
    a_right = shared | (rng.random(1000) < 0.1)
    a = one_hot(np.where(a_right, truth, (truth + 1) % 3))
    b = one_hot(np.where(shared, truth, (truth + 1) % 3))
    result = paired_bootstrap(a, b, truth, resamples=300)
    width = result["accuracy"].high - result["accuracy"].low
    assert result["accuracy"].low > 0 and width < 0.04


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="paired scores"):
        paired_bootstrap(np.zeros((3, 2)), np.zeros((4, 2)), np.zeros(3, dtype=int))
