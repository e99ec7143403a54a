"""Tests for clf/model/callbacks.py: a non-finite loss or gradient is skipped within the budget, then stops training."""

from __future__ import annotations

import logging
import math
import pickle

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from clf.model.callbacks import DivergenceGuard, DivergenceReason, TrainingDivergenceError

LEARNING_RATE = 0.1


class PoisonedRegression(pl.LightningModule):
    """A linear regression trained with AdamW whose loss or gradient turns non-finite at chosen batches."""

    def __init__(self, nan_loss_batches=(), inf_grad_batches=(), return_dict: bool = False) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.nan_loss_batches = set(nan_loss_batches)
        self.inf_grad_batches = set(inf_grad_batches)
        self.return_dict = return_dict
        self.batch_idx = -1
        self.layer.weight.register_hook(self._poison_gradient)

    def _poison_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, math.inf) if self.batch_idx in self.inf_grad_batches else grad

    def training_step(self, batch, batch_idx):
        self.batch_idx = batch_idx
        x, y = batch
        loss = F.mse_loss(self.layer(x), y)
        if batch_idx in self.nan_loss_batches:
            loss = loss * math.nan
        return {"loss": loss} if self.return_dict else loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=LEARNING_RATE, weight_decay=0.01)

    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        data = TensorDataset(torch.randn(64, 4, generator=generator), torch.randn(64, 1, generator=generator))
        return DataLoader(data, batch_size=8)


class WeightsPerBatch(pl.Callback):
    """Records every parameter, flattened, before and after each training batch."""

    def __init__(self) -> None:
        self.before: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before[batch_idx] = torch.nn.utils.parameters_to_vector(pl_module.parameters()).detach().clone()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.after[batch_idx] = torch.nn.utils.parameters_to_vector(pl_module.parameters()).detach().clone()


def fit(module: pl.LightningModule, *callbacks: pl.Callback, max_steps: int = 6, **trainer_args) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps,
        callbacks=list(callbacks),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module)
    return trainer


@pytest.mark.parametrize("return_dict", [False, True], ids=["tensor", "dict"])
def test_a_nan_loss_stops_training_at_the_step_it_appeared(return_dict):
    module = PoisonedRegression(nan_loss_batches={3}, return_dict=return_dict)
    weights = WeightsPerBatch()
    with pytest.raises(TrainingDivergenceError, match=r"at step 3: loss is nan \(learning rate 0\.1\)") as info:
        fit(module, DivergenceGuard(), weights)
    err = info.value
    assert (err.step, err.reason, err.learning_rate) == (3, DivergenceReason.NON_FINITE_LOSS, LEARNING_RATE)
    assert math.isnan(err.loss)
    assert "--model.learning_rate (e.g. to 0.05)" in str(err) and "bf16-mixed" in str(err)
    assert module.trainer.global_step == 3
    assert torch.isfinite(weights.before[3]).all() and torch.equal(
        torch.nn.utils.parameters_to_vector(module.parameters()), weights.before[3]
    )


def test_an_inf_gradient_stops_training_and_names_the_gradient():
    with pytest.raises(TrainingDivergenceError, match=r"at step 2: gradient norm is inf") as info:
        fit(PoisonedRegression(inf_grad_batches={2}), DivergenceGuard())
    err = info.value
    assert err.reason is DivergenceReason.NON_FINITE_GRADIENT
    assert err.grad_norm == math.inf and math.isfinite(err.loss)


def test_unchecked_gradients_let_an_inf_gradient_ruin_the_weights_and_the_next_loss_stops_training():
    module = PoisonedRegression(inf_grad_batches={2})
    with pytest.raises(TrainingDivergenceError) as info:
        fit(module, DivergenceGuard(check_gradients=False))
    assert info.value.step == 3 and info.value.reason is DivergenceReason.NON_FINITE_LOSS
    assert not torch.isfinite(module.layer.weight).all()


