"""`clf evaluate`: a model version on an honest protocol, every metric with its interval, the baseline beside it.

    clf evaluate --version production --protocol temporal          # train on papers.jsonl.gz, test on new papers
    clf evaluate --model-path runs/quickstart/export --protocol date_ordered --backend onnx
    clf evaluate --version v1.2.0 --protocol split --split-file data/quickstart/splits/test.json
    clf evaluate --model-path runs/quickstart/export --max-papers 300   # a quick check, not a result

The protocols (`clf.evaluation.protocol`) are built from the shared data once and kept under ``--cache-dir``. The
model is scored through `clf.inference.ModelPredictor`, as the service answers; a TF-IDF + logistic-regression
baseline is trained on the protocol's train papers (C chosen on its val papers) and scored on the same test papers.
Test papers the model was trained or validated on (from its lineage, or ``--trained-on``) are left out for both.
Writes ``evaluation.json``, ``reliability.png`` and ``per_class_f1.png`` to ``--output-dir`` and prints the JSON.
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
from clf.evaluation.suite import ProtocolResult, evaluate_on_protocol
from clf.io import write_json_atomic

log = logging.getLogger(__name__)

RESULT_FILE = "evaluation.json"
RELIABILITY_FILE = "reliability.png"
PER_CLASS_FILE = "per_class_f1.png"


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
        output_dir: where evaluation.json and the figures go; runs/evaluate/<model>-<protocol> by default.
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
        "files": {"evaluation": str(folder / RESULT_FILE), **write_figures(result, folder)},
    }
    write_json_atomic(folder / RESULT_FILE, document)
    print(json.dumps(document, indent=2, ensure_ascii=False))
    if max_papers is not None:
        log.warning("--max_papers %d: a sample for checking, not a result; real numbers use every paper", max_papers)
    return document


def write_figures(result: ProtocolResult, folder: Path) -> dict[str, str]:
    """Draws the reliability diagram and the per-class F1 of every candidate into `folder`.

    Args:
        result: the scored candidates.
        folder: the output folder.

    Returns:
        Figure name → its file.
    """
    from clf.evaluation.plots import per_class_f1_plot, reliability_diagram

    reports = {candidate.name: candidate.report for candidate in result.candidates}
    title = f"{result.protocol.name}: {len(result.samples)} test papers"
    return {
        "reliability": str(reliability_diagram(reports, folder / RELIABILITY_FILE, f"Reliability, {title}")),
        "per_class_f1": str(per_class_f1_plot(reports, folder / PER_CLASS_FILE, f"Per-class F1, {title}")),
    }


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
