"""The classical baseline the transformer must beat: TF-IDF word 1–2-grams and logistic regression, same splits.

    python tools/bench/baseline_tfidf.py --data-dir data

Reads `DATA_DIR/splits/{train,val,test}.json` as `clf preprocess` writes them, picks the regularisation strength C of
the logistic regression on the validation split (never on test), fits the pipeline on train with that C and reports
on test: accuracy, macro-F1, top-3 accuracy, per-class precision/recall/F1, the confusion matrix, the validation
score of every C, timings, split sizes and the machine. The report goes to tools/bench/results/baseline_tfidf.json
(--output) and a short summary to stdout. To make the splits from the shared snapshot:

    clf collect --source snapshot --snapshot-path ../shared/data/arxiv/papers.jsonl.gz --num-papers 10000 \
        --data-dir data
    clf preprocess --data-dir data

The training benchmark calls `run_baseline(data_dir)` in-process to put both numbers side by side. The pipeline and
the choice of C are `clf.evaluation.baseline`'s, the one implementation `clf evaluate` also runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, top_k_accuracy_score

from clf.evaluation.baseline import BLAS_THREADS, DEFAULT_C_GRID, check_c_grid, fit_tfidf_baseline
from clf.io import DataFileError, read_json

RESULTS = Path(__file__).resolve().parent / "results" / "baseline_tfidf.json"
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
TOP_K = 3


def load_splits(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Reads the three split files.

    Returns:
        Split name → ``{"path", "metadata", "texts", "labels", "ids"}``.

    Raises:
        SystemExit: naming the missing or malformed file and the command that makes it.
    """
    data_dir = Path(data_dir)
    make = (
        f"clf collect --source snapshot --snapshot-path ../shared/data/arxiv/papers.jsonl.gz --num-papers 10000 "
        f"--data-dir {data_dir} && clf preprocess --data-dir {data_dir}"
    )
    paths = {name: data_dir / "splits" / f"{name}.json" for name in SPLIT_NAMES}
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"split file not found: {', '.join(missing)}. Make the splits with: {make}")
    splits = {}
    for name, path in paths.items():
        try:
            data = read_json(path)
        except DataFileError as err:
            raise SystemExit(f"{err} Make the splits again with: {make}") from err
        samples = data.get("samples") if isinstance(data, dict) else None
        if not isinstance(samples, list) or not samples:
            raise SystemExit(f"{path}: expected an object with a non-empty 'samples' list. Make it again with: {make}")
        for index, sample in enumerate(samples):
            if not (isinstance(sample, dict) and isinstance(sample.get("text"), str) and sample.get("label")):
                raise SystemExit(f"{path}: sample {index} lacks a 'text' string or a 'label'. Remake it with: {make}")
        splits[name] = {
            "path": str(path),
            "metadata": data.get("metadata") or {},
            "texts": [sample["text"] for sample in samples],
            "labels": [sample["label"] for sample in samples],
            "ids": [str(sample.get("arxiv_id", "")) for sample in samples],
        }
    unknown = sorted((set(splits["val"]["labels"]) | set(splits["test"]["labels"])) - set(splits["train"]["labels"]))
    if unknown:
        raise SystemExit(f"labels {unknown} are in val or test but not in train; re-split with: {make}")
    if len(set(splits["train"]["labels"])) < 2:
        raise SystemExit(f"{paths['train']}: needs at least two labels to train a classifier")
    return splits


def _split_summary(split: dict[str, Any]) -> dict[str, Any]:
    """What identifies a split, so a reader can check two benchmarks ran on the same one."""
    metadata = split["metadata"]
    return {
        "path": split["path"],
        "count": len(split["labels"]),
        "label_distribution": dict(sorted((label, split["labels"].count(label)) for label in set(split["labels"]))),
        "ids_sha256": hashlib.sha256("\x00".join(sorted(split["ids"])).encode("utf-8")).hexdigest(),
        "seed": metadata.get("seed"),
        "dataset_hash": metadata.get("dataset_hash"),
    }


def machine() -> dict[str, Any]:
    """The hardware and software the timings were taken on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
    }


def evaluate(y_true: Sequence[str], proba: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Test metrics from predicted class probabilities whose columns follow `classes`.

    Returns:
        accuracy, macro_f1, top3_accuracy, per_class (`classification_report` as a dict), labels, and
        confusion_matrix with rows (true) and columns (predicted) in `labels` order.
    """
    labels = [str(label) for label in classes]
    predicted = classes[np.argmax(proba, axis=1)]
    # With no more than TOP_K classes the true one is always among the top k; sklearn warns and returns 1.
    trivial = len(labels) <= TOP_K
    top_k = 1.0 if trivial else float(top_k_accuracy_score(y_true, proba, k=TOP_K, labels=classes))
    return {
        "accuracy": float(accuracy_score(y_true, predicted)),
        "macro_f1": float(f1_score(y_true, predicted, average="macro", labels=labels, zero_division=0)),
        "top3_accuracy": top_k,
        "per_class": classification_report(y_true, predicted, labels=labels, output_dict=True, zero_division=0),
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
    }


