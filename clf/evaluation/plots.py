"""The figures of an evaluation: reliability diagrams, per-class F1 and coverage–accuracy, one series per candidate.

    reliability_diagram({"v1.2.0": report, "tfidf_logreg": baseline_report}, "runs/evaluate/reliability.png")
    per_class_f1_plot({"v1.2.0": report, "tfidf_logreg": baseline_report}, "runs/evaluate/per_class_f1.png")
    coverage_accuracy_plot({"v1.2.0": report}, "runs/evaluate/coverage_accuracy.png")

Drawn with matplotlib's object API on the Agg canvas (files only, no display, no global backend switched).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.evaluation.metrics import ClassificationReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def reliability_diagram(reports: Mapping[str, ClassificationReport], path: str | Path, title: str = "") -> Path:
    """Accuracy against mean confidence per confidence bin (the diagonal is perfect calibration), with bin counts.

    Args:
        reports: candidate name → its report.
        path: the PNG file to write.
        title: a heading, e.g. the protocol.

    Returns:
        The written file.
    """
    figure, (top, bottom) = _figure((6.5, 7), 2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, report in reports.items():
        filled = [b for b in report.reliability if b.count]
        top.plot(
            [b.confidence for b in filled],
            [b.accuracy for b in filled],
            marker="o",
            label=f"{name} (ECE {report.ece:.3f})",
        )
        centres = [(b.lower + b.upper) / 2 for b in report.reliability]
        bottom.step(centres, [b.count for b in report.reliability], where="mid", label=name)
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize="small")
    bins = next(iter(reports.values())).ece_bins if reports else 0
    top.set_title(title or f"Reliability diagram ({bins} confidence bins)")
    bottom.set_xlabel("top-1 confidence")
    bottom.set_ylabel("papers")
    return _save(figure, path)


def per_class_f1_plot(reports: Mapping[str, ClassificationReport], path: str | Path, title: str = "") -> Path:
    """Grouped horizontal bars of each class's F1, one colour per candidate.

    Args:
        reports: candidate name → its report.
        path: the PNG file to write.
        title: a heading, e.g. the protocol.

    Returns:
        The written file.
    """
    labels = next(iter(reports.values())).labels if reports else []
    figure, axes = _figure((7, 0.3 * max(len(labels), 1) * max(len(reports), 1) + 1.5))
    height = 0.8 / max(len(reports), 1)
    for k, (name, report) in enumerate(reports.items()):
        positions = [i + k * height for i in range(len(labels))]
        scores = [report.per_class[label].f1 for label in labels]
        axes.barh(positions, scores, height=height, label=f"{name} (macro-F1 {report.macro_f1:.3f})")
    axes.set_yticks([i + 0.4 - height / 2 for i in range(len(labels))], labels)
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("F1")
    axes.set_title(title or "Per-class F1")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=min(len(reports), 3), fontsize="small")
    return _save(figure, path)


def coverage_accuracy_plot(reports: Mapping[str, ClassificationReport], path: str | Path, title: str = "") -> Path:
    """Accuracy of the answered papers against their share as the confidence threshold rises (`coverage_curve`),
    with each candidate's own threshold (its `abstention`) marked.

    Args:
        reports: candidate name → its report.
        path: the PNG file to write.
        title: a heading, e.g. the protocol.

    Returns:
        The written file.
    """
    figure, axes = _figure((6.5, 5))
    for name, report in reports.items():
        points = [(p.coverage, p.accuracy) for p in report.coverage_curve if p.accuracy is not None]
        (line,) = axes.plot([c for c, _ in points], [a for _, a in points], marker=".", label=name)
        marked = report.abstention
        if marked is not None and marked.accuracy_sure is not None:
            axes.plot(
                [1 - marked.unsure_share],
                [marked.accuracy_sure],
                marker="o",
                linestyle="none",
                markersize=9,
                fillstyle="none",
                color=line.get_color(),
                label=f"{name}: unsure below {marked.below:.2f}",
            )
    axes.set_xlim(0, 1.02)
    axes.set_xlabel("coverage (share of papers answered, not unsure)")
    axes.set_ylabel("accuracy of the answered papers")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left", fontsize="small")
    axes.set_title(title or "Coverage and accuracy by confidence threshold (0, 0.05, ..., 0.95)")
    return _save(figure, path)


def _figure(size: tuple[float, float], *grid: int, **subplots: Any) -> tuple[Figure, Any]:
    """A figure of `size` inches on the Agg canvas and its axes (`Figure.subplots` of `grid` and `subplots`)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    return figure, figure.subplots(*grid, **subplots)


def _save(figure: Figure, path: str | Path) -> Path:
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")  # "tight" keeps a legend placed below the axes
    return path
