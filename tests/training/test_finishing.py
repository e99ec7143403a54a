"""Tests for clf/training/finishing.py's unsure threshold chosen for a target accuracy (``--scoring.target_accuracy``):
on a real export and real validation papers, the service's own answers are then that accurate where it is sure, the
artifact records the target and its evidence, and a target out of reach or too few papers say so.

The companion, the temperature and their end-of-fit run are tested in tests/inference/test_scoring.py."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from clf.artifact import ModelArtifact
from clf.data.cleaning import model_input_text
from clf.data.datamodule import ArxivDataModule
from clf.inference import ModelPredictor
from clf.inference.selective import top1_outcomes
from clf.io import write_samples_json
from clf.lightning_cli import run_lightning
from clf.training.finishing import ScoreOnFitEnd
from tests.conftest import REPO, load_shared_papers
from tests.helpers.exports import LABELS, PRETRAINED

VAL_PER_CLASS = 50
VAL_PAPERS = 3 * VAL_PER_CLASS


@pytest.fixture(scope="module")
def val_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose val split holds 150 real cv/db/ro papers the trained export's head never saw."""
    by_label: dict[str, list[dict]] = {}
    for paper in load_shared_papers(categories=set(LABELS.values())):
        by_label.setdefault(paper["primary"], []).append(paper)
    # build_trained_export fits its head on the first 60 papers of each class: these come after them.
    chosen = [paper for papers in by_label.values() for paper in papers[60 : 60 + VAL_PER_CLASS]]
    samples = [
        {
            "arxiv_id": paper["id"],
            "text": model_input_text(paper["title"], paper["abstract"]),
            "label": paper["primary"],
            "categories": paper.get("categories") or [paper["primary"]],
            "published": paper.get("published"),
        }
        for paper in chosen
    ]
    folder = tmp_path_factory.mktemp("finishing_data")
    write_samples_json(folder / "splits" / "val.json", {"split": "val"}, samples)
    return folder


def datamodule(folder: Path) -> ArxivDataModule:
    return ArxivDataModule(folder, tokenizer=PRETRAINED, max_length=64, categories=sorted(LABELS.values()))


@pytest.fixture
def export(trained_export: Path, tmp_path: Path) -> Path:
    """A copy of the trained export (~85 % accurate on these classes) that the test may rescore."""
    return Path(shutil.copytree(trained_export, tmp_path / "export"))


def served(export: Path, data: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The service's answers for the validation papers: top-1 confidence, whether right, and the prediction records."""
    predictor = ModelPredictor(export, "v")
    samples = datamodule(data).split_samples("val")
    texts = [s["text"] for s in samples]
    truth = np.array([predictor.labels.index(s["label"]) for s in samples])
    # The probabilities behind the records, kept as predict_texts computes them: one forward pass over the papers
    # instead of two (the records round their probabilities to 6 places; the threshold compares unrounded ones).
    computed = []
    probabilities = predictor.predict_probabilities
    predictor.predict_probabilities = lambda *args: computed.append(probabilities(*args)) or computed[-1]
    records = predictor.predict_texts(texts)
    (answers,) = computed
    confidence, correct = top1_outcomes(answers.numpy(), truth)
    return confidence, correct, records


def test_the_unsure_threshold_is_the_lowest_whose_answers_reach_the_target(export, val_data):
    callback = ScoreOnFitEnd(calibrate=True, val_papers=None, target_accuracy=0.95)

    scoring = callback.fit_artifact(export, datamodule(val_data))

    artifact = ModelArtifact.open(export)  # still intact: the scoring is in the manifest
    assert artifact.scoring == scoring and scoring.abstain_target_accuracy == 0.95
    choice = callback.abstain
    assert choice is not None and choice.reached and choice.papers == VAL_PAPERS
    assert scoring.abstain_below == choice.threshold and scoring.fitted["abstain"] == choice.to_json()
    assert choice.answered >= 50 and choice.coverage < 1, "a real threshold, resting on enough papers"
    # What the service now answers for these papers: where it is sure, at least 95 % right.
    confidence, correct, records = served(export, val_data)
    sure = ~np.array([record.unsure for record in records])
    assert sure.sum() == choice.answered and correct[sure].mean() == pytest.approx(choice.accuracy)
    assert choice.accuracy >= 0.95
    # And it is the lowest such threshold: answering from any lower confidence falls short of the target.
    for lower in np.unique(confidence[confidence < choice.threshold]):
        assert correct[confidence >= lower].mean() < 0.95
    card = (export / "README.md").read_text()
    assert f"below {scoring.abstain_below:.4g} is flagged as unsure" in card
    assert (
        f"reached 95% accuracy on {VAL_PAPERS} validation papers" in card and f"{choice.coverage:.1%} of them" in card
    )


def test_a_target_out_of_reach_keeps_the_most_accurate_threshold_and_warns(export, val_data, caplog):
    # Every paper must be answered (all 150), and the model is not 100 % right on all of them.
    callback = ScoreOnFitEnd(val_papers=None, target_accuracy=1.0, target_min_answered=VAL_PAPERS)

    with caplog.at_level(logging.WARNING, logger="clf.training.finishing"):
        scoring = callback.fit_artifact(export, datamodule(val_data))

    assert scoring.fitted["abstain"]["outcome"] == "not_reached" and scoring.abstain_target_accuracy == 1.0
    confidence, correct, _ = served(export, val_data)
    assert scoring.abstain_below == pytest.approx(confidence.min()), "answering all of them: the least confident one"
    assert scoring.fitted["abstain"]["accuracy"] == pytest.approx(correct.mean())
    assert "--scoring.target_accuracy 1 is not reached" in caplog.text
    assert "100% accuracy was asked for but not reached" in (export / "README.md").read_text()


def test_too_few_validation_papers_keep_the_fixed_threshold(export, val_data, caplog):
    callback = ScoreOnFitEnd(calibrate=True, val_papers=20, abstain_below=0.6, target_accuracy=0.9)

    with caplog.at_level(logging.WARNING, logger="clf.training.finishing"):
        scoring = callback.fit_artifact(export, datamodule(val_data))

    assert (scoring.abstain_below, scoring.abstain_target_accuracy) == (0.6, None)
    assert scoring.fitted["abstain"]["outcome"] == "too_few_papers" and "--scoring.val_papers" in caplog.text
    assert "below 0.6 is flagged as unsure\n" in (export / "README.md").read_text()


def test_without_a_target_the_threshold_is_the_fixed_one(export, val_data):
    scoring = ScoreOnFitEnd(calibrate=True, val_papers=50).fit_artifact(export, datamodule(val_data))

    assert (scoring.abstain_below, scoring.abstain_target_accuracy) == (0.5, None) and "abstain" not in scoring.fitted
    document = (export / "scoring.json").read_text()
    assert '"abstain_target_accuracy": null' in document


def test_the_option_is_a_flag_of_clf_fit_and_out_of_range_values_name_it(tmp_path):
    base = ["--config", str(REPO / "configs" / "tiny.yaml"), "--trainer.default_root_dir", str(tmp_path)]

    cli = run_lightning([*base, "--scoring.target_accuracy", "0.9"], run=False)

    (callback,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, ScoreOnFitEnd)]
    assert (callback.target_accuracy, callback.target_min_answered) == (0.9, 50)
    for value in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"--scoring.target_accuracy must be in \(0, 1\]"):
            ScoreOnFitEnd(target_accuracy=value)
    with pytest.raises(ValueError, match="--scoring.target_min_answered must be >= 1"):
        ScoreOnFitEnd(target_accuracy=0.9, target_min_answered=0)
