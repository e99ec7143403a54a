"""Tests for clf/commands/reference.py: `clf reference build` gives an existing export its reference sample from a
data folder's splits and kept-aside papers, and a registered version's metadata records it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clf import DEFAULT_CATEGORIES
from clf.artifact import ModelArtifact, Scoring, record_scoring
from clf.cli import main
from clf.data.cleaning import model_input_text
from clf.data.preprocess import OUT_OF_SCOPE_DATASET
from clf.io import write_samples_json
from clf.registry import ModelRegistry
from clf.training.finishing import fit_companion
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder: train and val splits of the trained export's classes, and 80 papers of other categories."""
    by_label: dict[str, list[dict]] = {}
    others = []
    for paper in load_shared_papers():
        sample = {"arxiv_id": paper["id"], "text": model_input_text(paper["title"], paper["abstract"]),
                  "label": paper["primary"], "published": paper["published"]}  # fmt: skip
        if paper["primary"] in LABELS.values():
            by_label.setdefault(paper["primary"], []).append(sample)
        elif paper["primary"] not in DEFAULT_CATEGORIES and len(others) < 80:
            others.append(sample)
    folder = tmp_path_factory.mktemp("reference_data")
    for split, rows in (("train", slice(0, 60)), ("val", slice(60, 100))):
        samples = [s for group in by_label.values() for s in group[rows]]
        write_samples_json(folder / "splits" / f"{split}.json", {"split": split}, samples)
    write_samples_json(folder / OUT_OF_SCOPE_DATASET, {}, others)
    return folder


def test_an_export_gets_a_reference_from_its_data_folder(trained_export, data_dir, tmp_path, capsys):
    export = Path(shutil.copytree(trained_export, tmp_path / "export"))

    main(["reference", "build", "--model-path", str(export), "--data-dir", str(data_dir), "--papers", "60"])

    printed = json.loads(capsys.readouterr().out)
    reference = ModelArtifact.open(export).reference
    assert reference is not None and printed["papers"] == reference.papers == 60
    assert printed["components"] == ["entropy"], "the export has no TF-IDF companion"
    assert printed["fitted_on"] == f"the val split of {data_dir}, 60 papers (stratified)"


def test_a_registered_version_records_the_summary_in_its_metadata(trained_export, data_dir, tmp_path, capsys):
    export = Path(shutil.copytree(trained_export, tmp_path / "export"))
    train = json.loads((data_dir / "splits" / "train.json").read_text())["samples"]
    record_scoring(export, Scoring(encoder_weight=0.7, companion=fit_companion(train, sorted(LABELS.values()))))
    registry = ModelRegistry(tmp_path / "registry")
    registry.create_version(export, "v1.0.0")
    # Papers of other categories from elsewhere than the data folder: 30 of its 80.
    others = tmp_path / "others.json"
    write_samples_json(others, {}, json.loads((data_dir / OUT_OF_SCOPE_DATASET).read_text())["samples"][:30])

    main(["reference", "build", "--version", "v1.0.0", "--registry", str(registry.base_dir), "--data-dir",
          str(data_dir), "--out-of-scope", str(others)])  # fmt: skip

    metadata = registry.get_metadata("v1.0.0")
    assert metadata["reference"]["papers"] == 120 and json.loads(capsys.readouterr().out)["version"] == "v1.0.0"
    assert metadata["reference"]["components"] == ["tfidf", "entropy"]
    assert metadata["reference"]["evidence"]["out_of_scope_papers"] == 30
    assert ModelArtifact.open(registry.resolve("v1.0.0")[1]).reference is not None


def test_neither_or_both_of_the_model_options_is_one_clear_line(capsys):
    with pytest.raises(SystemExit):
        main(["reference", "build", "--data-dir", "x"])
    assert "exactly one of --model_path EXPORT_DIR and --version" in capsys.readouterr().err
