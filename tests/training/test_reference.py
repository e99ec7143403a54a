"""Tests for clf/training/reference.py: the reference sample built on a real export and real papers is what the
predictor then answers with (probabilities and out-of-scope flags), papers of other categories score as out of
scope, and a fit with ``reference: build`` writes one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clf import DEFAULT_CATEGORIES
from clf.artifact import ModelArtifact, Scoring, record_scoring
from clf.data.cleaning import model_input_text
from clf.inference import ModelPredictor
from clf.training import fit
from clf.training.finishing import fit_companion
from clf.training.reference import ReferenceOnFitEnd, build_reference
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS


def sample(paper: dict) -> dict:
    return {"arxiv_id": paper["id"], "text": model_input_text(paper["title"], paper["abstract"]),
            "label": paper["primary"]}  # fmt: skip


@pytest.fixture(scope="module")
def papers() -> dict[str, list[dict]]:
    """Real papers: the trained export's classes split into train (its head's 60 per class) and 240 held out, and
    200 papers of categories outside the ten."""
    by_label: dict[str, list[dict]] = {}
    others = []
    for paper in load_shared_papers():
        if paper["primary"] in LABELS.values():
            by_label.setdefault(paper["primary"], []).append(sample(paper))
        elif paper["primary"] not in DEFAULT_CATEGORIES and len(others) < 200:
            others.append(sample(paper))
    return {
        "train": [s for group in by_label.values() for s in group[:60]],
        "val": [s for group in by_label.values() for s in group[60:140]],
        "others": others,
    }


@pytest.fixture
def export(trained_export: Path, papers, tmp_path: Path) -> Path:
    """A copy of the trained export with a TF-IDF companion mixed in, as `scoring: companion: true` gives."""
    folder = Path(shutil.copytree(trained_export, tmp_path / "export"))
    companion = fit_companion(papers["train"], ModelPredictor(folder, "v").labels, max_features=5000)
    record_scoring(folder, Scoring(encoder_weight=0.7, companion=companion, mixture="log_linear"))
    return folder


def test_the_reference_is_what_the_predictor_answers_and_flags(export, papers):
    others = papers["others"]
    reference = build_reference(export, papers["val"], papers["train"], others[:100], flag_rate=0.05)

    assert ModelArtifact.open(export).reference is not None, "recorded and sealed"
    model = reference.out_of_scope
    assert model is not None and model.components == ("tfidf", "entropy")
    assert model.evidence["train_papers"] == 180 and model.evidence["out_of_scope_papers"] == 100
    assert reference.out_of_scope_share == pytest.approx(0.05, abs=1 / 240)
    assert reference.accuracy > 0.7 and abs(reference.accuracy - reference.estimated_accuracy) < 0.2
    # The service's answers for the same papers: the same probabilities and the same flags.
    predictor = ModelPredictor(export, "v")
    texts = [s["text"] for s in papers["val"]]
    records = predictor.predict_texts(texts)
    np.testing.assert_allclose(predictor.predict_probabilities(texts).numpy(), reference.probabilities, atol=1e-6)
    assert [r.out_of_scope for r in records] == (reference.oos_scores > model.threshold).tolist()
    assert "out_of_scope" in records[0].to_json()
    # Papers of other categories it never saw: mostly flagged, and ranked above the in-scope ones.
    held_out = [s["text"] for s in others[100:]]
    flags = [r.out_of_scope for r in predictor.predict_texts(held_out)]
    assert np.mean(flags) > 0.4
    scores = predictor.out_of_scope.scores(held_out, predictor.predict_probabilities(held_out).double().numpy())
    truth = np.r_[np.zeros(len(texts)), np.ones(len(held_out))]
    assert roc_auc_score(truth, np.r_[reference.oos_scores, scores]) > 0.85


def test_without_papers_of_other_categories_the_score_is_the_entropy_alone(trained_export, papers, tmp_path):
    folder = Path(shutil.copytree(trained_export, tmp_path / "plain"))
    assert ModelPredictor(folder, "v").predict_texts(["A robot arm. " * 20])[0].out_of_scope is None
    assert "out_of_scope" not in ModelPredictor(folder, "v").predict_texts(["A robot arm. " * 20])[0].to_json()

    reference = build_reference(folder, papers["val"], papers["train"], papers["others"])

    assert reference.out_of_scope is not None and reference.out_of_scope.components == ("entropy",)
    assert reference.out_of_scope.coef is None, "no companion: no TF-IDF features to learn from"
    records = ModelPredictor(folder, "v").predict_texts([s["text"] for s in papers["val"]])
    assert sum(r.out_of_scope for r in records) == pytest.approx(0.05 * 240, abs=1)


def test_a_fit_with_reference_build_writes_one(tmp_path, tiny_config):
    tiny_config["reference"] = {"build": True, "papers": None}
    val = json.loads((Path(tiny_config["data"]["data_dir"]) / "splits" / "val.json").read_text())["samples"]

    result = fit(tiny_config, run_dir=tmp_path / "run")

    reference = ModelArtifact.open(result.export_dir).reference
    assert reference is not None and reference.papers == len(val)
    assert reference.fitted_on == f"the val split, {len(val)} papers (stratified)"
    assert sorted(reference.text_chars.tolist()) == sorted(len(s["text"]) for s in val)
    assert reference.out_of_scope is not None and reference.out_of_scope.components == ("entropy",)


def test_bad_options_name_the_flag():
    with pytest.raises(ValueError, match="--reference.papers must be >= 20"):
        ReferenceOnFitEnd(papers=5)
    with pytest.raises(ValueError, match="--reference.selection must be one of newest, stratified"):
        ReferenceOnFitEnd(selection="random")
    with pytest.raises(ValueError, match=r"--reference.flag_rate must be in \(0, 0.5\]"):
        ReferenceOnFitEnd(flag_rate=0.7)
