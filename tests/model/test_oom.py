"""Tests for clf/model/oom.py: out-of-memory errors halve the batch and double the accumulation until a run fits."""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from torch.utils.data import DataLoader

from clf.model.oom import BatchSetting, OutOfMemoryAdvice, is_out_of_memory, run_with_oom_backoff


def cuda_oom() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


class FitsAtMost:
    """A `run` that runs out of memory above `limit` samples per batch and records every setting it was given."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tried: list[BatchSetting] = []

    def __call__(self, setting: BatchSetting) -> str:
        self.tried.append(setting)
        if setting.batch_size > self.limit:
            raise cuda_oom()
        return f"trained at {setting.batch_size}"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "clf.model.oom" and r.levelno == logging.WARNING]


def test_the_batch_halves_until_it_fits_and_the_effective_batch_stays_the_same(caplog):
    run = FitsAtMost(4)
    with caplog.at_level(logging.WARNING, logger="clf.model.oom"):
        result = run_with_oom_backoff(run, BatchSetting(16, 1))
    assert result == "trained at 4"
    assert run.tried == [BatchSetting(16, 1), BatchSetting(8, 2), BatchSetting(4, 4)]
    assert run.tried[-1].effective_batch_size == 16
    first, second = warnings_of(caplog)
    assert "batch size 16 → 8, accumulate_grad_batches 1 → 2 (effective batch 16 unchanged)" in first
    assert "batch size 8 → 4, accumulate_grad_batches 2 → 4" in second
    assert "CUDA out of memory. Tried to allocate 2.00 GiB" in first


def test_an_odd_batch_size_warns_that_the_effective_batch_changes(caplog):
    run = FitsAtMost(2)
    with caplog.at_level(logging.WARNING, logger="clf.model.oom"):
        run_with_oom_backoff(run, BatchSetting(5, 1))
    assert run.tried[-1] == BatchSetting(2, 2)
    [warning] = warnings_of(caplog)
    assert "the effective batch changes from 5 to 4" in warning


def test_running_out_of_memory_at_batch_size_1_raises_advice_chained_from_the_error():
    run = FitsAtMost(0)
    with pytest.raises(OutOfMemoryAdvice) as info:
        run_with_oom_backoff(run, BatchSetting(16, 2))
    assert [s.batch_size for s in run.tried] == [16, 8, 4, 2, 1]
    message = str(info.value)
    assert "even at batch size 1 (started at 16)" in message
    for flag in ("--data.max_length", "--model.gradient_checkpointing true", "bf16-mixed", "--model.pretrained"):
        assert flag in message
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    assert info.value.setting == BatchSetting(1, 32)


def test_max_halvings_limits_the_retries():
    run = FitsAtMost(1)
    with pytest.raises(OutOfMemoryAdvice, match="at batch size 8, the smallest the back-off was allowed to try"):
        run_with_oom_backoff(run, BatchSetting(16, 1), max_halvings=1)
    assert len(run.tried) == 2


def test_other_errors_propagate_unchanged_and_are_not_retried():
    tried = []
    error = ValueError("--data.max_length must be > 0")

    def run(setting: BatchSetting) -> None:
        tried.append(setting)
        raise error

    with pytest.raises(ValueError) as info:
        run_with_oom_backoff(run, BatchSetting(16, 1))
    assert info.value is error and tried == [BatchSetting(16, 1)]


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (cuda_oom(), True),
        (RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), True),
        (RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED. This error may appear if you passed in a ..."), True),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), False),
        (ValueError("CUDA out of memory"), False),
        (MemoryError(), False),
    ],
    ids=["OutOfMemoryError", "cuda", "cublas", "cudnn", "cpu", "device-assert", "not-a-runtime-error", "MemoryError"],
)
def test_which_errors_count_as_out_of_memory(err, expected):
    assert is_out_of_memory(err) is expected


def test_a_setting_below_1_names_the_flag():
    with pytest.raises(ValueError, match="--data.batch_size must be >= 1, got 0"):
        BatchSetting(0, 1)
    with pytest.raises(ValueError, match="--trainer.accumulate_grad_batches must be >= 1, got 0"):
        BatchSetting(8, 0)


class OutOfMemoryAbove(pl.Callback):
    """Raises CUDA's out-of-memory error at the start of any batch with more than `limit` rows."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.batch_sizes: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if len(batch) > self.limit:
            raise cuda_oom()
        self.batch_sizes.append(len(batch))


def test_a_real_trainer_recovers_by_training_at_batch_4_with_accumulation_4(caplog):
    model = BoringModel()
    oom = OutOfMemoryAbove(4)

    def fit(setting: BatchSetting) -> pl.Trainer:
        trainer = pl.Trainer(
            max_steps=2,
            accumulate_grad_batches=setting.accumulate_grad_batches,
            callbacks=[oom],
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, train_dataloaders=DataLoader(RandomDataset(32, 64), batch_size=setting.batch_size))
        return trainer

    with caplog.at_level(logging.WARNING, logger="clf.model.oom"):
        trainer = run_with_oom_backoff(fit, BatchSetting(16, 1))
    assert trainer.state.finished and trainer.global_step == 2
    assert trainer.accumulate_grad_batches == 4
    assert oom.batch_sizes == [4] * 8
    assert len(warnings_of(caplog)) == 2
