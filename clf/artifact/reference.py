"""`ReferenceSample`: what the model answered on held-out papers at training time — read and written here.

Production compares its live answers with it: the drift test (`clf.monitoring.drift`) takes windows of served
probabilities against these, and the per-paper out-of-scope score (`clf.inference.out_of_scope`) uses the
`OutOfScopeModel` fitted with it. No raw text is kept: per paper only its calibrated probabilities (as the service
answers), true class, text length and out-of-scope score.

Two files in the artifact, both listed in its manifest::

    reference.json          settings and summaries: classes, bandwidth, accuracy, estimated accuracy, the
                            out-of-scope model's centre, scale, threshold and evidence
    reference.safetensors   the arrays: probabilities (N, C), true_labels (N,), text_chars (N,), oos_scores (N,),
                            and the out-of-scope model's TF-IDF coefficients when it has them

Built at the end of fit (`clf.training.reference`) or for an existing export with ``clf reference build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clf.io import DataFileError, read_json, write_json_atomic

FILE = "reference.json"
"""The reference sample's settings and summaries inside an artifact."""
ARRAYS_FILE = "reference.safetensors"
"""Its per-paper arrays."""

COMPONENTS = ("tfidf", "entropy")
"""The parts an out-of-scope score may sum: the TF-IDF outlier-exposure logit and the entropy of the answer."""


class ReferenceError(ValueError):
    """Reference files that do not read or do not agree with each other: the message names the file."""


@dataclass(frozen=True)
class OutOfScopeModel:
    """How a paper's out-of-scope score is computed, and where it is flagged.

    The score is the sum over `components` of ``(raw − centre) / scale``: ``tfidf`` is the decision value of a
    logistic regression over the companion's TF-IDF features (in-scope training papers against out-of-scope ones:
    outlier exposure), ``entropy`` the entropy of the calibrated probabilities. A paper scoring above `threshold`
    is out of scope.

    Attributes:
        coef: ``(terms,)`` weights of the TF-IDF logistic regression, in the companion's vocabulary order; None
            without it (entropy alone).
        intercept: its intercept.
        centre: per component, the median of its raw value over the reference papers.
        scale: per component, the interquartile range there.
        threshold: the score above which a paper is flagged.
        components: which parts are summed, from `COMPONENTS`.
        flag_rate: the share of the reference papers the threshold flags, by construction.
        fitted_on: what it was fitted on, in words.
        evidence: what was measured while fitting (paper counts, regularisation).
    """

    coef: np.ndarray | None
    intercept: float
    centre: dict[str, float]
    scale: dict[str, float]
    threshold: float
    components: tuple[str, ...]
    flag_rate: float
    fitted_on: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [c for c in self.components if c not in COMPONENTS]
        if unknown or not self.components:
            raise ReferenceError(
                f"{FILE}: out-of-scope components must be among {', '.join(COMPONENTS)}, got {unknown}"
            )
        if "tfidf" in self.components and self.coef is None:
            raise ReferenceError(f"{FILE}: the tfidf component needs its coefficients in {ARRAYS_FILE}")
        missing = [c for c in self.components if c not in self.centre or not self.scale.get(c, 0) > 0]
        if missing:
            raise ReferenceError(f"{FILE}: no centre or a non-positive scale for {', '.join(missing)}")
        if not 0 < self.flag_rate < 1:
            raise ReferenceError(f"{FILE}: flag_rate must be in (0, 1), got {self.flag_rate}")

    def to_json(self) -> dict[str, Any]:
        """The model's settings as ``reference.json`` holds them (the coefficients go to the arrays file).

        Returns:
            The settings.
        """
        return {
            "components": list(self.components),
            "intercept": self.intercept,
            "centre": self.centre,
            "scale": self.scale,
            "threshold": self.threshold,
            "flag_rate": self.flag_rate,
            "fitted_on": self.fitted_on,
            "evidence": self.evidence,
            "terms": None if self.coef is None else int(self.coef.shape[0]),
        }


