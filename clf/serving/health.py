"""Health of the served models: loaded, files intact, inference works, latency acceptable.

    report = check_model_health(service)
    report.healthy, report.to_json()   # {"status": "healthy", "checks": {"model_loaded": {"ok": true, ...}, ...}}

``GET /health/ml`` answers 200 with this report when every check passes and 503 otherwise. The file check is the
artifact's own (`ModelArtifact.verify`): required files present, every file matching the manifest's sha256.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from clf.artifact import ArtifactError, ModelArtifact
from clf.monitoring.health import HealthCheck, HealthReport

if TYPE_CHECKING:
    from clf.inference import ModelPredictor
    from clf.serving.service import ClassificationService

HEALTH_TEXT = (
    "Health check. We evaluate a neural network classifier on a benchmark of scientific abstracts and report its "
    "accuracy and latency."
)


def check_model_health(
    service: ClassificationService, *, latency_threshold_ms: float = 500.0, test_text: str = HEALTH_TEXT
) -> HealthReport:
    """Checks the live version and every other version the traffic rule can pick.

    The test prediction goes straight to the model, not through the service, so health probes neither queue
    behind traffic nor count in the prediction metrics.

    Args:
        service: the service to check.
        latency_threshold_ms: the most one test prediction may take.
        test_text: the text classified by the inference check.

    Returns:
        The report; `HealthReport.healthy` is False when any check failed.
    """
    checks: dict[str, HealthCheck] = {}
    live = service.live_version
    for version in [live, *sorted(set(service.traffic_rule.versions) - {live})]:
        suffix = "" if version == live else f"[{version}]"
        try:
            predictor = service.predictor(version)
        except KeyError:
            checks[f"model_loaded{suffix}"] = HealthCheck(False, f"{version} is not loaded")
            continue
        for name, check in check_predictor(predictor, latency_threshold_ms, test_text).items():
            checks[f"{name}{suffix}"] = check
    return HealthReport(checks, live)


def check_predictor(
    predictor: ModelPredictor, latency_threshold_ms: float = 500.0, test_text: str = HEALTH_TEXT
) -> dict[str, HealthCheck]:
    """The checks of one loaded version: ``model_loaded``, ``checkpoint_valid``, ``inference`` and ``latency``.

    Args:
        predictor: the loaded version to check.
        latency_threshold_ms: the ``latency`` check fails when one classification takes longer than this.
        test_text: the input classified by the ``inference`` check.

    Returns:
        Check name → its result.
    """
    inference, latency = check_inference(predictor, test_text, latency_threshold_ms)
    return {
        "model_loaded": HealthCheck(True, f"{predictor.version} loaded from {predictor.model_dir}"),
        "checkpoint_valid": check_files(Path(predictor.model_dir)),
        "inference": inference,
        "latency": latency,
    }


def check_files(model_dir: Path) -> HealthCheck:
    """The model's files are all there and match the sha256 in ``manifest.json`` (when it has one).

    Args:
        model_dir: the version's folder (an ``export/`` folder or a registry version).

    Returns:
        A passing check, or a failing one that names the missing file or the checksum that differs.
    """
    try:
        artifact = ModelArtifact.open(model_dir)
    except ArtifactError as err:
        return HealthCheck(False, str(err))
    if artifact.manifest is None:
        return HealthCheck(True, f"{model_dir}: all files present (no manifest to verify checksums against)")
    return HealthCheck(True, f"{model_dir}: files present, every file matches the manifest")


def check_inference(
    predictor: ModelPredictor, text: str, latency_threshold_ms: float
) -> tuple[HealthCheck, HealthCheck]:
    """Classifies `text` once: the answer must be a known label with a finite probability in [0, 1].

    Args:
        predictor: the loaded version to check.
        text: the input to classify.
        latency_threshold_ms: the latency check fails above this many milliseconds.

    Returns:
        The ``inference`` check and the ``latency`` check (whose value is the latency in ms); both fail when the
        model raises.
    """
    started = time.perf_counter()
    try:
        record = predictor.predict_texts([text])[0]
    except Exception as err:  # a broken model must show up as a failed check, whatever it raises
        return HealthCheck(False, f"inference raised {type(err).__name__}: {err}"), HealthCheck(
            False, "no latency: inference failed"
        )
    latency_ms = (time.perf_counter() - started) * 1000
    probability = math.nan if record.probability is None else float(record.probability)
    if record.label not in predictor.labels or not 0.0 <= probability <= 1.0:
        inference = HealthCheck(False, f"implausible answer {record.label!r} with probability {probability}")
    else:
        inference = HealthCheck(True, f"test input → {record.label} ({probability:.3f})")
    latency = HealthCheck(
        latency_ms <= latency_threshold_ms,
        f"{latency_ms:.1f} ms for one input (threshold {latency_threshold_ms:.0f} ms)",
        round(latency_ms, 3),
    )
    return inference, latency
