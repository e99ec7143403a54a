"""The evidence retraining judges: the production version's latest answers from the labels database, tested.

    snapshot = production_quality(config)("v1.2.0")     # QualitySnapshot: drift, estimated and measured accuracy

The newest ``--triggers.window_papers`` answers of the version, as the service logged them (`clf serve
--quality.db`, `clf.experiments.quality_log`), are compared with the reference sample in the version's artifact by
the same `clf.monitoring.drift.DriftDetector` the service runs, so the retraining decision and the service's alarm are
one test (at the service's default alpha and permutations). Their estimated accuracy (mean calibrated top-1
probability) is set against the version's accuracy on its reference papers, and the accuracy measured on those of
them whose true label has arrived against its test accuracy in the registry (its reference accuracy when the version
was never tested).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from clf.artifact import ArtifactError, ModelArtifact
from clf.monitoring.drift import DriftDetector
from clf.monitoring.estimates import estimated_accuracy, measured_scores
from clf.registry import ModelRegistry
from clf.retrain.config import RetrainingConfig
from clf.retrain.triggers import QualitySnapshot

log = logging.getLogger(__name__)


def production_quality(config: RetrainingConfig) -> Callable[[str], QualitySnapshot | None]:
    """The pipeline's quality source: a version → its `QualitySnapshot` from ``config.db``.

    Args:
        config: the retraining settings (its ``db``, ``registry`` and ``triggers``).

    Returns:
        A function of the version; it returns None when the database holds no answers of that version.
    """
    from clf.experiments.quality_log import QualityLog

    registry = ModelRegistry(config.registry)
    triggers = config.triggers

    def snapshot(version: str) -> QualitySnapshot | None:
        answers = QualityLog(config.db)
        try:
            artifact = ModelArtifact(registry.resolve(version)[1], verify=False)
            try:
                reference = artifact.reference
            except ArtifactError:
                log.exception("the reference sample of %s does not read", version)
                reference = None
            labels = [artifact.label_map.id2label[i] for i in sorted(artifact.label_map.id2label)]
            sample = answers.recent(version, triggers.window_papers, labels)
        finally:
            answers.close()
        if not len(sample.text_chars):
            return None
        drift = None
        if reference is not None:
            drift = (
                DriftDetector(reference).check(sample.probabilities, sample.text_chars, sample.out_of_scope).to_json()
            )
        estimate = estimated_accuracy(sample.probabilities.max(axis=1).tolist())
        labelled = [(t, p) for t, p in zip(sample.true_labels, sample.predicted, strict=True) if t is not None]
        measured = None
        if labelled:
            scores = measured_scores([t for t, _ in labelled], [p for _, p in labelled], labels)
            measured = scores.accuracy.to_json()
        # Without a test run (a backtest's retrains skip it) the reference papers' accuracy stands in.
        test = (artifact.metrics.get("test") or {}).get("test/acc")
        if test is None and reference is not None:
            test = reference.accuracy
        return QualitySnapshot(
            version=version,
            papers=len(sample.text_chars),
            drift=drift,
            estimated_accuracy=estimate.to_json() if estimate is not None else None,
            reference_accuracy=reference.accuracy if reference is not None else None,
            measured_accuracy=measured,
            measured_reference=float(test) if test is not None else None,
        )

    return snapshot