def test_a_skipped_step_leaves_every_weight_untouched_and_training_completes(caplog):
    weights = WeightsPerBatch()
    guard = DivergenceGuard(max_skipped_batches=2)
    with caplog.at_level(logging.WARNING, logger="clf.model.callbacks"):
        trainer = fit(PoisonedRegression(nan_loss_batches={2}), guard, weights)
    assert trainer.global_step == 6 and guard.skipped_batches == 1
    # AdamW's weight decay alone would move the weights had the gradients been zeroed instead of cleared.
    assert torch.equal(weights.before[2], weights.after[2])
    assert all(not torch.equal(weights.before[i], weights.after[i]) for i in (0, 1, 3, 4, 5))
    assert torch.isfinite(weights.after[5]).all()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "non-finite loss at step 2 (loss nan, gradient norm nan" in warning
    assert "1 of 2 skips left" in warning


def test_the_skip_budget_runs_out_on_the_third_bad_batch(caplog):
    with (
        caplog.at_level(logging.WARNING, logger="clf.model.callbacks"),
        pytest.raises(TrainingDivergenceError) as info,
    ):
        fit(PoisonedRegression(nan_loss_batches={1, 2, 4}), DivergenceGuard(max_skipped_batches=2))
    assert info.value.step == 4
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "non-finite loss at step 1",
        "non-finite loss at step 2",
    ]


def test_a_nan_in_an_early_accumulated_batch_is_caught_before_the_optimizer_step():
    weights = WeightsPerBatch()
    with pytest.raises(TrainingDivergenceError) as info:
        # Batch 2 is the first of the two batches accumulated into optimizer step 1.
        fit(
            PoisonedRegression(nan_loss_batches={2}),
            DivergenceGuard(check_gradients=False),
            weights,
            accumulate_grad_batches=2,
        )
    assert info.value.step == 1 and info.value.reason is DivergenceReason.NON_FINITE_LOSS
    assert torch.isfinite(weights.after[2]).all()


def test_under_a_grad_scaler_inf_gradients_are_left_to_the_scaler_but_a_nan_loss_still_stops():
    def fp16_with_scaler():
        return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu"))

    trainer = fit(PoisonedRegression(inf_grad_batches={1}), DivergenceGuard(), plugins=[fp16_with_scaler()])
    assert trainer.global_step == 6
    with pytest.raises(TrainingDivergenceError) as info:
        fit(PoisonedRegression(nan_loss_batches={3}), DivergenceGuard(), plugins=[fp16_with_scaler()])
    assert info.value.step == 3 and info.value.grad_norm is None


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_a_resumed_run_keeps_the_skips_it_used(tmp_path):
    first = fit(PoisonedRegression(nan_loss_batches={1}), DivergenceGuard(max_skipped_batches=1), max_steps=3)
    first.save_checkpoint(tmp_path / "last.ckpt")
    guard = DivergenceGuard(max_skipped_batches=1)
    trainer = pl.Trainer(
        max_steps=6,
        callbacks=[guard],
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    with pytest.raises(TrainingDivergenceError) as info:
        trainer.fit(PoisonedRegression(nan_loss_batches={4}), ckpt_path=tmp_path / "last.ckpt")
    assert info.value.step == 4 and guard.skipped_batches == 1


def test_the_error_survives_pickling_between_processes():
    err = TrainingDivergenceError(7, 2e-5, DivergenceReason.NON_FINITE_GRADIENT, loss=1.5, grad_norm=math.inf)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and (copy.step, copy.reason, copy.grad_norm) == (7, err.reason, math.inf)
    assert "at step 7: gradient norm is inf (loss 1.5) (learning rate 2e-05)" in str(err)
    assert "(e.g. to 1e-05)" in str(err)


def test_a_negative_skip_budget_is_refused():
    with pytest.raises(ValueError, match="max_skipped_batches must be >= 0, got -1"):
        DivergenceGuard(max_skipped_batches=-1)
