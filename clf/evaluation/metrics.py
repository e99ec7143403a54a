"""Classification metrics over arrays of probabilities: pure functions, and one report that gathers them.

    report = ClassificationReport.from_probabilities(probabilities, labels, ["cs.CL", "cs.CV", "cs.LG"], listed)
    report.accuracy, report.intervals["macro_f1"], report.ece, report.to_json()

Every function takes ``probabilities``, an ``(N, C)`` array whose row ``i`` scores paper ``i`` on the ``C`` classes
(softmax outputs; the sigmoids of a multi-label model work the same way), and ``labels``, the ``N`` true class
indices (the primary category). The top class of a row is its highest probability, ties going to the lower class
index (`numpy.argmax`), and the same order ranks the top ``k``, so ``top_k_accuracy(p, y, 1) == accuracy(p, y)``.

The definitions, for predictions ``ŷ_i`` and true classes ``y_i``:

* **accuracy**: the share of papers with ``ŷ_i = y_i``.
* **precision, recall, F1 of class c**: ``TP/(TP+FP)``, ``TP/(TP+FN)`` and ``2·TP/(2·TP+FP+FN)``, each 0 when its
  denominator is 0 (scikit-learn's ``zero_division=0``).
* **macro-F1**: the unweighted mean of the per-class F1 over the classes that occur among the true classes or the
  predictions (scikit-learn's default label set); a class neither present nor predicted has no F1 and is left out.
* **top-k accuracy**: the share of papers whose true class is among the ``k`` highest-scored classes.
* **any-listed accuracy**: the share of papers whose top class is among the paper's listed categories (its
  primary category always counts as listed). A paper cross-listed in cs.LG and cs.AI is then right with either.
* **expected calibration error (ECE)**, the standard definition (Naeini et al. 2015; Guo et al. 2017, "On
  Calibration of Modern Neural Networks"): the top-1 confidence ``p̂_i = max_c p_ic`` of each paper falls into one
  of ``M = 15`` equal-width bins ``B_m = ((m-1)/M, m/M]`` (a confidence of exactly 0 into the first); then
  ``ECE = Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|``, where ``acc`` is the share of the bin's papers whose top class is
  right and ``conf`` their mean confidence. 0 is perfectly calibrated; empty bins add nothing. For a multi-label
  model ``p̂_i`` is the sigmoid of its top class, which is not a distribution over classes: read its ECE with care.
* **abstention at threshold t**: the share of papers whose top-1 confidence is below ``t`` (answers flagged
  ``unsure``), and the accuracy of the others and of those; with calibrated probabilities the second is high and the
  third low.
* **coverage–accuracy curve**: at each threshold 0, 0.05, ..., 0.95, the share of papers answered (top-1 confidence
  at or above it) and the accuracy of those; and the largest coverage whose answers are 90 % and 95 % right
  (`clf.inference.selective`, which defines them).
* **reliability diagram**: per bin, its paper count, mean confidence and accuracy (the terms of the ECE).
* **bootstrap 95 % interval** (percentile method, Efron & Tibshirani 1993): draw ``N`` papers with replacement
  ``R = 1,000`` times from a seeded generator, compute the metric on each resample, and take the 2.5th and 97.5th
  percentiles (`numpy.percentile`, linear interpolation) of the ``R`` values. The same seed gives the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from clf.inference.selective import (
    ACCURACY_TARGETS,
    CoveragePoint,
    ThresholdChoice,
    checked_scores,
    choose_threshold,
    coverage_accuracy_curve,
    top1_outcomes,
)
from clf.reliability import bin_edges, calibration_error, confidence_bins

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error and the reliability diagram."""
TOP_K = 3
"""The k of the reported top-k accuracy."""
BOOTSTRAP_RESAMPLES = 1000
"""Resamples drawn for each bootstrap interval."""
BOOTSTRAP_LEVEL = 0.95
"""The coverage of the bootstrap intervals."""
BOOTSTRAP_SEED = 0
"""The seed of the bootstrap's generator, so an interval is the same on every run."""
_CHUNK = 100  # resamples computed at once: bounded memory (100 × N indices) whatever N is


def predicted_classes(probabilities: Any) -> np.ndarray:
    """The top class of each row (ties to the lower class index).

    Args:
        probabilities: an ``(N, C)`` array.

    Returns:
        ``N`` class indices.
    """
    return np.asarray(probabilities).argmax(axis=1)


