"""What an experiment's logs say: per-arm summaries, the significance test, and a recommendation with its evidence.

    control = summarize_arm("control", "v1.0.0", latencies, predicted, true)
    treatment = summarize_arm("treatment", "v1.1.0", latencies, predicted, true)
    analysis = decide(7, control, treatment)             # DecisionRule(): alpha 0.05, +2 points, power 0.8
    analysis.recommendation                              # Recommendation.PROMOTE / KEEP / INCONCLUSIVE

Accuracy and macro-F1 come from the predictions that received feedback (a true label); counts and latency from
every logged prediction. The arms are compared on accuracy with a two-sided two-proportion z-test
(`clf.experiments.stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from clf.experiments.stats import ProportionTest, sample_size_two_proportions, two_proportion_z_test
from clf.experiments.tables import utc_now
from clf.monitoring.estimates import measured_scores


class Recommendation(StrEnum):
    """What the data says to do with the treatment."""

    PROMOTE = "promote"
    """The treatment is significantly more accurate, by more than the rule's minimum improvement."""
    KEEP = "keep"
    """Keep the control: the treatment is significantly worse or not better enough, or enough data shows no gain."""
    INCONCLUSIVE = "inconclusive"
    """Not enough data yet: `ExperimentAnalysis.required_per_arm` predictions with feedback per arm are needed."""


@dataclass(frozen=True)
class DecisionRule:
    """When a treatment wins.

    Attributes:
        alpha: the significance level of the two-sided test (p below it is significant).
        min_improvement: the absolute accuracy gain the treatment must exceed (0.02 = two points).
        power: the chance of detecting a true gain of `min_improvement`, for the sample-size calculation.
        min_feedback_per_arm: fewer predictions with feedback in an arm than this, and no test is run (the normal
            approximation behind the z-test is poor on tiny samples).

    Raises:
        ValueError: naming the setting that is out of range.
    """

    alpha: float = 0.05
    min_improvement: float = 0.02
    power: float = 0.8
    min_feedback_per_arm: int = 30

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0.0 < self.min_improvement < 0.5:
            raise ValueError(
                f"min_improvement must be in (0, 0.5) (an absolute accuracy gain), got {self.min_improvement}"
            )
        if not 0.5 <= self.power < 1.0:
            raise ValueError(f"power must be in [0.5, 1), got {self.power}")
        if self.min_feedback_per_arm < 1:
            raise ValueError(f"min_feedback_per_arm must be >= 1, got {self.min_feedback_per_arm}")


@dataclass(frozen=True)
class ArmSummary:
    """One arm of an experiment.

    Attributes:
        arm: ``control`` or ``treatment``.
        version: the model version serving it.
        predictions: logged predictions.
        with_feedback: of those, how many have a true label.
        correct: of those, how many the model got right.
        accuracy: ``correct / with_feedback``; None without feedback.
        accuracy_ci: the 95 % Wilson score interval of the accuracy; None without feedback.
        latency_p95_ms: the 95th percentile of the logged latencies (linear interpolation); None without predictions.
        macro_f1: macro-averaged F1 over the labels seen in the feedback (scikit-learn); None without feedback.
    """

    arm: str
    version: str
    predictions: int
    with_feedback: int
    correct: int
    accuracy: float | None
    accuracy_ci: tuple[float, float] | None
    latency_p95_ms: float | None
    macro_f1: float | None


def summarize_arm(
    arm: str, version: str, latencies_ms: Sequence[float], predicted: Sequence[str], true: Sequence[str]
) -> ArmSummary:
    """Summarises one arm.

    Args:
        arm: ``control`` or ``treatment``.
        version: its model version.
        latencies_ms: the latency of every logged prediction.
        predicted: the predicted label of each prediction with feedback.
        true: the true label of each of those, in the same order.

    Returns:
        The arm's summary.

    Raises:
        ValueError: when `predicted` and `true` differ in length.
    """
    if len(predicted) != len(true):
        raise ValueError(f"{len(predicted)} predicted labels but {len(true)} true labels")
    scores = measured_scores(true, predicted) if true else None
    n = len(true)
    correct = sum(p == t for p, t in zip(predicted, true, strict=True))
    p95 = float(np.percentile(np.asarray(latencies_ms, dtype=float), 95)) if len(latencies_ms) else None
    return ArmSummary(
        arm=arm,
        version=version,
        predictions=len(latencies_ms),
        with_feedback=n,
        correct=correct,
        accuracy=scores.accuracy.value if scores else None,
        accuracy_ci=(scores.accuracy.low, scores.accuracy.high) if scores else None,
        latency_p95_ms=p95,
        macro_f1=scores.macro_f1 if scores else None,
    )


