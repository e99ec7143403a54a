"""The torchmetrics each classification mode is measured with."""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelConfusionMatrix,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)


def summary_metrics(
    num_labels: int, multi_label: bool, threshold: float = 0.5, validate_args: bool = True
) -> MetricCollection:
    """Scalar metrics logged every epoch: ``acc`` and ``f1_macro`` in both modes (``acc`` is exact match there).

    Single-label also has ``top3_acc``; multi-label also has ``f1_micro``.

    Args:
        num_labels: number of classes.
        multi_label: build the multi-label (one sigmoid per class) metrics instead of the multiclass ones.
        threshold: probability above which a class counts as predicted, in multi-label mode.
        validate_args: check every update's values (e.g. targets in range); the check copies a result to the host,
            a GPU sync on every step, so training turns it off for its own, already checked, batches.

    Returns:
        The metrics keyed by name, not yet prefixed with the stage.
    """
    common = {"validate_args": validate_args}
    if multi_label:
        return MetricCollection(
            {
                "acc": MultilabelExactMatch(num_labels=num_labels, threshold=threshold, **common),
                "f1_macro": MultilabelF1Score(num_labels=num_labels, average="macro", threshold=threshold, **common),
                "f1_micro": MultilabelF1Score(num_labels=num_labels, average="micro", threshold=threshold, **common),
            }
        )
    metrics = {
        "acc": MulticlassAccuracy(num_classes=num_labels, average="micro", **common),
        "f1_macro": MulticlassF1Score(num_classes=num_labels, average="macro", **common),
    }
    if num_labels > 3:
        metrics["top3_acc"] = MulticlassAccuracy(num_classes=num_labels, top_k=3, average="micro", **common)
    return MetricCollection(metrics)


def per_class_metrics(num_labels: int, multi_label: bool, threshold: float = 0.5) -> MetricCollection:
    """Precision, recall, F1 for each class, and the confusion matrix (per class in multi-label mode).

    Args:
        num_labels: number of classes.
        multi_label: build the multi-label metrics instead of the multiclass ones.
        threshold: probability above which a class counts as predicted, in multi-label mode.

    Returns:
        ``precision``, ``recall``, ``f1`` (one value per class) and ``confusion_matrix``.
    """
    if multi_label:
        kwargs = {"num_labels": num_labels, "threshold": threshold}
        return MetricCollection(
            {
                "precision": MultilabelPrecision(average=None, **kwargs),
                "recall": MultilabelRecall(average=None, **kwargs),
                "f1": MultilabelF1Score(average=None, **kwargs),
                "confusion_matrix": MultilabelConfusionMatrix(**kwargs),
            }
        )
    return MetricCollection(
        {
            "precision": MulticlassPrecision(num_classes=num_labels, average=None),
            "recall": MulticlassRecall(num_classes=num_labels, average=None),
            "f1": MulticlassF1Score(num_classes=num_labels, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes=num_labels),
        }
    )
