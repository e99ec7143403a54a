"""`TrainingSession`: a fit config parsed, checked and instantiated, and the stage it runs.

The one place that knows the shape of a fit config: LightningCLI's parser with clf's always-on callbacks and links,
how overrides and a run folder are applied to it, and how each stage runs (out-of-memory back-off, checked resume,
the test report, the predictions file). `clf.training.fit` and its siblings build a session from a YAML file or a
dict; `clf fit|validate|test|predict` (`clf.lightning_cli`) build one from the command line. Either way the same
methods below run and leave a `RunResult` in ``session.result``.
"""

from __future__ import annotations

import difflib
import logging
from argparse import ArgumentError
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from jsonargparse import Namespace
from lightning.pytorch import Callback, Trainer
from lightning.pytorch.callbacks import DeviceStatsMonitor, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI, SaveConfigCallback

from clf.artifact import ModelArtifact, is_artifact, record_test_metrics
from clf.artifact.scoring import DEFAULT_ABSTAIN_BELOW, Scoring
from clf.data.datamodule import ArxivDataModule
from clf.model.callbacks import DivergenceGuard
from clf.model.checkpointing import BackupModelCheckpoint, resolve_checkpoint
from clf.model.export import ExportOnFitEnd
from clf.model.module import ArxivClassifier
from clf.model.oom import BatchSetting, run_with_oom_backoff
from clf.model.precision import auto_precision
from clf.model.predictions import write_predictions
from clf.model.run_report import write_run_report
from clf.model.tensorboard import TensorBoardSummary, run_pointer
from clf.training.errors import TrainingConfigError
from clf.training.finishing import ArtifactAnswers, ScoreOnFitEnd
from clf.training.reference import ReferenceOnFitEnd
from clf.training.result import RunResult, Stage

log = logging.getLogger(__name__)

ALWAYS_ON: tuple[tuple[str, type[Callback]], ...] = (
    ("checkpoint", BackupModelCheckpoint),
    ("early_stopping", EarlyStopping),
    ("divergence_guard", DivergenceGuard),
    ("export", ExportOnFitEnd),
    # After export: on_fit_end runs in this order, and the scoring is fitted on the exported artifact.
    ("scoring", ScoreOnFitEnd),
    # After scoring: the reference sample is answered with the artifact's fitted scoring.
    ("reference", ReferenceOnFitEnd),
    ("lr_monitor", LearningRateMonitor),
    ("tensorboard", TensorBoardSummary),
)
"""The callbacks every session adds to its trainer, each configurable under its key."""


@dataclass(frozen=True)
class ConfigRequest:
    """A fit config given from Python rather than on a command line, and what to change in it.

    Attributes:
        stage: the Trainer method to run.
        config: a fit config YAML file, or a dict of the same keys (``trainer``, ``model``, ``data``, ...).
        overrides: dotted keys applied on top (``{"model.learning_rate": 1e-3}``), as ``--key value`` would be.
        run_dir: put every output of the run under this folder: ``trainer.default_root_dir``, its ``checkpoints/``
            and ``export/``, and the logger's files under ``logs/``.
        ckpt_path: the checkpoint to start from or evaluate: a path, ``last``, ``best`` or None; a ``ckpt_path`` in
            `config` (a run's dumped config.yaml records one) is replaced by this.
        instantiate: build the model, data and trainer; False parses and checks the config only.
    """

    stage: Stage
    config: str | Path | Mapping[str, Any]
    overrides: Mapping[str, Any] = field(default_factory=dict)
    run_dir: str | Path | None = None
    ckpt_path: str | Path | None = None
    instantiate: bool = True

    def parse(self, parser: LightningArgumentParser) -> Namespace:
        """The stage's config: the file or dict, then the overrides, the run folder and the checkpoint.

        Args:
            parser: the parser of the stage's subcommand (``fit``, ``test``...).

        Returns:
            The parsed config, as LightningCLI would have parsed ``clf STAGE --config FILE --key value ...``.

        Raises:
            FileNotFoundError: when `config` names a missing file.
            TrainingConfigError: naming the file or the override that does not parse, with the closest known keys.
        """
        source = "the fit config"
        try:
            if isinstance(self.config, Mapping):
                config = parser.parse_object(dict(self.config))
            else:
                source = str(self.config)
                if not Path(self.config).is_file():
                    raise FileNotFoundError(f"fit config {self.config} not found; pass a YAML file such as configs/")
                config = parser.parse_path(self.config)
        except ArgumentError as err:
            raise TrainingConfigError(f"{source}: {err}") from None
        # A run's dumped config.yaml says which checkpoint that run started from; this request says its own.
        changes = {key: _plain(value) for key, value in self.overrides.items()}
        changes["ckpt_path"] = _plain(self.ckpt_path)
        config = _apply(parser, config, changes)
        if self.run_dir is not None:
            config = _move_run(parser, config, Path(self.run_dir))
        parsed = Namespace(subcommand=self.stage.value)
        parsed[self.stage.value] = config
        return parsed


