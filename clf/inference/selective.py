"""Selective answers: how the accuracy of the answers grows as the least confident ones are flagged unsure, and the
confidence threshold that reaches a target accuracy.

    confidence, correct = top1_outcomes(probabilities, labels)
    curve = coverage_accuracy_curve(confidence, correct)            # coverage and accuracy at 0, 0.05, ..., 0.95
    choice = choose_threshold(confidence, correct, 0.90)            # the lowest threshold whose answers are 90 % right
    choice.outcome, choice.threshold, choice.coverage, choice.accuracy

An answer whose top-1 probability is below the artifact's ``abstain_below`` is flagged ``unsure`` by the service;
the others are its answers. For papers with top-1 confidence ``c_i`` (``r_i`` = 1 when the top class is right):

* **answered at threshold t**: the papers with ``c_i >= t``, exactly those the service does not flag;
* **coverage(t)**: answered / N; **accuracy(t)**: the mean ``r_i`` of the answered papers (None when none is).

Accuracy is not monotone in ``t`` (a few confident mistakes can make a higher threshold worse), so
`choose_threshold` looks at every distinct confidence and keeps the lowest one (the largest coverage) whose answers
reach the target. Papers with the same confidence are answered or flagged together, so a threshold never splits a
tie. The threshold returned is the confidence of the least confident answered paper: the papers say nothing about
where between it and the next lower confidence the accuracy drops below the target, so it takes the safe end.
A threshold is only chosen when it answers at least ``min_answered`` papers (`MIN_ANSWERED`): on three papers, three
right answers are 100 % accurate and say nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np

COVERAGE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(20))
"""The thresholds of the reported coverage–accuracy curve: 0, 0.05, ..., 0.95."""
ACCURACY_TARGETS = (0.90, 0.95)
"""The accuracies an evaluation reports the largest coverage for."""
MIN_ANSWERED = 50
"""Fewest answered papers a threshold is chosen on."""


def top1_outcomes(probabilities: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each paper's top-1 confidence and whether its top class is right.

    Args:
        probabilities: an ``(N, C)`` array (softmax rows, or a multi-label model's sigmoids).
        labels: the ``N`` true class indices; or an ``(N, C)`` 0/1 matrix of each paper's categories, where the top
            class is right when it is one of them.

    Returns:
        ``confidence`` (``N`` floats, the row maxima) and ``correct`` (``N`` booleans); the top class is the row's
        `numpy.argmax` (ties to the lower class index), as everywhere in `clf.evaluation.metrics`.

    Raises:
        ValueError: for an empty or non-2-D `probabilities`, or `labels` of another shape or outside ``[0, C)``.
    """
    probs, truth = checked_scores(probabilities, labels, categories=True)
    top = probs.argmax(axis=1)
    rows = np.arange(probs.shape[0])
    correct = truth[rows, top] > 0 if truth.ndim == 2 else top == truth
    return probs[rows, top], correct


def checked_scores(probabilities: Any, labels: Any, *, categories: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scores and their truth as arrays, checked: the one check of every metric here and in `clf.evaluation`.

    Args:
        probabilities: a non-empty ``(N, C)`` array.
        labels: ``N`` class indices in ``[0, C)``; with `categories`, also an ``(N, C)`` 0/1 matrix.
        categories: accept the matrix of each paper's categories.

    Returns:
        ``probabilities`` as float64 and ``labels`` as int64 (the matrix as given).

    Raises:
        ValueError: for empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(labels)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] == 0:
        raise ValueError(f"probabilities must be a non-empty (N, C) array, got shape {probs.shape}")
    if categories and truth.shape == probs.shape:
        return probs, truth
    if truth.shape != (probs.shape[0],):
        matrix = f" or a {probs.shape} matrix of categories" if categories else ""
        raise ValueError(
            f"labels must hold one class index per row: {probs.shape[0]} class indices{matrix}, got shape {truth.shape}"
        )
    if not np.issubdtype(truth.dtype, np.integer) or truth.min() < 0 or truth.max() >= probs.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {probs.shape[1]}), got {truth[:10].tolist()}...")
    return probs, truth.astype(np.int64)


@dataclass(frozen=True)
class CoveragePoint:
    """The answers at one confidence threshold.

    Attributes:
        threshold: answers with a top-1 confidence at or above it are given, the others flagged unsure.
        answered: papers answered.
        coverage: their share of all papers.
        accuracy: the share of them whose top class is right; None when no paper is answered.
    """

    threshold: float
    answered: int
    coverage: float
    accuracy: float | None


def coverage_accuracy_curve(
    confidence: Any, correct: Any, thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS
) -> list[CoveragePoint]:
    """Coverage and accuracy of the answered papers at each threshold.

    Args:
        confidence: each paper's top-1 confidence (`top1_outcomes`).
        correct: whether each paper's top class is right.
        thresholds: the thresholds, in the order the points are returned.

    Returns:
        One point per threshold.

    Raises:
        ValueError: for empty or mismatched inputs.

    >>> (point,) = coverage_accuracy_curve([0.9, 0.6, 0.4], [1, 1, 0], (0.5,))
    >>> (point.threshold, point.coverage, point.accuracy)
    (0.5, 0.6666666666666666, 1.0)
    """
    conf, right = _checked(confidence, correct)
    points = []
    for threshold in thresholds:
        answered = conf >= threshold
        count = int(answered.sum())
        accuracy = float(right[answered].mean()) if count else None
        points.append(CoveragePoint(float(threshold), count, count / len(conf), accuracy))
    return points


