"""Stops (or briefly survives) a fine-tuning run whose loss or gradients stop being finite.

Add it to the trainer's callbacks: ``Trainer(callbacks=[DivergenceGuard(max_skipped_batches=2)])``, or in a config
under ``trainer.callbacks`` as ``class_path: clf.model.callbacks.DivergenceGuard``.
"""

from __future__ import annotations

import logging
import math
from enum import Enum
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.optim import Optimizer

log = logging.getLogger(__name__)


class DivergenceReason(Enum):
    """What was found not finite before an optimizer step."""

    NON_FINITE_LOSS = "non-finite loss"
    NON_FINITE_GRADIENT = "non-finite gradient"


class TrainingDivergenceError(RuntimeError):
    """Training produced a non-finite loss or gradient and the skip budget of `DivergenceGuard` is spent.

    Args:
        step: the global step (optimizer steps completed before the bad one).
        learning_rate: the learning rate of the first parameter group at that step.
        reason: whether the loss or the gradient was not finite.
        loss: the training loss of the step as backpropagated (under gradient accumulation, the mean over the
            accumulated batches); None when no loss was backpropagated.
        grad_norm: the total 2-norm of the gradients; None when gradients were not checked.
    """

    def __init__(
        self,
        step: int,
        learning_rate: float,
        reason: DivergenceReason,
        loss: float | None = None,
        grad_norm: float | None = None,
    ) -> None:
        self.step = step
        self.learning_rate = learning_rate
        self.reason = reason
        self.loss = loss
        self.grad_norm = grad_norm
        if reason is DivergenceReason.NON_FINITE_LOSS:
            what = f"loss is {_format(loss)}"
        else:
            what = f"gradient norm is {_format(grad_norm)} (loss {_format(loss)})"
        example = f" (e.g. to {learning_rate / 2:g})" if learning_rate > 0 else ""
        super().__init__(
            f"training diverged at step {step}: {what} (learning rate {learning_rate:g}). "
            f"Lower --model.learning_rate{example}, use a longer warmup (--model.warmup_steps or "
            "--model.warmup_ratio), check the data for empty or corrupt samples, or use --trainer.precision "
            "32-true or bf16-mixed instead of 16-mixed."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickles only the message, which __init__ cannot take; DDP spawn pickles errors across processes.
        return type(self), (self.step, self.learning_rate, self.reason, self.loss, self.grad_norm)


class DivergenceGuard(pl.Callback):
    """Checks the loss and the gradient norm before every optimizer step; skips or stops on a non-finite value.

    The loss is the one Lightning backpropagates (``on_before_backward``), so it works whatever ``training_step``
    returns (a tensor or ``{"loss": ...}``) and covers every accumulated batch, not only the last. The check runs in
    ``on_before_optimizer_step``, after backward and before gradient clipping and the optimizer, so a bad step never
    reaches the weights. It costs one host sync per optimizer step.

    A skipped step clears every gradient (``.grad = None``): AdamW then leaves those parameters untouched, weight
    decay and moment estimates included. Lightning still counts the step in ``global_step`` and steps the
    learning-rate scheduler.

    Under ``16-mixed`` with a GradScaler, inf/nan gradients are routine (the scaler skips those steps and lowers its
    scale), so only the loss is checked there.

    Args:
        max_skipped_batches: optimizer steps with a non-finite loss or gradient to skip, over the whole run, before
            raising; 0 raises on the first.
        check_gradients: also check the total gradient norm (ignored under a GradScaler).

    Raises:
        ValueError: when `max_skipped_batches` is negative.

    Example::

        trainer = Trainer(callbacks=[DivergenceGuard(max_skipped_batches=2)])
    """

    def __init__(self, max_skipped_batches: int = 0, check_gradients: bool = True) -> None:
        if max_skipped_batches < 0:
            raise ValueError(f"max_skipped_batches must be >= 0, got {max_skipped_batches}")
        self.max_skipped_batches = max_skipped_batches
        self.check_gradients = check_gradients
        self.skipped_batches = 0
        self._pending_loss: Tensor | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Resets the skip count for a new fit (a resumed fit restores it from the checkpoint afterwards)."""
        if stage == "fit":
            self.skipped_batches = 0
            self._pending_loss = None

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        """Adds the loss about to be backpropagated to the loss of the coming optimizer step (no host sync)."""
        loss = loss.detach().float().sum()
        self._pending_loss = loss if self._pending_loss is None else self._pending_loss + loss

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: Optimizer
    ) -> None:
        """Skips the step (clears the gradients) or raises when the loss or the gradient norm is not finite.

        Raises:
            TrainingDivergenceError: once `max_skipped_batches` steps have been skipped.
        """
        loss, self._pending_loss = self._pending_loss, None
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        grad_norm = _gradient_norm(optimizer) if self.check_gradients and scaler is None else None
        checked = [t for t in (loss, grad_norm) if t is not None]
        if not checked:
            return
        values = torch.stack([t.to(checked[0].device) for t in checked]).tolist()
        loss_value = values.pop(0) if loss is not None else None
        norm_value = values.pop(0) if grad_norm is not None else None

        if loss_value is not None and not math.isfinite(loss_value):
            reason = DivergenceReason.NON_FINITE_LOSS
        elif norm_value is not None and not math.isfinite(norm_value):
            reason = DivergenceReason.NON_FINITE_GRADIENT
        else:
            return

        learning_rate = float(optimizer.param_groups[0]["lr"])
        if self.skipped_batches >= self.max_skipped_batches:
            raise TrainingDivergenceError(trainer.global_step, learning_rate, reason, loss_value, norm_value)
        self.skipped_batches += 1
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        log.warning(
            "%s at step %d (loss %s, gradient norm %s, learning rate %g): skipped this optimizer step, %d of %d "
            "skips left",
            reason.value,
            trainer.global_step,
            _format(loss_value),
            _format(norm_value),
            learning_rate,
            self.max_skipped_batches - self.skipped_batches,
            self.max_skipped_batches,
        )

    def state_dict(self) -> dict[str, Any]:
        """The skips used so far, saved in checkpoints so that a resumed run keeps its budget."""
        return {"skipped_batches": self.skipped_batches}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores the skips used before the checkpoint."""
        self.skipped_batches = int(state_dict.get("skipped_batches", 0))


def _gradient_norm(optimizer: Optimizer) -> Tensor | None:
    """Total 2-norm (in float32) of the optimizer's gradients, on the device of the first; None without any."""
    grads = [p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return None
    device = grads[0].device
    norms = [torch.linalg.vector_norm(g, dtype=torch.float32).to(device) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms))


def _format(value: float | None) -> str:
    return "not checked" if value is None else f"{value:.4g}"
