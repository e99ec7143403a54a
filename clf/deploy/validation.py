"""Deployment validation: is this registered version fit to take production traffic?

    report = validate_deployment("v1.3.0", registry="models/classification")
    report.passed, report.to_json()

Loads the version as the service would, classifies a class-balanced sample of labelled papers (by default from the
test split of the data it was trained on), and checks: the files are intact, every answer is one of its labels,
probabilities are finite and sum to 1, a balanced sample is not answered with one class, the model is under 500 MB,
and one paper's p95 latency is under the threshold. Each check carries its value and threshold.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clf.data.cleaning import model_input_text
from clf.inference.predictor import ModelPredictor
from clf.io import DataFileError, read_json, read_jsonl
from clf.registry import ModelRegistry, RegistryError
from clf.serving.errors import ModelLoadError


class ValidationError(ValueError):
    """The validation could not run (no sample papers); the message says what to pass."""


@dataclass(frozen=True)
class ValidationCheck:
    """One validation check.

    Attributes:
        name: what was checked.
        ok: whether it passed.
        value: what was measured (None when nothing could be).
        threshold: the limit it was held to, if any.
        detail: the finding in words.
    """

    name: str
    ok: bool
    value: float | str | None = None
    threshold: float | None = None
    detail: str = ""


@dataclass(frozen=True)
class ValidationReport:
    """Every check of one version.

    Attributes:
        version: the version validated.
        checks: the checks, in the order they ran.
        num_samples: sample papers classified.
    """

    version: str
    checks: list[ValidationCheck] = field(default_factory=list)
    num_samples: int = 0

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return bool(self.checks) and all(check.ok for check in self.checks)

    @property
    def failures(self) -> list[ValidationCheck]:
        """The checks that failed."""
        return [check for check in self.checks if not check.ok]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict with ``passed``.

        Returns:
            The report's fields plus ``version`` and ``passed``.
        """
        return {"version": self.version, "passed": self.passed, **asdict(self)}


def validate_deployment(
    version: str,
    registry: str | Path | ModelRegistry = "models/classification",
    *,
    samples: str | Path | list[dict[str, Any]] | None = None,
    per_class: int = 10,
    max_size_mb: float = 500.0,
    max_p95_latency_ms: float = 200.0,
    max_top_class_share: float = 0.6,
    min_accuracy: float | None = None,
    latency_runs: int = 30,
    predictor: ModelPredictor | None = None,
) -> ValidationReport:
    """Validates `version` for deployment.

    Args:
        version: a registered version.
        registry: the registry folder (or a `ModelRegistry`).
        samples: labelled papers (``{"title", "abstract", "label"}`` or ``{"text", "label"}``): a split file, a JSON
            Lines file or a list; by default the test split of the version's training data.
        per_class: papers per label in the balanced sample.
        max_size_mb: the largest model folder allowed.
        max_p95_latency_ms: the slowest allowed 95th-percentile latency for one paper.
        max_top_class_share: the largest share of a balanced sample one class may take.
        min_accuracy: when set, the sample accuracy must reach it.
        latency_runs: single-paper predictions timed for the latency check.
        predictor: an already-loaded predictor of `version` (the service's), instead of loading it again.

    Returns:
        The report; `ValidationReport.passed` says whether to deploy.

    Raises:
        RegistryError: for an unknown version.
        ValidationError: when no sample papers are given and none can be found.
    """
    from clf.serving.health import check_files

    registry = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
    metadata = registry.get_metadata(version)
    checks: list[ValidationCheck] = []
    try:
        predictor = predictor or ModelPredictor.from_registry(registry, version)
    except (ModelLoadError, RegistryError, OSError) as err:
        return ValidationReport(version, [ValidationCheck("loads", False, detail=str(err))])
    checks.append(ValidationCheck("loads", True, detail=f"{version} from {predictor.model_dir}"))
    files = check_files(Path(predictor.model_dir))
    checks.append(ValidationCheck("files_intact", files.ok, detail=files.detail))

    chosen = balanced_sample(load_validation_samples(samples, metadata), predictor.labels, per_class)
    texts = [text for text, _ in chosen]
    probabilities = predictor.predict_probabilities(texts)
    checks.append(_probabilities_check(probabilities, predictor.multi_label))
    predicted = [predictor.id2label[int(i)] for i in probabilities.argmax(dim=1)]
    unknown = sorted(set(predicted) - set(predictor.labels))
    checks.append(
        ValidationCheck("labels_known", not unknown, detail=f"unknown labels {unknown}" if unknown else "all known")
    )
    checks.append(_diversity_check(predicted, {label for _, label in chosen}, max_top_class_share))
    accuracy = sum(p == label for p, (_, label) in zip(predicted, chosen, strict=True)) / len(chosen)
    checks.append(
        ValidationCheck(
            "sample_accuracy",
            min_accuracy is None or accuracy >= min_accuracy,
            round(accuracy, 4),
            min_accuracy,
            f"{accuracy:.1%} of {len(chosen)} balanced sample papers",
        )
    )
    size_mb = sum(p.stat().st_size for p in Path(predictor.model_dir).iterdir() if p.is_file()) / 1e6
    checks.append(
        ValidationCheck("model_size_mb", size_mb < max_size_mb, round(size_mb, 1), max_size_mb, f"{size_mb:.1f} MB")
    )
    checks.append(_latency_check(predictor, texts, latency_runs, max_p95_latency_ms))
    return ValidationReport(version, checks, len(chosen))


