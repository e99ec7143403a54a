"""Checkpoints that survive a crash: backups on overwrite, weights-only loading, fallback and resume."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

from clf.model.checkpointing import (
    BackupModelCheckpoint,
    CheckpointError,
    backup_path,
    load_checkpoint,
    resolve_checkpoint,
)

LOGGER = "clf.model.checkpointing"


class ScriptedLossModel(BoringModel):
    """A BoringModel whose validation logs `val_loss` from a script, one value per epoch (1.0 without one)."""

    def __init__(self, val_losses: Sequence[float] | None = None) -> None:
        super().__init__()
        self.val_losses = val_losses

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> dict[str, torch.Tensor]:
        self.log("val_loss", self.val_losses[self.current_epoch] if self.val_losses else 1.0)
        return super().validation_step(batch, batch_idx)


class EpochRecorder(Callback):
    """Records the epochs a fit trains and, as each starts, the epoch `watched` holds (None when unreadable)."""

    def __init__(self, watched: Path) -> None:
        self.watched = watched
        self.epochs: list[int] = []
        self.watched_epochs: list[int | None] = []

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epochs.append(trainer.current_epoch)
        try:
            self.watched_epochs.append(epoch_of(self.watched))
        except RuntimeError:
            self.watched_epochs.append(None)


def fit(
    root: Path,
    checkpoint: BackupModelCheckpoint,
    max_epochs: int,
    model: LightningModule | None = None,
    ckpt_path: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> Trainer:
    """Trains a tiny model on CPU for `max_epochs` epochs of two batches each, validating on one batch."""
    trainer = Trainer(
        default_root_dir=root,
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        limit_train_batches=2,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        callbacks=[checkpoint, *callbacks],
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(model or ScriptedLossModel(), datamodule=BoringDataModule(), ckpt_path=ckpt_path, weights_only=True)
    return trainer


def epoch_of(path: Path) -> int:
    """The epoch a checkpoint was written at, read weights-only."""
    return torch.load(path, weights_only=True)["epoch"]


@pytest.fixture
def last_ckpt(tmp_path: Path) -> Path:
    """``last.ckpt`` of a 3-epoch run (epoch 2) beside its backup (epoch 1)."""
    fit(tmp_path, BackupModelCheckpoint(dirpath=tmp_path / "checkpoints", save_last=True), max_epochs=3)
    return tmp_path / "checkpoints" / "last.ckpt"


def test_last_checkpoint_keeps_the_previous_epoch_as_backup(last_ckpt: Path) -> None:
    assert epoch_of(last_ckpt) == 2
    assert epoch_of(backup_path(last_ckpt)) == 1


@pytest.mark.parametrize(
    ("val_losses", "best_epoch", "backup_epoch"),
    [((3.0, 2.0, 1.0), 2, 1), ((3.0, 1.0, 2.0), 1, 0)],
    ids=["improves-every-epoch", "worse-last-epoch"],
)
def test_best_checkpoint_is_backed_up_when_replaced(
    tmp_path: Path, val_losses: tuple[float, ...], best_epoch: int, backup_epoch: int
) -> None:
    checkpoint = BackupModelCheckpoint(
        dirpath=tmp_path, filename="best", monitor="val_loss", enable_version_counter=False
    )
    fit(tmp_path, checkpoint, max_epochs=3, model=ScriptedLossModel(val_losses))

    assert sorted(p.name for p in tmp_path.glob("best*")) == ["best.ckpt", "best.ckpt.backup"]
    assert epoch_of(tmp_path / "best.ckpt") == best_epoch
    assert epoch_of(tmp_path / "best.ckpt.backup") == backup_epoch


def test_last_checkpoint_is_written_even_when_the_metric_did_not_improve(tmp_path: Path) -> None:
    checkpoint = BackupModelCheckpoint(
        dirpath=tmp_path, filename="best", monitor="val_loss", enable_version_counter=False, save_last=True
    )
    fit(tmp_path, checkpoint, max_epochs=3, model=ScriptedLossModel((1.0, 2.0, 3.0)))
    assert epoch_of(tmp_path / "best.ckpt") == 0
    assert epoch_of(tmp_path / "last.ckpt") == 2, "last.ckpt must hold the last epoch, so a resume repeats nothing"
    assert epoch_of(tmp_path / "last.ckpt.backup") == 1


def test_top_k_rotation_removes_the_backup_with_its_checkpoint(tmp_path: Path) -> None:
    # Saving every step under an epoch-only name overwrites each epoch's file once; keeping the top 1 then
    # deletes epoch 0's file when epoch 1 saves.
    checkpoint = BackupModelCheckpoint(
        dirpath=tmp_path / "checkpoints", filename="{epoch}", every_n_train_steps=1, enable_version_counter=False
    )
    fit(tmp_path, checkpoint, max_epochs=2)

    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["epoch=1.ckpt", "epoch=1.ckpt.backup"]


def test_a_sound_checkpoint_loads_without_warnings(last_ckpt: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        checkpoint = load_checkpoint(last_ckpt)
        resolved = resolve_checkpoint(last_ckpt)

    assert checkpoint["epoch"] == 2
    assert set(checkpoint["state_dict"]) == {"layer.weight", "layer.bias"}
    assert resolved == last_ckpt
    assert caplog.records == []


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _no_state_dict(path: Path) -> None:
    torch.save({"epoch": 9, "global_step": 18, "pytorch-lightning_version": "2.6.6"}, path)


def _not_a_dict(path: Path) -> None:
    torch.save([torch.zeros(2)], path)


def _missing(path: Path) -> None:
    path.unlink()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        pytest.param(_truncate, "is corrupt or truncated", id="truncated"),
        pytest.param(_garbage, "is corrupt or not a PyTorch checkpoint", id="garbage"),
        pytest.param(_empty, "is empty or truncated", id="empty"),
        pytest.param(_no_state_dict, "lacks the key(s) state_dict", id="no-state-dict"),
        pytest.param(_not_a_dict, "holds a list, not a checkpoint dictionary", id="not-a-dict"),
        pytest.param(_missing, "does not exist", id="missing"),
    ],
)
def test_a_damaged_checkpoint_falls_back_to_its_backup(
    last_ckpt: Path, damage: Callable[[Path], None], problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    damage(last_ckpt)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        checkpoint = load_checkpoint(last_ckpt)

    assert checkpoint["epoch"] == 1
    assert f"{last_ckpt} {problem}" in caplog.text
    assert resolve_checkpoint(last_ckpt) == backup_path(last_ckpt)


def test_no_loadable_checkpoint_names_both_files_and_the_fix(last_ckpt: Path) -> None:
    _truncate(last_ckpt)
    backup_path(last_ckpt).unlink()

    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(last_ckpt)

    message = str(caught.value)
    assert f"{last_ckpt} is corrupt or truncated" in message
    assert f"{backup_path(last_ckpt)} does not exist" in message
    assert "Train again" in message and "--ckpt_path" in message
    with pytest.raises(CheckpointError):
        resolve_checkpoint(last_ckpt)


class _CreatesFileWhenUnpickled:
    """Unpickles as ``open(marker, "w")``: stands in for a checkpoint that runs code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (str(self.marker), "w")


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "last.ckpt"
    state = {"state_dict": {}, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6"}
    torch.save({**state, "hyper_parameters": {"payload": _CreatesFileWhenUnpickled(marker)}}, path)
    torch.save({**state, "hyper_parameters": {"payload": _CreatesFileWhenUnpickled(marker)}}, backup_path(path))

    with pytest.raises(CheckpointError, match="holds io.open, which weights-only loading refuses"):
        load_checkpoint(path)
    assert not marker.exists()


def test_fit_resumes_from_the_backup_of_a_damaged_last_checkpoint(last_ckpt: Path, tmp_path: Path) -> None:
    _truncate(last_ckpt)
    recorder = EpochRecorder(watched=backup_path(last_ckpt))

    trainer = fit(
        tmp_path,
        BackupModelCheckpoint(dirpath=last_ckpt.parent, save_last=True),
        max_epochs=4,
        ckpt_path=resolve_checkpoint(last_ckpt),
        callbacks=[recorder],
    )

    assert recorder.epochs == [2, 3]
    assert trainer.global_step == 8
    assert epoch_of(last_ckpt) == 3
    # Epoch 2's save overwrote the damaged file instead of moving it over the backup this fit resumed from;
    # epoch 3's save backed up epoch 2 as usual.
    assert recorder.watched_epochs == [1, 1]
    assert epoch_of(backup_path(last_ckpt)) == 2