@dataclass(frozen=True)
class ReferenceSample:
    """The model's answers on held-out papers at training time, for production to compare its answers with.

    Attributes:
        labels: the classes, in the order of the probability columns.
        probabilities: ``(N, C)`` float32 calibrated probabilities, as the service answers.
        true_labels: ``(N,)`` class index of each paper (-1 unknown).
        text_chars: ``(N,)`` characters of each paper's model input text.
        oos_scores: ``(N,)`` each paper's out-of-scope score (zeros without an out-of-scope model).
        bandwidth: the RBF kernel's bandwidth for the drift test: the median squared distance between the
            reference papers' square-rooted probability vectors.
        out_of_scope: the out-of-scope model; None when none was fitted.
        fitted_on: which papers, in words.
        accuracy: top-1 accuracy measured on these papers (over those with a known label).
        estimated_accuracy: the mean calibrated top-1 probability on them.
        created_at: when it was built (ISO 8601, UTC).
    """

    labels: tuple[str, ...]
    probabilities: np.ndarray
    true_labels: np.ndarray
    text_chars: np.ndarray
    oos_scores: np.ndarray
    bandwidth: float
    out_of_scope: OutOfScopeModel | None
    fitted_on: str
    accuracy: float
    estimated_accuracy: float
    created_at: str

    def __post_init__(self) -> None:
        n = self.probabilities.shape[0] if self.probabilities.ndim == 2 else -1
        if self.probabilities.ndim != 2 or self.probabilities.shape[1] != len(self.labels) or n < 2:
            raise ReferenceError(
                f"{ARRAYS_FILE}: probabilities must be (papers >= 2, {len(self.labels)} classes), "
                f"got {self.probabilities.shape}"
            )
        for name in ("true_labels", "text_chars", "oos_scores"):
            if getattr(self, name).shape != (n,):
                raise ReferenceError(f"{ARRAYS_FILE}: {name} must hold one value per paper ({n})")
        if not self.bandwidth > 0:
            raise ReferenceError(f"{FILE}: bandwidth must be positive, got {self.bandwidth}")

    @property
    def papers(self) -> int:
        """How many papers the sample holds."""
        return int(self.probabilities.shape[0])

    @property
    def predicted(self) -> np.ndarray:
        """``(N,)`` the class index each paper was answered with."""
        return np.asarray(self.probabilities.argmax(axis=1))

    @property
    def class_mix(self) -> dict[str, float]:
        """Predicted-class shares, every class listed."""
        counts = np.bincount(self.predicted, minlength=len(self.labels))
        return {label: float(count / self.papers) for label, count in zip(self.labels, counts, strict=True)}

    @property
    def out_of_scope_share(self) -> float:
        """The share of the reference papers flagged out of scope (about the model's ``flag_rate``; 0 without one)."""
        if self.out_of_scope is None:
            return 0.0
        return float(np.mean(self.oos_scores > self.out_of_scope.threshold))

    def summary(self) -> dict[str, Any]:
        """The sample's statistics for reports and ``reference.json``.

        Returns:
            ``{"papers", "accuracy", "estimated_accuracy", "out_of_scope_share", "fitted_on", "class_mix",
            "median_chars"}``.
        """
        return {
            "papers": self.papers,
            "accuracy": self.accuracy,
            "estimated_accuracy": self.estimated_accuracy,
            "out_of_scope_share": self.out_of_scope_share,
            "fitted_on": self.fitted_on,
            "class_mix": self.class_mix,
            "median_chars": float(np.median(self.text_chars)),
        }


def read_reference(folder: str | Path) -> ReferenceSample | None:
    """The reference sample of an artifact folder; None when it has none.

    Args:
        folder: the artifact folder.

    Returns:
        The sample, or None without ``reference.json``.

    Raises:
        ReferenceError: naming the file that does not read or does not fit.
    """
    from safetensors.numpy import load_file

    folder = Path(folder)
    path = folder / FILE
    if not path.is_file():
        return None
    arrays_path = folder / ARRAYS_FILE
    if not arrays_path.is_file():
        raise ReferenceError(f"{arrays_path}: missing; {FILE} names arrays the artifact does not hold")
    try:
        document = read_json(path)
        arrays = load_file(str(arrays_path))
        oos = document.get("out_of_scope")
        model = None
        if oos is not None:
            model = OutOfScopeModel(
                coef=arrays.get("oos_coef"),
                intercept=float(oos["intercept"]),
                centre={k: float(v) for k, v in oos["centre"].items()},
                scale={k: float(v) for k, v in oos["scale"].items()},
                threshold=float(oos["threshold"]),
                components=tuple(oos["components"]),
                flag_rate=float(oos["flag_rate"]),
                fitted_on=str(oos.get("fitted_on", "")),
                evidence=dict(oos.get("evidence") or {}),
            )
        return ReferenceSample(
            labels=tuple(document["labels"]),
            probabilities=arrays["probabilities"],
            true_labels=arrays["true_labels"].astype(np.int64),
            text_chars=arrays["text_chars"].astype(np.int64),
            oos_scores=arrays["oos_scores"].astype(np.float64),
            bandwidth=float(document["bandwidth"]),
            out_of_scope=model,
            fitted_on=str(document.get("fitted_on", "")),
            accuracy=float(document["accuracy"]),
            estimated_accuracy=float(document["estimated_accuracy"]),
            created_at=str(document.get("created_at", "")),
        )
    except (DataFileError, KeyError, TypeError, AttributeError, ValueError) as err:
        if isinstance(err, ReferenceError):
            raise
        raise ReferenceError(f"{path}: {err}") from None


def write_reference(folder: str | Path, sample: ReferenceSample) -> None:
    """Writes ``reference.json`` and ``reference.safetensors`` into an artifact folder; seal it afterwards (or use
    `clf.artifact.record_reference`, which does).

    Args:
        folder: the artifact folder.
        sample: the reference sample.
    """
    from safetensors.numpy import save_file

    folder = Path(folder)
    arrays: dict[str, np.ndarray] = {
        "probabilities": np.ascontiguousarray(sample.probabilities, dtype=np.float32),
        "true_labels": np.ascontiguousarray(sample.true_labels, dtype=np.int64),
        "text_chars": np.ascontiguousarray(sample.text_chars, dtype=np.int64),
        "oos_scores": np.ascontiguousarray(sample.oos_scores, dtype=np.float64),
    }
    model = sample.out_of_scope
    if model is not None and model.coef is not None:
        arrays["oos_coef"] = np.ascontiguousarray(model.coef, dtype=np.float32)
    save_file(arrays, str(folder / ARRAYS_FILE))
    document = {
        "labels": list(sample.labels),
        "bandwidth": sample.bandwidth,
        "created_at": sample.created_at,
        **sample.summary(),
        "out_of_scope": None if model is None else model.to_json(),
    }
    write_json_atomic(folder / FILE, document)
