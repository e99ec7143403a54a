"""Export the best model of a run as a model artifact (`clf.artifact`), ready for the registry and for serving.

This module writes what needs torch — the transformers weights (safetensors) and the tokenizer — into a staging
folder, checks that the weights reload with the trained labels, and hands the folder to `clf.artifact.complete`,
which adds the label map, metrics, lineage (data and split hashes), the run's config, the model card and the
manifest. The staging folder then replaces ``export/`` in one rename.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerBase

from clf.artifact import ArtifactError, LabelMap, collect_lineage, complete
from clf.model.checkpointing import load_checkpoint
from clf.model.module import ArxivClassifier

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The export is incomplete or does not reload."""


def export_model(
    module: ArxivClassifier,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | Path,
    *,
    metrics: dict[str, Any] | None = None,
    run_config: Path | None = None,
    data_dir: str | Path | None = None,
) -> Path:
    """Writes `module`'s backbone and `tokenizer` as a model artifact in `out_dir`, replacing it atomically.

    Args:
        module: the trained classifier.
        tokenizer: the tokenizer the model was trained with.
        out_dir: the export folder.
        metrics: metrics to record in ``metrics.json``.
        run_config: the run's resolved config file, copied as ``config.yaml``.
        data_dir: the run's data folder, whose dataset and split hashes go into the lineage.

    Returns:
        The export folder.

    Raises:
        ExportError: when a required file is missing or the exported model does not reload with the label map.
    """
    out_dir = Path(out_dir)
    staging = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    module.backbone.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    hparams = module.hparams
    label_map = LabelMap(
        module.id2label,
        multi_label=bool(hparams.get("multi_label", False)),
        threshold=float(hparams.get("threshold", 0.5)),
        max_length=int(hparams.get("max_length", 512)),
        pretrained=str(hparams.get("pretrained", "")),
    )
    _check_reload(staging, label_map.id2label)
    try:
        complete(staging, label_map, metrics=metrics, lineage=collect_lineage(data_dir), run_config=run_config)
    except ArtifactError as err:
        raise ExportError(str(err)) from err
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    size_mb = sum(f.stat().st_size for f in out_dir.iterdir()) / 2**20
    log.info("Exported the model to %s (%.1f MB)", out_dir, size_mb)
    return out_dir


def _check_reload(path: Path, id2label: Mapping[int, str]) -> None:
    """The saved weights reload (weights only) with the trained labels."""
    model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
    reloaded = {int(i): label for i, label in model.config.id2label.items()}
    if reloaded != id2label:
        raise ExportError(f"{path}: reloaded id2label {reloaded} differs from the trained one {id2label}")


class ExportOnFitEnd(L.Callback):
    """At the end of `fit`, loads the best checkpoint's weights into the module and exports them.

    Args:
        dirpath: the export folder; defaults to ``<trainer.default_root_dir>/export``.
        enabled: export at all (sweeps turn it off for their trials).
    """

    def __init__(self, dirpath: str | None = None, enabled: bool = True) -> None:
        self.dirpath = dirpath
        self.enabled = enabled
        self.exported: Path | None = None

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Exports the best checkpoint's weights (every rank loads them; rank zero writes)."""
        if not self.enabled or trainer.interrupted:
            return
        if not isinstance(pl_module, ArxivClassifier):
            raise TypeError(f"--export exports an ArxivClassifier, got {type(pl_module).__name__}")
        checkpoint = trainer.checkpoint_callback
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1}
        summary: dict[str, Any] = {"epoch": trainer.current_epoch, "global_step": trainer.global_step, "last": metrics}
        if isinstance(checkpoint, ModelCheckpoint) and checkpoint.best_model_path:
            # Every rank loads the best weights, so a `test` after `fit` in the same process uses them everywhere.
            pl_module.load_state_dict(load_checkpoint(checkpoint.best_model_path)["state_dict"])
            summary.update(
                best_model_path=checkpoint.best_model_path,
                monitor=checkpoint.monitor,
                best_score=float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
            )
        # trainer.log_dir broadcasts from rank zero, so every rank must ask for it, outside the rank-zero section.
        log_dir = trainer.log_dir
        run_config = Path(log_dir) / "config.yaml" if log_dir else None
        out_dir = Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "export"
        # Lightning's data connector sets trainer.datamodule; Trainer does not declare it.
        datamodule = trainer.datamodule  # type: ignore[attr-defined]
        data_dir = getattr(datamodule, "data_dir", None)
        self.exported = self._export(pl_module, datamodule.tokenizer, out_dir, summary, run_config, data_dir)
        trainer.strategy.barrier("clf-export")

    @rank_zero_only
    def _export(
        self,
        pl_module: ArxivClassifier,
        tokenizer: PreTrainedTokenizerBase,
        out_dir: Path,
        summary: dict[str, Any],
        run_config: Path | None,
        data_dir: Path | None,
    ) -> Path:
        return export_model(pl_module, tokenizer, out_dir, metrics=summary, run_config=run_config, data_dir=data_dir)
