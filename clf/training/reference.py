"""`build_reference`: the artifact's reference sample and out-of-scope model, fitted on held-out papers; and
`ReferenceOnFitEnd`, which builds it at the end of fit (after the export and its scoring).

    reference:
      build: true            # write reference.json + reference.safetensors into the export
      papers: 1000           # validation papers, a seeded stratified draw
      flag_rate: 0.05        # the out-of-scope threshold flags this share of them

The reference papers are answered by `clf.inference.ModelPredictor` on the export itself (mixed and calibrated by
its scoring, `clf.inference.scoring.Scorer`): what the service computes. Production's drift test
(`clf.monitoring.drift`) compares served windows with these answers.

The out-of-scope model (`clf.artifact.OutOfScopeModel`) sums two standardised components: the decision value of a
logistic regression over the companion's TF-IDF features that tells the in-scope training papers from the papers
of other categories the preprocessor kept aside (``processed/out_of_scope.json``: outlier exposure), and the entropy
of the calibrated answer. Without a companion or without such papers it is the entropy alone. Each component is
centred on its median and scaled by its interquartile range over the reference papers, and the threshold is the
``1 − flag_rate`` quantile of their summed scores.

Why a stratified draw of the whole validation split, not the newest papers the scoring is fitted on: the drift
test asks whether served papers still look like the training period, so the reference must be a sample of that
period; the newest papers are themselves a shift from it, and a reference made of them would alarm on windows drawn
from the training period (the test split is such a draw) and hide part of the drift of later papers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from clf.artifact import OutOfScopeModel, ReferenceSample, record_reference
from clf.inference import ModelPredictor
from clf.inference.out_of_scope import OutOfScopeScorer, standardised_sum
from clf.inference.scoring import CompanionModel
from clf.monitoring.drift import hellinger_features, median_bandwidth
from clf.monitoring.estimates import estimated_accuracy
from clf.training.finishing import VAL_SELECTIONS, exported_artifact, select_validation

log = logging.getLogger(__name__)

DEFAULT_FLAG_RATE = 0.05
"""Share of the held-out in-scope reference papers the out-of-scope threshold flags."""

OE_C = 10.0
"""Inverse regularisation of the outlier-exposure logistic regression (0.884 AUROC on its own, docs/MONITORING.md)."""


def build_reference(
    folder: str | Path,
    val_samples: Sequence[dict[str, Any]],
    train_samples: Sequence[dict[str, Any]] = (),
    out_of_scope_samples: Sequence[dict[str, Any]] = (),
    *,
    flag_rate: float = DEFAULT_FLAG_RATE,
    oe_c: float = OE_C,
    fitted_on: str | None = None,
    predictor: ModelPredictor | None = None,
) -> ReferenceSample:
    """Builds an artifact's reference sample on held-out papers and records it in the artifact (re-sealed).

    Args:
        folder: the artifact (a run's export or a registry version).
        val_samples: the held-out in-scope papers the reference is made of (``text``, ``label``).
        train_samples: the papers the model was trained on (the outlier-exposure model's in-scope side).
        out_of_scope_samples: papers of no class (its other side); without them, or without a companion in the
            artifact, the out-of-scope score is the answer's entropy alone.
        flag_rate: the share of `val_samples` the out-of-scope threshold flags, in (0, 0.5].
        oe_c: inverse regularisation of the outlier-exposure logistic regression.
        fitted_on: what the papers are, in words; by default their count.
        predictor: a loaded predictor of `folder`, to reuse.

    Returns:
        The reference sample written.

    Raises:
        ValueError: for fewer than 20 papers, a `flag_rate` outside (0, 0.5], or a multi-label artifact (its
            answers are independent sigmoids: neither the drift features nor the entropy apply).
    """
    started = time.perf_counter()
    if not 0 < flag_rate <= 0.5:
        raise ValueError(f"--reference.flag_rate must be in (0, 0.5], got {flag_rate}")
    if len(val_samples) < 20:
        raise ValueError(f"a reference sample needs at least 20 held-out papers, got {len(val_samples)}")
    predictor = predictor or ModelPredictor(folder, "reference")
    if predictor.multi_label:
        raise ValueError("reference samples are for single-label models; this artifact is multi-label")
    labels = tuple(predictor.labels)
    index = {label: i for i, label in enumerate(labels)}
    texts = [sample["text"] for sample in val_samples]
    companion = predictor.scorer.companion
    features = companion.features(texts) if companion is not None else None
    probabilities = predictor.scorer(predictor.encoder_probabilities(texts), texts, features).double().numpy()
    true_labels = np.array([index.get(str(sample.get("label")), -1) for sample in val_samples], dtype=np.int64)
    known = true_labels >= 0
    accuracy = float(np.mean(probabilities.argmax(axis=1)[known] == true_labels[known])) if known.any() else 0.0
    estimate = estimated_accuracy(probabilities.max(axis=1).clip(0.0, 1.0).tolist())
    fitted_on = fitted_on or f"{len(val_samples)} held-out papers"

    model, scores = fit_out_of_scope(
        companion, texts, probabilities, features, train_samples, out_of_scope_samples,
        flag_rate=flag_rate, oe_c=oe_c, fitted_on=fitted_on,
    )  # fmt: skip
    model.evidence["seconds"] = round(time.perf_counter() - started, 1)
    sample = ReferenceSample(
        labels=labels,
        probabilities=probabilities.astype(np.float32),
        true_labels=true_labels,
        text_chars=np.array([len(text) for text in texts], dtype=np.int64),
        oos_scores=np.asarray(scores, dtype=np.float64),
        bandwidth=median_bandwidth(hellinger_features(probabilities)),
        out_of_scope=model,
        fitted_on=fitted_on,
        accuracy=accuracy,
        estimated_accuracy=estimate.value if estimate is not None else 0.0,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    record_reference(folder, sample)
    log.info(
        "reference sample of %d papers in %.0f s: accuracy %.3f (estimated %.3f), out-of-scope score from %s",
        sample.papers, time.perf_counter() - started, accuracy, sample.estimated_accuracy, " + ".join(model.components),
    )  # fmt: skip
    return sample


def fit_out_of_scope(
    companion: CompanionModel | None,
    texts: Sequence[str],
    probabilities: np.ndarray,
    features: Any,
    train_samples: Sequence[dict[str, Any]] = (),
    out_of_scope_samples: Sequence[dict[str, Any]] = (),
    *,
    flag_rate: float = DEFAULT_FLAG_RATE,
    oe_c: float = OE_C,
    fitted_on: str = "",
) -> tuple[OutOfScopeModel, np.ndarray]:
    """The out-of-scope model, standardised and thresholded on the reference papers, and their scores.

    Args:
        companion: the artifact's TF-IDF companion; None: the entropy alone.
        texts: the reference papers' texts.
        probabilities: their ``(N, C)`` calibrated probabilities.
        features: their companion features (None without a companion).
        train_samples: in-scope training papers (the outlier-exposure model's side 0).
        out_of_scope_samples: papers of no class (side 1); none: the entropy alone.
        flag_rate: the share of the reference papers the threshold flags.
        oe_c: inverse regularisation of the outlier-exposure logistic regression.
        fitted_on: what the reference papers are, in words.

    Returns:
        ``(model, scores)``: the model and the ``(N,)`` scores of the reference papers.
    """
    coef, intercept, evidence = None, 0.0, {"reference_papers": len(texts)}
    if companion is not None and train_samples and out_of_scope_samples:
        coef, intercept, fitted = _fit_outlier_exposure(companion, train_samples, out_of_scope_samples, oe_c)
        evidence.update(fitted)
    components = ("tfidf", "entropy") if coef is not None else ("entropy",)
    unit = OutOfScopeModel(coef, intercept, dict.fromkeys(components, 0.0), dict.fromkeys(components, 1.0), 0.0,
                           components, flag_rate)  # fmt: skip
    raw = OutOfScopeScorer(unit, companion).components(texts, probabilities, features)
    centre = {c: float(np.median(raw[c])) for c in components}
    scale = {c: _spread(raw[c]) for c in components}
    standardised = OutOfScopeModel(coef, intercept, centre, scale, 0.0, components, flag_rate)
    scores = np.asarray(standardised_sum(raw, standardised), dtype=np.float64)
    threshold = float(np.quantile(scores, 1 - flag_rate))
    model = OutOfScopeModel(
        coef, intercept, centre, scale, threshold, components, flag_rate, fitted_on=fitted_on, evidence=evidence
    )
    return model, scores


def _fit_outlier_exposure(
    companion: CompanionModel, train: Sequence[dict[str, Any]], others: Sequence[dict[str, Any]], c: float
) -> tuple[np.ndarray, float, dict[str, Any]]:
    """The TF-IDF logistic regression of in-scope training papers (0) against out-of-scope papers (1)."""
    import scipy.sparse
    from sklearn.linear_model import LogisticRegression

    features = scipy.sparse.vstack(
        [companion.features([s["text"] for s in train]), companion.features([s["text"] for s in others])]
    ).tocsr()
    target = np.r_[np.zeros(len(train)), np.ones(len(others))]
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000).fit(features, target)
    evidence = {"train_papers": len(train), "out_of_scope_papers": len(others), "C": c, "class_weight": "balanced"}
    return model.coef_[0].astype(np.float32), float(model.intercept_[0]), evidence


def _spread(values: np.ndarray) -> float:
    """The interquartile range, or the standard deviation when half the values are equal (never 0)."""
    q1, q3 = np.quantile(values, [0.25, 0.75])
    return float(q3 - q1) if q3 > q1 else max(float(np.std(values)), 1e-6)


class ReferenceOnFitEnd(L.Callback):
    """Builds the exported artifact's reference sample at the end of fit (after ``export`` and ``scoring``); does
    nothing unless `build`.

    Args:
        build: write the reference sample and the out-of-scope model into the export.
        papers: validation papers it is made of; None: all of them.
        selection: which: ``stratified`` (a seeded draw keeping every class's share; see the module) or ``newest``.
        flag_rate: the share of those papers the out-of-scope threshold flags.
        oe_c: inverse regularisation of the outlier-exposure logistic regression.
        seed: seed of the stratified draw.

    Raises:
        ValueError: for `papers` below 20, an unknown `selection` or a `flag_rate` outside (0, 0.5].
    """

    def __init__(
        self,
        build: bool = False,
        papers: int | None = 1000,
        selection: str = "stratified",
        flag_rate: float = DEFAULT_FLAG_RATE,
        oe_c: float = OE_C,
        seed: int = 42,
    ) -> None:
        if papers is not None and papers < 20:
            raise ValueError(f"--reference.papers must be >= 20, got {papers}")
        if selection not in VAL_SELECTIONS:
            raise ValueError(f"--reference.selection must be one of {', '.join(VAL_SELECTIONS)}, got {selection}")
        if not 0 < flag_rate <= 0.5 or oe_c <= 0:
            raise ValueError(
                f"--reference.flag_rate must be in (0, 0.5] and --reference.oe_c positive, got {flag_rate}"
            )
        self.build, self.papers, self.selection = build, papers, selection
        self.flag_rate, self.oe_c, self.seed = flag_rate, oe_c, seed
        self.reference: ReferenceSample | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Builds and stores the reference of the artifact the export callback wrote (rank zero; others wait)."""
        if not self.build or trainer.interrupted:
            return
        exported = exported_artifact(trainer)
        if exported is not None:
            self.build_for(exported, trainer.datamodule)  # type: ignore[attr-defined]
        trainer.strategy.barrier("clf-reference")

    @rank_zero_only
    def build_for(self, folder: Any, datamodule: Any) -> ReferenceSample | None:
        """Builds the reference of the artifact in `folder` from its data module's splits (on rank zero).

        Args:
            folder: the exported artifact.
            datamodule: the `clf.data.ArxivDataModule` it was trained on.

        Returns:
            The reference written (also in ``self.reference``); None on the other ranks or for a multi-label model.
        """
        if getattr(datamodule, "multi_label", False):
            log.warning("--reference.build: skipped, reference samples are for single-label models")
            return None
        val = select_validation(datamodule.split_samples("val"), self.papers, self.selection, self.seed)
        self.reference = build_reference(
            folder,
            val,
            datamodule.split_samples("train"),
            datamodule.out_of_scope_samples(),
            flag_rate=self.flag_rate,
            oe_c=self.oe_c,
            fitted_on=f"the val split, {len(val)} papers ({self.selection})",
        )
        return self.reference
