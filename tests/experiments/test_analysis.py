"""Tests for clf/experiments/analysis.py: arm summaries and every branch of the recommendation."""

from __future__ import annotations

import json

import pytest

from clf.experiments.analysis import DecisionRule, Recommendation, decide, summarize_arm


def arm(name: str, correct: int, n: int, predictions: int | None = None):
    """An arm with `correct` of `n` predictions right (cs.CV for cs.CV) and `predictions` logged in all."""
    true = ["cs.CV"] * n
    predicted = ["cs.CV"] * correct + ["cs.DB"] * (n - correct)
    return summarize_arm(name, f"v-{name}", [10.0] * (predictions or n), predicted, true)


def test_summary_counts_accuracy_macro_f1_and_p95():
    summary = summarize_arm(
        "control",
        "v1.0.0",
        latencies_ms=[float(x) for x in range(1, 101)],
        predicted=["a", "b", "b", "b"],
        true=["a", "a", "b", "b"],
    )
    assert (summary.predictions, summary.with_feedback, summary.correct, summary.accuracy) == (100, 4, 3, 0.75)
    # a: precision 1, recall 1/2 -> F1 2/3; b: precision 2/3, recall 1 -> F1 4/5; macro (2/3 + 4/5) / 2.
    assert summary.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert summary.latency_p95_ms == pytest.approx(95.05)  # numpy's linear interpolation over 1..100
    low, high = summary.accuracy_ci
    assert 0 < low < 0.75 < high < 1


def test_an_arm_without_logs_or_feedback_has_no_numbers():
    summary = summarize_arm("treatment", "v1.1.0", [], [], [])
    assert (summary.predictions, summary.accuracy, summary.accuracy_ci, summary.latency_p95_ms) == (0, None, None, None)
    assert summary.macro_f1 is None
    with pytest.raises(ValueError, match="2 predicted labels but 1"):
        summarize_arm("control", "v1", [], ["a", "b"], ["a"])


def test_significantly_better_by_more_than_two_points_is_promote():
    analysis = decide(1, arm("control", 80, 100), arm("treatment", 90, 100))
    assert analysis.recommendation is Recommendation.PROMOTE
    assert analysis.test.p_value == pytest.approx(0.047670, abs=1e-6)
    assert "p=0.0477" in analysis.reason


def test_significantly_worse_is_keep():
    analysis = decide(1, arm("control", 90, 100), arm("treatment", 80, 100))
    assert analysis.recommendation is Recommendation.KEEP and "significantly worse" in analysis.reason


def test_significant_but_smaller_than_two_points_is_keep():
    analysis = decide(1, arm("control", 80_000, 100_000), arm("treatment", 81_500, 100_000))
    assert analysis.test.p_value < 1e-10 and analysis.test.difference == pytest.approx(0.015)
    assert analysis.recommendation is Recommendation.KEEP and "no more than 2%" in analysis.reason


def test_not_significant_with_enough_data_is_keep():
    analysis = decide(1, arm("control", 4832, 6040), arm("treatment", 4840, 6040))
    assert analysis.required_per_arm == 6039
    assert analysis.test.p_value > 0.05
    assert analysis.recommendation is Recommendation.KEEP


def test_not_significant_yet_is_inconclusive_and_says_what_it_waits_for():
    analysis = decide(1, arm("control", 80, 100), arm("treatment", 82, 100))
    assert analysis.recommendation is Recommendation.INCONCLUSIVE
    assert analysis.required_per_arm == 6039 and "waiting for 6039" in analysis.reason


def test_too_little_feedback_is_inconclusive_without_a_test():
    analysis = decide(1, arm("control", 9, 10, predictions=500), arm("treatment", 0, 0, predictions=500))
    assert analysis.test is None and analysis.recommendation is Recommendation.INCONCLUSIVE
    assert "at least 30 per arm" in analysis.reason
    # Without any control feedback the power calculation assumes the worst case, 50 % accuracy.
    assert decide(1, arm("control", 0, 0), arm("treatment", 0, 0)).required_per_arm == 9806


def test_a_custom_rule_changes_the_verdict():
    strict = DecisionRule(alpha=0.01)
    assert decide(1, arm("control", 80, 100), arm("treatment", 90, 100), strict).recommendation is not (
        Recommendation.PROMOTE
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.7}, "alpha"),
        ({"min_improvement": 2}, "min_improvement"),
        ({"power": 1.0}, "power"),
        ({"min_feedback_per_arm": 0}, "min_feedback_per_arm"),
    ],
)
def test_rule_settings_out_of_range_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DecisionRule(**kwargs)


def test_analysis_json_is_plain_json():
    record = decide(3, arm("control", 80, 100), arm("treatment", 90, 100)).to_json()
    again = json.loads(json.dumps(record))
    assert again["recommendation"] == "promote" and again["experiment_id"] == 3
    assert again["control"]["accuracy_ci"] == pytest.approx([0.7112, 0.8666], abs=1e-4)
    assert again["test"]["p_value"] == pytest.approx(0.047670, abs=1e-6)
    assert again["rule"] == {"alpha": 0.05, "min_improvement": 0.02, "power": 0.8, "min_feedback_per_arm": 30}
