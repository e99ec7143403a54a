"""Tests for clf/training/api.py: real fits, tests and predictions of the tiny config on CPU, from Python."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import LearningRateMonitor
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForSequenceClassification

from clf import training
from clf.artifact import ModelArtifact
from clf.training import RunResult, Stage, TrainingConfigError
from tests.helpers.faults import InjectOutOfMemory
from tests.training.conftest import TINY


class CountTrainBatches(L.Callback):
    """Counts the training batches that finished (a duplicated callback would count each twice)."""

    def __init__(self) -> None:
        self.batches = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1


def logged(log_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_fit_puts_every_output_in_the_run_folder_and_says_where(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    result = training.fit(tiny_config, {"model.learning_rate": 2e-3}, run_dir=run_dir)

    assert isinstance(result, RunResult) and result.stage is Stage.FIT
    assert not (tmp_path / "elsewhere").exists(), "the folders the config names were replaced by run_dir"
    assert result.run_dir == run_dir
    assert result.best_checkpoint == run_dir / "checkpoints" / "best.ckpt"
    assert result.last_checkpoint == run_dir / "checkpoints" / "last.ckpt"
    assert result.log_dir == run_dir / "logs" / "tiny" / "version_0"
    assert (result.epochs, result.global_step, result.batch_size) == (2, 12, 8)

    # The best score is the best epoch's val/acc, as TensorBoard logged it.
    history = logged(result.log_dir)
    assert result.monitor == "val/acc" and result.best_score == pytest.approx(max(history["val/acc"]))
    assert result.val_metrics["val/acc"] == pytest.approx(history["val/acc"][-1])
    assert set(result.train_metrics) >= {"train/loss", "train/acc"} and not result.test_metrics

    # The export holds the best weights, and the resolved config records the override.
    assert result.export_dir == run_dir / "export"
    metrics = json.loads((result.export_dir / "metrics.json").read_text())
    assert metrics["best_score"] == pytest.approx(result.best_score)
    exported = AutoModelForSequenceClassification.from_pretrained(result.export_dir).state_dict()
    for name, tensor in result.model.backbone.state_dict().items():
        torch.testing.assert_close(exported[name], tensor)
    resolved = yaml.safe_load(result.config_path.read_text())
    assert result.config_path == result.log_dir / "config.yaml"
    assert resolved["model"]["learning_rate"] == 2e-3 and resolved["trainer"]["default_root_dir"] == str(run_dir)


def test_a_fit_without_a_logger_or_a_root_folder_trains_into_the_run_folder(tmp_path, tiny_config):
    # The always-on LR monitor needs a logger; with `trainer.logger: false` it is left out instead of failing the run.
    # A config naming no default_root_dir parses (the run folder given here is where everything goes).
    config = {**tiny_config, "trainer": {k: v for k, v in tiny_config["trainer"].items() if k != "default_root_dir"}}
    result = training.fit(config, {"trainer.logger": False}, run_dir=tmp_path / "run")
    assert result.export_dir == tmp_path / "run" / "export"
    assert result.export_dir is not None and (result.export_dir / "model.safetensors").is_file()
    assert not any(isinstance(c, LearningRateMonitor) for c in result.trainer.callbacks)


def test_a_yaml_file_and_the_same_dict_train_the_same_model(tmp_path, tiny_config):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config))
    from_file = training.fit(path, run_dir=tmp_path / "a")
    from_dict = training.fit(tiny_config, run_dir=tmp_path / "b")
    assert from_file.metrics == from_dict.metrics
    assert from_file.best_score == from_dict.best_score is not None


def test_resuming_from_last_continues_and_a_resumed_runs_config_starts_afresh(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    first = training.fit(tiny_config, {"trainer.max_epochs": 1}, run_dir=run_dir)
    resumed = training.fit(first.config_path, {"trainer.max_epochs": 2}, run_dir=run_dir, ckpt_path="last")
    assert (resumed.epochs, resumed.global_step) == (2, 12), "only the second epoch's 6 steps were added"
    assert yaml.safe_load(resumed.config_path.read_text())["ckpt_path"] == "last"

    # Its config records `ckpt_path: last`; trained again elsewhere without a checkpoint, it starts from scratch.
    again = training.fit(resumed.config_path, run_dir=tmp_path / "fresh")
    assert (again.epochs, again.global_step) == (2, 12)


def test_extra_callbacks_run_once_each_and_survive_the_out_of_memory_back_off(tmp_path, tiny_config):
    counter = CountTrainBatches()
    # A callback in the config as well: the list the retry rebuilds the trainer from.
    configured = {"trainer.callbacks": [{"class_path": "tests.training.test_api.CountTrainBatches"}]}
    result = training.fit(
        tiny_config, configured, run_dir=tmp_path / "run", callbacks=[InjectOutOfMemory(max_rows=4), counter]
    )
    assert (result.batch_size, result.accumulate_grad_batches) == (4, 2), "batch halved, accumulation doubled"
    assert result.global_step == 6, "2 epochs of 6 batches at 2 batches per optimizer step"
    counters = [c for c in result.trainer.callbacks if isinstance(c, CountTrainBatches)]
    assert counters[0] is not counter and counters[1] is counter and len(counters) == 2, "each callback once"
    assert counter.batches == counters[0].batches == 12, "the retried fit ran each callback once per batch"


def test_test_and_predict_use_the_best_checkpoint_of_the_run(tmp_path, tiny_config):
    run_dir = tmp_path / "run"
    training.fit(tiny_config, run_dir=run_dir)

    tested = training.test(tiny_config, run_dir=run_dir)
    assert tested.stage is Stage.TEST and tested.best_checkpoint == run_dir / "checkpoints" / "best.ckpt"
    report = json.loads(tested.report_path.read_text())
    # Into the fit's run (TensorBoard shows the test beside its curves); the fit's config.yaml stays.
    assert tested.report_path.parent == tested.log_dir == run_dir / "logs" / "tiny" / "version_0"
    assert (tested.log_dir / "config.yaml").is_file() and (tested.log_dir / "test_config.yaml").is_file()
    assert set(tested.test_metrics) >= {"test/acc", "test/f1_macro", "test/loss"}
    assert report["metrics"]["test/acc"] == pytest.approx(tested.test_metrics["test/acc"], abs=1e-4)
    # The best checkpoint is the exported one: its test metrics join the export's metrics and model card.
    artifact = ModelArtifact.open(run_dir / "export")
    assert artifact.metrics["test"]["test/acc"] == pytest.approx(tested.test_metrics["test/acc"])
    assert "test/acc" in (run_dir / "export" / "README.md").read_text()

    validated = training.validate(tiny_config, run_dir=run_dir)
    assert "val/acc" in validated.val_metrics and not validated.test_metrics

    papers = tmp_path / "papers.jsonl"
    papers.write_text(json.dumps({"arxiv_id": "a", "title": "Robot grasping", "abstract": "We grasp."}) + "\n")
    predicted = training.predict(tiny_config, {"data.predict_file": papers}, run_dir=run_dir)
    (line,) = [json.loads(row) for row in predicted.predictions_path.read_text().splitlines()]
    assert line["arxiv_id"] == "a" and line["label"] in predicted.model.id2label.values()


def test_a_checkpoint_that_does_not_exist_yet_says_to_train_first(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match=r"--ckpt_path best: no .*best.ckpt. Train first"):
        training.test(tiny_config, run_dir=tmp_path / "never_trained")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.learnig_rate": 1e-3}, r"'model.learnig_rate': did you mean model.learning_rate\?"),
        ({"trainer.max_epochs": "two"}, r'overrides: Parser key "trainer.max_epochs"'),
        ({"data.val_fraction": 0.1}, r"'data.val_fraction' is not a key"),
    ],
    ids=["misspelt-key", "wrong-type", "unknown-key"],
)
def test_a_bad_override_is_an_error_naming_it_before_anything_is_built(tmp_path, tiny_config, overrides, message):
    with pytest.raises(TrainingConfigError, match=message):
        training.fit(tiny_config, overrides, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_bad_config_file_is_an_error_naming_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  learning_rate: fast\n")
    with pytest.raises(TrainingConfigError, match=rf"{broken}: .*model.learning_rate"):
        training.fit(broken)
    with pytest.raises(FileNotFoundError, match="missing.yaml not found"):
        training.fit(tmp_path / "missing.yaml")


def test_config_keys_lists_every_key_without_building_anything(tmp_path):
    keys = training.config_keys(TINY, {"trainer.default_root_dir": str(tmp_path / "run")})
    assert {"model.learning_rate", "data.batch_size", "trainer.logger.init_args.save_dir", "export.enabled"} <= keys
    assert not (tmp_path / "run").exists()


def test_merge_overrides_writes_a_config_that_fits_and_leaves_the_file_alone(tmp_path):
    before = TINY.read_text()
    merged = training.merge_overrides(TINY, {"model.learning_rate": 0.005, "trainer.logger.name": "best"})
    assert TINY.read_text() == before
    assert merged["model"]["learning_rate"] == 0.005
    assert merged["trainer"]["logger"]["init_args"] == {"save_dir": "runs", "name": "best"}, "into init_args"
    assert merged["data"] == yaml.safe_load(before)["data"], "untouched sections stay as written"
    assert "model.learning_rate" in training.config_keys(merged)
    with pytest.raises(TrainingConfigError, match="'learning_rate' is not a section"):
        training.merge_overrides(TINY, {"model.learning_rate.low": 1})
