"""The torchmetrics each classification mode is measured with."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
import torch
from torchmetrics import Metric, MetricCollection
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

from clf.reliability import bin_edges, calibration_error, confidence_bins


class _MultilabelArgs(TypedDict):
    """The arguments every multi-label metric here shares."""

    num_labels: int
    threshold: float
    validate_args: bool


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
    if multi_label:
        labels = _MultilabelArgs(num_labels=num_labels, threshold=threshold, validate_args=validate_args)
        return MetricCollection(
            {
                "acc": MultilabelExactMatch(**labels),
                "f1_macro": MultilabelF1Score(average="macro", **labels),
                "f1_micro": MultilabelF1Score(average="micro", **labels),
            }
        )
    metrics: dict[str, Metric | MetricCollection] = {
        "acc": MulticlassAccuracy(num_classes=num_labels, average="micro", validate_args=validate_args),
        "f1_macro": MulticlassF1Score(num_classes=num_labels, average="macro", validate_args=validate_args),
    }
    if num_labels > 3:
        metrics["top3_acc"] = MulticlassAccuracy(
            num_classes=num_labels, top_k=3, average="micro", validate_args=validate_args
        )
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
        kwargs = _MultilabelArgs(num_labels=num_labels, threshold=threshold, validate_args=True)
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


class Reliability(Metric):
    """Top-1 confidence against accuracy in equal-width bins: the reliability diagram and its ECE.

    Args:
        bins: how many equal-width confidence bins in [0, 1].
    """

    full_state_update = False
    # The states add_state registers: declared, because Metric's __getattr__ types them as Tensor | Module.
    count: torch.Tensor
    confidence: torch.Tensor
    correct: torch.Tensor

    def __init__(self, bins: int = 15) -> None:
        super().__init__()
        self.bins = bins
        self.add_state("count", default=torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("confidence", default=torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.zeros(bins, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, probabilities: torch.Tensor, targets: torch.Tensor) -> None:
        """Adds a batch.

        Args:
            probabilities: ``(batch, classes)`` probabilities.
            targets: ``(batch,)`` true class indices.
        """
        top, predicted = probabilities.float().max(dim=1)
        # The binning of clf evaluate (clf.reliability), so both commands report one ECE for one model.
        index = torch.from_numpy(confidence_bins(top.detach().cpu().numpy(), self.bins)).to(top.device)
        self.count += torch.bincount(index, minlength=self.bins).to(self.count)
        self.confidence += torch.bincount(index, weights=top.double(), minlength=self.bins).to(self.confidence)
        hits = (predicted == targets).double()
        self.correct += torch.bincount(index, weights=hits, minlength=self.bins).to(self.correct)

    def compute(self) -> dict[str, object]:
        """The bins and the expected calibration error.

        Returns:
            ``{"ece", "bins": [{"lower", "upper", "count", "confidence", "accuracy"}, ...]}`` (empty bins have
            ``None`` confidence and accuracy).
        """
        edges = bin_edges(self.bins)
        counts = self.count.cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.confidence.cpu().numpy() / counts
            accuracies = self.correct.cpu().numpy() / counts
        rows = [
            {
                "lower": float(edges[i]),
                "upper": float(edges[i + 1]),
                "count": int(counts[i]),
                "confidence": float(means[i]) if counts[i] else None,
                "accuracy": float(accuracies[i]) if counts[i] else None,
            }
            for i in range(self.bins)
        ]
        return {"ece": calibration_error(counts, means, accuracies), "bins": rows}
