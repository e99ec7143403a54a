"""`clf evaluate` end to end: a real model on protocols built from samples of the shared files (``--max-papers``),
through the command line, with the baseline beside it, the papers a model trained on left out, and the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clf.cli import main
from clf.evaluation import build_protocol, sample_texts
from clf.inference import ModelPredictor
from clf.io import sha256_of_strings, write_samples_json
from tests.conftest import SHARED_DATA
from tests.helpers.exports import build_export, build_registry

PAPERS = SHARED_DATA / "arxiv" / "papers.jsonl.gz"
NEW_PAPERS = SHARED_DATA / "arxiv" / "new_papers.jsonl.gz"
CLASSES = ["cs.CV", "cs.DB", "cs.RO"]  # the test models' classes
MAX_PAPERS = "90"  # 30 per class: seconds, not a result
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluation_cache")


def run(capsys: pytest.CaptureFixture[str], *options: str, cache: Path) -> dict:
    """`clf evaluate OPTIONS` on samples of the shared files; returns the JSON it printed."""
    data = ["--snapshot", str(PAPERS), "--new-snapshot", str(NEW_PAPERS), "--cache-dir", str(cache)]
    main(["evaluate", *options, *data, "--max-papers", MAX_PAPERS, "--bootstrap-resamples", "200"])
    return json.loads(capsys.readouterr().out)


def protocol(name: str, cache: Path):
    """The protocol `clf evaluate` built, read back from the cache."""
    settings = {"categories": CLASSES, "snapshot": PAPERS, "new_snapshot": NEW_PAPERS, "cache_dir": cache}
    return build_protocol(name, max_papers=int(MAX_PAPERS), **settings)


def test_a_model_and_the_baseline_on_the_temporal_protocol(trained_export, cache, tmp_path, capsys):
    out = tmp_path / "out"

    printed = run(
        capsys, "--model-path", str(trained_export), "--protocol", "temporal", "--output-dir", str(out), cache=cache
    )

    assert json.loads((out / "evaluation.json").read_text()) == printed
    assert (out / "reliability.png").read_bytes()[:8] == PNG and (out / "per_class_f1.png").read_bytes()[:8] == PNG
    model, baseline = printed["candidates"]
    assert (model["name"], model["kind"], baseline["kind"]) == ("base", "model", "baseline")
    temporal = protocol("temporal", cache)
    assert printed["test_scored"]["count"] == len(temporal.test) == 90
    assert printed["protocol"]["parts"]["test"]["published"][0] >= "2026-06-01"
    # What the service would answer for these papers, scored by hand.
    predictor = ModelPredictor(trained_export, "base")
    probabilities = predictor.predict_probabilities(sample_texts(temporal.test)).numpy()
    truth = np.array([predictor.labels.index(s["label"]) for s in temporal.test])
    report = model["report"]
    assert report["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == truth))
    assert report["accuracy"] > 0.6  # the fitted head classifies these three classes well
    assert report["intervals"]["accuracy"]["low"] <= report["accuracy"] <= report["intervals"]["accuracy"]["high"]
    assert report["top_k"] == 3 and report["top_k_accuracy"] == 1.0  # three classes: always in the top three
    assert report["any_listed_accuracy"] >= report["accuracy"] and 0 <= report["ece"] <= 1
    assert sum(b["count"] for b in report["reliability"]) == len(temporal.test)
    assert set(report["per_class"]) == set(CLASSES)
    # Selective answers: the coverage-accuracy curve, the coverage at 90 % and 95 %, and the artifact's threshold.
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    at = {point["threshold"]: point for point in report["coverage_curve"]}
    assert len(at) == 20 and at[0.0]["coverage"] == 1.0 and at[0.0]["accuracy"] == pytest.approx(report["accuracy"])
    assert at[0.6]["answered"] == (confidence >= 0.6).sum()
    assert at[0.6]["accuracy"] == pytest.approx(correct[confidence >= 0.6].mean())
    assert [target["target_accuracy"] for target in report["coverage_targets"]] == [0.9, 0.95]
    for target in report["coverage_targets"]:
        if target["outcome"] == "reached":
            assert correct[confidence >= target["threshold"]].mean() >= target["target_accuracy"]
    assert report["abstention"]["below"] == 0.5  # the export's own abstain_below
    assert (out / "coverage_accuracy.png").read_bytes()[:8] == PNG
    written = (out / "evaluation.md").read_text()
    assert printed["files"]["markdown"] == str(out / "evaluation.md")
    assert "| base |" in written and "| tfidf_logreg |" in written and "coverage at 90% accuracy" in written
    assert f"| 0.60 | {at[0.6]['coverage']:.3f} | {at[0.6]['accuracy']:.3f} |" in written
    # The baseline learnt from the protocol's train papers and chose C on its val papers.
    assert baseline["details"]["train"] == len(temporal.train) and baseline["details"]["val"] == len(temporal.val)
    assert baseline["details"]["chosen_C"] in baseline["details"]["c_grid"]
    assert printed["versus_baseline"]["base"]["accuracy"] == pytest.approx(
        report["accuracy"] - baseline["report"]["accuracy"], abs=1e-6
    )
    # The export records no training data: nothing could be left out, and the report says so.
    assert printed["excluded_as_seen"]["base"]["known"] is False
    assert printed["settings"]["sampled"] is True


def test_test_papers_the_model_trained_on_are_left_out(trained_export, cache, tmp_path, capsys):
    standard = protocol("standard", cache)
    seen = standard.test[:4]  # as if the model had been trained on another split of the same papers
    trained_on = tmp_path / "trained_on"
    write_samples_json(trained_on / "splits" / "train.json", {"split": "train"}, seen[:3] + standard.train[:20])
    write_samples_json(trained_on / "splits" / "val.json", {"split": "val"}, seen[3:])

    printed = run(
        capsys,
        "--model-path",
        str(trained_export),
        "--trained-on",
        str(trained_on),
        "--baseline",
        "false",
        "--output-dir",
        str(tmp_path / "out"),
        cache=cache,
    )

    excluded = printed["excluded_as_seen"]["base"]
    assert (excluded["known"], excluded["count"], excluded["in_test"]) == (True, 24, 4)
    kept = [s["arxiv_id"] for s in standard.test[4:]]
    assert printed["test_scored"]["count"] == len(kept)
    assert printed["test_scored"]["ids_hash"] == sha256_of_strings(sorted(kept))
    assert [c["kind"] for c in printed["candidates"]] == ["model"]


def test_a_models_lineage_names_its_training_papers(cache, tmp_path, capsys):
    # Exported as if trained on the date-ordered protocol's folder: none of its test papers are among them, but the
    # standard protocol tests on papers it trained on, and those are left out.
    date_ordered = protocol("date_ordered", cache)
    export = build_export(tmp_path / "export", seed=3, accuracy=0.5, data_dir=date_ordered.data_dir)
    registry = build_registry(tmp_path / "registry", {"v1.0.0": export})
    common = ["--version", "v1.0.0", "--registry", str(registry.base_dir), "--baseline", "false"]

    on_date = run(capsys, *common, "--protocol", "date_ordered", "--output-dir", str(tmp_path / "a"), cache=cache)
    on_standard = run(capsys, *common, "--output-dir", str(tmp_path / "b"), cache=cache)

    assert on_date["excluded_as_seen"]["v1.0.0"]["verified"] is True
    assert on_date["excluded_as_seen"]["v1.0.0"]["in_test"] == 0
    assert on_date["test_scored"]["count"] == len(date_ordered.test)
    trained = {s["arxiv_id"] for s in date_ordered.train + date_ordered.val}
    overlap = sum(s["arxiv_id"] in trained for s in protocol("standard", cache).test)
    assert overlap > 0 and on_standard["excluded_as_seen"]["v1.0.0"]["in_test"] == overlap
    assert on_standard["test_scored"]["count"] == len(protocol("standard", cache).test) - overlap


def test_a_split_file_protocol(trained_export, cache, tmp_path, capsys):
    split = protocol("standard", cache).data_dir / "splits" / "test.json"

    printed = run(
        capsys,
        "--model-path",
        str(trained_export),
        "--protocol",
        "split",
        "--split-file",
        str(split),
        "--output-dir",
        str(tmp_path),
        cache=cache,
    )

    assert printed["protocol"]["name"] == "split" and "train.json" in printed["protocol"]["description"]
    assert [c["kind"] for c in printed["candidates"]] == ["model", "baseline"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ([], "exactly one of --version"),
        (["--version", "v1.0.0", "--model-path", "x"], "exactly one of --version"),
        (["--model-path", "x", "--protocol", "split"], "--protocol split needs --split_file"),
        (["--model-path", "x", "--split-file", "t.json"], "--split_file goes with --protocol split"),
    ],
)
def test_a_wrong_combination_of_options_is_one_clear_line(options, message, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["evaluate", *options])
    assert exited.value.code == 1
    assert message in capsys.readouterr().err
