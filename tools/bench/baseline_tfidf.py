"""The classical baseline the transformer must beat: TF-IDF word 1–2-grams and logistic regression, same splits.

    python tools/bench/baseline_tfidf.py --data-dir data

Reads `DATA_DIR/splits/{train,val,test}.json` as `clf preprocess` writes them, picks the regularisation strength C of
the logistic regression on the validation split (never on test), fits the pipeline on train with that C and reports
on test: accuracy, macro-F1, top-3 accuracy, per-class precision/recall/F1, the confusion matrix, the validation
score of every C, timings, split sizes and the machine. The report goes to tools/bench/results/baseline_tfidf.json
(--output) and a short summary to stdout. To make the splits from the shared snapshot:

    clf collect --source snapshot --snapshot ../shared/data/arxiv/papers.jsonl.gz --num-papers 10000 --data-dir data
    clf preprocess --data-dir data

The training benchmark calls `run_baseline(data_dir)` in-process to put both numbers side by side.
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
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, top_k_accuracy_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from clf.io import DataFileError, read_json

RESULTS = Path(__file__).resolve().parent / "results" / "baseline_tfidf.json"
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
DEFAULT_C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
SELECTION_METRIC = "macro_f1"
"""What C is chosen by on the validation split; ties go to the smaller C (the stronger regularisation)."""
TOP_K = 3
MAX_ITER = 2000
BLAS_THREADS = 1


VECTORIZER_PARAMS: dict[str, Any] = {
    "sublinear_tf": True,
    "ngram_range": (1, 2),
    "min_df": 2,
    "max_df": 0.9,
    "strip_accents": "unicode",
    "lowercase": True,
}
"""Sublinear word uni- and bigrams seen in at least two and at most 90% of the training documents."""


def make_vectorizer() -> TfidfVectorizer:
    """The TF-IDF featuriser, `VECTORIZER_PARAMS`."""
    return TfidfVectorizer(**VECTORIZER_PARAMS)


def check_c_grid(c_grid: Sequence[float]) -> list[float]:
    """The grid of C values, sorted and deduplicated.

    Raises:
        ValueError: when it is empty or holds a value that is not a positive finite number.
    """
    grid = [float(c) for c in c_grid]
    if not grid or any(not np.isfinite(c) or c <= 0 for c in grid):
        raise ValueError(f"c_grid must be a non-empty list of positive numbers such as 1 3 10 30, got {list(c_grid)}")
    return sorted(set(grid))


def make_classifier(c: float, seed: int) -> LogisticRegression:
    """Multinomial logistic regression with inverse regularisation strength `c`."""
    return LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed)


def load_splits(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Reads the three split files.

    Returns:
        Split name → ``{"path", "metadata", "texts", "labels", "ids"}``.

    Raises:
        SystemExit: naming the missing or malformed file and the command that makes it.
    """
    data_dir = Path(data_dir)
    make = (
        f"clf collect --source snapshot --snapshot ../shared/data/arxiv/papers.jsonl.gz --num-papers 10000 "
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


def score_c_grid(train: dict[str, Any], val: dict[str, Any], grid: Sequence[float], seed: int) -> list[dict[str, Any]]:
    """Fits one classifier per C on train and scores it on val.

    The vectoriser does not depend on C, so it is fitted once on train and shared by every candidate.

    Returns:
        One entry per C, in grid order: C, val macro_f1 and accuracy, lbfgs iterations, converged, fit_seconds.
    """
    vectorizer = make_vectorizer()
    x_train = vectorizer.fit_transform(train["texts"])
    x_val = vectorizer.transform(val["texts"])
    scores = []
    for c in grid:
        t0 = time.perf_counter()
        candidate = make_classifier(c, seed).fit(x_train, train["labels"])
        fit_s = time.perf_counter() - t0
        predicted = candidate.predict(x_val)
        scores.append(
            {
                "C": c,
                "macro_f1": float(f1_score(val["labels"], predicted, average="macro")),
                "accuracy": float(accuracy_score(val["labels"], predicted)),
                "n_iter": int(np.max(candidate.n_iter_)),
                "converged": bool(np.max(candidate.n_iter_) < MAX_ITER),
                "fit_seconds": round(fit_s, 4),
            }
        )
    return scores


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

    # scipy's L-BFGS-B makes many small BLAS calls per iteration; threading them made the fits 3x (7,791 papers)
    # to 12x (240 papers) slower in wall time on a 2-core machine, so they run with one BLAS thread.
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        t0 = time.perf_counter()
        val_scores = score_c_grid(train, val, grid, seed)
        select_s = time.perf_counter() - t0
        best = max(val_scores, key=lambda score: (score[SELECTION_METRIC], -score["C"]))
        chosen_c = best["C"]

        # Refitted from scratch so that fit_seconds is what training this baseline costs end to end.
        t0 = time.perf_counter()
        model = Pipeline([("tfidf", make_vectorizer()), ("logreg", make_classifier(chosen_c, seed))])
        model.fit(train["texts"], train["labels"])
        fit_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        proba = model.predict_proba(test["texts"])
        predict_s = time.perf_counter() - t0
    # A winner at the top or bottom of a grid of several values says the optimum may lie outside it.
    at_grid_edge = len(grid) > 1 and chosen_c in (grid[0], grid[-1])
    test_metrics = evaluate(test["labels"], proba, model.classes_)
    return {
        "benchmark": "baseline_tfidf",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_dir": str(data_dir),
        "config": {
            "vectorizer": {"type": "TfidfVectorizer", **VECTORIZER_PARAMS},
            "classifier": {"type": "LogisticRegression", "max_iter": MAX_ITER, "solver": "lbfgs"},
            "c_grid": grid,
            "selection": f"best validation {SELECTION_METRIC}, ties to the smaller C",
            "seed": seed,
            "top_k": min(TOP_K, len(model.classes_)),
            "blas_threads": BLAS_THREADS,
        },
        "n_features": len(model.named_steps["tfidf"].vocabulary_),
        "chosen_C": chosen_c,
        "chosen_C_at_grid_edge": at_grid_edge,
        "val_scores": val_scores,
        "test": test_metrics,
        "timings_s": {
            "load": round(load_s, 4),
            "select_C": round(select_s, 4),
            "fit": round(fit_s, 4),
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