class TrainingSession(LightningCLI):
    """LightningCLI over `ArxivClassifier` and `ArxivDataModule`, with clf's links, always-on callbacks, OOM back-off,
    checked resume, test report and predictions file.

    Always on, configurable under their own keys: ``checkpoint`` (best and last, each old file kept as ``.backup``),
    ``early_stopping`` (patience 2 on the same metric), ``divergence_guard``, ``export`` (the best model in
    transformers format under ``<default_root_dir>/export`` at the end of fit), ``scoring`` (a TF-IDF companion and
    a temperature fitted on validation papers into that export; off by default), ``reference`` (the reference
    sample and out-of-scope model production compares with, `clf.training.reference`; off by default) and
    ``lr_monitor``.

    Args:
        args: the command line (``["fit", "--config", "configs/tiny.yaml"]``; without the subcommand when `run` is
            False), or a `ConfigRequest` from Python.
        run: run the subcommand, or only parse and instantiate (command lines only).
        callbacks: callbacks added to the trainer besides the configured ones (kept across out-of-memory retries).
        parser_kwargs: passed on to the parser, e.g. ``{"prog": "clf"}``.
    """

    def __init__(
        self,
        args: ArgsType | ConfigRequest = None,
        *,
        run: bool = True,
        callbacks: Sequence[Callback] = (),
        parser_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.result: RunResult | None = None
        self._request = args if isinstance(args, ConfigRequest) else None
        self._extra_callbacks = list(callbacks)
        kwargs: dict[str, Any] = {"default_env": False, **(parser_kwargs or {})}
        if self._request is not None:
            # From Python a bad config is an exception to catch, not a usage message and SystemExit.
            kwargs.update(exit_on_error=False, **{stage.value: {"exit_on_error": False} for stage in Stage})
        super().__init__(
            ArxivClassifier,
            ArxivDataModule,
            args=args if not isinstance(args, ConfigRequest) else None,  # a request is parsed by parse_arguments
            run=run or self._request is not None,
            trainer_defaults={"callbacks": self._extra_callbacks} if self._extra_callbacks else None,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=kwargs,
            auto_configure_optimizers=False,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Adds the always-on callbacks (checkpoint, early stopping, divergence guard, export, LR monitor) and links the
        values data and model share (tokenizer, max length, label set) so each is set in one place.
        """
        for key, callback in ALWAYS_ON:
            parser.add_lightning_class_args(callback, key)
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
        # No default_root_dir is Lightning's working directory (a run_dir given from Python replaces it after).
        parser.link_arguments(
            "trainer.default_root_dir",
            "checkpoint.dirpath",
            compute_fn=lambda root: str(Path(root or ".") / "checkpoints"),
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        """Parses the command line as LightningCLI does, or a `ConfigRequest` with the same parser.

        Args:
            parser: the main parser (with one sub-parser per stage).
            args: the command line (a `ConfigRequest` is read from the session instead).
        """
        if self._request is None:
            super().parse_arguments(parser, args)
            return
        # LightningCLI keeps each stage's parser only in this private member (pinned in pyproject.toml; checked by
        # tests/training/test_lightning_api.py): the main parser cannot apply a dotted override that crosses a
        # class_path (``trainer.logger.name``), the stage's parser can.
        self.config = self._request.parse(self._subcommand_parsers[self._request.stage.value])

    def before_instantiate_classes(self) -> None:
        """Resolves an unset ``trainer.precision`` to the best one for the hardware (see `auto_precision`), and
        points test, validate and predict of a fit's checkpoint at that fit's logger folder (`run_pointer`)."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.precision is None:
            config.trainer.precision = auto_precision(str(config.trainer.accelerator))
            log.info("trainer.precision not set: using %s on this hardware", config.trainer.precision)
        if _on_cuda(str(config.trainer.accelerator)):  # memory and utilisation in TensorBoard beside the curves
            callbacks = self.trainer_defaults.get("callbacks") or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            self.trainer_defaults = {**self.trainer_defaults, "callbacks": [*callbacks, DeviceStatsMonitor()]}
        if self.subcommand in ("test", "validate", "predict") and _log_into_the_fit(config):
            # The fit's config.yaml stays; this stage's resolved config goes beside it.
            self.save_config_kwargs = {**self.save_config_kwargs, "config_filename": f"{self.subcommand}_config.yaml"}

    def instantiate_classes(self) -> None:
        """Builds the model, data and trainer, unless the request asked to parse and check only (then no stage runs:
        LightningCLI runs ``self.subcommand`` after this, and there is none)."""
        if self._request is not None and not self._request.instantiate:
            self.subcommand = None
            return
        super().instantiate_classes()

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Builds the trainer as LightningCLI does, without the LR monitor when no logger is configured
        (``trainer.logger: false``): it would have nowhere to write, and Lightning refuses to start with it."""
        trainer = super().instantiate_trainer(**kwargs)
        if not trainer.loggers:
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, LearningRateMonitor)]
        return trainer

    def fit(
        self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs: Any
    ) -> RunResult:
        """Fits, halving the batch size (and doubling gradient accumulation) whenever CUDA runs out of memory.

        Args:
            model: the classifier to train.
            datamodule: the data; its batch size is halved on each out-of-memory retry.
            ckpt_path: checkpoint to resume from: a path, ``last``, ``best`` or None; a damaged file falls back to its
                ``.backup``.
            **kwargs: passed on to `Trainer.fit`.

        Returns:
            What the run left (also in ``self.result``).
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
        return self._finish(Stage.FIT)

    def _user_callbacks(self) -> list[Callback]:
        """The callbacks the user configured under ``trainer.callbacks``, without those the session adds itself.

        `instantiate_trainer` adds the session's callbacks (``checkpoint``, ``early_stopping``, …, the extra ones,
        config saving) to the list it is given, so passing the first trainer's list again would register each twice.
        """
        added = {id(self._built(key)) for key, _ in ALWAYS_ON} | {id(callback) for callback in self._extra_callbacks}
        configured = (self._built("trainer") or {}).get("callbacks") or []
        return [c for c in configured if id(c) not in added and not isinstance(c, SaveConfigCallback)]

    def validate(
        self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs: Any
    ) -> RunResult:
        """Validates the model, or the checkpoint `ckpt_path` names.

        Args:
            model: the classifier to validate.
            datamodule: the data.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs: passed on to `Trainer.validate`.

        Returns:
            What the run left, with the ``val/*`` metrics (also in ``self.result``).
        """
        ckpt = self._resolve_ckpt(ckpt_path)
        self.trainer.validate(model, datamodule, ckpt_path=ckpt, **kwargs)
        return self._finish(Stage.VALIDATE, ckpt)

    def test(
        self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs: Any
    ) -> RunResult:
        """Tests and writes ``test_report.json``/``.md`` and ``confusion_matrix.png`` into the run's log folder.

        Args:
            model: the classifier to test.
            datamodule: the data.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs: passed on to `Trainer.test`.

        Returns:
            What the run left, with the ``test/*`` metrics and the report (also in ``self.result``).
        """
        ckpt = self._resolve_ckpt(ckpt_path)
        folder = self._export_of(ckpt)
        self._score_as_export(model, datamodule, folder, "test")
        self.trainer.test(model, datamodule, ckpt_path=ckpt, **kwargs)
        result = self._finish(Stage.TEST, ckpt)
        if self.trainer.is_global_zero and folder is not None:
            record_test_metrics(folder, result.test_metrics)
        if self.trainer.is_global_zero and result.log_dir is not None:
            try:
                log.info("run report: %s", write_run_report(result.log_dir))
            except Exception:  # a report is a view of the run; never a reason to fail the test
                log.warning("the run report could not be written", exc_info=True)
        return result

    def _export_of(self, ckpt: str | None) -> Path | None:
        """This run's export folder when it was exported from `ckpt`: testing that checkpoint tests the export
        (its test metrics join the export's metrics and model card, `clf.artifact.record_test_metrics`)."""
        export = self._built("export")
        dirpath = getattr(export, "dirpath", None)
        folder = Path(dirpath) if dirpath else Path(self.trainer.default_root_dir) / "export"
        if ckpt is None or not is_artifact(folder):
            return None
        exported_from = ModelArtifact.open(folder, verify=False).metrics.get("best_model_path")
        return folder if exported_from and Path(exported_from).resolve() == Path(ckpt).resolve() else None

    def _score_as_export(
        self, model: ArxivClassifier, datamodule: ArxivDataModule, folder: Path | None, stage: str
    ) -> Scoring | None:
        """When the checkpoint is the one exported to `folder` (`_export_of`), the export's scoring is returned, and
        the stage answers as the export does when that scoring has stages of its own (a TF-IDF companion, a
        temperature); otherwise the encoder's probabilities are the answers. None when there is no such export."""
        scoring = ModelArtifact.open(folder, verify=False).scoring if folder is not None else None
        if scoring is None or scoring.is_plain:
            model.answer_scoring = None
            return scoring  # a plain export still has its own abstain_below (chosen for a target accuracy, say)
        log.info("%s: answering as the export %s does (%s)", stage, folder, scoring.describe())
        model.answer_scoring = ArtifactAnswers(scoring, model.multi_label, lambda: datamodule.row_texts(stage))
        return scoring

    def predict(
        self, model: ArxivClassifier, datamodule: ArxivDataModule, ckpt_path: str | None = None, **kwargs: Any
    ) -> RunResult:
        """Predicts `--data.predict_file` (or the test split) and writes ``predictions.jsonl`` to the log folder.

        Args:
            model: the classifier to predict with.
            datamodule: the data; `predict_records` identifies each predicted paper.
            ckpt_path: checkpoint to load first: a path, ``last``, ``best`` or None for the model as it is.
            **kwargs: passed on to `Trainer.predict`.

        Returns:
            What the run left, with the predictions file (also in ``self.result``).

        Raises:
            ValueError: when run on more than one device (the predictions file is written by one process).
        """
        if self.trainer.world_size > 1:
            raise ValueError("clf predict writes one file from one process: run it with --trainer.devices 1")
        ckpt = self._resolve_ckpt(ckpt_path)
        scoring = self._score_as_export(model, datamodule, self._export_of(ckpt), "predict")
        kwargs["return_predictions"] = True
        batches = self.trainer.predict(model, datamodule, ckpt_path=ckpt, **kwargs)
        out = Path(self.trainer.log_dir or self.trainer.default_root_dir) / "predictions.jsonl"
        write_predictions(
            out,
            datamodule.predict_records,
            torch.cat(cast(list[torch.Tensor], batches)),
            model.id2label,
            model.multi_label,
            model.threshold,
            abstain_below=scoring.abstain_below if scoring is not None else DEFAULT_ABSTAIN_BELOW,
        )
        log.info("Wrote %d predictions to %s", len(datamodule.predict_records), out)
        return self._finish(Stage.PREDICT, ckpt, predictions=out)

    def _built(self, key: str) -> Any:
        """What the stage's config built under `key` (``export``: the callback; ``trainer``: its arguments)."""
        return self.config_init.get(str(self.subcommand), self.config_init).get(key)

    def _checkpoint_callback(self) -> ModelCheckpoint:
        """The run's checkpoint callback (the session always adds one)."""
        callback = self.trainer.checkpoint_callback
        if not isinstance(callback, ModelCheckpoint):
            raise RuntimeError(f"the trainer has no ModelCheckpoint callback (got {type(callback).__name__})")
        return callback

    def _resolve_ckpt(self, ckpt_path: str | None) -> str | None:
        """``last`` / ``best`` name files of this run's checkpoint folder; a corrupt file falls back to its backup."""
        if ckpt_path is None:
            return None
        if ckpt_path in ("last", "best"):
            folder = self._checkpoint_callback().dirpath or Path(self.trainer.default_root_dir) / "checkpoints"
            path = Path(folder) / f"{ckpt_path}.ckpt"
            if not path.exists() and not Path(f"{path}.backup").exists():
                raise FileNotFoundError(
                    f"--ckpt_path {ckpt_path}: no {path}. Train first with `clf fit` and the same config, or pass a "
                    "checkpoint file."
                )
        else:
            path = Path(ckpt_path)
        return str(resolve_checkpoint(path))

    def _finish(self, stage: Stage, ckpt: str | None = None, predictions: Path | None = None) -> RunResult:
        trainer = self.trainer
        # trainer.log_dir broadcasts from rank zero, so every rank asks for it.
        log_dir = Path(trainer.log_dir) if trainer.log_dir else None
        checkpoint = trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None
        export = self._built("export")
        result = RunResult(
            stage=stage,
            run_dir=Path(trainer.default_root_dir),
            log_dir=log_dir,
            config_path=_existing(log_dir / self.save_config_kwargs.get("config_filename", "config.yaml"))
            if log_dir
            else None,
            monitor=getattr(checkpoint, "monitor", None),
            metrics={k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1},
            epochs=trainer.current_epoch,
            global_step=trainer.global_step,
            batch_size=getattr(self.datamodule, "batch_size", None),
            accumulate_grad_batches=trainer.accumulate_grad_batches,
            trainer=trainer,
            model=self.model,
            datamodule=self.datamodule,
        )
        if stage is Stage.FIT and checkpoint is not None:
            score = checkpoint.best_model_score
            result.best_score = float(score) if score is not None else None
            result.best_checkpoint = _existing(checkpoint.best_model_path)
            result.last_checkpoint = _existing(getattr(checkpoint, "last_model_path", ""))
            result.export_dir = getattr(export, "exported", None)
        else:
            result.best_checkpoint = Path(ckpt) if ckpt else None
        if stage is Stage.TEST and log_dir is not None:
            result.report_path = _existing(log_dir / "test_report.json")
        result.predictions_path = predictions
        self.result = result
        return result


def _existing(path: str | Path | None) -> Path | None:
    return Path(path) if path and Path(path).exists() else None


def _plain(value: Any) -> Any:
    """Paths become strings, as on a command line; jsonargparse types the rest."""
    return str(value) if isinstance(value, Path) else value


def _apply(parser: LightningArgumentParser, config: Namespace, changes: dict[str, Any]) -> Namespace:
    if not changes:
        return config
    try:
        # Positional: the base config is `cfg_base` before jsonargparse 4.50 and `namespace` since.
        return parser.parse_object(changes, config)
    except ArgumentError as err:
        known = list(config.keys())
        hints = []
        for key in changes:
            if key not in known and not any(k.startswith(key + ".") for k in known):
                close = difflib.get_close_matches(key, known, n=3, cutoff=0.75)
                hints.append(f"{key!r}: did you mean {', '.join(close)}?" if close else f"{key!r} is not a key")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise TrainingConfigError(
            f"overrides: {err}{hint}. `clf fit --config X --print_config` lists the keys of a config."
        ) from None


def _on_cuda(accelerator: str) -> bool:
    """Whether the trainer will run on CUDA (``cuda``/``gpu``, or ``auto`` with a GPU present)."""
    return accelerator in ("cuda", "gpu") or (accelerator == "auto" and torch.cuda.is_available())


def _log_into_the_fit(config: Namespace) -> bool:
    """Sets the TensorBoard logger's version to the fit's, when the checkpoint is one of that fit's; says whether."""
    ckpt = config.get("ckpt_path")
    dirpath = config.get("checkpoint", {}).get("dirpath") if isinstance(config.get("checkpoint"), Namespace) else None
    if not ckpt or not dirpath:
        return False
    if str(ckpt) not in ("best", "last") and Path(ckpt).resolve().parent != Path(dirpath).resolve():
        return False
    fit_logs = run_pointer(dirpath)
    logger = config.trainer.logger
    init_args = logger.get("init_args") if isinstance(logger, Namespace) else None
    if fit_logs is None or not isinstance(init_args, Namespace) or init_args.get("version") is not None:
        return False
    same = "save_dir" in init_args and "name" in init_args
    if not same or (Path(init_args.save_dir) / str(init_args.name)).resolve() != fit_logs.parent.resolve():
        return False
    init_args.version = fit_logs.name
    log.info("logging into the fit's run %s", fit_logs)
    return True


def _move_run(parser: LightningArgumentParser, config: Namespace, run_dir: Path) -> Namespace:
    """Points every output of the run at `run_dir`, so nothing of the run the config came from is reused."""
    # checkpoint.dirpath follows trainer.default_root_dir through its link.
    config = _apply(parser, config, {"trainer.default_root_dir": str(run_dir), "export.dirpath": None})
    logger = config.trainer.logger
    for each in logger if isinstance(logger, list) else [logger]:
        init_args = each.get("init_args") if isinstance(each, Namespace) else None
        if isinstance(init_args, Namespace) and "save_dir" in init_args:
            init_args.save_dir = str(run_dir / "logs")
    return config
