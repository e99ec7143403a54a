"""`ArxivClassifier`: a transformers sequence-classification backbone as a LightningModule.

    clf fit --config configs/quickstart.yaml

Single-label (softmax over the primary category) by default; ``multi_label=True`` trains one sigmoid per category
with binary cross-entropy against every listed category.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.types import OptimizerLRSchedulerConfig
from torch import nn
from torch.nn import functional as F
from transformers import get_linear_schedule_with_warmup

from clf.model.backbone import build_backbone
from clf.model.metrics import Reliability, per_class_metrics, summary_metrics
from clf.model.report import write_test_report
from clf.model.tensorboard import hparam_metrics, log_hparams

log = logging.getLogger(__name__)


class ArxivClassifier(L.LightningModule):
    """Fine-tunes a transformers encoder to classify papers into arXiv categories.

    Args:
        pretrained: hub id, local directory or ``pkg:PACKAGE/PATH`` of the backbone; also names the tokenizer.
        num_labels: number of classes (linked from the DataModule).
        id2label: class index → category (linked from the DataModule); saved in the model config.
        multi_label: one sigmoid per category trained with BCE on every listed category, instead of softmax over
            the primary one.
        threshold: probability above which a category is predicted in multi-label mode.
        learning_rate: peak AdamW learning rate, reached after warmup.
        weight_decay: AdamW weight decay; biases and LayerNorm weights get none.
        warmup_steps: linear warmup steps; when 0, `warmup_ratio` of all steps is used.
        warmup_ratio: share of all optimizer steps spent warming up, used when `warmup_steps` is 0.
        gradient_checkpointing: recompute activations in the backward pass, trading compute for memory.
        random_init: build the backbone without pretrained weights (tests, smoke runs).
        config_overrides: backbone config fields to change (e.g. a tiny DistilBERT for tests).
        max_length: the tokenizer's max length (linked from the DataModule), recorded for export and serving.
        compile: compile the backbone with ``torch.compile`` (dynamic shapes, since batches are padded to their
            own longest text). The first steps pay for compilation; it pays off on long GPU runs, not on a CPU
            (docs/RESULTS.md: 14 % slower per step on two cores).
        attention_dropout: dropout on the attention probabilities while training. 0 (the default) lets
            ``scaled_dot_product_attention`` run its fused kernel; any other value sends it to the unfused path, which
            materialises every attention matrix and a random mask for it (on two CPU cores, 0.1 makes a training
            step 1.7x slower). None keeps the checkpoint's value.
        hidden_dropout: dropout on hidden states and embeddings while training; None keeps the checkpoint's (0.1 for
            BERT-like encoders).

    Raises:
        ValueError: naming the option that is out of range.
    """

    def __init__(
        self,
        pretrained: str = "distilbert-base-uncased",
        num_labels: int = 10,
        id2label: dict[int, str] | None = None,
        multi_label: bool = False,
        threshold: float = 0.5,
        learning_rate: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_steps: int = 0,
        warmup_ratio: float = 0.1,
        gradient_checkpointing: bool = False,
        random_init: bool = False,
        config_overrides: dict[str, Any] | None = None,
        max_length: int = 512,
        compile: bool = False,
        attention_dropout: float | None = 0.0,
        hidden_dropout: float | None = None,
    ) -> None:
        super().__init__()
        if num_labels < 2:
            raise ValueError(f"--model.num_labels must be >= 2, got {num_labels}")
        if learning_rate <= 0:
            raise ValueError(f"--model.learning_rate must be > 0, got {learning_rate}")
        if warmup_steps < 0 or not 0 <= warmup_ratio < 1:
            raise ValueError(
                f"--model.warmup_steps must be >= 0 and --model.warmup_ratio in [0, 1), got {warmup_steps}, "
                f"{warmup_ratio}"
            )
        if not 0 < threshold < 1:
            raise ValueError(f"--model.threshold must be in (0, 1), got {threshold}")
        id2label = {
            int(i): str(label) for i, label in (id2label or {i: f"LABEL_{i}" for i in range(num_labels)}).items()
        }
        if sorted(id2label) != list(range(num_labels)):
            raise ValueError(f"--model.id2label must map 0..{num_labels - 1} to labels, got {id2label}")
        self.save_hyperparameters()
        self.id2label = id2label
        self.multi_label = multi_label
        self.threshold = threshold
        self.backbone = build_backbone(
            pretrained,
            id2label,
            multi_label=multi_label,
            random_init=random_init,
            config_overrides=config_overrides,
            attention_dropout=attention_dropout,
            hidden_dropout=hidden_dropout,
        )
        # from_pretrained returns the model in eval mode, and Lightning keeps each submodule's mode: without this,
        # dropout would stay off for the whole of training.
        self.backbone.train()
        if gradient_checkpointing:
            self.backbone.gradient_checkpointing_enable()
        if compile:
            # In place (nn.Module.compile), so state_dict keys, checkpoints and the export stay as they are.
            self.backbone.compile(dynamic=True)
        # Training batches come from clf's own DataModule; validating them would cost a host sync per step.
        self.train_metrics = summary_metrics(num_labels, multi_label, threshold, validate_args=False).clone(
            prefix="train/"
        )
        self.val_metrics = summary_metrics(num_labels, multi_label, threshold).clone(prefix="val/")
        self.test_metrics = summary_metrics(num_labels, multi_label, threshold).clone(prefix="test/")
        self.test_per_class = per_class_metrics(num_labels, multi_label, threshold)
        self.test_reliability = Reliability()
        self.test_encoder_metrics = summary_metrics(num_labels, multi_label, threshold).clone(prefix="test/encoder_")
        self.answer_scoring: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        """Set by the training session when the model under test or predict is an export with its own scoring: maps
        the encoder's probabilities of a batch and its ``row`` indices to the artifact's answers, so that the test
        report and the predictions are those of what the service answers."""

    @property
    def label2id(self) -> dict[str, int]:
        """Category → class index."""
        return {label: i for i, label in self.id2label.items()}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Runs the backbone on a tokenized batch.

        Args:
            input_ids: token ids, shape ``(batch, sequence)``.
            attention_mask: 1 for real tokens, 0 for padding, same shape.

        Returns:
            The logits, shape ``(batch, num_labels)``.
        """
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax over classes, or an independent sigmoid per class in multi-label mode.

        Args:
            logits: the output of `forward`, shape ``(batch, num_labels)``.

        Returns:
            Probabilities of the same shape; rows sum to 1 in single-label mode.
        """
        return torch.sigmoid(logits) if self.multi_label else logits.softmax(dim=-1)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels.float())
        return F.cross_entropy(logits, labels)

    def _targets(self, labels: torch.Tensor) -> torch.Tensor:
        return labels.int() if self.multi_label else labels

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Computes the loss of a batch, updates the training metrics and logs ``train/loss``."""
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = self._loss(logits, batch["labels"])
        self.train_metrics.update(self.probabilities(logits.detach()), self._targets(batch["labels"]))
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits), sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        """Logs the epoch's training metrics and resets them."""
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Logs ``val/loss`` and updates the validation metrics (``val/acc``, ``val/f1_macro``...)."""
        logits = self(batch["input_ids"], batch["attention_mask"])
        loss = self._loss(logits, batch["labels"])
        self.val_metrics.update(self.probabilities(logits), self._targets(batch["labels"]))
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=len(logits))
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Logs ``test/loss`` and updates the summary and per-class test metrics."""
        logits = self(batch["input_ids"], batch["attention_mask"])
        probabilities, targets = self.probabilities(logits), self._targets(batch["labels"])
        self.log(
            "test/loss", self._loss(logits, batch["labels"]), on_epoch=True, sync_dist=True, batch_size=len(logits)
        )
        if self.answer_scoring is not None:
            self.test_encoder_metrics.update(probabilities, targets)
            probabilities = self._answers(probabilities, batch)
        self.test_metrics.update(probabilities, targets)
        self.test_per_class.update(probabilities, targets)
        if not self.multi_label:
            self.test_reliability.update(probabilities, targets)

    def on_test_epoch_end(self) -> None:
        # compute() gathers the states of every rank, so all ranks see the same numbers.
        """Logs the test metrics and writes the test report and confusion matrix into the run's log folder."""
        summary = {name: float(value) for name, value in self.test_metrics.compute().items()}
        if self.answer_scoring is not None:
            summary |= {name: float(value) for name, value in self.test_encoder_metrics.compute().items()}
            self.test_encoder_metrics.reset()
        per_class = {name: value.cpu() for name, value in self.test_per_class.compute().items()}
        calibration = None if self.multi_label else self.test_reliability.compute()
        self.log_dict(summary)
        self.test_metrics.reset()
        self.test_per_class.reset()
        self.test_reliability.reset()
        # trainer.log_dir broadcasts from rank zero: every rank must ask for it before the rank-zero section.
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if not self.trainer.is_global_zero:
            return
        data = getattr(self.trainer, "datamodule", None)
        figure = write_test_report(
            out_dir,
            self.id2label,
            per_class,
            summary,
            multi_label=self.multi_label,
            calibration=calibration,
            data=data.statistics() if data is not None and hasattr(data, "statistics") else None,
        )
        experiment = getattr(self.logger, "experiment", None)
        if experiment is not None and hasattr(experiment, "add_figure"):
            experiment.add_figure("test/confusion_matrix", figure, global_step=self.global_step)
            experiment.add_text("test/report", (out_dir / "test_report.md").read_text(), global_step=self.global_step)
        log_hparams(self.trainer, self, hparam_metrics(summary, "test"))

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Class probabilities, shape ``(batch, num_labels)`` (the artifact's answers when `answer_scoring` is set)."""
        probabilities = self.probabilities(self(batch["input_ids"], batch["attention_mask"]))
        return probabilities if self.answer_scoring is None else self._answers(probabilities, batch)

    def _answers(self, probabilities: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        # Its callers run it only with answer_scoring set.
        if self.answer_scoring is None or "row" not in batch:
            raise RuntimeError("answer_scoring needs batches with a 'row' column (clf's ArxivDataModule gives them)")
        scored = self.answer_scoring(probabilities.detach().float().cpu(), batch["row"].cpu())
        return scored.to(probabilities.device)

    def configure_optimizers(self) -> OptimizerLRSchedulerConfig:
        """AdamW (no weight decay on biases and LayerNorm weights) with a linear warmup-then-decay schedule per step.

        The fused AdamW kernel runs where every parameter's device has one (CPU, CUDA): one pass over each tensor
        instead of a dozen, 155 ms → 23 ms per step for MiniLM on two CPU cores.
        """
        decay: list[torch.Tensor] = []
        no_decay: list[torch.Tensor] = []
        no_decay_ids = {
            id(p) for module in self.modules() if isinstance(module, nn.LayerNorm) for p in module.parameters()
        }
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if name.endswith("bias") or id(parameter) in no_decay_ids else decay).append(parameter)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams["weight_decay"]},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams["learning_rate"],
            fused=_fused_adamw_runs_on(decay + no_decay) or None,
        )
        total = int(self.trainer.estimated_stepping_batches)
        warmup = self.hparams["warmup_steps"] or int(self.hparams["warmup_ratio"] * total)
        scheduler = get_linear_schedule_with_warmup(
            optimizer, num_warmup_steps=min(warmup, total), num_training_steps=total
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}


def _fused_adamw_runs_on(parameters: list[torch.Tensor]) -> bool:
    """Whether torch's fused AdamW supports every parameter's device and dtype."""
    return bool(parameters) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64)
        for p in parameters
    )