@dataclass(frozen=True)
class ExperimentAnalysis:
    """An experiment's evidence and what it recommends.

    Attributes:
        experiment_id: the experiment.
        control: the control arm.
        treatment: the treatment arm.
        test: the two-proportion z-test of the accuracies; None while an arm has too little feedback to test.
        recommendation: promote, keep or inconclusive.
        required_per_arm: predictions with feedback per arm needed to detect the rule's minimum improvement over
            the control's accuracy with the rule's power (0.5 assumed while the control has no feedback).
        reason: the recommendation in one sentence, with its numbers.
        rule: the rule applied.
        analyzed_at: when the analysis ran (UTC).
    """

    experiment_id: int
    control: ArmSummary
    treatment: ArmSummary
    test: ProportionTest | None
    recommendation: Recommendation
    required_per_arm: int
    reason: str
    rule: DecisionRule = field(default_factory=DecisionRule)
    analyzed_at: datetime = field(default_factory=utc_now)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (what the experiment's ``results`` column keeps).

        Returns:
            The analysis's fields, with the recommendation as text, the time in ISO 8601 and intervals as lists.
        """
        record = asdict(self)
        record["recommendation"] = self.recommendation.value
        record["analyzed_at"] = self.analyzed_at.isoformat()
        for arm in ("control", "treatment"):
            ci = record[arm]["accuracy_ci"]
            record[arm]["accuracy_ci"] = list(ci) if ci is not None else None
        return record


def decide(
    experiment_id: int, control: ArmSummary, treatment: ArmSummary, rule: DecisionRule | None = None
) -> ExperimentAnalysis:
    """Tests the arms' accuracies and recommends what to do.

    - Fewer than ``rule.min_feedback_per_arm`` predictions with feedback in an arm: INCONCLUSIVE, no test.
    - p < alpha and the treatment better by more than ``rule.min_improvement``: PROMOTE.
    - p < alpha otherwise (worse, or better by too little to matter): KEEP.
    - Not significant, with both arms at `required_per_arm`: KEEP (a real gain that size would likely show).
    - Not significant and short of it: INCONCLUSIVE, waiting for `required_per_arm`.

    Args:
        experiment_id: the experiment.
        control: its control arm.
        treatment: its treatment arm.
        rule: the decision rule; `DecisionRule()` by default.

    Returns:
        The analysis.
    """
    rule = rule or DecisionRule()
    baseline = control.accuracy if control.accuracy is not None else 0.5
    required = max(
        rule.min_feedback_per_arm, sample_size_two_proportions(baseline, rule.min_improvement, rule.alpha, rule.power)
    )
    fewest = min(control.with_feedback, treatment.with_feedback)
    if fewest < rule.min_feedback_per_arm:
        reason = (
            f"too little feedback to test: control {control.with_feedback}, treatment {treatment.with_feedback} "
            f"predictions with a true label; at least {rule.min_feedback_per_arm} per arm are needed to test, "
            f"{required} to detect +{rule.min_improvement:.0%}"
        )
        return ExperimentAnalysis(
            experiment_id, control, treatment, None, Recommendation.INCONCLUSIVE, required, reason, rule
        )
    test = two_proportion_z_test(control.correct, control.with_feedback, treatment.correct, treatment.with_feedback)
    numbers = (
        f"accuracy {control.accuracy:.2%} (control, n={control.with_feedback}) vs {treatment.accuracy:.2%} "
        f"(treatment, n={treatment.with_feedback}), difference {test.difference:+.2%} "
        f"[{test.ci_low:+.2%}, {test.ci_high:+.2%}], p={test.p_value:.4f}"
    )
    if test.p_value < rule.alpha and test.difference > rule.min_improvement:
        recommendation = Recommendation.PROMOTE
        reason = f"treatment significantly better by more than {rule.min_improvement:.0%}: {numbers}"
    elif test.p_value < rule.alpha:
        recommendation = Recommendation.KEEP
        worse = "worse" if test.difference < 0 else f"better by no more than {rule.min_improvement:.0%}"
        reason = f"treatment significantly {worse}: {numbers}"
    elif fewest >= required:
        recommendation = Recommendation.KEEP
        reason = (
            f"no significant difference with {fewest} per arm, enough to see +{rule.min_improvement:.0%} "
            f"({required} needed): {numbers}"
        )
    else:
        recommendation = Recommendation.INCONCLUSIVE
        reason = f"not significant yet; waiting for {required} predictions with feedback per arm: {numbers}"
    return ExperimentAnalysis(experiment_id, control, treatment, test, recommendation, required, reason, rule)
