"""`clf evaluate`: a model version on an honest protocol, every metric with its interval, the baseline beside it.

    clf evaluate --version production --protocol temporal          # train on papers.jsonl.gz, test on new papers
    clf evaluate --model-path runs/quickstart/export --protocol date_ordered --backend onnx
    clf evaluate --version v1.2.0 --protocol split --split-file data/quickstart/splits/test.json
    clf evaluate --model-path runs/quickstart/export --max-papers 300   # a quick check, not a result

The protocols (`clf.evaluation.protocol`) are built from the shared data once and kept under ``--cache-dir``. The
model is scored through `clf.inference.ModelPredictor`, as the service answers; a TF-IDF + logistic-regression
baseline is trained on the protocol's train papers (C chosen on its val papers) and scored on the same test papers.
Test papers the model was trained or validated on (from its lineage, or ``--trained-on``) are left out for both.
Every candidate's report includes the coverage–accuracy curve of selective answers (`clf.inference.selective`): at
each confidence threshold 0, 0.05, ..., 0.95, the share of papers answered and their accuracy, the largest coverage
whose answers are 90 % and 95 % right, and the unsure share at the artifact's own ``abstain_below``.
Writes ``evaluation.json``, ``evaluation.md`` (the same in tables), ``reliability.png``, ``per_class_f1.png`` and
``coverage_accuracy.png`` to ``--output-dir`` and prints the JSON.
``--max-papers`` builds the protocol from a small sample, for checks in seconds; real numbers use every paper.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from clf.evaluation.metrics import BOOTSTRAP_RESAMPLES
from clf.evaluation.protocol import (
    DEFAULT_CACHE_DIR,
    DEFAULT_NEW_SNAPSHOT,
    DEFAULT_SNAPSHOT,
    Protocol,
    build_protocol,
    split_protocol,
)
from clf.evaluation.suite import ProtocolResult, ScoredCandidate, evaluate_on_protocol
from clf.inference.selective import MIN_ANSWERED
from clf.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

RESULT_FILE = "evaluation.json"
MARKDOWN_FILE = "evaluation.md"
RELIABILITY_FILE = "reliability.png"
PER_CLASS_FILE = "per_class_f1.png"
COVERAGE_FILE = "coverage_accuracy.png"


def evaluate(
    version: str | None = None,
    model_path: str | None = None,
    protocol: Literal["standard", "temporal", "date_ordered", "split"] = "standard",
    split_file: str | None = None,
    registry: str = "models/classification",
    backend: Literal["torch", "onnx"] = "torch",
    device: str = "cpu",
    snapshot: str = DEFAULT_SNAPSHOT,
    new_snapshot: str = DEFAULT_NEW_SNAPSHOT,
    cache_dir: str = DEFAULT_CACHE_DIR,
    max_papers: int | None = None,
    baseline: bool = True,
    trained_on: str | None = None,
    exclude_seen: bool = True,
    output_dir: str | None = None,
    batch_size: int = 32,
    bootstrap_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 42,
) -> dict[str, Any]:
    """Evaluate a model on an honest protocol, with intervals, calibration and a classical baseline beside it.

    Args:
        version: a registered version (vX.Y.Z or production); or give --model-path.
        model_path: an export folder (runs/<name>/export) instead of a registered version.
        protocol: standard (stratified 80/10/10 of papers.jsonl.gz), temporal (test on new_papers.jsonl.gz),
            date_ordered (oldest 80 % train, newest 20 % test) or split (--split-file).
        split_file: for --protocol split: a split file; the baseline trains on the train.json and val.json beside it.
        registry: the registry folder, for --version.
        backend: torch, or onnx (the artifact's ONNX files, written by clf export --format onnx).
        device: the torch device.
        snapshot: the papers to train on (papers.jsonl.gz).
        new_snapshot: the later papers of the temporal protocol (new_papers.jsonl.gz).
        cache_dir: where the protocols' papers are built and kept.
        max_papers: build the protocol from at most this many papers per source file, for a quick check; real
            numbers use every paper (the default).
        baseline: also train and score the TF-IDF + logistic-regression baseline.
        trained_on: the data folder the model was trained on, when its artifact's lineage does not name it.
        exclude_seen: leave out of the test set the papers the model was trained or validated on.
        output_dir: where evaluation.json, evaluation.md and the figures go; runs/evaluate/<model>-<protocol> by
            default.
        batch_size: texts per forward pass.
        bootstrap_resamples: resamples of each bootstrap interval.
        seed: seed of the protocol's sampling and splits and of the baseline.

    Returns:
        The evaluation document, as written to evaluation.json and printed.

    Raises:
        ValueError: when neither or both of --version and --model-path are given, or --split-file is missing or
            given without --protocol split.
    """
    from clf.inference import BASE_VERSION, ModelPredictor  # torch loads only when something is evaluated

    if (version is None) == (model_path is None):
        raise ValueError("clf evaluate needs exactly one of --version (a registered version) and --model-path")
    if (protocol == "split") != (split_file is not None):
        raise ValueError("--split_file goes with --protocol split, and --protocol split needs --split_file FILE")
    started = time.perf_counter()
    if version is not None:
        from clf.registry import ModelRegistry

        predictor = ModelPredictor.from_registry(ModelRegistry(registry), version, device=device, backend=backend)
        name = predictor.version
    else:
        assert model_path is not None, "exactly one of version and model_path, checked above"
        predictor = ModelPredictor(model_path, BASE_VERSION, device=device, backend=backend)
        name = Path(model_path).resolve().parent.name or BASE_VERSION
    chosen = _protocol(protocol, split_file, predictor.labels, snapshot, new_snapshot, cache_dir, max_papers, seed)
    result = evaluate_on_protocol(
        chosen,
        [predictor],
        baseline=baseline,
        trained_on={predictor.version: trained_on} if trained_on else None,
        exclude_seen=exclude_seen,
        batch_size=batch_size,
        resamples=bootstrap_resamples,
        seed=seed,
    )
    folder = Path(output_dir) if output_dir else Path("runs") / "evaluate" / f"{name}-{protocol}"
    document = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"version": predictor.version, "path": str(predictor.model_dir), "backend": predictor.backend},
        **result.to_json(),
        "settings": {
            "max_papers": max_papers,
            "sampled": max_papers is not None,
            "exclude_seen": exclude_seen,
            "batch_size": batch_size,
            "bootstrap_resamples": bootstrap_resamples,
            "seed": seed,
        },
        "seconds": round(time.perf_counter() - started, 3),
        "files": {
            "evaluation": str(folder / RESULT_FILE),
            "markdown": str(folder / MARKDOWN_FILE),
            **write_figures(result, folder),
        },
    }
    write_json_atomic(folder / RESULT_FILE, document)
    write_text_atomic(folder / MARKDOWN_FILE, markdown(result, predictor.version, sampled=max_papers is not None))
    print(json.dumps(document, indent=2, ensure_ascii=False))
    if max_papers is not None:
        log.warning("--max_papers %d: a sample for checking, not a result; real numbers use every paper", max_papers)
    return document


def write_figures(result: ProtocolResult, folder: Path) -> dict[str, str]:
    """Draws the reliability diagram, the per-class F1 and the coverage–accuracy curve of every candidate.

    Args:
        result: the scored candidates.
        folder: the output folder.

    Returns:
        Figure name → its file.
    """
    from clf.evaluation.plots import coverage_accuracy_plot, per_class_f1_plot, reliability_diagram

    reports = {candidate.name: candidate.report for candidate in result.candidates}
    title = f"{result.protocol.name}: {len(result.samples)} test papers"
    coverage_title = f"Coverage and accuracy, {title}"
    return {
        "reliability": str(reliability_diagram(reports, folder / RELIABILITY_FILE, f"Reliability, {title}")),
        "per_class_f1": str(per_class_f1_plot(reports, folder / PER_CLASS_FILE, f"Per-class F1, {title}")),
        "coverage_accuracy": str(coverage_accuracy_plot(reports, folder / COVERAGE_FILE, coverage_title)),
    }


def markdown(result: ProtocolResult, model: str, sampled: bool = False) -> str:
    """The evaluation as Markdown: every candidate's scores, then its coverage–accuracy curve.

    Args:
        result: the scored candidates.
        model: the evaluated model's name, for the heading.
        sampled: whether the protocol was built from a sample (``--max-papers``): the text then says so.

    Returns:
        The Markdown text.
    """
    candidates = result.candidates
    lines = [f"# {model} on the {result.protocol.name} protocol", ""]
    description = result.protocol.description.strip().rstrip(".")
    lines += [f"{len(result.samples):,} test papers: {description}.", ""]
    if sampled:
        lines += ["A sample (`--max-papers`) for checking, not a result.", ""]
    targets = [f"coverage at {choice.target_accuracy:.0%} accuracy" for choice in candidates[0].report.coverage_targets]
    lines += [
        "| candidate | accuracy (95 % interval) | macro-F1 | ECE | unsure | accuracy answered / unsure | "
        + " | ".join(targets)
        + " |",
        "| --- " * (6 + len(targets)) + "|",
    ]
    lines += [_summary_row(candidate) for candidate in candidates]
    lines += [
        "",
        "*unsure*: the share of papers whose top-1 probability is below the candidate's threshold (a model's "
        "`abstain_below`); *coverage at X accuracy*: the share answered at the lowest confidence threshold whose "
        f"answers are X right (with the threshold), among thresholds answering at least {MIN_ANSWERED} papers; "
        "when none is, the best accuracy such a threshold reaches.",
        "",
        "## Coverage and accuracy by confidence threshold",
        "",
        "Papers whose top-1 probability is at or above the threshold are answered; the accuracy is theirs.",
        "",
        "| threshold | " + " | ".join(f"{c.name} coverage | {c.name} accuracy" for c in candidates) + " |",
        "| --- " * (1 + 2 * len(candidates)) + "|",
    ]
    curves = [candidate.report.coverage_curve for candidate in candidates]
    for points in zip(*curves, strict=True):
        cells = [f"{points[0].threshold:.2f}"]
        for point in points:
            cells += [f"{point.coverage:.3f}", "–" if point.accuracy is None else f"{point.accuracy:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _summary_row(candidate: ScoredCandidate) -> str:
    report = candidate.report
    interval = report.intervals.get("accuracy")
    accuracy = f"{report.accuracy:.3f}" + (f" ({interval.low:.3f}–{interval.high:.3f})" if interval else "")
    cells = [candidate.name, accuracy, f"{report.macro_f1:.3f}", f"{report.ece:.3f}"]
    held = report.abstention
    if held is None:
        cells += ["–", "–"]
    else:
        cells.append(f"{held.unsure_share:.1%} below {held.below:.2f}")
        sides = (held.accuracy_sure, held.accuracy_unsure)
        cells.append(" / ".join("–" if value is None else f"{value:.3f}" for value in sides))
    for choice in report.coverage_targets:
        if choice.threshold is None:
            cells.append(f"too few papers ({choice.papers})")
        elif choice.reached:
            cells.append(f"{choice.coverage:.1%} (threshold {choice.threshold:.3f})")
        else:
            cells.append(f"not reached (best {choice.accuracy:.3f} at {choice.coverage:.1%})")
    return "| " + " | ".join(cells) + " |"


def _protocol(
    name: str,
    split_file: str | None,
    labels: list[str],
    snapshot: str,
    new_snapshot: str,
    cache_dir: str,
    max_papers: int | None,
    seed: int,
) -> Protocol:
    if name == "split":
        assert split_file is not None
        return split_protocol(split_file, max_papers=max_papers, seed=seed)
    return build_protocol(
        name,
        categories=labels,
        snapshot=snapshot,
        new_snapshot=new_snapshot,
        cache_dir=cache_dir,
        max_papers=max_papers,
        seed=seed,
    )
