"""`RunResult`: what one fit, validation, test or prediction run left, for code that goes on from it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import lightning.pytorch as pl


class Stage(StrEnum):
    """Which Trainer method the run called."""

    FIT = "fit"
    VALIDATE = "validate"
    TEST = "test"
    PREDICT = "predict"


@dataclass
class RunResult:
    """One run's outputs: where they are, the best checkpoint and its score, and the metrics logged last.

    Paths are None where the run wrote no such file (no export when ``export.enabled`` is false, no checkpoint
    outside fit unless one was loaded, no report outside test). On a multi-process run every rank gets a result;
    files are written by rank zero.

    Attributes:
        stage: the Trainer method that ran.
        run_dir: the run's folder, ``trainer.default_root_dir``.
        log_dir: the logger's folder of this run (``version_N``), where the resolved config, the test report and the
            predictions are written; the run folder when no logger is configured.
        config_path: the resolved config of this run (``<log_dir>/config.yaml``), which ``clf fit --config`` runs
            again.
        monitor: the metric that picks the best checkpoint (``checkpoint.monitor``).
        best_score: the best value of `monitor` during fit; None outside fit or when it was never logged.
        best_checkpoint: the best checkpoint of fit, or the checkpoint validate/test/predict loaded.
        last_checkpoint: ``last.ckpt`` of fit.
        export_dir: the exported model (transformers format, label map, metrics), when fit exported one.
        report_path: ``test_report.json`` of a test run.
        predictions_path: ``predictions.jsonl`` of a predict run.
        metrics: every scalar metric logged last (``val/acc``, ``train/loss``, ``test/f1_macro``...), as floats.
        epochs: epochs completed (``trainer.current_epoch``).
        global_step: optimizer steps taken.
        batch_size: the batch size trained with, after any out-of-memory back-off halved it.
        accumulate_grad_batches: the gradient accumulation trained with, after any back-off doubled it.
        trainer: the Lightning Trainer that ran.
        model: the `ArxivClassifier`, holding the best weights after a fit that exported.
        datamodule: the `ArxivDataModule`.
    """

    stage: Stage
    run_dir: Path
    log_dir: Path | None = None
    config_path: Path | None = None
    monitor: str | None = None
    best_score: float | None = None
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None
    export_dir: Path | None = None
    report_path: Path | None = None
    predictions_path: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0
    global_step: int = 0
    batch_size: int | None = None
    accumulate_grad_batches: int = 1
    trainer: pl.Trainer | None = field(default=None, repr=False, compare=False)
    model: pl.LightningModule | None = field(default=None, repr=False, compare=False)
    datamodule: pl.LightningDataModule | None = field(default=None, repr=False, compare=False)

    @property
    def val_metrics(self) -> dict[str, float]:
        """The validation metrics among `metrics` (``val/acc``, ``val/loss``, ...)."""
        return _with_prefix(self.metrics, "val/")

    @property
    def test_metrics(self) -> dict[str, float]:
        """The test metrics among `metrics` (``test/acc``, ``test/f1_macro``, ...)."""
        return _with_prefix(self.metrics, "test/")

    @property
    def train_metrics(self) -> dict[str, float]:
        """The training metrics among `metrics` (``train/loss``, ``train/acc``, ...)."""
        return _with_prefix(self.metrics, "train/")


def _with_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {name: value for name, value in metrics.items() if name.startswith(prefix)}
