"""Tests for clf/deploy/validation.py: a working model passes; broken, one-class or oversized ones do not."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from clf.artifact import seal
from clf.deploy import ValidationError, validate_deployment
from clf.registry import ModelRegistry
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS

# Tests that are not about latency give it a limit no busy machine reaches: a 2-core CI runner running other
# processes can take 200 ms over one paper, and that must not fail a test of class diversity.
ANY_LATENCY = {"max_p95_latency_ms": 60_000.0}


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[dict]:
    papers = load_shared_papers(categories=set(LABELS.values()))
    return [{"title": p["title"], "abstract": p["abstract"], "label": p["primary"]} for p in papers[-300:]]


@pytest.fixture
def registry(tmp_path, trained_export) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    registry.create_version(trained_export, "v2.0.0")
    return registry


def _rewrite_weights(registry: ModelRegistry, change) -> None:
    """Changes the weights and seals the artifact again, as an export of such a model would be."""
    path = registry.version_dir("v2.0.0") / "model.safetensors"
    save_file({name: change(name, tensor) for name, tensor in load_file(path).items()}, path)
    seal(path.parent)


def test_a_working_model_passes_every_check(registry, samples):
    report = validate_deployment("v2.0.0", registry, samples=samples, **ANY_LATENCY)
    assert report.passed, report.failures
    checks = {check.name: check for check in report.checks}
    assert set(checks) == {
        "loads",
        "files_intact",
        "probabilities_valid",
        "labels_known",
        "class_diversity",
        "sample_accuracy",
        "model_size_mb",
        "latency_p95_ms",
    }
    assert report.num_samples == 30 and checks["sample_accuracy"].value > 0.45
    assert 0 < checks["model_size_mb"].value < 500 and checks["latency_p95_ms"].value > 0
    assert json.loads(json.dumps(report.to_json()))["passed"] is True


def test_a_model_answering_one_class_is_rejected(registry, samples):
    def bias_to_first_class(name, tensor):
        if name.endswith("classifier.bias"):
            return torch.tensor([1000.0, 0.0, 0.0])
        return tensor

    _rewrite_weights(registry, bias_to_first_class)
    report = validate_deployment("v2.0.0", registry, samples=samples, **ANY_LATENCY)
    assert not report.passed and [c.name for c in report.failures] == ["class_diversity"]
    assert "cs.CV takes 100%" in report.failures[0].detail


def test_nan_weights_are_rejected(registry, samples):
    _rewrite_weights(registry, lambda name, t: torch.full_like(t, float("nan")) if "classifier" in name else t)
    report = validate_deployment("v2.0.0", registry, samples=samples, **ANY_LATENCY)
    assert "probabilities_valid" in [c.name for c in report.failures]


def test_unloadable_weights_are_rejected(registry, samples):
    (registry.version_dir("v2.0.0") / "model.safetensors").write_bytes(b"garbage")
    report = validate_deployment("v2.0.0", registry, samples=samples, **ANY_LATENCY)
    assert not report.passed and report.failures[0].name == "loads"
    assert "model.safetensors: sha256 differs from the manifest" in report.failures[0].detail
    seal(registry.version_dir("v2.0.0"))  # a model sealed with garbage weights still does not load
    report = validate_deployment("v2.0.0", registry, samples=samples, **ANY_LATENCY)
    assert report.failures[0].name == "loads" and "does not load" in report.failures[0].detail


def test_size_and_latency_limits_apply(registry, samples):
    report = validate_deployment("v2.0.0", registry, samples=samples, max_size_mb=1.0, max_p95_latency_ms=0.0)
    assert {c.name for c in report.failures} == {"model_size_mb", "latency_p95_ms"}


def test_without_samples_or_lineage_it_asks_for_sample_data(registry):
    with pytest.raises(ValidationError, match="--sample-data"):
        validate_deployment("v2.0.0", registry)


def test_samples_from_a_jsonl_file(registry, samples, tmp_path):
    path = tmp_path / "papers.jsonl"
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    assert validate_deployment("v2.0.0", registry, samples=path, **ANY_LATENCY).passed
