"""Tests for clf/serving/health.py: each check passes on a good model and fails on a missing or broken one."""

from __future__ import annotations

import pytest

from clf.serving import ClassificationService, ModelPredictor
from clf.serving.health import check_model_health


class FailingPredictor(ModelPredictor):
    def predict_texts(self, texts, batch_size=32):
        raise RuntimeError("injected inference failure")


@pytest.fixture
def service(tiny_registry):
    service = ClassificationService(tiny_registry)
    yield service
    service.close()


def test_a_good_model_passes_every_check(service):
    report = check_model_health(service)
    assert report.healthy and report.status == "healthy"
    assert set(report.checks) == {"model_loaded", "checkpoint_valid", "inference", "latency"}
    assert report.checks["latency"].value > 0
    assert report.to_json()["checks"]["inference"]["ok"] is True


def test_changed_weights_fail_the_checkpoint_check(service, tiny_registry):
    weights = tiny_registry.version_dir("v1.0.0") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-16] + b"\0" * 16)
    report = check_model_health(service)
    assert not report.healthy and not report.checks["checkpoint_valid"].ok
    assert "differs from the manifest" in report.checks["checkpoint_valid"].detail


def test_deleted_model_files_fail_the_checkpoint_check(service, tiny_registry):
    (tiny_registry.version_dir("v1.0.0") / "model.safetensors").unlink()
    report = check_model_health(service)
    assert report.status == "unhealthy" and "missing model.safetensors" in report.checks["checkpoint_valid"].detail


def test_a_model_that_cannot_infer_fails_inference_and_latency(service, tiny_registry):
    service.warmup = False
    service.load("v1.1.0", predictor=FailingPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0"))
    service.swap("v1.1.0")
    report = check_model_health(service)
    assert not report.checks["inference"].ok and "injected inference failure" in report.checks["inference"].detail
    assert not report.checks["latency"].ok and report.checks["checkpoint_valid"].ok


def test_a_slow_model_fails_the_latency_check(service):
    report = check_model_health(service, latency_threshold_ms=0.0)
    assert report.checks["inference"].ok and not report.checks["latency"].ok and not report.healthy


def test_versions_receiving_split_traffic_are_checked_too(service):
    from clf.serving import WeightedSplit

    service.load("v1.1.0")
    service.set_traffic_rule(WeightedSplit("v1.0.0", "v1.1.0", 0.1))
    report = check_model_health(service)
    assert report.healthy and "inference[v1.1.0]" in report.checks
