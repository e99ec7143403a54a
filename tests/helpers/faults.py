"""Faults that tests inject: into real training runs through ordinary Lightning callbacks, and into real served
models through `ModelPredictor` subclasses."""

from __future__ import annotations

import threading
from dataclasses import replace

import lightning as L
import torch

from clf.serving import ModelPredictor


class InjectOutOfMemory(L.Callback):
    """Raises CUDA's out-of-memory error for any training batch with more than `max_rows` rows, as a GPU would.

    Args:
        max_rows: the largest batch that "fits".
    """

    def __init__(self, max_rows: int = 4) -> None:
        self.max_rows = max_rows

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        rows = len(batch["input_ids"])
        if rows > self.max_rows:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate 2.00 GiB (injected: batch of {rows} > {self.max_rows} rows)"
            )


class InjectNaNLoss(L.Callback):
    """Poisons one input embedding row at step `at_step`, so the forward pass yields a NaN loss from then on."""

    def __init__(self, at_step: int = 2) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.at_step:
            embeddings = pl_module.backbone.get_input_embeddings().weight
            with torch.no_grad():
                embeddings[batch["input_ids"][0, 1]] = float("nan")


class PoisonedPredictor(ModelPredictor):
    """A real model that fails on any batch holding a text with "poison" in it, as a tokenizer bug would."""

    def predict_texts(self, texts, batch_size=32):
        if any("poison" in text.lower() for text in texts):
            raise TypeError("TextEncodeInput must be Union[TextInputSequence, Tuple[InputSequence, InputSequence]]")
        return super().predict_texts(texts, batch_size)


class HeldPredictor(ModelPredictor):
    """A real model whose passes wait for `release` (set it to let them go): a model busy with a long batch."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.release, self.running = threading.Event(), threading.Event()

    def predict_texts(self, texts, batch_size=32):
        self.running.set()
        assert self.release.wait(30), "the test never released the model"
        return super().predict_texts(texts, batch_size)


class DisagreeingPredictor(ModelPredictor):
    """A real model whose top-1 answer is its second choice for every text of even length: it disagrees with the
    same model on about half the papers, always the same ones, as a worse candidate would."""

    def predict_texts(self, texts, batch_size=8, ranked=True):
        predictions = super().predict_texts(texts, batch_size, ranked)
        return [
            replace(p, label=p.top3[1].label, probability=p.top3[1].probability) if len(text) % 2 == 0 else p
            for text, p in zip(texts, predictions, strict=True)
        ]