def accuracy(probabilities: Any, labels: Any) -> float:
    """The share of rows whose top class is the true one.

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.

    Returns:
        Accuracy in [0, 1].

    Raises:
        ValueError: for empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    probs, truth = checked_scores(probabilities, labels)
    return float(np.mean(predicted_classes(probs) == truth))


@dataclass(frozen=True)
class ClassScores:
    """Precision, recall, F1 and support of every class, index-aligned arrays of length ``C``.

    Attributes:
        precision: ``TP/(TP+FP)``, 0 for a class never predicted.
        recall: ``TP/(TP+FN)``, 0 for a class never present.
        f1: ``2·TP/(2·TP+FP+FN)``, 0 when the class is neither present nor predicted.
        support: papers whose true class it is.
        predicted: papers predicted as it.
    """

    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    predicted: np.ndarray

    @property
    def occurring(self) -> np.ndarray:
        """Whether each class is present or predicted: the classes macro-F1 averages over."""
        return (self.support + self.predicted) > 0


def class_scores(probabilities: Any, labels: Any) -> ClassScores:
    """Per-class precision, recall and F1 of the top class (see the module for the definitions).

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.

    Returns:
        The scores of every one of the ``C`` classes.

    Raises:
        ValueError: for empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    probs, truth = checked_scores(probabilities, labels)
    num_classes = probs.shape[1]
    predicted = predicted_classes(probs)
    tp = np.bincount(truth[predicted == truth], minlength=num_classes)
    support = np.bincount(truth, minlength=num_classes)
    predicted_count = np.bincount(predicted, minlength=num_classes)
    return ClassScores(
        precision=_ratio(tp, predicted_count),
        recall=_ratio(tp, support),
        f1=_ratio(2 * tp, support + predicted_count),
        support=support,
        predicted=predicted_count,
    )


def macro_f1(probabilities: Any, labels: Any) -> float:
    """The unweighted mean F1 over the classes that are present or predicted.

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.

    Returns:
        Macro-F1 in [0, 1].

    Raises:
        ValueError: for empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    scores = class_scores(probabilities, labels)
    return float(scores.f1[scores.occurring].mean())


def top_k_accuracy(probabilities: Any, labels: Any, k: int = TOP_K) -> float:
    """The share of rows whose true class is among the `k` highest-scored (ranked as `predicted_classes` ranks).

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        k: how many top classes count; with ``k >= C`` every row is a hit.

    Returns:
        Top-k accuracy in [0, 1].

    Raises:
        ValueError: for a `k` below 1, empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    probs, truth = checked_scores(probabilities, labels)
    rows = np.arange(len(truth))
    true_score = probs[rows, truth][:, None]
    columns = np.arange(probs.shape[1])[None, :]
    # Classes ranked above the true one: higher scores, and equal scores at a lower index (argmax's tie-break).
    above = (probs > true_score) | ((probs == true_score) & (columns < truth[:, None]))
    return float(np.mean(above.sum(axis=1) < k))


def listed_of(samples: Sequence[dict[str, Any]], labels: Sequence[str]) -> list[set[int]]:
    """The class indices of every sample's listed categories (those among `labels`).

    Args:
        samples: samples, optionally with ``categories``.
        labels: the classes, in index order.

    Returns:
        One set per sample.
    """
    label2id = {label: i for i, label in enumerate(labels)}
    return [{label2id[c] for c in s.get("categories") or () if c in label2id} for s in samples]


