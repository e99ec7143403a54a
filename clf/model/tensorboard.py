"""What a run shows in TensorBoard besides its curves: the hyperparameters a researcher compares, with the final
validation and test metrics as hparam metrics, and the model graph.

Lightning would log every init argument of the model and the data module at the start of fit (``_instantiator``,
``api_url``, ``cache_dir``, ...) with a placeholder ``hp_metric`` of -1. `TensorBoardSummary` turns that off and
logs instead, at the end of fit and again after ``clf test``, the keys of `compared_hparams` with ``hp/val_*`` and
``hp/test_*`` metrics. ``clf test`` of a fit's checkpoint logs into that fit's run (`run_pointer` and
`TrainingSession`), so test scalars, the confusion matrix and the hparams sit beside the training curves.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)

RUN_POINTER = "run.json"
"""Written beside a fit's checkpoints: the logger folder (``version_N``) its TensorBoard events are in."""


def compared_hparams(trainer: pl.Trainer, module: pl.LightningModule) -> dict[str, Any]:
    """The hyperparameters runs are compared on: backbone, learning rate, dropout, batch size, epochs, length, data,
    seed.

    Args:
        trainer: the trainer.
        module: the `ArxivClassifier`.

    Returns:
        Name → a number or a string, as TensorBoard's HPARAMS tab takes them.
    """
    hp = module.hparams
    data = getattr(trainer, "datamodule", None)
    values: dict[str, Any] = {
        "backbone": str(hp.get("pretrained")),
        "learning_rate": hp.get("learning_rate"),
        "weight_decay": hp.get("weight_decay"),
        "warmup_ratio": hp.get("warmup_ratio"),
        "max_length": hp.get("max_length"),
        "multi_label": bool(hp.get("multi_label")),
        "attention_dropout": _dropout(hp.get("attention_dropout")),
        "hidden_dropout": _dropout(hp.get("hidden_dropout")),
        "max_epochs": trainer.max_epochs,
        "precision": str(trainer.precision),
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
        "batch_size": getattr(data, "batch_size", None),
        "train_papers": getattr(data, "train_papers", None) or "all",
        "seed": getattr(data, "seed", None),
    }
    return {key: value for key, value in values.items() if value is not None}


def _dropout(value: float | None) -> float | str:
    return "checkpoint" if value is None else float(value)


def hparam_metrics(metrics: dict[str, Any], stage: str) -> dict[str, float]:
    """The stage's logged metrics as hparam metrics: ``val/acc`` → ``hp/val_acc``.

    Args:
        metrics: the trainer's callback metrics (or the test summary).
        stage: ``val`` or ``test``.

    Returns:
        ``hp/<stage>_<name>`` → value, for every scalar of that stage.
    """
    found = {}
    for name, value in metrics.items():
        if name.startswith(f"{stage}/") and "/" not in name[len(stage) + 1 :]:
            number = float(value.item() if isinstance(value, torch.Tensor) else value)
            found[f"hp/{stage}_{name[len(stage) + 1 :]}"] = number
    return found


def log_hparams(trainer: pl.Trainer, module: pl.LightningModule, metrics: dict[str, float]) -> None:
    """Logs `compared_hparams` with `metrics` to every logger that takes hyperparameters (rank zero only).

    Args:
        trainer: the trainer.
        module: the model.
        metrics: the ``hp/*`` metrics.
    """
    if not trainer.is_global_zero:
        return
    for logger in trainer.loggers:
        logger.log_hyperparams(compared_hparams(trainer, module), metrics=metrics)


class TensorBoardSummary(Callback):
    """Logs the compared hparams with their final metrics, and the model graph; see the module docstring.

    Args:
        graph: add the model graph (traced on a two-paper batch) at the start of fit.
    """

    def __init__(self, graph: bool = True) -> None:
        self.graph = graph

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Stops Lightning's own hyperparameter logging (every init argument, with ``hp_metric`` -1).

        Args:
            trainer: the trainer.
            pl_module: the model.
            stage: fit, validate, test or predict.
        """
        pl_module._log_hyperparams = False
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            datamodule._log_hyperparams = False
        for logger in trainer.loggers:
            if hasattr(logger, "_default_hp_metric"):
                logger._default_hp_metric = False

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Adds the model graph to TensorBoard.

        Args:
            trainer: the trainer.
            pl_module: the model.
        """
        experiment = getattr(trainer.logger, "experiment", None)
        if not self.graph or not trainer.is_global_zero or experiment is None or not hasattr(experiment, "add_graph"):
            return
        ids = torch.ones(2, 16, dtype=torch.long, device=pl_module.device)
        try:
            experiment.add_graph(_Forward(pl_module), (ids, torch.ones_like(ids)), use_strict_trace=False)
        except Exception as err:  # tracing is a picture, never a reason to stop training
            log.warning("model graph not added to TensorBoard: %s", err)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Logs the hparams with the final validation metrics, and points the checkpoints at this run's logs.

        Args:
            trainer: the trainer.
            pl_module: the model.
        """
        metrics = hparam_metrics(trainer.callback_metrics, "val")
        best = getattr(trainer.checkpoint_callback, "best_model_score", None)
        if best is not None:
            metrics["hp/val_best_score"] = float(best)
        log_hparams(trainer, pl_module, metrics)
        checkpoints = getattr(trainer.checkpoint_callback, "dirpath", None)
        log_dir = trainer.log_dir  # broadcast from rank zero: every rank must ask
        if trainer.is_global_zero and checkpoints and log_dir:
            Path(checkpoints).mkdir(parents=True, exist_ok=True)
            (Path(checkpoints) / RUN_POINTER).write_text(json.dumps({"log_dir": str(log_dir)}) + "\n")


def run_pointer(checkpoint_dir: str | Path) -> Path | None:
    """The logger folder of the fit whose checkpoints are in `checkpoint_dir`, when it left a pointer.

    Args:
        checkpoint_dir: a fit's checkpoint folder.

    Returns:
        Its ``version_N`` folder, or None.
    """
    path = Path(checkpoint_dir) / RUN_POINTER
    try:
        return Path(json.loads(path.read_text())["log_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


class _Forward(torch.nn.Module):
    """The model's forward pass on (input_ids, attention_mask), as `torch.jit.trace` wants it."""

    def __init__(self, module: pl.LightningModule) -> None:
        super().__init__()
        self.module = module

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.module(input_ids, attention_mask)
