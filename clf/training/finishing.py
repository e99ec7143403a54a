"""`ScoreOnFitEnd`: after the export, fit how the artifact scores — a TF-IDF companion and a temperature — on held-out
papers, through the one inference path.

    scoring:
      companion: true        # a TF-IDF + logistic-regression model on the WHOLE training split, mixed in
      calibrate: true        # a temperature fitted on validation papers
      val_papers: 1000       # validation papers the mixture weight and the temperature are fitted on
      val_selection: newest  # the most recently published ones (or: stratified)
      mixture: log_linear    # p ∝ p_encoder^w · p_tfidf^(1-w) (or: linear)
      target_accuracy: 0.9   # abstain_below: the lowest threshold whose answers are 90 % right on those papers

The encoder's validation probabilities come from `clf.inference.ModelPredictor` on the export itself, so what is
fitted is what the service will compute. For every weight of `weights` the temperature of that mixture is fitted,
and the pair with the lowest validation log-likelihood is kept; both are written into the artifact
(`clf.artifact.record_scoring`) and its model card. Test papers are never used.

With ``target_accuracy``, the unsure threshold ``abstain_below`` is chosen last, on the same validation papers'
answers as the service computes them (mixed and calibrated, `clf.inference.scoring.Scorer`):
`clf.inference.selective.choose_threshold` keeps the lowest threshold at which the answered papers (top-1
probability at or above it) are at least that accurate, resting on at least ``target_min_answered`` of them. When no
threshold reaches the target, the most accurate one is kept and a warning says so: the service then flags as many
answers as it must to come closest, rather than quietly answering at an accuracy nobody asked for. The target, and
the coverage and accuracy it gave, go into ``scoring.json`` (``abstain_target_accuracy``, ``fitted["abstain"]``)
and the model card.

Why the newest validation papers: the service answers papers published after every paper it was trained on, and
confidence drifts with time (a model is less often right on newer papers). Fitting the temperature on the most
recent held-out papers brings it nearer to what the service will see than a random draw across 25 years does.

`ArtifactAnswers` applies that scoring afterwards inside `clf test` and `clf predict`, so their report and
predictions are those of the artifact the service answers with, not of the encoder alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from clf.artifact import Calibration, Companion, Scoring, record_scoring
from clf.artifact.scoring import DEFAULT_ABSTAIN_BELOW, MIXTURES, VECTORIZER_PARAMS
from clf.data.datamodule import stratified_subset
from clf.inference import ModelPredictor
from clf.inference.scoring import CompanionModel, Scorer, fit_temperature, mix
from clf.inference.selective import MIN_ANSWERED, ThresholdChoice, choose_threshold, top1_outcomes

log = logging.getLogger(__name__)

VAL_SELECTIONS = ("newest", "stratified")
"""Which validation papers the scoring is fitted on."""

DEFAULT_WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))
"""Encoder shares tried for the mixture with the companion."""

COMPANION_VECTORIZER: dict[str, Any] = {
    "sublinear_tf": VECTORIZER_PARAMS["sublinear_tf"],
    "ngram_range": list(VECTORIZER_PARAMS["ngram_range"]),
    "lowercase": VECTORIZER_PARAMS["lowercase"],
    "strip_accents": VECTORIZER_PARAMS["strip_accents"],
    "token_pattern": r"(?u)\b\w\w+\b",
    "norm": "l2",
}
"""The companion's TF-IDF settings as the artifact stores them: the classical baseline's (`clf.evaluation.baseline`),
with scikit-learn's default token pattern and norm written out so the stored model does not depend on them."""