class ThresholdOutcome(StrEnum):
    """What `choose_threshold` found."""

    REACHED = "reached"
    """The answers at or above the threshold reach the target accuracy; it is the lowest such threshold."""
    NOT_REACHED = "not_reached"
    """No threshold answering enough papers reaches the target: the threshold is the most accurate one that does."""
    TOO_FEW_PAPERS = "too_few_papers"
    """Fewer papers than the minimum in all: no threshold is chosen."""


@dataclass(frozen=True)
class ThresholdChoice:
    """A confidence threshold chosen for a target accuracy, with the evidence it was chosen on.

    Attributes:
        target_accuracy: the accuracy asked of the answered papers.
        outcome: whether it was reached (`ThresholdOutcome`).
        threshold: the chosen threshold; None when there were too few papers.
        answered: papers at or above it.
        papers: papers it was chosen on.
        coverage: ``answered / papers``; None without a threshold.
        accuracy: the accuracy of the answered papers; None without a threshold.
        min_answered: the fewest answered papers a threshold was allowed to rest on.
    """

    target_accuracy: float
    outcome: ThresholdOutcome
    threshold: float | None
    answered: int
    papers: int
    coverage: float | None
    accuracy: float | None
    min_answered: int

    @property
    def reached(self) -> bool:
        """True when the answers at the threshold reach the target accuracy."""
        return self.outcome is ThresholdOutcome.REACHED

    def describe(self) -> str:
        """One line for logs and model cards.

        Returns:
            For example ``0.7312 for 90 % accuracy: 78.4 % of 1,000 papers answered, 90.3 % of them right``.
        """
        target = f"{self.target_accuracy:.0%} accuracy"
        if self.threshold is None:
            return f"no threshold for {target}: {self.papers:,} papers, fewer than the {self.min_answered} required"
        found = f"{self.coverage:.1%} of {self.papers:,} papers answered, {self.accuracy:.1%} of them right"
        if self.reached:
            return f"{self.threshold:.4f} for {target}: {found}"
        return f"{self.threshold:.4f}, the most accurate threshold, short of {target}: {found}"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields, the outcome as its string value.
        """
        return {**asdict(self), "outcome": self.outcome.value}

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> ThresholdChoice:
        """The choice `to_json` wrote.

        Args:
            document: the dict.

        Returns:
            The choice.
        """
        return cls(**{**document, "outcome": ThresholdOutcome(document["outcome"])})


def choose_threshold(
    confidence: Any, correct: Any, target_accuracy: float, min_answered: int = MIN_ANSWERED
) -> ThresholdChoice:
    """The lowest confidence threshold whose answered papers reach `target_accuracy` (the largest coverage).

    When no threshold answering at least `min_answered` papers reaches the target, the result says so
    (``NOT_REACHED``) and carries the threshold of the highest accuracy among those that do (the larger coverage on a
    tie): the closest the model comes. With fewer than `min_answered` papers in all, no threshold is chosen
    (``TOO_FEW_PAPERS``). See the module for the definitions and ties.

    Args:
        confidence: each paper's top-1 confidence (`top1_outcomes`).
        correct: whether each paper's top class is right.
        target_accuracy: the accuracy asked of the answered papers, in (0, 1].
        min_answered: the fewest answered papers a threshold may rest on.

    Returns:
        The choice and its evidence.

    Raises:
        ValueError: for a target outside (0, 1], a `min_answered` below 1, or empty or mismatched inputs.

    >>> choose_threshold([0.9, 0.8, 0.7, 0.6], [1, 1, 0, 1], 0.75, min_answered=2).threshold
    0.6
    """
    if not 0 < target_accuracy <= 1:
        raise ValueError(f"target_accuracy must be in (0, 1], got {target_accuracy}")
    if min_answered < 1:
        raise ValueError(f"min_answered must be >= 1, got {min_answered}")
    conf, right = _checked(confidence, correct)
    papers = len(conf)
    if papers < min_answered:
        return ThresholdChoice(
            target_accuracy, ThresholdOutcome.TOO_FEW_PAPERS, None, 0, papers, None, None, min_answered
        )
    order = np.argsort(-conf, kind="stable")
    ranked = conf[order]
    hits = np.cumsum(right[order])
    # The last paper of each run of equal confidences: a threshold answers all of a tie or none of it.
    ends = np.flatnonzero(np.append(ranked[1:] != ranked[:-1], True))
    answered = ends + 1
    accuracy = hits[ends] / answered
    eligible = answered >= min_answered
    meeting = np.flatnonzero(eligible & (accuracy >= target_accuracy))
    if meeting.size:
        chosen, outcome = int(meeting[-1]), ThresholdOutcome.REACHED
    else:
        candidates = np.flatnonzero(eligible)  # never empty: answering every paper is eligible
        best = accuracy[candidates].max()
        chosen, outcome = int(candidates[accuracy[candidates] == best][-1]), ThresholdOutcome.NOT_REACHED
    count = int(answered[chosen])
    return ThresholdChoice(
        target_accuracy=float(target_accuracy),
        outcome=outcome,
        threshold=float(ranked[ends[chosen]]),
        answered=count,
        papers=papers,
        coverage=count / papers,
        accuracy=float(accuracy[chosen]),
        min_answered=min_answered,
    )


def _checked(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """The inputs as a float array and a boolean array of one equal, non-zero length."""
    conf = np.asarray(confidence, dtype=np.float64)
    right = np.asarray(correct).astype(bool)
    if conf.ndim != 1 or conf.size == 0:
        raise ValueError(f"confidence must be a non-empty 1-D array, got shape {conf.shape}")
    if right.shape != conf.shape:
        raise ValueError(f"correct must hold one flag per paper ({conf.size}), got shape {right.shape}")
    return conf, right
