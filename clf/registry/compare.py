"""Compare two registered versions on the same labelled samples: accuracy, macro-F1 and single-text latency.

clf registry compare --version v1.0.0 --other v1.1.0 --test-data data/quickstart/splits/test.json
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clf.io import read_json
from clf.registry.versions import RegistryError

if TYPE_CHECKING:
    from clf.registry.registry import ModelRegistry


@dataclass(frozen=True)
class VersionScore:
    """How one version did on the comparison samples.

    Attributes:
        version: the version.
        accuracy: share of samples whose top class is the label.
        f1_macro: macro-averaged F1 over the labels present.
        latency_p50_ms: median time to classify one text (tokenize + forward), in milliseconds.
        latency_p95_ms: 95th percentile of the same.
        num_samples: samples scored.
    """

    version: str
    accuracy: float
    f1_macro: float
    latency_p50_ms: float
    latency_p95_ms: float
    num_samples: int


@dataclass(frozen=True)
class Comparison:
    """Two versions' scores and the improvement of `candidate` over `baseline` (positive = better).

    Attributes:
        baseline: the first version's scores.
        candidate: the second version's scores.
        improvement: candidate minus baseline for accuracy and f1_macro; baseline minus candidate for latencies,
            so a faster candidate improves them.
    """

    baseline: VersionScore
    candidate: VersionScore
    improvement: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The comparison as nested dicts and lists, ready for `json.dumps`.
        """
        return asdict(self)


def load_samples(test_data: str | Path | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reads a split file (``{"metadata", "samples"}``) or checks a list of samples.

    Args:
        test_data: a split file's path, or the samples themselves (dicts with ``text`` and ``label``).

    Returns:
        The samples.

    Raises:
        RegistryError: when there are no samples or one lacks ``text`` or ``label``.
    """
    if isinstance(test_data, (str, Path)):
        data = read_json(Path(test_data))
        samples = data.get("samples") if isinstance(data, dict) else data
    else:
        samples = test_data
    if not isinstance(samples, list) or not samples:
        raise RegistryError(f"--test-data {test_data if isinstance(test_data, (str, Path)) else ''}: no samples")
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or "text" not in sample or "label" not in sample:
            raise RegistryError(f"--test-data: sample {index} needs 'text' and 'label'")
    return samples


def score_version(registry: ModelRegistry, version: str, samples: list[dict[str, Any]]) -> VersionScore:
    """Classifies every sample one at a time with `version` and scores it.

    Args:
        registry: the registry holding `version`.
        version: the version to score, e.g. ``v1.2.0``.
        samples: samples with ``text`` and ``label`` (a category name or a class index).

    Returns:
        The version's accuracy, macro F1 and per-sample latency.

    Raises:
        RegistryError: when a label is not one of the model's classes.
    """
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    model, tokenizer, _ = registry.load_version(version)
    label2id = {str(label): int(i) for label, i in model.config.label2id.items()}
    label_map = read_json(registry.version_dir(version) / "label_map.json")
    max_length = int(label_map.get("max_length") or 512)
    max_length = min(max_length, getattr(model.config, "max_position_embeddings", max_length))
    truth, predicted, latencies = [], [], []
    with torch.inference_mode():
        for sample in samples:
            label = sample["label"]
            if isinstance(label, str):
                if label not in label2id:
                    raise RegistryError(f"{version}: label {label!r} is not one of its classes {sorted(label2id)}")
                label = label2id[label]
            start = time.perf_counter()
            inputs = tokenizer(sample["text"], truncation=True, max_length=max_length, return_tensors="pt")
            logits = model(**inputs).logits
            predicted.append(int(logits.argmax(-1)))
            latencies.append((time.perf_counter() - start) * 1000)
            truth.append(int(label))
    return VersionScore(
        version=version,
        accuracy=float(accuracy_score(truth, predicted)),
        f1_macro=float(f1_score(truth, predicted, average="macro", zero_division=0)),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)),
        num_samples=len(samples),
    )


def compare_versions(
    registry: ModelRegistry, v1: str, v2: str, test_data: str | Path | list[dict[str, Any]]
) -> Comparison:
    """Scores `v1` (baseline) and `v2` (candidate) on the same samples.

    Args:
        registry: the registry holding both versions.
        v1: the baseline version.
        v2: the candidate version.
        test_data: a split file path (``{"metadata", "samples": [{"text", "label"}, ...]}``) or a list of samples.

    Returns:
        Both versions' scores and the improvement of `v2` over `v1`.

    Raises:
        RegistryError: for an unknown version or unusable samples.
    """
    samples = load_samples(test_data)
    baseline = score_version(registry, v1, samples)
    candidate = score_version(registry, v2, samples)
    improvement = {
        "accuracy": candidate.accuracy - baseline.accuracy,
        "f1_macro": candidate.f1_macro - baseline.f1_macro,
        "latency_p50_ms": baseline.latency_p50_ms - candidate.latency_p50_ms,
        "latency_p95_ms": baseline.latency_p95_ms - candidate.latency_p95_ms,
    }
    return Comparison(baseline=baseline, candidate=candidate, improvement=improvement)
