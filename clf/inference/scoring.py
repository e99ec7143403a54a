"""Applying an artifact's scoring (`clf.artifact.scoring`) to its model's probabilities, and fitting a temperature.

    scorer = Scorer(artifact.scoring, multi_label=False)
    probabilities = scorer(encoder_probabilities, texts)      # mixed with the TF-IDF companion, then calibrated

The same arithmetic runs after the torch and the ONNX backends, so every path answers with the same probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clf.artifact.scoring import Companion, Scoring

_EPSILON = 1e-12


class CompanionModel:
    """A stored TF-IDF + logistic-regression companion, ready to score texts.

    The features come from scikit-learn's own `TfidfVectorizer`, rebuilt from the stored settings, vocabulary and idf
    (no fitting, no pickle), so the served transform is the library's; the logistic regression is applied to them as
    `LogisticRegression` does.

    Args:
        companion: the stored arrays and settings.

    Attributes:
        vectorizer: the fitted `TfidfVectorizer` (float64).
    """

    def __init__(self, companion: Companion) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        settings = companion.vectorizer  # what the artifact does not store takes scikit-learn's default
        self.companion = companion
        self.vectorizer = TfidfVectorizer(
            vocabulary={term: index for index, term in enumerate(companion.vocabulary)},
            ngram_range=tuple(settings.get("ngram_range", (1, 1))),
            lowercase=bool(settings.get("lowercase", True)),
            strip_accents=settings.get("strip_accents"),
            token_pattern=settings.get("token_pattern", r"(?u)\b\w\w+\b"),
            norm=settings.get("norm", "l2"),
            sublinear_tf=bool(settings.get("sublinear_tf", False)),
            dtype=np.float64,
        )
        # Validates the vocabulary here, once, so that transform only reads (threads share the companion).
        self.vectorizer.idf_ = companion.idf.astype(np.float64)
        self._coef_t = np.ascontiguousarray(companion.coef.T, dtype=np.float64)
        self._intercept = companion.intercept.astype(np.float64)

    def features(self, texts: Sequence[str]) -> Any:
        """The TF-IDF features of `texts`: what the companion and the out-of-scope score read (computed once).

        Args:
            texts: model input texts (cleaned as training cleans them).

        Returns:
            A ``(len(texts), terms)`` sparse float64 matrix.
        """
        return self.vectorizer.transform(list(texts))

    def probabilities(self, texts: Sequence[str], features: Any = None) -> np.ndarray:
        """The companion's class probabilities for `texts`.

        Args:
            texts: model input texts (cleaned as training cleans them).
            features: their `features`, when already computed.

        Returns:
            A ``(len(texts), classes)`` float64 array; each row sums to 1.
        """
        features = self.features(texts) if features is None else features
        logits = features @ self._coef_t + self._intercept
        return _softmax(np.asarray(logits))


class Scorer:
    """Mixes and calibrates a model's probabilities as its artifact's scoring says.

    Args:
        scoring: the artifact's scoring.
        multi_label: whether the probabilities are independent sigmoids.
    """

    def __init__(self, scoring: Scoring, multi_label: bool) -> None:
        self.scoring = scoring
        self.multi_label = multi_label
        self.companion = CompanionModel(scoring.companion) if scoring.companion is not None else None

    def __call__(self, probabilities: torch.Tensor, texts: Sequence[str], features: Any = None) -> torch.Tensor:
        """The artifact's answer probabilities.

        Args:
            probabilities: the encoder's ``(N, classes)`` softmax (or sigmoid) outputs.
            texts: the N texts they are for.
            features: the companion's TF-IDF features of `texts` (`CompanionModel.features`), when already computed.

        Returns:
            The mixed, calibrated probabilities, float32 on the CPU.
        """
        if self.scoring.is_plain or len(texts) == 0:
            return probabilities
        mixed = probabilities.double().numpy()
        weight = self.scoring.encoder_weight
        if self.companion is not None and weight < 1 and not self.multi_label:
            mixed = mix(mixed, self.companion.probabilities(texts, features), weight, self.scoring.mixture)
        temperature = self.scoring.calibration.temperature
        calibrated = scale_sigmoids(mixed, temperature) if self.multi_label else scale(mixed, temperature)
        return torch.from_numpy(calibrated).float()


def mix(encoder: np.ndarray, companion: np.ndarray, weight: float, mixture: str = "log_linear") -> np.ndarray:
    """The encoder's and the companion's probability rows mixed with the encoder's share `weight`.

    Args:
        encoder: ``(N, classes)`` rows summing to 1.
        companion: the same shape.
        weight: the encoder's share, in [0, 1].
        mixture: ``log_linear`` (a weighted geometric mean, renormalised) or ``linear`` (a weighted mean).

    Returns:
        The mixed rows, summing to 1.

    >>> np.round(mix(np.array([[0.9, 0.1]]), np.array([[0.5, 0.5]]), 0.5), 3).tolist()
    [[0.75, 0.25]]
    """
    if mixture == "linear":
        return weight * encoder + (1 - weight) * companion
    logs = weight * np.log(np.clip(encoder, _EPSILON, 1.0)) + (1 - weight) * np.log(np.clip(companion, _EPSILON, 1.0))
    return _softmax(logs)


def scale(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probability rows: ``p^(1/T)`` renormalised (softmax(logits / T) for a softmax).

    Args:
        probabilities: ``(N, classes)`` rows summing to 1.
        temperature: above 1 softens, below 1 sharpens.

    Returns:
        The scaled rows.

    >>> np.round(scale(np.array([[0.9, 0.1]]), 2.0), 3).tolist()
    [[0.75, 0.25]]
    """
    if temperature == 1.0:
        return probabilities
    return _softmax(np.log(np.clip(probabilities, _EPSILON, 1.0)) / temperature)


def scale_sigmoids(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of independent per-class probabilities: each logit divided by `temperature`.

    Args:
        probabilities: ``(N, classes)`` sigmoid outputs.
        temperature: above 1 softens, below 1 sharpens.

    Returns:
        The scaled probabilities.
    """
    if temperature == 1.0:
        return probabilities
    clipped = np.clip(probabilities, _EPSILON, 1 - _EPSILON)
    return 1.0 / (1.0 + np.exp(-(np.log(clipped) - np.log1p(-clipped)) / temperature))


def fit_temperature(
    probabilities: np.ndarray, labels: np.ndarray, *, multi_label: bool = False
) -> tuple[float, float, float]:
    """The temperature that minimises the negative log-likelihood of `labels` (a bounded search over log T).

    Args:
        probabilities: held-out ``(N, classes)`` probabilities (rows summing to 1; sigmoids when multi-label).
        labels: the true class index of each row (single-label), or an ``(N, classes)`` 0/1 array (multi-label).
        multi_label: score independent sigmoids with binary cross-entropy.

    Returns:
        ``(temperature, nll_before, nll_after)``.
    """
    from scipy.optimize import minimize_scalar

    def nll(log_temperature: float) -> float:
        temperature = float(np.exp(log_temperature))
        if multi_label:
            scaled = np.clip(scale_sigmoids(probabilities, temperature), _EPSILON, 1 - _EPSILON)
            return float(-np.mean(labels * np.log(scaled) + (1 - labels) * np.log1p(-scaled)))
        scaled = scale(probabilities, temperature)
        return float(-np.mean(np.log(np.clip(scaled[np.arange(len(labels)), labels], _EPSILON, 1.0))))

    found: Any = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x)), nll(0.0), float(found.fun)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)
