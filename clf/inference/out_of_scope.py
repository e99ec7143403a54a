"""`OutOfScopeScorer`: how far a paper is from the classes the model knows, per paper, as the artifact says.

    scorer = OutOfScopeScorer(artifact.reference.out_of_scope, companion)   # companion: the artifact's CompanionModel
    scores = scorer.scores(texts, probabilities)          # (N,) standardised sum of the components
    flags = scorer.flags(scores)                          # above the threshold: out of scope

The components (`clf.artifact.OutOfScopeModel`): ``tfidf``, the decision value of a logistic regression over the
companion's TF-IDF features that separates in-scope training papers from papers of other categories (outlier
exposure), and ``entropy``, the entropy of the calibrated probabilities. Each is standardised by the median and
interquartile range it had on held-out in-scope papers, and the sum is compared with the threshold fitted there.
Both read only what the predictor has after either backend (the texts and the calibrated probabilities), so the torch
and ONNX backends answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from clf.artifact import OutOfScopeModel

if TYPE_CHECKING:
    from clf.inference.scoring import CompanionModel


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """The entropy (nats) of each probability row.

    Args:
        probabilities: ``(N, C)`` rows summing to 1.

    Returns:
        ``(N,)`` float64.

    >>> entropy(np.array([[0.5, 0.5], [0.9, 0.1]])).round(4).tolist()
    [0.6931, 0.3251]
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1)


class OutOfScopeScorer:
    """Scores papers with an artifact's out-of-scope model.

    Args:
        model: the fitted model (``artifact.reference.out_of_scope``).
        companion: the artifact's TF-IDF companion, needed when `model` has the ``tfidf`` component.

    Raises:
        ValueError: when the model needs the companion's features and there is no companion, or their vocabulary
            sizes differ.
    """

    def __init__(self, model: OutOfScopeModel, companion: CompanionModel | None) -> None:
        self.model = model
        self.companion = companion if "tfidf" in model.components else None
        if "tfidf" in model.components:
            if companion is None:
                raise ValueError("the out-of-scope model reads the TF-IDF companion's features; the artifact has none")
            assert model.coef is not None  # OutOfScopeModel checks it for the tfidf component
            if model.coef.shape[0] != len(companion.companion.vocabulary):
                raise ValueError(
                    f"the out-of-scope model has {model.coef.shape[0]} TF-IDF weights for a companion of "
                    f"{len(companion.companion.vocabulary)} terms"
                )
            self._coef = model.coef.astype(np.float64)

    @property
    def needs_features(self) -> bool:
        """Whether `scores` reads the companion's TF-IDF features (pass them in to transform each text once)."""
        return self.companion is not None

    def components(
        self, texts: Sequence[str], probabilities: np.ndarray, features: Any = None
    ) -> dict[str, np.ndarray]:
        """Each component's raw value per paper, before standardising.

        Args:
            texts: the papers' model input texts.
            probabilities: their ``(N, C)`` calibrated probabilities.
            features: the companion's TF-IDF features of `texts`, when already computed.

        Returns:
            Component name → ``(N,)`` values.
        """
        values: dict[str, np.ndarray] = {}
        if "entropy" in self.model.components:
            values["entropy"] = entropy(probabilities)
        if self.companion is not None:
            features = self.companion.features(texts) if features is None else features
            values["tfidf"] = np.asarray(features @ self._coef).reshape(-1) + self.model.intercept
        return values

    def scores(self, texts: Sequence[str], probabilities: np.ndarray, features: Any = None) -> np.ndarray:
        """The out-of-scope score of each paper: the sum of its standardised components.

        Args:
            texts: the papers' model input texts.
            probabilities: their ``(N, C)`` calibrated probabilities.
            features: the companion's TF-IDF features of `texts`, when already computed.

        Returns:
            ``(N,)`` scores; above ``model.threshold`` is out of scope.
        """
        return standardised_sum(self.components(texts, probabilities, features), self.model)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """Which scores are above the model's threshold.

        Args:
            scores: from `scores`.

        Returns:
            ``(N,)`` booleans.
        """
        return np.asarray(scores) > self.model.threshold


def standardised_sum(components: dict[str, np.ndarray], model: OutOfScopeModel) -> np.ndarray:
    """``Σ (raw − centre) / scale`` over the model's components: the one formula of the out-of-scope score.

    Args:
        components: component name → raw values.
        model: its centre and scale per component.

    Returns:
        The scores.
    """
    return sum((components[c] - model.centre[c]) / model.scale[c] for c in model.components)  # type: ignore[return-value]
