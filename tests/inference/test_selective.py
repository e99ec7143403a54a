"""clf/inference/selective.py on a model whose accuracy at each confidence is known exactly by construction: the
threshold for a target accuracy, ties, a target out of reach, the fewest answered papers, and the curve."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clf.inference.selective import (
    COVERAGE_THRESHOLDS,
    CoveragePoint,
    ThresholdChoice,
    ThresholdOutcome,
    choose_threshold,
    coverage_accuracy_curve,
    top1_outcomes,
)

LEVELS = [round(0.5 + 0.05 * i, 2) for i in range(11)]  # 0.50, 0.55, ..., 1.00
PER_LEVEL = 100


def calibrated_model() -> tuple[np.ndarray, np.ndarray]:
    """100 papers at each confidence c of `LEVELS`, exactly 100·c of them right: a perfectly calibrated model.

    At threshold t the answered papers are the levels c >= t, so their accuracy is the mean of those levels: 0.90
    from 0.80 up ((80+85+90+95+100)/500), 0.875 from 0.75 up, 0.95 from 0.90 up.
    """
    rows, truth = [], []
    for c in LEVELS:
        right = round(c * PER_LEVEL)
        for i in range(PER_LEVEL):
            rows.append([c, (1 - c) / 2, (1 - c) / 2])
            truth.append(0 if i < right else 1)
    return np.array(rows), np.array(truth)


def test_the_outcomes_are_each_papers_top_confidence_and_whether_it_is_right():
    probabilities, truth = calibrated_model()
    confidence, correct = top1_outcomes(probabilities, truth)
    assert sorted(set(confidence.tolist())) == LEVELS
    assert correct.sum() == sum(round(c * PER_LEVEL) for c in LEVELS)
    # Multi-label: the top class is right when it is one of the paper's categories.
    categories = np.array([[1, 1, 0], [0, 0, 1]])
    assert top1_outcomes([[0.2, 0.9, 0.1], [0.8, 0.1, 0.3]], categories)[1].tolist() == [True, False]


def test_the_lowest_threshold_whose_answers_reach_the_target():
    confidence, correct = top1_outcomes(*calibrated_model())

    ninety = choose_threshold(confidence, correct, 0.90)
    ninety_five = choose_threshold(confidence, correct, 0.95)

    assert ninety.outcome is ThresholdOutcome.REACHED and ninety.reached
    assert (ninety.threshold, ninety.answered, ninety.accuracy) == (0.80, 500, 0.9), "exactly the target is enough"
    assert ninety.coverage == pytest.approx(5 / 11) and ninety.papers == 1100
    assert (ninety_five.threshold, ninety_five.answered, ninety_five.accuracy) == (0.90, 300, 0.95)
    assert choose_threshold(confidence, correct, 0.75).threshold == 0.50, "every paper answered: all of it is 75 %"
    # The service flags top < abstain_below as unsure: at the chosen threshold it answers exactly the counted papers.
    assert (confidence >= ninety.threshold).sum() == ninety.answered


def test_a_threshold_never_splits_papers_of_equal_confidence():
    # 60 right answers at 0.9, then 40 at 0.7 of which the first 20 (in input order) are right. Taking the tie in
    # part would give 80 of 88 (91 %); the whole tie gives 80 of 100, short of 85 %.
    confidence = np.array([0.9] * 60 + [0.7] * 40)
    correct = np.array([True] * 60 + [True] * 20 + [False] * 20)

    choice = choose_threshold(confidence, correct, 0.85)

    assert (choice.threshold, choice.answered, choice.accuracy) == (0.9, 60, 1.0)
    assert choose_threshold(confidence, correct, 0.80).answered == 100


def test_a_higher_threshold_is_not_always_more_accurate():
    # A confident mistake at the top: 55 papers answered from 0.6 up are 54/55 right (98.2 %), the 50 from 0.95 up
    # only 49/50 (98 %): scanning down from the top and stopping at the first miss would find nothing.
    confidence = np.array([0.99] + [0.95] * 49 + [0.6] * 5 + [0.3] * 45)
    correct = np.array([False] + [True] * 49 + [True] * 5 + [False] * 45)
    choice = choose_threshold(confidence, correct, 0.981)
    assert choice.reached and (choice.threshold, choice.answered) == (0.6, 55)


def test_a_target_out_of_reach_keeps_the_most_accurate_threshold_and_says_so():
    confidence, correct = top1_outcomes(*calibrated_model())

    # Only the 100 papers at 1.0 are 99 % right; with at least 150 answered the best is 0.95 and up, 97.5 %.
    choice = choose_threshold(confidence, correct, 0.99, min_answered=150)

    assert choice.outcome is ThresholdOutcome.NOT_REACHED and not choice.reached
    assert (choice.threshold, choice.answered, choice.accuracy) == (0.95, 200, 0.975)
    assert choose_threshold(confidence, correct, 0.99, min_answered=100).threshold == 1.0
    assert "short of 99% accuracy" in choice.describe()


def test_a_threshold_rests_on_at_least_the_minimum_of_answered_papers():
    # Three confident right answers above a coin-flipping rest: 100 % on three papers says nothing.
    confidence = np.array([0.99] * 3 + [0.5] * 100)
    correct = np.array([True] * 3 + [True, False] * 50)

    assert choose_threshold(confidence, correct, 0.9, min_answered=1).threshold == 0.99
    guarded = choose_threshold(confidence, correct, 0.9)  # MIN_ANSWERED, 50
    assert guarded.outcome is ThresholdOutcome.NOT_REACHED and guarded.answered == 103
    assert guarded.accuracy == pytest.approx(53 / 103)

    too_few = choose_threshold(confidence[:10], correct[:10], 0.9)
    assert too_few.outcome is ThresholdOutcome.TOO_FEW_PAPERS
    assert (too_few.threshold, too_few.coverage, too_few.accuracy, too_few.papers) == (None, None, None, 10)
    assert "fewer than the 50 required" in too_few.describe()


def test_the_coverage_accuracy_curve():
    confidence, correct = top1_outcomes(*calibrated_model())

    curve = coverage_accuracy_curve(confidence, correct)

    assert [point.threshold for point in curve] == list(COVERAGE_THRESHOLDS) and len(curve) == 20
    by_threshold = {point.threshold: point for point in curve}
    assert by_threshold[0.0].coverage == 1.0 and by_threshold[0.0].accuracy == pytest.approx(0.75)
    assert by_threshold[0.5] == CoveragePoint(0.5, 1100, 1.0, by_threshold[0.0].accuracy), "at or above: all of it"
    assert by_threshold[0.8].answered == 500 and by_threshold[0.8].accuracy == pytest.approx(0.9)
    assert by_threshold[0.95].coverage == pytest.approx(2 / 11) and by_threshold[0.95].accuracy == pytest.approx(0.975)
    coverages = [point.coverage for point in curve]
    assert coverages == sorted(coverages, reverse=True)
    assert coverage_accuracy_curve([0.4], [True], (0.5,))[0].accuracy is None, "nothing answered: no accuracy"


def test_a_choice_round_trips_through_json():
    confidence, correct = top1_outcomes(*calibrated_model())
    choice = choose_threshold(confidence, correct, 0.9)
    document = json.loads(json.dumps(choice.to_json()))
    assert document["outcome"] == "reached" and document["threshold"] == 0.8
    assert ThresholdChoice.from_json(document) == choice


@pytest.mark.parametrize(
    ("confidence", "correct", "options", "message"),
    [
        ([], [], {}, "non-empty"),
        ([0.5, 0.6], [True], {}, "one flag per paper"),
        ([0.5], [True], {"target_accuracy": 0.0}, r"target_accuracy must be in \(0, 1\]"),
        ([0.5], [True], {"target_accuracy": 1.5}, r"target_accuracy must be in \(0, 1\]"),
        ([0.5], [True], {"min_answered": 0}, "min_answered must be >= 1"),
    ],
)
def test_unusable_inputs_are_refused(confidence, correct, options, message):
    with pytest.raises(ValueError, match=message):
        choose_threshold(confidence, correct, **{"target_accuracy": 0.9, **options})
    if not options:
        with pytest.raises(ValueError, match=message):
            coverage_accuracy_curve(confidence, correct)


def test_labels_that_do_not_fit_the_probabilities_are_refused():
    with pytest.raises(ValueError, match="class indices or a"):
        top1_outcomes([[0.6, 0.4]], [[1, 0, 0]])
    with pytest.raises(ValueError, match=r"class indices in \[0, 2\)"):
        top1_outcomes([[0.6, 0.4]], [2])