def run_baseline(data_dir: Path, seed: int = 42, c_grid: Sequence[float] = DEFAULT_C_GRID) -> dict[str, Any]:
    """Chooses C on val, fits TF-IDF + logistic regression on train with it and evaluates on test.

    Example:
        >>> report = run_baseline(Path("data"))  # doctest: +SKIP
        >>> report["test"]["accuracy"], report["chosen_C"]  # doctest: +SKIP
        (0.83, 10.0)

    Args:
        data_dir: the data directory holding `splits/{train,val,test}.json`.
        seed: random seed of the classifier, recorded in the report (lbfgs itself is deterministic).
        c_grid: the values of C to try; the one with the best validation macro-F1 wins, ties to the smaller C.

    Returns:
        The report, as written to the JSON file: `chosen_C`, `val_scores` (one entry per C), `test` metrics
        (accuracy, macro_f1, top3_accuracy, per_class, confusion_matrix with `labels` as its row and column order),
        `timings_s`, `splits` (counts, label distributions, id hashes), `config` and `machine`.

    Raises:
        ValueError: when `c_grid` is empty or holds a value that is not positive.
        SystemExit: when a split file is missing or malformed, naming it and the command that makes it.
    """
    grid = check_c_grid(c_grid)
    started = time.perf_counter()
    splits = load_splits(Path(data_dir))
    train, val, test = (splits[name] for name in SPLIT_NAMES)
    load_s = time.perf_counter() - started

    t0 = time.perf_counter()
    baseline = fit_tfidf_baseline(train["texts"], train["labels"], val["texts"], val["labels"], c_grid=grid, seed=seed)
    select_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    proba = baseline.predict_proba(test["texts"])
    predict_s = time.perf_counter() - t0
    test_metrics = evaluate(test["labels"], proba, np.array(baseline.classes))
    config = baseline.config()
    return {
        "benchmark": "baseline_tfidf",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "config": {
            **{key: config[key] for key in ("vectorizer", "classifier", "c_grid", "selection", "seed")},
            "top_k": min(TOP_K, len(baseline.classes)),
            "blas_threads": BLAS_THREADS,
        },
        "n_features": baseline.num_features,
        "chosen_C": baseline.chosen_c,
        "chosen_C_at_grid_edge": baseline.at_grid_edge,
        "val_scores": baseline.val_scores,
        "test": test_metrics,
        "timings_s": {
            "load": round(load_s, 4),
            "select_C": round(select_s, 4),
            # The vectoriser and the chosen C's fit: the winner is kept as fitted during the selection.
            "fit": baseline.fit_seconds,
            "predict": round(predict_s, 4),
            "predict_per_sample_ms": round(1000 * predict_s / len(test["labels"]), 4),
            "total": round(time.perf_counter() - started, 4),
        },
        "splits": {name: _split_summary(splits[name]) for name in SPLIT_NAMES},
        "machine": machine(),
    }


def summary(report: dict[str, Any]) -> str:
    """A few human-readable lines: the test scores, the chosen C and what it cost."""
    test, timings = report["test"], report["timings_s"]
    counts = "/".join(str(report["splits"][name]["count"]) for name in SPLIT_NAMES)
    val = ", ".join(f"C={score['C']:g}: {score['macro_f1']:.4f}" for score in report["val_scores"])
    return (
        f"TF-IDF + logistic regression on {report['data_dir']} (train/val/test {counts}, "
        f"{len(test['labels'])} classes)\n"
        f"  test accuracy {test['accuracy']:.4f}  macro-F1 {test['macro_f1']:.4f}  "
        f"top-{report['config']['top_k']} accuracy {test['top3_accuracy']:.4f}\n"
        f"  chosen C = {report['chosen_C']:g} (val macro-F1 {val})"
        f"{'  [at the edge of the grid: widen --c-grid]' if report['chosen_C_at_grid_edge'] else ''}\n"
        f"  fit {timings['fit']:.2f} s, predict {timings['predict']:.2f} s, total {timings['total']:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="holds splits/{train,val,test}.json")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"where the JSON report goes (default {RESULTS})")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the classifier")
    parser.add_argument(
        "--c-grid", type=float, nargs="+", default=list(DEFAULT_C_GRID), help="values of C to choose from on val"
    )
    args = parser.parse_args(argv)
    try:
        check_c_grid(args.c_grid)
    except ValueError as err:
        parser.error(f"--c-grid: {err}")
    report = run_baseline(args.data_dir, seed=args.seed, c_grid=args.c_grid)
    report["command"] = " ".join(["python", "tools/bench/baseline_tfidf.py", *(sys.argv[1:] if argv is None else argv)])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(summary(report))
    print(f"  report: {args.output}")
    return report


if __name__ == "__main__":
    main()
