"""Tests for clf/evaluation/compare.py: scores through the one inference path, so comparison, deployment validation
and retraining's promotion decision see exactly what the running service answers — torch and ONNX, single- and
multi-label."""

from __future__ import annotations

import numpy as np
import pytest

from clf.deploy.validation import balanced_sample, validate_deployment
from clf.evaluation import EvaluationError, compare_versions, evaluate, load_samples
from clf.inference import ModelPredictor, Prediction
from clf.model.onnx_export import export_onnx
from clf.serving import ClassificationService
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS, build_export, build_registry

PAPERS = load_shared_papers(limit=24, categories=set(LABELS.values()))
SAMPLES = [
    {"title": p["title"], "abstract": p["abstract"], "label": p["primary"], "categories": p["categories"]}
    for p in PAPERS
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """v1.0.0 single-label and v2.0.0 multi-label tiny models, each with its ONNX files."""
    root = tmp_path_factory.mktemp("evaluation")
    exports = {
        "v1.0.0": build_export(root / "single" / "export", seed=5, accuracy=0.5),
        "v2.0.0": build_export(root / "multi" / "export", seed=6, accuracy=0.5, multi_label=True),
    }
    registry = build_registry(root / "registry", exports, production="v1.0.0")
    texts = [p["title"] + ". " + p["abstract"] for p in PAPERS]
    for version in exports:
        export_onnx(registry.version_dir(version), texts)
    return registry


def answers(records: list[Prediction]) -> list[tuple]:
    """What a client reads of each prediction: the label, its probability, the ranking and the listed labels."""
    return [(r.label, r.probability, r.top3, r.labels) for r in records]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("version", ["v1.0.0", "v2.0.0"])
def test_comparison_validation_and_retraining_see_what_the_service_answers(registry, version, backend):
    service = ClassificationService(registry, version=version, backend=backend, warmup=False)
    try:
        papers = [{"title": s["title"], "abstract": s["abstract"]} for s in SAMPLES]
        served = service.predict(papers)  # one request: the service runs it as one step of sorted passes
    finally:
        service.close()
    predictor = ModelPredictor.from_registry(registry, version, backend=backend)
    evaluation = evaluate(predictor, SAMPLES)
    assert answers(evaluation.records) == answers(served)
    assert evaluation.score.multi_label is (version == "v2.0.0")
    accuracy = sum(r.label == s["label"] for r, s in zip(served, SAMPLES, strict=True)) / len(SAMPLES)
    assert evaluation.score.accuracy == pytest.approx(accuracy)
    # Retraining decides promotion on compare_versions: the same scores.
    comparison = compare_versions(registry, version, version, SAMPLES, backend=backend)
    assert comparison.candidate.accuracy == evaluation.score.accuracy and comparison.improvement["accuracy"] == 0
    # Deployment validation's sample accuracy is the service's on the same balanced papers.
    chosen = balanced_sample(SAMPLES, predictor.labels, per_class=10)
    service = ClassificationService(registry, version=version, backend=backend, warmup=False)
    try:
        on_chosen = service.predict([{"text": text} for text, _ in chosen])
    finally:
        service.close()
    expected = sum(r.label == label for r, (_, label) in zip(on_chosen, chosen, strict=True)) / len(chosen)
    report = validate_deployment(
        version, registry, samples=SAMPLES, per_class=10, max_p95_latency_ms=60_000, predictor=predictor
    )
    checks = {check.name: check for check in report.checks}
    assert checks["sample_accuracy"].value == round(expected, 4)


def test_a_multi_label_model_is_also_scored_on_the_listed_categories(registry):
    cross_listed = [{**s, "categories": [s["label"], *LABELS.values()]} for s in SAMPLES]
    score = evaluate(ModelPredictor.from_registry(registry, "v2.0.0"), cross_listed).score
    assert score.any_listed_accuracy == 1.0 and score.accuracy <= 1.0 and score.num_samples == 24


def test_samples_without_a_known_label_or_a_text_are_refused(registry, tmp_path):
    predictor = ModelPredictor.from_registry(registry, "v1.0.0")
    with pytest.raises(EvaluationError, match="label 'cs.XX' is not one of its classes"):
        evaluate(predictor, [{"text": "x", "label": "cs.XX"}])
    with pytest.raises(EvaluationError, match="sample 0 needs 'text'"):
        load_samples([{"label": "cs.CV"}])
    with pytest.raises(EvaluationError, match="no samples"):
        load_samples([])


def test_registry_compare_counts_the_primary_category_as_listed_like_clf_evaluate(registry):
    # arXiv lists a paper's primary category among its categories, but a record may leave it out: an answer of the
    # primary category is right whatever the list says, in clf registry compare as in clf evaluate.
    from clf.evaluation.metrics import any_listed_accuracy, listed_of

    predictor = ModelPredictor.from_registry(registry, "v1.0.0")
    others = [{**s, "categories": [c for c in LABELS.values() if c != s["label"]][:1]} for s in SAMPLES]
    result = evaluate(predictor, others)
    labels = [predictor.id2label[i] for i in range(len(predictor.id2label))]
    answers = np.eye(len(labels))[[labels.index(r.label) for r in result.records]]
    truth = [labels.index(s["label"]) for s in others]
    expected = any_listed_accuracy(answers, truth, listed_of(others, labels))
    assert result.score.any_listed_accuracy == pytest.approx(expected)
    assert result.score.any_listed_accuracy >= result.score.accuracy


def test_clf_registry_compare_prints_the_comparison_of_the_api(registry, tmp_path, capsys):
    import json

    from clf.cli import main
    from clf.io import write_samples_json

    split = tmp_path / "test.json"
    write_samples_json(split, {"count": len(SAMPLES)}, SAMPLES)
    main(["registry", "compare", "v1.0.0", "v2.0.0", "--test-data", str(split), "--registry", str(registry.base_dir)])
    printed = json.loads(capsys.readouterr().out)
    expected = compare_versions(registry, "v1.0.0", "v2.0.0", str(split)).to_json()
    assert (printed["baseline"]["version"], printed["candidate"]["version"]) == ("v1.0.0", "v2.0.0")
    assert printed["improvement"]["accuracy"] == pytest.approx(expected["improvement"]["accuracy"])
