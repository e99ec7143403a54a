"""Tests for clf/inference/out_of_scope.py: the torch and ONNX backends give the same out-of-scope scores and flags,
and a model the artifact cannot score is refused by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from clf import DEFAULT_CATEGORIES
from clf.artifact import Calibration, Scoring, record_scoring
from clf.inference import ModelPredictor
from clf.inference.out_of_scope import OutOfScopeScorer
from clf.model.onnx_export import export_onnx
from clf.training.finishing import fit_companion
from clf.training.reference import build_reference
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS, build_export

PAPERS = load_shared_papers()
IN_SCOPE = [{"text": p["title"] + ". " + p["abstract"], "label": p["primary"]} for p in PAPERS
            if p["primary"] in LABELS.values()]  # fmt: skip
OTHERS = [{"text": p["title"] + ". " + p["abstract"], "label": p["primary"]} for p in PAPERS
          if p["primary"] not in DEFAULT_CATEGORIES][:120]  # fmt: skip


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny export with a companion, ONNX files and a reference sample with the TF-IDF + entropy score."""
    folder = build_export(tmp_path_factory.mktemp("oos") / "export", seed=7, accuracy=0.5)
    companion = fit_companion(IN_SCOPE[:150], ModelPredictor(folder, "plain").labels, max_features=5000)
    record_scoring(folder, Scoring(Calibration(1.5, "test"), 0.5, companion, mixture="log_linear"))
    export_onnx(folder, [s["text"] for s in IN_SCOPE[:40]])
    build_reference(folder, IN_SCOPE[150:250], IN_SCOPE[:150], OTHERS[:60])
    return folder


def test_both_backends_score_and_flag_alike(hybrid):
    texts = [s["text"] for s in IN_SCOPE[250:290] + OTHERS[60:100]]
    answers = {}
    for backend in ("torch", "onnx"):
        predictor = ModelPredictor(hybrid, "v", backend=backend, onnx_variant="fp32")
        assert predictor.out_of_scope is not None and predictor.out_of_scope.needs_features
        probabilities = predictor.predict_probabilities(texts).double().numpy()
        scores = predictor.out_of_scope.scores(texts, probabilities)
        answers[backend] = (scores, [r.out_of_scope for r in predictor.predict_texts(texts)], predictor)

    (torch_scores, torch_flags, predictor), (onnx_scores, onnx_flags, _) = answers["torch"], answers["onnx"]
    np.testing.assert_allclose(onnx_scores, torch_scores, atol=1e-3)
    threshold = predictor.out_of_scope.model.threshold
    clear = np.abs(torch_scores - threshold) > 1e-2  # a paper on the threshold may fall either side
    assert np.array(torch_flags)[clear].tolist() == np.array(onnx_flags)[clear].tolist()
    assert torch_flags == (torch_scores > threshold).tolist(), "the answer's flag is the score against the threshold"
    assert sum(torch_flags[40:]) > sum(torch_flags[:40]), "the other categories' papers are flagged more often"


def test_a_tfidf_model_needs_the_companion_it_was_fitted_on(hybrid):
    predictor = ModelPredictor(hybrid, "v")
    model = predictor.out_of_scope.model

    with pytest.raises(ValueError, match="reads the TF-IDF companion's features; the artifact has none"):
        OutOfScopeScorer(model, None)
    with pytest.raises(ValueError, match="3 TF-IDF weights for a companion of"):
        OutOfScopeScorer(dataclasses.replace(model, coef=model.coef[:3]), predictor.scorer.companion)
