"""`Scoring`: how an artifact's raw model outputs become the probabilities it answers with — read and written here.

Two optional stages, fitted on the validation split after training (`clf.training.finishing`) and applied by the
one inference path (`clf.inference.scoring`), so the service, ONNX serving and every comparison answer alike:

* a **companion**: a TF-IDF + logistic-regression model of the same classes, mixed with the encoder's probabilities,
  ``log_linear`` (``p ∝ p_encoder^w · p_tfidf^(1 − w)``, a product of experts: what clf fits) or ``linear``
  (``p = w · p_encoder + (1 − w) · p_tfidf``); stored without pickle, as ``tfidf.json`` (its vectorizer settings and
  vocabulary) and ``tfidf.safetensors`` (idf, coefficients, intercepts);
* a **temperature** ``T``: the final probabilities are raised to ``1/T`` and renormalised (for the encoder alone this
  is exactly softmax(logits / T)); multi-label models scale each class's logit instead.

``scoring.json`` says which stages apply and with what numbers, and ``abstain_below``, the calibrated top-1
probability under which an answer is flagged as unsure: a fixed value (`DEFAULT_ABSTAIN_BELOW` unless set), or, when
``abstain_target_accuracy`` is recorded, the lowest threshold whose answers reached that accuracy on the validation
papers (its evidence under ``fitted["abstain"]``). An artifact without ``scoring.json`` answers with the plain
softmax; one written before ``abstain_target_accuracy`` existed reads as a fixed threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clf.io import DataFileError, read_json, write_json_atomic

FILE = "scoring.json"
"""The scoring settings inside an artifact."""
TFIDF_FILE = "tfidf.json"
"""The companion's vectorizer settings and vocabulary."""
TFIDF_WEIGHTS_FILE = "tfidf.safetensors"
"""The companion's idf, coefficients and intercepts."""

MIXTURES = ("log_linear", "linear")
"""How the encoder and the companion are mixed: a weighted geometric or arithmetic mean of their probabilities."""

VECTORIZER_PARAMS: dict[str, Any] = {
    "sublinear_tf": True,
    "ngram_range": (1, 2),
    "min_df": 2,
    "max_df": 0.9,
    "strip_accents": "unicode",
    "lowercase": True,
}
"""The TF-IDF settings of the classical baseline (`clf.evaluation.baseline`) and of the artifact's companion alike:
sublinear word uni- and bigrams seen in at least two and at most 90% of the training documents."""

DEFAULT_ABSTAIN_BELOW = 0.5
"""Calibrated top-1 probability under which an answer is flagged as unsure, unless the artifact says otherwise."""


class ScoringError(ValueError):
    """Scoring files that do not read or do not fit the model: the message names the file."""


@dataclass(frozen=True)
class Calibration:
    """A temperature fitted on held-out papers.

    Attributes:
        temperature: divides the log-probabilities (or, multi-label, the logits); 1 changes nothing.
        fitted_on: what it was fitted on, in words (``val split, 1,000 papers``).
        nll_before: mean negative log-likelihood there before scaling.
        nll_after: the same after.
    """

    temperature: float = 1.0
    fitted_on: str = ""
    nll_before: float | None = None
    nll_after: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.temperature < 1000:
            raise ScoringError(f"{FILE}: temperature must be positive, got {self.temperature}")


@dataclass(frozen=True)
class Companion:
    """A TF-IDF + logistic-regression model over the same classes, kept as plain arrays.

    Attributes:
        vectorizer: the TF-IDF settings (``ngram_range``, ``lowercase``, ``strip_accents``, ``sublinear_tf``,
            ``token_pattern``, ``norm``), as scikit-learn names them.
        vocabulary: the terms, in column order.
        idf: one inverse document frequency per term.
        coef: ``(classes, terms)`` weights.
        intercept: one per class.
    """

    vectorizer: dict[str, Any]
    vocabulary: list[str]
    idf: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def __post_init__(self) -> None:
        terms = len(self.vocabulary)
        if self.idf.shape != (terms,) or self.coef.ndim != 2 or self.coef.shape[1] != terms:
            raise ScoringError(f"{TFIDF_WEIGHTS_FILE}: arrays do not match the {terms}-term vocabulary")
        if self.intercept.shape != (self.coef.shape[0],):
            raise ScoringError(
                f"{TFIDF_WEIGHTS_FILE}: {self.intercept.shape[0]} intercepts for {self.coef.shape[0]} classes"
            )


