"""clf/evaluation/metrics.py against values worked out by hand on six papers and three classes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_recall_fscore_support

from clf.evaluation.metrics import (
    ClassificationReport,
    Interval,
    abstention,
    accuracy,
    any_listed_accuracy,
    bootstrap_intervals,
    class_scores,
    expected_calibration_error,
    macro_f1,
    reliability_bins,
    resampled_scores,
    top_k_accuracy,
)

# row  probabilities        true  top  confidence  right   bin of 15: ((m-1)/15, m/15], index = ceil(15·conf) - 1
# 0    0.70 0.20 0.10       0     0    0.70        yes     15·0.70 = 10.5  → index 10
# 1    0.50 0.40 0.10       1     0    0.50        no      15·0.50 =  7.5  → index 7
# 2    0.10 0.85 0.05       1     1    0.85        yes     15·0.85 = 12.75 → index 12
# 3    0.20 0.30 0.50       2     2    0.50        yes     index 7
# 4    0.30 0.65 0.05       2     1    0.65        no      15·0.65 =  9.75 → index 9
# 5    0.90 0.05 0.05       0     0    0.90        yes     15·0.90 = 13.5  → index 13
PROBS = np.array(
    [
        [0.70, 0.20, 0.10],
        [0.50, 0.40, 0.10],
        [0.10, 0.85, 0.05],
        [0.20, 0.30, 0.50],
        [0.30, 0.65, 0.05],
        [0.90, 0.05, 0.05],
    ]
)
TRUTH = np.array([0, 1, 1, 2, 2, 0])
# Paper 1 (primary class 1) is cross-listed in class 0, which the model answered; paper 4 is listed in class 2 only.
LISTED = [{0}, {1, 0}, {1}, {2}, {2}, {0}]


def test_accuracy_is_the_share_of_right_top_classes():
    assert accuracy(PROBS, TRUTH) == pytest.approx(4 / 6)  # rows 0, 2, 3, 5


def test_per_class_precision_recall_and_f1():
    # class 0: true in rows 0, 5; predicted in rows 0, 1, 5 → TP 2, FP 1, FN 0: P 2/3, R 1,   F1 2·2/(2·2+1+0) = 4/5
    # class 1: true in rows 1, 2; predicted in rows 2, 4    → TP 1, FP 1, FN 1: P 1/2, R 1/2, F1 2/(2+1+1)   = 1/2
    # class 2: true in rows 3, 4; predicted in row 3        → TP 1, FP 0, FN 1: P 1,   R 1/2, F1 2/(2+0+1)   = 2/3
    scores = class_scores(PROBS, TRUTH)
    assert scores.precision == pytest.approx([2 / 3, 1 / 2, 1])
    assert scores.recall == pytest.approx([1, 1 / 2, 1 / 2])
    assert scores.f1 == pytest.approx([4 / 5, 1 / 2, 2 / 3])
    assert scores.support.tolist() == [2, 2, 2]
    # (4/5 + 1/2 + 2/3) / 3 = (24 + 15 + 20) / 90 = 59/90
    assert macro_f1(PROBS, TRUTH) == pytest.approx(59 / 90)


def test_macro_f1_leaves_out_a_class_neither_present_nor_predicted():
    # Four classes, the fourth never true and never predicted: the mean stays over the three that occur.
    four = np.hstack([PROBS * 0.9, np.full((6, 1), 0.1)])
    assert macro_f1(four, TRUTH) == pytest.approx(59 / 90)
    # A class predicted but never true counts, with F1 0: row 0 answered as class 3 → class 0 loses its TP.
    four[0] = [0.1, 0.1, 0.1, 0.7]
    # class 0: TP 1 (row 5), FP 1 (row 1), FN 1 (row 0) → 1/2; classes 1, 2 unchanged; class 3: F1 0
    assert macro_f1(four, TRUTH) == pytest.approx((1 / 2 + 1 / 2 + 2 / 3 + 0) / 4)


def test_per_class_and_macro_f1_agree_with_scikit_learn_on_random_predictions():
    rng = np.random.default_rng(7)
    probs = rng.dirichlet(np.ones(5), size=200)
    truth = rng.integers(0, 5, size=200)
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=range(5), zero_division=0)
    scores = class_scores(probs, truth)
    assert scores.precision == pytest.approx(precision)
    assert scores.recall == pytest.approx(recall)
    assert scores.f1 == pytest.approx(f1)
    assert macro_f1(probs, truth) == pytest.approx(f1_score(truth, predicted, average="macro", zero_division=0))


def test_top_k_accuracy():
    # top 2: row 1's true class (0.40) is second → hit; row 4's (0.05) is third behind 0.65 and 0.30 → miss.
    assert top_k_accuracy(PROBS, TRUTH, k=1) == pytest.approx(4 / 6)
    assert top_k_accuracy(PROBS, TRUTH, k=2) == pytest.approx(5 / 6)
    assert top_k_accuracy(PROBS, TRUTH, k=3) == 1.0
    assert top_k_accuracy(PROBS, TRUTH, k=10) == 1.0


def test_ties_rank_the_lower_class_first_as_argmax_does():
    tied = np.array([[0.4, 0.4, 0.2]])
    assert accuracy(tied, [1]) == 0.0 and top_k_accuracy(tied, [1], k=1) == 0.0  # class 0 wins the tie
    assert top_k_accuracy(tied, [1], k=2) == 1.0
    assert accuracy(tied, [0]) == top_k_accuracy(tied, [0], k=1) == 1.0


def test_any_listed_accuracy_counts_a_cross_listed_answer():
    # rows 0, 2, 3, 5 are right; row 1 answered class 0, in which it is listed; row 4 answered 1, not listed → 5/6
    assert any_listed_accuracy(PROBS, TRUTH, LISTED) == pytest.approx(5 / 6)
    # The primary class always counts, listed or not; without lists it is the accuracy.
    assert any_listed_accuracy(PROBS, TRUTH, [set()] * 6) == pytest.approx(4 / 6)
    assert any_listed_accuracy(PROBS, TRUTH) == pytest.approx(4 / 6)


def test_reliability_bins_and_expected_calibration_error():
    bins = {i: b for i, b in enumerate(reliability_bins(PROBS, TRUTH)) if b.count}
    # index 7 = (7/15, 8/15]: rows 1 (wrong) and 3 (right), both at 0.50 → accuracy 1/2, confidence 1/2, gap 0
    assert sorted(bins) == [7, 9, 10, 12, 13]
    assert (bins[7].count, bins[7].confidence, bins[7].accuracy) == (2, pytest.approx(0.5), 0.5)
    assert (bins[7].lower, bins[7].upper) == (pytest.approx(7 / 15), pytest.approx(8 / 15))
    assert (bins[9].count, bins[9].confidence, bins[9].accuracy) == (1, pytest.approx(0.65), 0.0)  # gap 0.65
    assert (bins[10].confidence, bins[10].accuracy) == (pytest.approx(0.70), 1.0)  # gap 0.30
    assert (bins[12].confidence, bins[12].accuracy) == (pytest.approx(0.85), 1.0)  # gap 0.15
    assert (bins[13].confidence, bins[13].accuracy) == (pytest.approx(0.90), 1.0)  # gap 0.10
    empty = reliability_bins(PROBS, TRUTH)[0]
    assert (empty.count, empty.confidence, empty.accuracy) == (0, None, None)
    # ECE = (2·0 + 0.65 + 0.30 + 0.15 + 0.10) / 6 = 1.2 / 6
    assert expected_calibration_error(PROBS, TRUTH) == pytest.approx(0.2)
    assert len(reliability_bins(PROBS, TRUTH)) == 15


def test_a_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    # With 4 bins the edges 0.25, 0.5, 0.75 are exact: 0.5 belongs to (0.25, 0.5], 1.0 to (0.75, 1], 0 to the first.
    probs = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 0.0]])
    counts = [b.count for b in reliability_bins(probs, [0, 0, 1], bins=4)]
    assert counts == [1, 1, 0, 1]
    # bin (0, 0.25]: confidence 0, wrong (gap 0); (0.25, 0.5]: 0.5, right (0.5); (0.75, 1]: 1.0, right (0) → 0.5/3
    assert expected_calibration_error(probs, [0, 0, 1], bins=4) == pytest.approx(0.5 / 3)


def test_a_perfectly_calibrated_model_has_no_calibration_error():
    # Ten papers at confidence 0.8, eight of them right.
    probs = np.tile([0.8, 0.2], (10, 1))
    assert expected_calibration_error(probs, [0] * 8 + [1] * 2) == pytest.approx(0.0)
    assert expected_calibration_error(probs, [1] * 10) == pytest.approx(0.8)  # all wrong at 0.8


def test_resampled_scores_are_the_metrics_of_each_resample():
    rows = np.array([[0, 1, 2, 3, 4, 5], [0, 0, 2, 2, 3, 5], [1, 1, 4, 4, 1, 4]])
    scores = resampled_scores(PROBS, TRUTH, rows)
    # resample 1: all six rows right → 1, and every occurring class perfect; resample 2: all wrong → 0
    assert scores["accuracy"] == pytest.approx([4 / 6, 1.0, 0.0])
    assert scores["macro_f1"] == pytest.approx([59 / 90, 1.0, 0.0])
    rng = np.random.default_rng(3)
    rows = rng.integers(0, 6, size=(50, 6))
    scores = resampled_scores(PROBS, TRUTH, rows)
    predicted = PROBS.argmax(axis=1)
    expected = [f1_score(TRUTH[r], predicted[r], average="macro", zero_division=0) for r in rows]
    assert scores["macro_f1"] == pytest.approx(expected)


def test_bootstrap_intervals_are_seeded_percentiles():
    # Two papers, one right: a resample's accuracy is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so in 1,000 resamples
    # more than 2.5 % are 0 and more than 2.5 % are 1: the 95 % interval is [0, 1].
    probs, truth = np.array([[0.9, 0.1], [0.8, 0.2]]), np.array([0, 1])
    assert bootstrap_intervals(probs, truth)["accuracy"] == Interval(0.0, 1.0)
    # Every paper right: every resample scores 1.
    assert bootstrap_intervals(PROBS, PROBS.argmax(axis=1)) == {"accuracy": Interval(1, 1), "macro_f1": Interval(1, 1)}
    first = bootstrap_intervals(PROBS, TRUTH, resamples=200, seed=1)
    assert first == bootstrap_intervals(PROBS, TRUTH, resamples=200, seed=1)
    assert first["accuracy"].low <= 4 / 6 <= first["accuracy"].high
    # The same draws at 50 %: the 25th and 75th percentiles lie inside the 2.5th and 97.5th.
    half = bootstrap_intervals(PROBS, TRUTH, resamples=200, seed=1, level=0.5)["accuracy"]
    assert first["accuracy"].low < half.low < half.high < first["accuracy"].high


def test_abstention_splits_the_answers_at_the_threshold():
    # Confidences 0.70 ✓, 0.50 ✗, 0.85 ✓, 0.50 ✓, 0.65 ✗, 0.90 ✓: below 0.6 are papers 1 and 3, one of them right.
    split = abstention(PROBS, TRUTH, below=0.6)
    assert split.unsure_share == pytest.approx(2 / 6)
    assert split.accuracy_sure == pytest.approx(3 / 4) and split.accuracy_unsure == pytest.approx(1 / 2)
    assert abstention(PROBS, TRUTH, below=0.5).unsure_share == 0.0  # "below" is strict
    assert abstention(PROBS, TRUTH, below=0.5).accuracy_unsure is None
    assert abstention(PROBS, TRUTH, below=1.0).accuracy_sure is None


def test_the_report_gathers_every_metric_and_is_json():
    report = ClassificationReport.from_probabilities(PROBS, TRUTH, ["cs.AI", "cs.CL", "cs.CV"], LISTED, k=2)
    assert report.num_samples == 6 and report.labels == ["cs.AI", "cs.CL", "cs.CV"]
    assert report.accuracy == pytest.approx(4 / 6) and report.macro_f1 == pytest.approx(59 / 90)
    assert report.top_k == 2 and report.top_k_accuracy == pytest.approx(5 / 6)
    assert report.any_listed_accuracy == pytest.approx(5 / 6)
    assert report.ece == pytest.approx(0.2) and report.ece_bins == 15 and len(report.reliability) == 15
    assert report.per_class["cs.AI"].f1 == pytest.approx(0.8) and report.per_class["cs.CV"].support == 2
    assert report.intervals["accuracy"].low <= report.accuracy <= report.intervals["accuracy"].high
    assert report.bootstrap == {"method": "percentile", "resamples": 1000, "level": 0.95, "seed": 0}
    assert report.abstention == abstention(PROBS, TRUTH, 0.5)
    document = json.loads(json.dumps(report.to_json()))
    assert document["intervals"]["macro_f1"].keys() == {"low", "high"}
    assert document["per_class"]["cs.CL"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}


def test_the_report_gives_the_coverage_accuracy_curve_and_the_coverage_at_each_target_accuracy():
    # Confidences 0.90 ✓, 0.85 ✓, 0.70 ✓, 0.65 ✗, 0.50 ✗, 0.50 ✓: from 0.70 up three answered, all right.
    report = ClassificationReport.from_probabilities(PROBS, TRUTH, ["cs.AI", "cs.CL", "cs.CV"], resamples=10)
    by_threshold = {point.threshold: point for point in report.coverage_curve}
    assert len(report.coverage_curve) == 20
    assert (by_threshold[0.5].coverage, by_threshold[0.5].accuracy) == (1.0, pytest.approx(4 / 6))
    assert (by_threshold[0.7].answered, by_threshold[0.7].accuracy) == (3, 1.0)
    assert by_threshold[0.9].answered == 1 and by_threshold[0.95].accuracy is None
    # Six papers are fewer than a threshold may rest on: the report says so rather than choose one on three.
    assert [(c.target_accuracy, c.outcome) for c in report.coverage_targets] == [
        (0.9, "too_few_papers"),
        (0.95, "too_few_papers"),
    ]
    document = json.loads(json.dumps(report.to_json()))
    assert document["coverage_curve"][14] == {"threshold": 0.7, "answered": 3, "coverage": 0.5, "accuracy": 1.0}
    assert document["coverage_targets"][0]["outcome"] == "too_few_papers"


@pytest.mark.parametrize(
    ("probs", "truth", "message"),
    [
        (np.empty((0, 3)), [], "non-empty"),
        (PROBS, TRUTH[:5], "one class index per row"),
        (PROBS, [0, 1, 2, 3, 0, 0], r"class indices in \[0, 3\)"),
        (PROBS, TRUTH.astype(float), "class indices"),
    ],
)
def test_unusable_inputs_are_refused(probs, truth, message):
    with pytest.raises(ValueError, match=message):
        accuracy(probs, truth)


def test_options_out_of_range_are_refused():
    with pytest.raises(ValueError, match="k must be >= 1"):
        top_k_accuracy(PROBS, TRUTH, k=0)
    with pytest.raises(ValueError, match="bins must be >= 1"):
        reliability_bins(PROBS, TRUTH, bins=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        bootstrap_intervals(PROBS, TRUTH, level=1.0)
    with pytest.raises(ValueError, match="label_names must name the 3 columns"):
        ClassificationReport.from_probabilities(PROBS, TRUTH, ["a", "b"])