def any_listed_accuracy(probabilities: Any, labels: Any, listed: Sequence[Collection[int]] | None = None) -> float:
    """The share of rows whose top class is among the paper's listed categories (its true class included).

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        listed: per row, the class indices of every category the paper is listed in; None gives the accuracy.

    Returns:
        Any-listed accuracy in [0, 1].

    Raises:
        ValueError: for empty or mismatched inputs, a label outside ``[0, C)``, or `listed` of another length.
    """
    probs, truth = checked_scores(probabilities, labels)
    if listed is None:
        return accuracy(probs, truth)
    if len(listed) != len(truth):
        raise ValueError(f"listed must hold one set of classes per row ({len(truth)}), got {len(listed)}")
    predicted = predicted_classes(probs)
    hits = [int(p) == int(t) or int(p) in cats for p, t, cats in zip(predicted, truth, listed, strict=True)]
    return float(np.mean(hits))


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin of the reliability diagram.

    Attributes:
        lower: the bin's lower edge (excluded, except 0 for the first bin).
        upper: the bin's upper edge (included).
        count: papers whose top-1 confidence falls in the bin.
        confidence: their mean top-1 confidence; None for an empty bin.
        accuracy: the share of them whose top class is right; None for an empty bin.
    """

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


def reliability_bins(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """The reliability diagram: top-1 confidence against accuracy in `bins` equal-width bins ``((m-1)/M, m/M]``
    (`clf.reliability`, the binning `clf test` uses too).

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        bins: the number of bins ``M``.

    Returns:
        The `bins` bins, lowest first, empty ones included.

    Raises:
        ValueError: for fewer than one bin, empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    edges = bin_edges(bins)
    probs, truth = checked_scores(probabilities, labels)
    confidence = probs.max(axis=1)
    correct = predicted_classes(probs) == truth
    index = confidence_bins(confidence, bins)
    result = []
    for m in range(bins):
        members = index == m
        count = int(members.sum())
        result.append(
            ReliabilityBin(
                lower=float(edges[m]),
                upper=float(edges[m + 1]),
                count=count,
                confidence=float(confidence[members].mean()) if count else None,
                accuracy=float(correct[members].mean()) if count else None,
            )
        )
    return result


