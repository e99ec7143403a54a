"""The classical baseline every model must beat: TF-IDF word 1–2-grams and logistic regression, C chosen on val.

    baseline = fit_tfidf_baseline(train_texts, train_labels, val_texts, val_labels)
    baseline.chosen_c, baseline.predict_proba(test_texts, labels=["cs.AI", "cs.CL", ...])

The vectoriser is fitted once on the training texts; one logistic regression per value of C is fitted on them and
scored on the validation texts, and the one with the best validation macro-F1 (ties to the smaller C, the stronger
regularisation) is the baseline. The test set is never looked at. `clf evaluate`, tools/bench/baseline_tfidf.py and
tools/bench/evaluate_candidates.py all use this one implementation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from clf.artifact.scoring import VECTORIZER_PARAMS

DEFAULT_C_GRID: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0)
"""The values of C tried by default."""
SELECTION_METRIC = "macro_f1"
"""What C is chosen by on the validation split; ties go to the smaller C (the stronger regularisation)."""
MAX_ITER = 2000
"""The most L-BFGS iterations of one fit."""
BLAS_THREADS = 1
"""BLAS threads while fitting (see `fit_tfidf_baseline`)."""


def make_vectorizer() -> TfidfVectorizer:
    """The TF-IDF featuriser.

    Returns:
        An unfitted `TfidfVectorizer` with `VECTORIZER_PARAMS`.
    """
    return TfidfVectorizer(**VECTORIZER_PARAMS)


def make_classifier(c: float, seed: int) -> LogisticRegression:
    """Multinomial logistic regression with inverse regularisation strength `c`.

    Args:
        c: the inverse regularisation strength.
        seed: its random state (lbfgs itself is deterministic).

    Returns:
        The unfitted classifier.
    """
    return LogisticRegression(C=c, max_iter=MAX_ITER, random_state=seed)


def check_c_grid(c_grid: Sequence[float]) -> list[float]:
    """The grid of C values, sorted and deduplicated.

    Args:
        c_grid: the values of C to try.

    Returns:
        The sorted distinct values.

    Raises:
        ValueError: when it is empty or holds a value that is not a positive finite number.
    """
    grid = [float(c) for c in c_grid]
    if not grid or any(not np.isfinite(c) or c <= 0 for c in grid):
        raise ValueError(f"c_grid must be a non-empty list of positive numbers such as 1 3 10 30, got {list(c_grid)}")
    return sorted(set(grid))


@dataclass(frozen=True)
class TfidfBaseline:
    """A fitted TF-IDF + logistic-regression baseline and how its C was chosen.

    Attributes:
        pipeline: the fitted vectoriser and the classifier with the chosen C.
        chosen_c: the chosen C.
        grid: every C tried, ascending.
        val_scores: one entry per C, in grid order: ``C``, validation ``macro_f1`` and ``accuracy``, ``n_iter``,
            ``converged``, ``fit_seconds``.
        seed: the classifier's random state.
        vectorize_seconds: fitting the vectoriser and transforming the training and validation texts.
        fit_seconds: what training the chosen baseline costs: the vectoriser plus the fit with the chosen C.
        num_features: the vocabulary's size.
    """

    pipeline: Pipeline
    chosen_c: float
    grid: list[float]
    val_scores: list[dict[str, Any]] = field(default_factory=list)
    seed: int = 42
    vectorize_seconds: float = 0.0
    fit_seconds: float = 0.0
    num_features: int = 0

    @property
    def classes(self) -> list[str]:
        """The classes it was trained on, in the order of its probability columns."""
        return [str(label) for label in self.pipeline.classes_]

    @property
    def at_grid_edge(self) -> bool:
        """Whether C was chosen at an end of a grid of several values: the optimum may lie outside it."""
        return len(self.grid) > 1 and self.chosen_c in (self.grid[0], self.grid[-1])

    def predict_proba(self, texts: Sequence[str], labels: Sequence[str] | None = None) -> np.ndarray:
        """Class probabilities of `texts`.

        Args:
            texts: model input texts.
            labels: the column order wanted (a model's classes); a class it never saw in training gets a column of
                zeros. None keeps `classes`.

        Returns:
            A ``(len(texts), len(labels))`` float array.
        """
        proba = self.pipeline.predict_proba(list(texts))
        if labels is None:
            return proba
        columns = {label: i for i, label in enumerate(self.classes)}
        out = np.zeros((proba.shape[0], len(labels)))
        for j, label in enumerate(labels):
            if label in columns:
                out[:, j] = proba[:, columns[label]]
        return out

    def config(self) -> dict[str, Any]:
        """What it is, for a report.

        Returns:
            The vectoriser's and classifier's settings, the grid, the selection rule, the seed and the chosen C.
        """
        return {
            "vectorizer": {"type": "TfidfVectorizer", **VECTORIZER_PARAMS},
            "classifier": {"type": "LogisticRegression", "max_iter": MAX_ITER, "solver": "lbfgs"},
            "c_grid": self.grid,
            "selection": f"best validation {SELECTION_METRIC}, ties to the smaller C",
            "seed": self.seed,
            "blas_threads": BLAS_THREADS,
            "chosen_C": self.chosen_c,
            "chosen_C_at_grid_edge": self.at_grid_edge,
            "n_features": self.num_features,
        }


def fit_tfidf_baseline(
    train_texts: Sequence[str],
    train_labels: Sequence[str],
    val_texts: Sequence[str],
    val_labels: Sequence[str],
    *,
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    seed: int = 42,
) -> TfidfBaseline:
    """Fits one classifier per C on the training texts and keeps the one with the best validation macro-F1.

    The vectoriser does not depend on C, so it is fitted once on the training texts and shared by every candidate;
    the winner is kept as fitted (no refit), which is what refitting it would give: both steps are deterministic.

    Args:
        train_texts: training texts.
        train_labels: their classes.
        val_texts: validation texts, to choose C on.
        val_labels: their classes.
        c_grid: the values of C to try.
        seed: the classifier's random state.

    Returns:
        The fitted baseline.

    Raises:
        ValueError: when `c_grid` is unusable, a split is empty, or the training texts hold fewer than two classes.
    """
    grid = check_c_grid(c_grid)
    if not train_texts or not val_texts:
        raise ValueError(f"the baseline needs training and validation texts, got {len(train_texts)}, {len(val_texts)}")
    if len(set(train_labels)) < 2:
        raise ValueError(f"the baseline needs at least two classes in training, got {sorted(set(train_labels))}")
    # scipy's L-BFGS-B makes many small BLAS calls per iteration; threading them made the fits 3x (7,791 papers)
    # to 12x (240 papers) slower in wall time on a 2-core machine, so they run with one BLAS thread.
    with threadpool_limits(limits=BLAS_THREADS, user_api="blas"):
        started = time.perf_counter()
        vectorizer = make_vectorizer()
        x_train = vectorizer.fit_transform(list(train_texts))
        x_val = vectorizer.transform(list(val_texts))
        vectorize_s = time.perf_counter() - started
        scores, fitted = [], {}
        for c in grid:
            t0 = time.perf_counter()
            candidate = make_classifier(c, seed).fit(x_train, list(train_labels))
            fit_s = time.perf_counter() - t0
            predicted = candidate.predict(x_val)
            fitted[c] = candidate
            scores.append(
                {
                    "C": c,
                    "macro_f1": float(f1_score(list(val_labels), predicted, average="macro", zero_division=0)),
                    "accuracy": float(accuracy_score(list(val_labels), predicted)),
                    "n_iter": int(np.max(candidate.n_iter_)),
                    "converged": bool(np.max(candidate.n_iter_) < MAX_ITER),
                    "fit_seconds": round(fit_s, 4),
                }
            )
    best = max(scores, key=lambda score: (score[SELECTION_METRIC], -score["C"]))
    chosen = best["C"]
    return TfidfBaseline(
        pipeline=Pipeline([("tfidf", vectorizer), ("logreg", fitted[chosen])]),
        chosen_c=chosen,
        grid=grid,
        val_scores=scores,
        seed=seed,
        vectorize_seconds=round(vectorize_s, 4),
        fit_seconds=round(vectorize_s + best["fit_seconds"], 4),
        num_features=len(vectorizer.vocabulary_),
    )
