"""The test report: per-class precision, recall and F1, and the confusion matrix, as JSON, Markdown and PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are written on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from clf.io import write_json_atomic, write_text_atomic  # noqa: E402


def write_test_report(
    out_dir: Path,
    id2label: dict[int, str],
    per_class: dict[str, torch.Tensor],
    summary: dict[str, float],
    *,
    multi_label: bool = False,
    calibration: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Figure:
    """Writes ``test_report.json``, ``test_report.md`` and ``confusion_matrix.png`` into `out_dir`.

    Args:
        out_dir: the run's log folder.
        id2label: class index → category.
        per_class: ``precision``, ``recall``, ``f1`` (one value per class) and ``confusion_matrix``
            (``(C, C)`` rows = true class, or ``(C, 2, 2)`` per class in multi-label mode).
        summary: the scalar test metrics.
        multi_label: whether the confusion matrix is per class.
        calibration: the reliability bins and ECE of the top-1 answers (`clf.model.metrics.Reliability`).
        data: the data statistics per split (`ArxivDataModule.statistics`).

    Returns:
        The confusion-matrix figure (for TensorBoard).
    """
    labels = [id2label[i] for i in range(len(id2label))]
    matrix = per_class["confusion_matrix"].long()
    support = matrix[:, 1].sum(dim=1) if multi_label else matrix.sum(dim=1)
    classes = {
        label: {
            "precision": round(float(per_class["precision"][i]), 4),
            "recall": round(float(per_class["recall"][i]), 4),
            "f1": round(float(per_class["f1"][i]), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    report: dict[str, Any] = {
        "metrics": {k: round(v, 4) for k, v in summary.items()},
        "classes": classes,
        "labels": labels,
        "confusion_matrix": matrix.tolist(),
        "confusion_matrix_layout": "[class][true][predicted] for each class (0 = absent, 1 = present)"
        if multi_label
        else "rows: true class, columns: predicted class, in `labels` order",
    }
    if calibration is not None:
        report["calibration"] = calibration
    if data is not None:
        report["data"] = data
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "test_report.json", report)
    write_text_atomic(out_dir / "test_report.md", _markdown(report))
    figure = _confusion_figure(matrix if not multi_label else _per_class_hits(matrix), labels, multi_label)
    figure.savefig(out_dir / "confusion_matrix.png", dpi=120, bbox_inches="tight")
    return figure


def _markdown(report: dict[str, Any]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value:.4f} |" for name, value in report["metrics"].items()]
    lines += ["", "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |"]
    for label, row in report["classes"].items():
        lines.append(f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |")
    return "\n".join(lines) + "\n"


def _per_class_hits(matrix: torch.Tensor) -> torch.Tensor:
    """Multi-label: a (C, 2) table of [false negatives, true positives] per class, for plotting."""
    return torch.stack([matrix[:, 1, 0], matrix[:, 1, 1]], dim=1)


def _confusion_figure(matrix: torch.Tensor, labels: list[str], multi_label: bool) -> Figure:
    size = max(4.0, 0.6 * len(labels) + 2)
    figure, axes = plt.subplots(figsize=(size if not multi_label else 4.5, size))
    rows = matrix.float()
    shares = rows / rows.sum(dim=1, keepdim=True).clamp(min=1)
    axes.imshow(shares.numpy(), cmap="Blues", vmin=0, vmax=1)
    columns = ["missed", "found"] if multi_label else labels
    axes.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted" if not multi_label else "")
    axes.set_ylabel("true")
    for (row, column), count in _cells(matrix):
        colour = "white" if shares[row, column] > 0.5 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=8)
    axes.set_title("Test confusion matrix (colour: share of the true class)")
    figure.tight_layout()
    return figure


def _cells(matrix: torch.Tensor):
    for row in range(matrix.shape[0]):
        for column in range(matrix.shape[1]):
            yield (row, column), int(matrix[row, column])