class ScoreOnFitEnd(L.Callback):
    """Fits the exported artifact's scoring at the end of fit (after ``export``); does nothing unless `companion`,
    `calibrate` or `target_accuracy` asks for something.

    Args:
        companion: mix in a TF-IDF + logistic-regression model trained on the whole training split (single-label).
        calibrate: fit a temperature on validation papers.
        val_papers: validation papers to fit on; None: all of them.
        val_selection: which: ``newest`` (the most recently published) or ``stratified`` (a seeded draw keeping
            every class's share).
        mixture: how the encoder and the companion are mixed: ``log_linear`` or ``linear``.
        weights: encoder shares tried for the mixture, chosen on validation log-likelihood.
        companion_c: inverse regularisation strength of the companion's logistic regression.
        companion_max_features: most TF-IDF terms kept (by frequency); None: all seen in two documents.
        abstain_below: the calibrated top-1 probability under which answers are flagged as unsure, when no
            `target_accuracy` is given (or too few validation papers to choose one on).
        target_accuracy: choose `abstain_below` instead: the lowest threshold at which the validation papers'
            answers (those not flagged unsure) are at least this accurate; None keeps `abstain_below`.
        target_min_answered: the fewest validation papers a chosen threshold may answer.
        seed: seed of the validation subset.

    Raises:
        ValueError: for a weight outside [0, 1], a non-positive `companion_c`, `val_papers` or
            `target_min_answered`, an unknown `val_selection` or `mixture`, or a `target_accuracy` outside (0, 1].
    """

    def __init__(
        self,
        companion: bool = False,
        calibrate: bool = False,
        val_papers: int | None = 1000,
        val_selection: str = "newest",
        mixture: str = "log_linear",
        weights: Sequence[float] = DEFAULT_WEIGHTS,
        companion_c: float = 10.0,
        companion_max_features: int | None = 200_000,
        abstain_below: float = DEFAULT_ABSTAIN_BELOW,
        target_accuracy: float | None = None,
        target_min_answered: int = MIN_ANSWERED,
        seed: int = 42,
    ) -> None:
        if any(not 0 <= w <= 1 for w in weights) or not weights:
            raise ValueError(f"--scoring.weights must be shares in [0, 1], got {list(weights)}")
        if companion_c <= 0 or (val_papers is not None and val_papers < 1):
            raise ValueError("--scoring.companion_c and --scoring.val_papers must be positive")
        if val_selection not in VAL_SELECTIONS:
            raise ValueError(f"--scoring.val_selection must be one of {', '.join(VAL_SELECTIONS)}, got {val_selection}")
        if mixture not in MIXTURES:
            raise ValueError(f"--scoring.mixture must be one of {', '.join(MIXTURES)}, got {mixture}")
        if target_accuracy is not None and not 0 < target_accuracy <= 1:
            raise ValueError(f"--scoring.target_accuracy must be in (0, 1] (e.g. 0.9), got {target_accuracy}")
        if target_min_answered < 1:
            raise ValueError(f"--scoring.target_min_answered must be >= 1, got {target_min_answered}")
        self.val_selection, self.mixture = val_selection, mixture
        self.companion, self.calibrate = companion, calibrate
        self.val_papers, self.weights = val_papers, list(weights)
        self.companion_c, self.companion_max_features = companion_c, companion_max_features
        self.abstain_below, self.seed = abstain_below, seed
        self.target_accuracy, self.target_min_answered = target_accuracy, target_min_answered
        self.scoring: Scoring | None = None
        self.abstain: ThresholdChoice | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fits and stores the scoring of the artifact the export callback wrote (rank zero; others wait)."""
        if not (self.companion or self.calibrate or self.target_accuracy is not None) or trainer.interrupted:
            return
        exported = exported_artifact(trainer)
        if exported is not None:
            self.fit_artifact(exported, trainer.datamodule)  # type: ignore[attr-defined]
        trainer.strategy.barrier("clf-scoring")

    @rank_zero_only
    def fit_artifact(self, folder: Any, datamodule: Any) -> Scoring | None:
        """Fits the scoring of the artifact in `folder` on its data's validation papers and records it there (on rank
        zero; the other ranks do nothing).

        Args:
            folder: the exported artifact.
            datamodule: the `clf.data.ArxivDataModule` it was trained on (its ``val`` and ``train`` splits).

        Returns:
            The scoring written (also in ``self.scoring``; the abstention threshold's evidence in ``self.abstain``);
            None on the other ranks.
        """
        started = time.perf_counter()
        predictor = ModelPredictor(folder, "fit")
        val = select_validation(datamodule.split_samples("val"), self.val_papers, self.val_selection, self.seed)
        texts = [sample["text"] for sample in val]
        multi_label = predictor.multi_label
        label2id = {label: index for index, label in predictor.id2label.items()}
        encoder_output = predictor.encoder_probabilities(texts)
        encoder = encoder_output.double().numpy()
        if multi_label:
            labels = np.array(
                [[1.0 if c in (s.get("categories") or [s["label"]]) else 0.0 for c in label2id] for s in val]
            )
        else:
            labels = np.array([label2id[s["label"]] for s in val])
        fitted: dict[str, Any] = {"val_papers": len(val), "val_selection": self.val_selection}
        if val and val[0].get("published"):
            fitted["val_published"] = [str(val[0].get("published"))[:10], str(val[-1].get("published"))[:10]]
        fitted_on = f"the val split, {len(val)} papers ({self.val_selection})"
        companion, weight, mixed = None, 1.0, encoder
        temperatures: dict[float, tuple[float, float, float]] = {}  # weight -> fit_temperature of its mixture
        if self.companion and not multi_label:
            companion = fit_companion(
                datamodule.split_samples("train"), predictor.labels, self.companion_c, self.companion_max_features
            )
            tfidf = CompanionModel(companion).probabilities(texts)
            mixtures = {w: mix(encoder, tfidf, w, self.mixture) for w in self.weights}
            temperatures = {w: fit_temperature(m, labels) for w, m in mixtures.items()} if self.calibrate else {}
            losses = {w: temperatures[w][2] if self.calibrate else _nll(m, labels) for w, m in mixtures.items()}
            weight = min(losses, key=lambda w: (losses[w], -w))
            mixed = mixtures[weight]
            fitted["weights_nll"] = {str(w): round(loss, 5) for w, loss in losses.items()}
        calibration = Calibration()
        if self.calibrate:
            found = temperatures.get(weight)
            temperature, before, after = found or fit_temperature(mixed, labels, multi_label=multi_label)
            calibration = Calibration(temperature, fitted_on, before, after)
        abstain_below, target = self.abstain_below, None
        if self.target_accuracy is not None:
            scorer = Scorer(Scoring(calibration, weight, companion, mixture=self.mixture), multi_label)
            abstain_below, target = self._choose_abstention(scorer(encoder_output, texts), labels, fitted)
        fitted["seconds"] = round(time.perf_counter() - started, 1)
        self.scoring = Scoring(calibration, weight, companion, abstain_below, fitted, self.mixture, target)
        record_scoring(folder, self.scoring)
        log.info("scoring fitted on %d val papers in %.0f s: %s", len(val), fitted["seconds"], self.scoring.describe())
        return self.scoring

    def _choose_abstention(
        self, answers: torch.Tensor, labels: np.ndarray, fitted: dict[str, Any]
    ) -> tuple[float, float | None]:
        """``abstain_below`` and the target it was chosen for (None: none chosen) from the validation papers'
        `answers`; the evidence goes into `fitted` under ``abstain``."""
        assert self.target_accuracy is not None
        # The answers are float32, as the service computes them, so a paper exactly at the threshold stays answered.
        confidence, correct = top1_outcomes(answers.double().numpy(), labels)
        choice = choose_threshold(confidence, correct, self.target_accuracy, self.target_min_answered)
        self.abstain, fitted["abstain"] = choice, choice.to_json()
        if choice.threshold is None:
            log.warning(
                "--scoring.target_accuracy %g: %s; keeping --scoring.abstain_below %g (raise --scoring.val_papers or "
                "lower --scoring.target_min_answered)",
                self.target_accuracy,
                choice.describe(),
                self.abstain_below,
            )
            return self.abstain_below, None
        if choice.reached:
            log.info("abstain_below %s", choice.describe())
        else:
            log.warning(
                "--scoring.target_accuracy %g is not reached on the validation papers; abstain_below is %s",
                self.target_accuracy,
                choice.describe(),
            )
        return choice.threshold, self.target_accuracy


class ArtifactAnswers:
    """An artifact's scoring applied to the encoder probabilities of a stage's batches (the model's `answer_scoring`).

    Args:
        scoring: the exported artifact's scoring.
        multi_label: whether the probabilities are independent sigmoids.
        texts: the model input text of each row of the stage, read on the first batch (the predict file is only
            read when its stage sets up).
    """

    def __init__(self, scoring: Scoring, multi_label: bool, texts: Callable[[], Sequence[str]]) -> None:
        self.scorer = Scorer(scoring, multi_label)
        self._texts = texts
        self._rows: Sequence[str] | None = None

    def __call__(self, probabilities: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The artifact's answers for a batch.

        Args:
            probabilities: the encoder's ``(batch, classes)`` probabilities, float32 on the CPU.
            rows: the batch's row indices into the stage's texts.

        Returns:
            The mixed, calibrated probabilities, float32 on the CPU.
        """
        if self._rows is None:
            self._rows = self._texts()
        return self.scorer(probabilities, [self._rows[row] for row in rows.tolist()])


def exported_artifact(trainer: L.Trainer) -> Any:
    """The folder the export callback wrote in this fit (what the finishing callbacks complete), or None.

    Args:
        trainer: the trainer at the end of fit.

    Returns:
        The export callback's ``exported`` folder; None without an export callback or before it exported.
    """
    # Lightning's connectors set trainer.callbacks and trainer.datamodule; Trainer does not declare them.
    callbacks = trainer.callbacks  # type: ignore[attr-defined]
    return next((getattr(cb, "exported", None) for cb in callbacks if hasattr(cb, "exported")), None)


def select_validation(
    samples: list[dict[str, Any]], count: int | None, selection: str = "newest", seed: int = 42
) -> list[dict[str, Any]]:
    """The validation papers the scoring is fitted on.

    Args:
        samples: the validation split.
        count: how many; None or more than there are: all of them.
        selection: ``newest`` (the latest ``published``, ties and undated papers by file order) or ``stratified``.
        seed: the stratified draw's seed.

    Returns:
        The chosen papers, oldest first for ``newest``, in file order for ``stratified``.
    """
    keep = len(samples) if count is None else min(count, len(samples))
    if selection == "stratified" and keep < len(samples):
        return stratified_subset(samples, keep, seed)
    ordered = sorted(range(len(samples)), key=lambda i: (str(samples[i].get("published") or ""), i))
    return [samples[i] for i in ordered[len(ordered) - keep :]]


def fit_companion(
    samples: Sequence[dict[str, Any]], labels: Sequence[str], c: float = 10.0, max_features: int | None = 200_000
) -> Companion:
    """Trains the TF-IDF + logistic-regression companion on `samples` and keeps it as plain arrays.

    Args:
        samples: training samples (``text``, ``label``).
        labels: the model's classes, in index order (the companion's rows follow them).
        c: inverse regularisation strength.
        max_features: most terms kept (by frequency); None: all seen in two documents.

    Returns:
        The companion.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    settings = dict(COMPANION_VECTORIZER)
    vectorizer = TfidfVectorizer(
        **{**VECTORIZER_PARAMS, "token_pattern": settings["token_pattern"], "norm": settings["norm"]},
        max_features=max_features,
        dtype=np.float32,
    )
    index = {label: i for i, label in enumerate(labels)}
    known = [s for s in samples if s["label"] in index]
    features = vectorizer.fit_transform([s["text"] for s in known])
    model = LogisticRegression(C=c, max_iter=2000).fit(features, [index[s["label"]] for s in known])
    coef = np.zeros((len(labels), features.shape[1]), dtype=np.float32)
    intercept = np.full(len(labels), -1e4, dtype=np.float32)  # a class never seen in training is never chosen
    if len(model.classes_) == 2:  # binary: one row of weights for the second class; softmax([0, z]) = sigmoid(z)
        coef[model.classes_[1]], intercept[model.classes_[1]] = model.coef_[0], model.intercept_[0]
        intercept[model.classes_[0]] = 0.0
    else:
        for row, label in enumerate(model.classes_):
            coef[label], intercept[label] = model.coef_[row], model.intercept_[row]
    vocabulary = [term for term, _ in sorted(vectorizer.vocabulary_.items(), key=lambda item: item[1])]
    return Companion(settings, vocabulary, vectorizer.idf_.astype(np.float32), coef, intercept)


def _nll(probabilities: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0))))