def load_validation_samples(
    samples: str | Path | list[dict[str, Any]] | None, metadata: dict[str, Any]
) -> list[dict[str, Any]]:
    """The labelled sample papers: given, or the test split recorded in the version's lineage.

    Args:
        samples: a split file, a JSON Lines file of papers, the records themselves, or None for the test split
            recorded in the version's lineage.
        metadata: the version's registry metadata (its lineage names the training data folder).

    Returns:
        The labelled papers.

    Raises:
        ValidationError: when none are given and the lineage names no readable test split.
        DataFileError: when a given JSON file is neither a split file nor a list of papers.
    """
    if samples is None:
        data_dir = (metadata.get("dataset") or {}).get("data_dir")
        candidate = Path(data_dir) / "splits" / "test.json" if data_dir else None
        if candidate is None or not candidate.is_file():
            raise ValidationError(
                f"{metadata.get('version')}: no sample papers: its training data's test split "
                f"({candidate or 'not recorded'}) is not here. Pass --sample-data SPLIT_OR_JSONL with labelled papers."
            )
        samples = candidate
    if isinstance(samples, (str, Path)):
        path = Path(samples)
        if path.suffix in (".jsonl", ".gz"):
            return [record for _, record in read_jsonl(path)]
        content = read_json(path)
        records = content.get("samples") if isinstance(content, dict) else content
        if not isinstance(records, list):
            raise DataFileError(f"{path}: expected a split file with 'samples' or a list of papers")
        return records
    return list(samples)


def balanced_sample(records: list[dict[str, Any]], labels: list[str], per_class: int) -> list[tuple[str, str]]:
    """Up to `per_class` (text, label) pairs of each label the model knows, in file order.

    Args:
        records: labelled papers (``label``, ``primary`` or ``primary_category``; ``text`` or ``title`` and
            ``abstract``).
        labels: the model's categories.
        per_class: most papers taken of each category.

    Returns:
        ``(text, label)`` pairs, grouped by label.

    Raises:
        ValidationError: when no record carries one of the model's labels.
    """
    taken: dict[str, list[str]] = {label: [] for label in labels}
    for record in records:
        label = record.get("label") or record.get("primary") or record.get("primary_category")
        if label not in taken or len(taken[label]) >= per_class:
            continue
        text = model_input_text(record.get("title", ""), record.get("abstract", ""), record.get("text"))
        if text:
            taken[label].append(text)
    chosen = [(text, label) for label, texts in taken.items() for text in texts]
    if not chosen:
        raise ValidationError(f"the sample papers carry none of the model's labels {labels}")
    return chosen


def _probabilities_check(probabilities: Any, multi_label: bool) -> ValidationCheck:
    finite = bool(probabilities.isfinite().all())
    in_range = finite and bool(((probabilities >= 0) & (probabilities <= 1)).all())
    worst = float((probabilities.sum(dim=1) - 1).abs().max()) if finite else math.inf
    ok = in_range and (multi_label or worst <= 1e-3)
    detail = "not finite" if not finite else f"largest |sum - 1| = {worst:.2e}" if not multi_label else "in [0, 1]"
    return ValidationCheck("probabilities_valid", ok, None if not finite else round(worst, 6), 1e-3, detail)


def _diversity_check(predicted: list[str], sample_labels: set[str], max_share: float) -> ValidationCheck:
    label, count = Counter(predicted).most_common(1)[0]
    share = count / len(predicted)
    if len(sample_labels) < 2:
        return ValidationCheck("class_diversity", True, round(share, 4), max_share, "sample holds one label only")
    return ValidationCheck(
        "class_diversity",
        share <= max_share,
        round(share, 4),
        max_share,
        f"{label} takes {share:.0%} of a sample balanced over {len(sample_labels)} labels",
    )


def _latency_check(predictor: ModelPredictor, texts: list[str], runs: int, threshold_ms: float) -> ValidationCheck:
    import numpy as np

    for text in texts[:3]:
        predictor.predict_texts([text])
    latencies = []
    for index in range(runs):
        start = time.perf_counter()
        predictor.predict_texts([texts[index % len(texts)]])
        latencies.append((time.perf_counter() - start) * 1000)
    p95 = float(np.percentile(latencies, 95))
    return ValidationCheck(
        "latency_p95_ms", p95 <= threshold_ms, round(p95, 2), threshold_ms, f"one paper, {runs} runs"
    )
