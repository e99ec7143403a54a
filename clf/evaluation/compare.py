"""Score model versions on labelled papers through the one inference path, and compare two of them.

    clf registry compare v1.0.0 v1.1.0 --test_data data/quickstart/splits/test.json

Every score goes through `clf.inference.ModelPredictor`, exactly as `clf serve` classifies (the same tokenisation,
length-sorted passes, softmax or sigmoid by the artifact's mode), so a comparison, a deployment check or retraining's
promotion decision sees the probabilities the service would return. A multi-label model is scored on its top-1
class against the primary category, like a single-label one, and also on whether that class is among the paper's
listed categories.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from clf.io import read_json, read_jsonl

if TYPE_CHECKING:
    from clf.inference import Backend, ModelPredictor, Prediction
    from clf.registry import ModelRegistry

LATENCY_RUNS = 30
"""Single-paper predictions timed per version for its latency figures."""


class EvaluationError(ValueError):
    """Samples that cannot be scored: none, or one without a text or a label the model knows."""


@dataclass(frozen=True)
class VersionScore:
    """How one version did on the samples.

    Attributes:
        version: the version.
        accuracy: share of samples whose top class is the (primary) label.
        f1_macro: macro-averaged F1 of the top class over the labels present.
        latency_p50_ms: median time to classify one paper alone (tokenize + forward), in milliseconds.
        latency_p95_ms: 95th percentile of the same.
        num_samples: samples scored.
        any_listed_accuracy: share whose top class is the label or among the paper's listed categories (the one
            definition, `clf.evaluation.metrics.any_listed_accuracy`).
        multi_label: whether the model is multi-label.
    """

    version: str
    accuracy: float
    f1_macro: float
    latency_p50_ms: float
    latency_p95_ms: float
    num_samples: int
    any_listed_accuracy: float = 0.0
    multi_label: bool = False


@dataclass(frozen=True)
class Evaluation:
    """A version's score and what it answered for each sample.

    Attributes:
        score: the summary.
        records: one prediction per sample, in order, as the service would return it.
    """

    score: VersionScore
    records: list[Prediction] = field(default_factory=list)


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
    """Reads a split file (``{"metadata", "samples"}``), a JSON Lines file, or checks a list of samples.

    Args:
        test_data: a split file's or JSON Lines file's path, or the samples themselves (dicts with ``text`` — or
            ``title`` and ``abstract`` — and ``label``).

    Returns:
        The samples.

    Raises:
        EvaluationError: when there are no samples or one lacks a text or a label.
    """
    if isinstance(test_data, str | Path):
        path = Path(test_data)
        if path.suffix == ".jsonl" or path.name.endswith(".jsonl.gz"):
            samples: Any = [record for _, record in read_jsonl(path)]
        else:
            data = read_json(path)
            samples = data.get("samples") if isinstance(data, dict) else data
    else:
        samples = test_data
    where = f"--test-data {test_data}" if isinstance(test_data, str | Path) else "the samples"
    if not isinstance(samples, list) or not samples:
        raise EvaluationError(f"{where}: no samples")
    for index, sample in enumerate(samples):
        if not isinstance(sample, dict) or "label" not in sample or not ("text" in sample or "abstract" in sample):
            raise EvaluationError(f"{where}: sample {index} needs 'text' (or 'title' and 'abstract') and 'label'")
    return samples


def sample_texts(samples: list[dict[str, Any]]) -> list[str]:
    """The model input of each sample: its ``text``, or its title and abstract cleaned as training cleans them.

    Args:
        samples: labelled samples.

    Returns:
        One text per sample.
    """
    from clf.data.cleaning import model_input_text

    return [
        sample["text"] if "text" in sample else model_input_text(sample.get("title", ""), sample.get("abstract", ""))
        for sample in samples
    ]


def evaluate(
    predictor: ModelPredictor, samples: list[dict[str, Any]], *, batch_size: int = 8, latency_runs: int = LATENCY_RUNS
) -> Evaluation:
    """Scores a loaded version on `samples`.

    Args:
        predictor: the version.
        samples: samples with ``text`` (or title and abstract) and ``label`` (a category or a class index), and
            optionally ``categories`` (every listed category).
        batch_size: texts per forward pass, as the service runs them.
        latency_runs: single-paper predictions timed.

    Returns:
        The score and the record of every sample.

    Raises:
        EvaluationError: when a label is not one of the model's classes.
    """
    import numpy as np
    from sklearn.metrics import f1_score

    from clf.evaluation.metrics import any_listed_accuracy, listed_of

    label2id = {label: index for index, label in predictor.id2label.items()}
    truth = [label_index(sample["label"], label2id, predictor.version) for sample in samples]
    texts = sample_texts(samples)
    records = predictor.predict_texts(texts, batch_size=batch_size)
    predicted = [label2id[cast(str, record.label)] for record in records]  # the predictor's records carry a label
    latencies = []
    for text in texts[:latency_runs]:
        started = time.perf_counter()
        predictor.predict_texts([text])
        latencies.append((time.perf_counter() - started) * 1000)
    score = VersionScore(
        version=predictor.version,
        accuracy=float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])),
        f1_macro=float(f1_score(truth, predicted, average="macro", zero_division=0)),
        latency_p50_ms=float(np.percentile(latencies, 50)),
        latency_p95_ms=float(np.percentile(latencies, 95)),
        num_samples=len(samples),
        any_listed_accuracy=any_listed_accuracy(
            np.eye(len(label2id))[predicted],
            truth,
            listed_of(samples, [predictor.id2label[i] for i in range(len(label2id))]),
        ),
        multi_label=predictor.multi_label,
    )
    return Evaluation(score, records)


def score_version(
    registry: ModelRegistry, version: str, samples: list[dict[str, Any]], backend: Backend = "torch"
) -> VersionScore:
    """Loads a registered version and scores it on `samples` (see `evaluate`).

    Args:
        registry: the registry holding `version`.
        version: ``vX.Y.Z`` or ``production``.
        samples: labelled samples.
        backend: ``torch`` or ``onnx``.

    Returns:
        The version's scores.
    """
    from clf.inference import ModelPredictor  # torch loads only when a model does

    return evaluate(ModelPredictor.from_registry(registry, version, backend=backend), samples).score


def compare_versions(
    registry: ModelRegistry,
    v1: str,
    v2: str,
    test_data: str | Path | list[dict[str, Any]],
    backend: Backend = "torch",
) -> Comparison:
    """Scores `v1` (baseline) and `v2` (candidate) on the same samples.

    Args:
        registry: the registry holding both versions.
        v1: the baseline version.
        v2: the candidate version.
        test_data: a split file, a JSON Lines file of labelled papers, or the samples themselves.
        backend: ``torch`` or ``onnx``.

    Returns:
        Both versions' scores and the improvement of `v2` over `v1`.

    Raises:
        RegistryError: for an unknown version.
        EvaluationError: for unusable samples.
    """
    samples = load_samples(test_data)
    baseline = score_version(registry, v1, samples, backend)
    candidate = score_version(registry, v2, samples, backend)
    improvement = {
        "accuracy": candidate.accuracy - baseline.accuracy,
        "f1_macro": candidate.f1_macro - baseline.f1_macro,
        "latency_p50_ms": baseline.latency_p50_ms - candidate.latency_p50_ms,
        "latency_p95_ms": baseline.latency_p95_ms - candidate.latency_p95_ms,
    }
    return Comparison(baseline=baseline, candidate=candidate, improvement=improvement)


def label_index(label: Any, label2id: dict[str, int], version: str) -> int:
    """The class index of a sample's label, given as a category or as an index.

    Args:
        label: a category such as ``cs.CL``, or a class index.
        label2id: the model's category → index.
        version: the model's version, named in the error.

    Returns:
        The class index.

    Raises:
        EvaluationError: when the label is not one of the model's classes.
    """
    if isinstance(label, str):
        if label not in label2id:
            raise EvaluationError(f"{version}: label {label!r} is not one of its classes {sorted(label2id)}")
        return label2id[label]
    if not isinstance(label, int) or isinstance(label, bool) or label not in label2id.values():
        raise EvaluationError(f"{version}: label {label!r} is not one of its class indices")
    return label