@dataclass(frozen=True)
class Scoring:
    """How the artifact turns model outputs into its answers.

    Attributes:
        calibration: the temperature (1 when not calibrated).
        encoder_weight: the encoder's share in the mixture with the companion; 1 without a companion.
        companion: the TF-IDF model, when the artifact has one.
        mixture: ``log_linear`` or ``linear`` (`MIXTURES`); artifacts written before it existed mixed linearly.
        abstain_below: calibrated top-1 probability under which an answer is flagged as unsure.
        fitted: what was measured when the stages were fitted (validation scores of each candidate weight, and under
            ``abstain`` the evidence the threshold was chosen on...).
        abstain_target_accuracy: the validation accuracy of the answered papers `abstain_below` was chosen for;
            None when it is a fixed value.
    """

    calibration: Calibration = field(default_factory=Calibration)
    encoder_weight: float = 1.0
    companion: Companion | None = None
    abstain_below: float = DEFAULT_ABSTAIN_BELOW
    fitted: dict[str, Any] = field(default_factory=dict)
    mixture: str = "linear"
    abstain_target_accuracy: float | None = None

    def __post_init__(self) -> None:
        if self.mixture not in MIXTURES:
            raise ScoringError(f"{FILE}: mixture must be one of {', '.join(MIXTURES)}, got {self.mixture!r}")
        if not 0 <= self.encoder_weight <= 1:
            raise ScoringError(f"{FILE}: encoder_weight must be in [0, 1], got {self.encoder_weight}")
        if self.encoder_weight < 1 and self.companion is None:
            raise ScoringError(f"{FILE}: encoder_weight {self.encoder_weight} < 1 but the artifact has no companion")
        if not 0 <= self.abstain_below <= 1:
            raise ScoringError(f"{FILE}: abstain_below must be in [0, 1], got {self.abstain_below}")
        if self.abstain_target_accuracy is not None and not 0 < self.abstain_target_accuracy <= 1:
            raise ScoringError(
                f"{FILE}: abstain_target_accuracy must be in (0, 1] or null, got {self.abstain_target_accuracy}"
            )

    @property
    def is_plain(self) -> bool:
        """True when the artifact answers with its model's softmax (or sigmoid) unchanged."""
        return self.calibration.temperature == 1.0 and self.companion is None

    def describe(self) -> str:
        """One line for logs: the mixture and the temperature.

        Returns:
            For example ``encoder weight 0.6 with the TF-IDF companion (log_linear), temperature 1.180``.
        """
        mixture = (
            f"encoder weight {self.encoder_weight:g} with the TF-IDF companion ({self.mixture})"
            if self.companion
            else "encoder"
        )
        return f"{mixture}, temperature {self.calibration.temperature:.3f}"

    def to_json(self) -> dict[str, Any]:
        """The scoring.json document (the companion's arrays go to their own files).

        Returns:
            The settings.
        """
        return {
            "calibration": asdict(self.calibration),
            "encoder_weight": self.encoder_weight,
            "companion": TFIDF_FILE if self.companion is not None else None,
            "mixture": self.mixture,
            "abstain_below": self.abstain_below,
            "abstain_target_accuracy": self.abstain_target_accuracy,
            "fitted": self.fitted,
        }


def read_scoring(folder: Path) -> Scoring:
    """The scoring of an artifact folder; the plain one when it has no ``scoring.json``.

    Args:
        folder: the artifact folder.

    Returns:
        Its scoring.

    Raises:
        ScoringError: naming the file that does not read or does not fit.
    """
    path = folder / FILE
    if not path.is_file():
        return Scoring()
    try:
        document = read_json(path)
        calibration = Calibration(**document.get("calibration", {}))
        companion = _read_companion(folder) if document.get("companion") else None
        return Scoring(
            calibration=calibration,
            encoder_weight=float(document.get("encoder_weight", 1.0)),
            companion=companion,
            abstain_below=float(document.get("abstain_below", DEFAULT_ABSTAIN_BELOW)),
            fitted=dict(document.get("fitted") or {}),
            mixture=str(document.get("mixture", "linear")),
            abstain_target_accuracy=_optional_float(document.get("abstain_target_accuracy")),
        )
    except (DataFileError, TypeError, KeyError, AttributeError) as err:
        raise ScoringError(f"{path}: {err}") from None


def write_scoring(folder: Path, scoring: Scoring) -> None:
    """Writes ``scoring.json`` (and the companion's two files) into an artifact folder; seal it afterwards.

    Args:
        folder: the artifact folder.
        scoring: the scoring to store.
    """
    from safetensors.numpy import save_file

    if scoring.companion is not None:
        companion = scoring.companion
        write_json_atomic(
            folder / TFIDF_FILE, {"vectorizer": companion.vectorizer, "vocabulary": companion.vocabulary}, indent=None
        )
        save_file(
            {
                "idf": np.ascontiguousarray(companion.idf, dtype=np.float32),
                "coef": np.ascontiguousarray(companion.coef, dtype=np.float32),
                "intercept": np.ascontiguousarray(companion.intercept, dtype=np.float32),
            },
            str(folder / TFIDF_WEIGHTS_FILE),
        )
    write_json_atomic(folder / FILE, scoring.to_json())


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _read_companion(folder: Path) -> Companion:
    from safetensors.numpy import load_file

    document = read_json(folder / TFIDF_FILE)
    weights_path = folder / TFIDF_WEIGHTS_FILE
    if not weights_path.is_file():
        raise ScoringError(f"{weights_path}: missing; the companion's weights are not in the artifact")
    arrays = load_file(str(weights_path))
    return Companion(
        vectorizer=dict(document["vectorizer"]),
        vocabulary=list(document["vocabulary"]),
        idf=arrays["idf"],
        coef=arrays["coef"],
        intercept=arrays["intercept"],
    )
