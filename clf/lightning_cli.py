"""`clf fit|validate|test|predict`: LightningCLI over `ArxivClassifier` and `ArxivDataModule`.

    clf fit --config configs/quickstart.yaml
    clf fit --config configs/quickstart.yaml --ckpt_path last      # resume an interrupted run
    clf test --config configs/quickstart.yaml --ckpt_path best
    clf predict --config configs/quickstart.yaml --ckpt_path best --data.predict_file papers.jsonl

Always on, configurable under their own keys: ``checkpoint`` (best and last, each old file kept as ``.backup``),
``early_stopping`` (patience 2 on the same metric), ``divergence_guard``, ``export`` (the best model in transformers
format under ``<default_root_dir>/export`` at the end of fit) and ``lr_monitor``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from clf.data.datamodule import ArxivDataModule
from clf.model.callbacks import DivergenceGuard
from clf.model.checkpointing import BackupModelCheckpoint, resolve_checkpoint
from clf.model.export import ExportOnFitEnd
from clf.model.module import ArxivClassifier
from clf.model.oom import BatchSetting, run_with_oom_backoff
from clf.model.precision import auto_precision
from clf.model.predictions import write_predictions

log = logging.getLogger(__name__)


class ClfCLI(LightningCLI):
    """LightningCLI with clf's links, always-on callbacks, OOM back-off, checked resume and prediction files."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Adds the always-on callbacks (checkpoint, early stopping, divergence guard, export, LR monitor) and links the
        values data and model share (tokenizer, max length, label set) so each is set in one place.
        """
        parser.add_lightning_class_args(BackupModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.add_lightning_class_args(DivergenceGuard, "divergence_guard")
        parser.add_lightning_class_args(ExportOnFitEnd, "export")
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best",
                "checkpoint.save_last": True,
                "checkpoint.enable_version_counter": False,
                "early_stopping.monitor": "val/acc",
                "early_stopping.mode": "max",
                "early_stopping.patience": 2,
                "lr_monitor.logging_interval": "step",
            }
        )
        # One source of truth for each value shared by data and model.
        parser.link_arguments("model.pretrained", "data.tokenizer")
        parser.link_arguments("data.max_length", "model.max_length")
        parser.link_arguments("data.multi_label", "model.multi_label")
        parser.link_arguments("data.num_labels", "model.num_labels", apply_on="instantiate")
        parser.link_arguments("data.id_to_label", "model.id2label", apply_on="instantiate")
        parser.link_arguments(
            "trainer.default_root_dir", "checkpoint.dirpath", compute_fn=lambda root: str(Path(root) / "checkpoints")
        )

    def before_instantiate_classes(self) -> None:
        """Resolves an unset ``trainer.precision`` to the best one for the hardware (see `auto_precision`)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = auto_precision(str(config.trainer.accelerator))
            log.info("trainer.precision not set: using %s on this hardware", config.trainer.precision)

    def _checkpoint_dir(self) -> Path:
        return Path(self.trainer.checkpoint_callback.dirpath)

    def _resolve_ckpt(self, ckpt_path: str | None) -> str | None:
        """``last`` / ``best`` name files of this run's checkpoint folder; a corrupt file falls back to its backup."""
        if ckpt_path is None:
            return None
        if ckpt_path in ("last", "best"):
            path = self._checkpoint_dir() / f"{ckpt_path}.ckpt"
            if not path.exists() and not Path(f"{path}.backup").exists():
                raise FileNotFoundError(
                    f"--ckpt_path {ckpt_path}: no {path}. Train first with `clf fit` and the same config, or pass a "
                    "checkpoint file."
                )
        else:
            path = Path(ckpt_path)
        return str(resolve_checkpoint(path))

    def fit(self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs: Any):
        """Fits, halving the batch size (and doubling gradient accumulation) whenever CUDA runs out of memory.

        Args:
            model: the classifier to train.
            datamodule: the data; its batch size is halved on each out-of-memory retry.
            ckpt_path: checkpoint to resume from: a path, ``last``, ``best`` or None; a damaged file falls back to its
                ``.backup``.
            **kwargs: passed on to `Trainer.fit`.
        """
        ckpt = self._resolve_ckpt(ckpt_path)
        start = BatchSetting(datamodule.batch_size, self.trainer.accumulate_grad_batches)
        initial_weights = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}

        def attempt(setting: BatchSetting) -> None:
            if setting != start:
                # Start over from the same weights: the failed attempt may have taken optimizer steps.
                model.load_state_dict(initial_weights)
                datamodule.batch_size = setting.batch_size
                self.trainer = self.instantiate_trainer(
                    accumulate_grad_batches=setting.accumulate_grad_batches, callbacks=self._user_callbacks()
                )
            self.trainer.fit(model, datamodule, ckpt_path=ckpt, **kwargs)

        run_with_oom_backoff(attempt, start)

    def _user_callbacks(self) -> list[Callback]:
        """The callbacks the user configured under ``trainer.callbacks``, without those the CLI adds itself.

        `instantiate_trainer` adds the CLI's callbacks (``checkpoint``, ``early_stopping``, …, config saving) to the
        list it is given, so passing the first trainer's list again would register each of them twice.
        """
        added = {id(self._get(self.config_init, key)) for key in self._parser(self.subcommand).callback_keys}
        configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        return [c for c in configured if id(c) not in added and not isinstance(c, SaveConfigCallback)]

    def validate(self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs):
        """Validates the model, or the checkpoint `ckpt_path` names.

        Args:
            model: the classifier to validate.
            datamodule: the data.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs (Any): passed on to `Trainer.validate`.

        Returns:
            (list[Mapping[str, float]]): The metrics `Trainer.validate` returns, one dict per dataloader.
        """
        return self.trainer.validate(model, datamodule, ckpt_path=self._resolve_ckpt(ckpt_path), **kwargs)

    def test(self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs):
        """Tests and writes ``test_report.json``/``.md`` and ``confusion_matrix.png`` into the run's log folder.

        Args:
            model: the classifier to test.
            datamodule: the data.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs (Any): passed on to `Trainer.test`.

        Returns:
            (list[Mapping[str, float]]): The metrics `Trainer.test` returns, one dict per dataloader.
        """
        return self.trainer.test(model, datamodule, ckpt_path=self._resolve_ckpt(ckpt_path), **kwargs)

    def predict(self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs):
        """Predicts `--data.predict_file` (or the test split) and writes ``predictions.jsonl`` to the log folder.

        Args:
            model: the classifier to predict with.
            datamodule: the data; `predict_records` identifies each predicted paper.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs (Any): passed on to `Trainer.predict`.

        Returns:
            (list[torch.Tensor]): The probability batches `Trainer.predict` returned, one per batch.

        Raises:
            ValueError: when run on more than one device (the predictions file is written by one process).
        """
        if self.trainer.world_size > 1:
            raise ValueError("clf predict writes one file from one process: run it with --trainer.devices 1")
        kwargs["return_predictions"] = True
        batches = self.trainer.predict(model, datamodule, ckpt_path=self._resolve_ckpt(ckpt_path), **kwargs)
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.jsonl"
        write_predictions(
            out, datamodule.predict_records, torch.cat(batches), model.id2label, model.multi_label, model.threshold
        )
        log.info("Wrote %d predictions to %s", len(datamodule.predict_records), out)
        return batches


def run_lightning(args: list[str], *, run: bool = True) -> ClfCLI:
    """Runs a LightningCLI subcommand (`fit`, `validate`, `test`, `predict`) on clf's model and data.

    Args:
        args: the subcommand and its options, e.g. ``["fit", "--config", "configs/tiny.yaml"]``; with
            ``run=False``, only the options (the classes are instantiated, nothing runs).
        run: run the subcommand, or only parse and instantiate.

    Returns:
        The CLI, with ``model``, ``datamodule`` and ``trainer``.
    """
    # `clf` passes the arguments it parsed from sys.argv (spelling normalised); sys.argv itself must stay as it is,
    # because DDP's launcher starts the other ranks with it.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended to run from within Python")
    return ClfCLI(
        ArxivClassifier,
        ArxivDataModule,
        args=args,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "clf", "default_env": False},
        auto_configure_optimizers=False,
        run=run,
    )
