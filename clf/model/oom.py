"""Retries a run with half the batch and twice the gradient accumulation when it runs out of memory.

The effective batch (batch size × accumulation) stays the same while the batch size is even, so the learning-rate
schedule and results stay comparable; only speed is lost.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from lightning.pytorch.utilities.memory import is_oom_error

log = logging.getLogger(__name__)

T = TypeVar("T")

# Allocation failures that surface as a plain RuntimeError and that Lightning's is_oom_error does not know.
_OOM_MESSAGES = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "MPS backend out of memory")

ADVICE = (
    "Lower --data.max_length (e.g. to 256), set --model.gradient_checkpointing true, use --trainer.precision "
    "bf16-mixed (or 16-mixed on GPUs without bfloat16), or choose a smaller --model.pretrained."
)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation failure that a smaller batch could avoid.

    True for ``torch.cuda.OutOfMemoryError``, and for RuntimeErrors reporting CUDA, cuBLAS, MPS or CPU allocation
    failures, or the cuDNN error that stands for one (``CUDNN_STATUS_NOT_SUPPORTED``).

    Args:
        err: the exception raised by the run.

    Returns:
        True when halving the batch may help.

    Examples:
        >>> is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
        True
        >>> is_out_of_memory(ValueError("CUDA out of memory"))
        False
    """
    if isinstance(err, torch.cuda.OutOfMemoryError) or is_oom_error(err):
        return True
    return isinstance(err, RuntimeError) and any(message in str(err) for message in _OOM_MESSAGES)


@dataclass(frozen=True)
class BatchSetting:
    """How many samples a step sees: ``batch_size`` per forward pass, summed over ``accumulate_grad_batches``.

    Raises:
        ValueError: naming the flag when either is below 1.
    """

    batch_size: int
    """Samples per forward pass (``--data.batch_size``)."""
    accumulate_grad_batches: int = 1
    """Forward passes whose gradients are summed before an optimizer step (``--trainer.accumulate_grad_batches``)."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--data.batch_size must be >= 1, got {self.batch_size}")
        if self.accumulate_grad_batches < 1:
            raise ValueError(f"--trainer.accumulate_grad_batches must be >= 1, got {self.accumulate_grad_batches}")

    @property
    def effective_batch_size(self) -> int:
        """Samples per optimizer step.

        Examples:
            >>> BatchSetting(8, 2).effective_batch_size
            16
        """
        return self.batch_size * self.accumulate_grad_batches

    def halved(self) -> BatchSetting:
        """Half the batch size (rounded down) and twice the accumulation.

        Returns:
            The new setting; the effective batch size (batch size × accumulation) stays the same for even sizes.

        Raises:
            ValueError: at batch size 1, which cannot be halved.

        Examples:
            >>> BatchSetting(16, 1).halved()
            BatchSetting(batch_size=8, accumulate_grad_batches=2)
        """
        if self.batch_size == 1:
            raise ValueError("batch size 1 cannot be halved")
        return BatchSetting(self.batch_size // 2, self.accumulate_grad_batches * 2)


class OutOfMemoryAdvice(RuntimeError):
    """The run still ran out of memory at the smallest batch size allowed; the message says what else to lower.

    Args:
        setting: the last setting tried.
        start: the setting the back-off started from.
    """

    def __init__(self, setting: BatchSetting, start: BatchSetting) -> None:
        self.setting = setting
        self.start = start
        if setting.batch_size == 1:
            where = "even at batch size 1"
        else:
            where = f"at batch size {setting.batch_size}, the smallest the back-off was allowed to try"
        super().__init__(f"training runs out of memory {where} (started at {start.batch_size}). {ADVICE}")

    def __reduce__(self) -> tuple[type[OutOfMemoryAdvice], tuple[BatchSetting, BatchSetting]]:
        return type(self), (self.setting, self.start)


def run_with_oom_backoff(
    run: Callable[[BatchSetting], T],
    start: BatchSetting,
    *,
    max_halvings: int | None = None,
) -> T:
    """Calls ``run(setting)``, halving the batch and doubling the accumulation after each out-of-memory error.

    Each retry starts ``run`` afresh: build a new Trainer in it, and a new LightningModule (or reload its initial
    weights) if an error late in an epoch could leave it partly trained. Before a retry the failed attempt's tensors
    are garbage-collected and the CUDA cache is emptied.

    Args:
        run: trains with the given setting and returns anything; it is called again on out-of-memory errors.
        start: the batch setting to try first.
        max_halvings: at most this many halvings; None halves down to batch size 1.

    Returns:
        What the first successful ``run`` returned.

    Raises:
        OutOfMemoryAdvice: chained from the last out-of-memory error, when batch size 1 (or the last halving
            allowed) still runs out of memory.
        ValueError: when `max_halvings` is negative.
        Exception: any other error from ``run``, unchanged and not retried.

    Example::

        def fit(setting: BatchSetting) -> None:
            datamodule.batch_size = setting.batch_size
            trainer = Trainer(accumulate_grad_batches=setting.accumulate_grad_batches)
            trainer.fit(model, datamodule)

        run_with_oom_backoff(fit, BatchSetting(32, 1))
    """
    if max_halvings is not None and max_halvings < 0:
        raise ValueError(f"max_halvings must be >= 0 or None, got {max_halvings}")
    setting, halvings = start, 0
    while True:
        try:
            return run(setting)
        except Exception as err:
            if not is_out_of_memory(err):
                raise
            if setting.batch_size == 1 or (max_halvings is not None and halvings >= max_halvings):
                raise OutOfMemoryAdvice(setting, start) from err
            error_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        # Freed only here, after the except block has dropped the traceback whose frames hold the failed run's tensors.
        _free_memory()
        new, halvings = setting.halved(), halvings + 1
        if new.effective_batch_size == setting.effective_batch_size:
            effect = f"effective batch {new.effective_batch_size} unchanged"
        else:
            effect = f"the effective batch changes from {setting.effective_batch_size} to {new.effective_batch_size}"
        log.warning(
            "out of memory (%s): retrying with batch size %d → %d, accumulate_grad_batches %d → %d (%s)",
            error_line,
            setting.batch_size,
            new.batch_size,
            setting.accumulate_grad_batches,
            new.accumulate_grad_batches,
            effect,
        )
        setting = new


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