def expected_calibration_error(probabilities: Any, labels: Any, bins: int = ECE_BINS) -> float:
    """``Σ_m |B_m|/N · |acc(B_m) − conf(B_m)|`` over `bins` equal-width bins of top-1 confidence.

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        bins: the number of bins ``M``.

    Returns:
        The ECE in [0, 1].

    Raises:
        ValueError: for fewer than one bin, empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    return ece_of_bins(reliability_bins(probabilities, labels, bins))


def ece_of_bins(bins: Iterable[ReliabilityBin]) -> float:
    """The expected calibration error of a reliability diagram's bins.

    Args:
        bins: the bins, as `reliability_bins` returns them.

    Returns:
        The count-weighted mean gap between each bin's accuracy and mean confidence.
    """
    bins = list(bins)
    error = calibration_error(
        [b.count for b in bins],
        [b.confidence if b.count else 0.0 for b in bins],
        [b.accuracy if b.count else 0.0 for b in bins],
    )
    return 0.0 if error is None else error


@dataclass(frozen=True)
class Interval:
    """A confidence interval of a metric.

    Attributes:
        low: its lower end.
        high: its upper end.
    """

    low: float
    high: float


@dataclass(frozen=True)
class Abstention:
    """How answers split at a confidence threshold.

    Attributes:
        below: the threshold: answers whose top-1 confidence is below it are unsure.
        unsure_share: the share of papers that are unsure.
        accuracy_sure: the accuracy of the others (None when there are none).
        accuracy_unsure: the accuracy of the unsure ones (None when there are none).
    """

    below: float
    unsure_share: float
    accuracy_sure: float | None
    accuracy_unsure: float | None


def abstention(probabilities: Any, labels: Any, below: float = 0.5) -> Abstention:
    """The share of unsure answers at `below`, and the accuracy on each side.

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        below: the confidence threshold.

    Returns:
        The split.

    >>> abstention([[0.9, 0.1], [0.4, 0.6], [0.55, 0.45], [0.3, 0.7]], [0, 0, 1, 1], below=0.65)
    Abstention(below=0.65, unsure_share=0.5, accuracy_sure=1.0, accuracy_unsure=0.0)
    """
    probs, truth = checked_scores(probabilities, labels)
    unsure = probs.max(axis=1) < below
    right = predicted_classes(probs) == truth

    def share(mask: np.ndarray) -> float | None:
        return float(right[mask].mean()) if mask.any() else None

    return Abstention(float(below), float(unsure.mean()), share(~unsure), share(unsure))


BOOTSTRAP_METRICS = ("accuracy", "macro_f1")
"""The metrics `bootstrap_intervals` resamples."""


def bootstrap_intervals(
    probabilities: Any,
    labels: Any,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = BOOTSTRAP_LEVEL,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Interval]:
    """Percentile-bootstrap intervals of accuracy and macro-F1 (see the module for the method).

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        resamples: resamples of ``N`` rows drawn with replacement.
        level: the interval's coverage, in (0, 1).
        seed: the seed of the generator (`numpy.random.default_rng`).

    Returns:
        ``{"accuracy": Interval, "macro_f1": Interval}``.

    Raises:
        ValueError: for fewer than one resample, a level outside (0, 1), empty or mismatched inputs, or a label
            outside ``[0, C)``.
    """
    probs, truth = checked_scores(probabilities, labels)
    draws = bootstrap_draws(lambda rows: resampled_scores(probs, truth, rows), len(truth), resamples, level, seed)
    return {name: Interval(*percentile_interval(values, level)) for name, values in draws.items()}


def bootstrap_draws(
    score: Callable[[np.ndarray], dict[str, np.ndarray]], papers: int, resamples: int, level: float, seed: int
) -> dict[str, np.ndarray]:
    """`score` of `resamples` resamples of `papers` rows drawn with replacement, drawn in bounded chunks.

    Args:
        score: maps an ``(R, papers)`` array of row indices to ``{metric: (R,) array}`` (`resampled_scores`).
        papers: how many rows each resample draws (and the range they are drawn from).
        resamples: how many resamples.
        level: the coverage of the interval they are for (checked here, used by `percentile_interval`).
        seed: the seed of the generator (`numpy.random.default_rng`).

    Returns:
        Each metric's ``(resamples,)`` values.

    Raises:
        ValueError: for fewer than one resample or a level outside (0, 1).
    """
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, _CHUNK):
        rows = rng.integers(0, papers, size=(min(_CHUNK, resamples - start), papers))
        for name, values in score(rows).items():
            draws.setdefault(name, []).append(values)
    return {name: np.concatenate(chunks) for name, chunks in draws.items()}


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of bootstrap `values`.

    Args:
        values: the resamples' values.
        level: the interval's coverage, in (0, 1).

    Returns:
        ``(low, high)``.
    """
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def resampled_scores(probabilities: Any, labels: Any, rows: Any) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 of each resample: row ``r`` of `rows` lists the papers (with repeats) of resample ``r``.

    Args:
        probabilities: an ``(N, C)`` array.
        labels: the ``N`` true class indices.
        rows: an ``(R, M)`` array of paper indices in ``[0, N)``.

    Returns:
        ``{"accuracy": (R,) array, "macro_f1": (R,) array}``.

    Raises:
        ValueError: for empty or mismatched inputs, or a label outside ``[0, C)``.
    """
    probs, truth = checked_scores(probabilities, labels)
    rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    count, num_classes = rows.shape[0], probs.shape[1]
    predicted = predicted_classes(probs)
    # Class c of resample r is counted in bin r·C + c, so one bincount gives every resample's counts at once.
    offset = (np.arange(count) * num_classes)[:, None]
    true_codes, hit = truth[rows] + offset, (predicted == truth)[rows]
    size = count * num_classes
    support = np.bincount(true_codes.ravel(), minlength=size).reshape(count, num_classes)
    predicted_count = np.bincount((predicted[rows] + offset).ravel(), minlength=size).reshape(count, num_classes)
    tp = np.bincount(true_codes[hit], minlength=size).reshape(count, num_classes)
    occurring = (support + predicted_count) > 0
    f1 = _ratio(2 * tp, support + predicted_count)
    return {"accuracy": hit.mean(axis=1), "macro_f1": (f1 * occurring).sum(axis=1) / occurring.sum(axis=1)}


@dataclass(frozen=True)
class ClassMetrics:
    """One class's scores in a report.

    Attributes:
        precision: ``TP/(TP+FP)``.
        recall: ``TP/(TP+FN)``.
        f1: their harmonic mean.
        support: papers whose true class it is.
    """

    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ClassificationReport:
    """Every metric of one model on one test set (definitions in the module docstring).

    Build one with `from_probabilities`.

    Attributes:
        num_samples: papers scored.
        labels: the class names, in index order.
        accuracy: top-1 accuracy.
        macro_f1: macro-F1 over the classes present or predicted.
        top_k: the k of `top_k_accuracy`.
        top_k_accuracy: the share whose true class is among the top k.
        any_listed_accuracy: the share whose top class is among the paper's listed categories.
        ece: the expected calibration error over `ece_bins` bins.
        ece_bins: the number of confidence bins.
        per_class: class name → its precision, recall, F1 and support.
        reliability: the reliability diagram's bins.
        intervals: ``accuracy`` and ``macro_f1`` → bootstrap interval.
        bootstrap: how the intervals were drawn: method, resamples, level, seed.
        abstention: the unsure share at the model's threshold and the accuracy on each side.
        coverage_curve: the coverage–accuracy curve at the thresholds of
            `clf.inference.selective.COVERAGE_THRESHOLDS`.
        coverage_targets: for each accuracy of `clf.inference.selective.ACCURACY_TARGETS`, the lowest threshold
            whose answers reach it, and the coverage there.
    """

    num_samples: int
    labels: list[str]
    accuracy: float
    macro_f1: float
    top_k: int
    top_k_accuracy: float
    any_listed_accuracy: float
    ece: float
    ece_bins: int
    per_class: dict[str, ClassMetrics] = field(default_factory=dict)
    reliability: list[ReliabilityBin] = field(default_factory=list)
    intervals: dict[str, Interval] = field(default_factory=dict)
    bootstrap: dict[str, Any] = field(default_factory=dict)
    abstention: Abstention | None = None
    coverage_curve: list[CoveragePoint] = field(default_factory=list)
    coverage_targets: list[ThresholdChoice] = field(default_factory=list)

    @classmethod
    def from_probabilities(
        cls,
        probabilities: Any,
        labels: Any,
        label_names: Sequence[str],
        listed: Sequence[Collection[int]] | None = None,
        *,
        k: int = TOP_K,
        bins: int = ECE_BINS,
        resamples: int = BOOTSTRAP_RESAMPLES,
        level: float = BOOTSTRAP_LEVEL,
        seed: int = BOOTSTRAP_SEED,
        abstain_below: float = 0.5,
    ) -> ClassificationReport:
        """Computes every metric.

        Args:
            probabilities: an ``(N, C)`` array.
            labels: the ``N`` true class indices.
            label_names: the ``C`` class names, in index order.
            listed: per row, the class indices of the paper's listed categories (None: the true class only).
            k: the k of the top-k accuracy.
            bins: confidence bins of the ECE and the reliability diagram.
            resamples: bootstrap resamples.
            level: the coverage of the bootstrap intervals.
            seed: the seed of the bootstrap.
            abstain_below: the threshold of `abstention` (the artifact's ``abstain_below``).

        Returns:
            The report.

        Raises:
            ValueError: when `label_names` does not name the ``C`` columns, or an input is invalid (see the
                functions).
        """
        probs, truth = checked_scores(probabilities, labels)
        if len(label_names) != probs.shape[1]:
            raise ValueError(f"label_names must name the {probs.shape[1]} columns, got {len(label_names)} names")
        scores = class_scores(probs, truth)
        diagram = reliability_bins(probs, truth, bins)
        confidence, correct = top1_outcomes(probs, truth)
        return cls(
            num_samples=len(truth),
            labels=list(label_names),
            accuracy=accuracy(probs, truth),
            macro_f1=float(scores.f1[scores.occurring].mean()),
            top_k=k,
            top_k_accuracy=top_k_accuracy(probs, truth, k),
            any_listed_accuracy=any_listed_accuracy(probs, truth, listed),
            ece=ece_of_bins(diagram),
            ece_bins=bins,
            per_class={
                name: ClassMetrics(
                    float(scores.precision[i]), float(scores.recall[i]), float(scores.f1[i]), int(scores.support[i])
                )
                for i, name in enumerate(label_names)
            },
            reliability=diagram,
            intervals=bootstrap_intervals(probs, truth, resamples=resamples, level=level, seed=seed),
            bootstrap={"method": "percentile", "resamples": resamples, "level": level, "seed": seed},
            abstention=abstention(probs, truth, abstain_below),
            coverage_curve=coverage_accuracy_curve(confidence, correct),
            coverage_targets=[choose_threshold(confidence, correct, target) for target in ACCURACY_TARGETS],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The fields as nested dicts and lists, intervals as ``{"low", "high"}``.
        """
        return asdict(self)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator``, 0 where the denominator is 0."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
