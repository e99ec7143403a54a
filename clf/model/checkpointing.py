"""Checkpoints that survive a crash: keep the previous file as a backup, load weights-only, fall back to the backup.

`BackupModelCheckpoint` renames a checkpoint to ``<name>.backup`` before overwriting it, so that a run killed
mid-write (out of memory, pre-emption, a full disk) still has a loadable ``last.ckpt.backup``. `load_checkpoint` and
`resolve_checkpoint` check a checkpoint before anyone uses it and fall back to that backup when it is damaged.

>>> backup_path("runs/checkpoints/last.ckpt").name
'last.ckpt.backup'
"""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

log = logging.getLogger(__name__)

BACKUP_SUFFIX = ".backup"
"""Appended to a checkpoint's file name to name its backup: ``last.ckpt`` -> ``last.ckpt.backup``."""

REQUIRED_CHECKPOINT_KEYS: tuple[str, ...] = ("state_dict", "epoch", "global_step", "pytorch-lightning_version")
"""Keys every checkpoint Lightning writes holds, even with ``save_weights_only=True``."""

_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_UNPICKLER_DETAIL = re.compile(r"WeightsUnpickler error:\s*([^\n]+)")


def backup_path(path: str | os.PathLike[str]) -> Path:
    """The backup that `BackupModelCheckpoint` keeps of the checkpoint at `path`.

    Args:
        path: a checkpoint file.

    Returns:
        ``path`` with `BACKUP_SUFFIX` appended to its name.
    """
    path = Path(path)
    return path.with_name(path.name + BACKUP_SUFFIX)


class BackupModelCheckpoint(ModelCheckpoint):
    """A `ModelCheckpoint` that keeps the previous version of every checkpoint file it overwrites.

    Lightning overwrites ``last.ckpt`` every epoch, and ``best.ckpt`` whenever the monitored metric improves with
    ``filename="best", enable_version_counter=False``. Before each overwrite this callback renames the existing file
    to ``<name>.backup`` (an atomic ``os.replace`` on rank zero), so a crash mid-write never leaves the run without a
    loadable checkpoint; `load_checkpoint` and `resolve_checkpoint` fall back to that backup. When ModelCheckpoint
    deletes a file that dropped out of the top k, its backup goes with it. Every argument and every other behaviour
    is ModelCheckpoint's.

    Backups are made on local filesystems only; symbolic links (``save_last="link"``) and sharded checkpoint
    directories are overwritten as ModelCheckpoint does, without a backup.

    Example::

        checkpoint = BackupModelCheckpoint(monitor="val/loss", filename="best", enable_version_counter=False,
                                           save_last=True)
        trainer = Trainer(callbacks=[checkpoint])
        trainer.fit(model, ckpt_path=resolve_checkpoint("checkpoints/last.ckpt"))
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Resolves the checkpoint directory as ModelCheckpoint does; warns when backups cannot be made there."""
        super().setup(trainer, pl_module, stage)
        self._written_this_fit: set[Path] = set()
        self._last_written_step: int | None = None
        if self.dirpath is not None and not _is_local_file_protocol(self.dirpath):
            rank_zero_warn(
                f"BackupModelCheckpoint keeps backups on local filesystems only; checkpoints in {self.dirpath} are "
                "overwritten without one."
            )

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Saves as ModelCheckpoint does, then rewrites ``last`` if this epoch left it holding an older one."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Saves as ModelCheckpoint does, then rewrites ``last`` if this validation left it holding an older one."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer: pl.Trainer) -> None:
        # Lightning 2.6 writes last.ckpt only in a step that also wrote a top-k checkpoint: after an epoch that did
        # not improve the monitored metric, last.ckpt would still hold an older epoch, and `--ckpt_path last` would
        # repeat the epochs since.
        if (
            not self.save_last
            # Lightning's debugging connector sets fast_dev_run; Trainer does not declare it.
            or trainer.fast_dev_run  # type: ignore[attr-defined]
            or trainer.sanity_checking
            or trainer.state.fn != TrainerFn.FITTING
            or self._last_written_step == trainer.global_step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        # Only rank zero writes a single-file checkpoint, after this rename in its own program order, so the other
        # ranks need no barrier; sharded checkpoints are directories, which `_back_up` leaves alone.
        if trainer.is_global_zero:
            self._back_up(trainer, filepath)
        super()._save_checkpoint(trainer, filepath)
        self._written_this_fit.add(Path(filepath).absolute())
        if Path(filepath).stem.startswith(self.CHECKPOINT_NAME_LAST):
            self._last_written_step = trainer.global_step

    def _remove_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        super()._remove_checkpoint(trainer, filepath)
        backup = backup_path(filepath)
        if trainer.is_global_zero and _is_local_file_protocol(filepath) and not _is_resume_path(trainer, backup):
            backup.unlink(missing_ok=True)

    def _back_up(self, trainer: pl.Trainer, filepath: str) -> None:
        """Renames the checkpoint about to be overwritten at `filepath` to its backup."""
        path = Path(filepath)
        if not _is_local_file_protocol(filepath) or path.is_symlink() or not path.is_file():
            return
        backup = backup_path(path)
        if _is_resume_path(trainer, backup) and path.absolute() not in self._written_this_fit:
            # This fit resumed from the backup because the file beside it was damaged: moving the damaged file over
            # the backup would leave nothing loadable should this save crash too.
            return
        os.replace(path, backup)


def _is_resume_path(trainer: pl.Trainer, path: Path) -> bool:
    return trainer.ckpt_path is not None and Path(trainer.ckpt_path).absolute() == path.absolute()


@dataclass(frozen=True)
class CheckpointProblem:
    """Why one checkpoint file cannot be used."""

    path: Path
    """The file that was tried."""
    reason: str
    """What is wrong with it, as a phrase that follows the file name: ``does not exist``."""

    def __str__(self) -> str:
        return f"{self.path} {self.reason}"


class CheckpointError(RuntimeError):
    """Neither a checkpoint nor its backup can be loaded.

    Args:
        problems: what is wrong with the checkpoint and with its backup, in that order.
    """

    def __init__(self, problems: Sequence[CheckpointProblem]) -> None:
        self.problems = tuple(problems)
        details = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(
            f"No loadable checkpoint at {self.problems[0].path}:\n{details}\n"
            "Train again to write a new checkpoint, or pass another one with --ckpt_path."
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    required_keys: Sequence[str] = REQUIRED_CHECKPOINT_KEYS,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Loads a Lightning checkpoint weights-only, falling back to its backup when it is missing or damaged.

    Loading is always ``torch.load(weights_only=True)``: tensors and plain Python values only, never arbitrary
    objects, so a checkpoint cannot run code. A checkpoint that is missing, unreadable, truncated, not a
    dictionary, or lacking one of `required_keys` is logged as a warning naming the file and the problem, and its
    backup (`backup_path`) is loaded instead.

    Args:
        path: the checkpoint file, e.g. ``checkpoints/last.ckpt``.
        required_keys: keys the checkpoint dictionary must hold.
        map_location: where to put the tensors, as for `torch.load`.

    Returns:
        The checkpoint dictionary of `path`, or of its backup.

    Raises:
        CheckpointError: when neither the file nor its backup can be used; the message names both and why.
    """
    return _load_first_good(Path(path), required_keys, map_location)[1]


def resolve_checkpoint(path: str | os.PathLike[str], required_keys: Sequence[str] = REQUIRED_CHECKPOINT_KEYS) -> Path:
    """The checkpoint to resume from: `path` when it loads and holds `required_keys`, else its backup.

    Checks the file as `load_checkpoint` does (logging a warning when it falls back) and returns the file that
    passed, for ``trainer.fit(ckpt_path=...)``.

    Args:
        path: the checkpoint file, e.g. ``checkpoints/last.ckpt``.
        required_keys: keys the checkpoint dictionary must hold.

    Returns:
        `path`, or its backup when `path` cannot be used.

    Raises:
        CheckpointError: when neither the file nor its backup can be used; the message names both and why.
    """
    return _load_first_good(Path(path), required_keys, "cpu")[0]


def _load_first_good(
    path: Path, required_keys: Sequence[str], map_location: str | torch.device | None
) -> tuple[Path, dict[str, Any]]:
    checkpoint = _load_valid(path, required_keys, map_location)
    if not isinstance(checkpoint, CheckpointProblem):
        return path, checkpoint
    backup = backup_path(path)
    log.warning("Checkpoint %s; trying its backup %s", checkpoint, backup)
    fallback = _load_valid(backup, required_keys, map_location)
    if isinstance(fallback, CheckpointProblem):
        raise CheckpointError([checkpoint, fallback])
    log.warning("Using the backup checkpoint %s (epoch %s) instead of %s", backup, fallback.get("epoch"), path)
    return backup, fallback


def _load_valid(
    path: Path, required_keys: Sequence[str], map_location: str | torch.device | None
) -> dict[str, Any] | CheckpointProblem:
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    # torch.load on damaged bytes raises almost anything: RuntimeError from the zip reader, EOFError, KeyError,
    # UnicodeDecodeError, UnpicklingError; whichever it is, the file is unusable and the backup gets its turn.
    except Exception as error:
        return CheckpointProblem(path, _describe_load_error(error))
    if not isinstance(checkpoint, dict):
        return CheckpointProblem(path, f"holds a {type(checkpoint).__name__}, not a checkpoint dictionary")
    missing = [key for key in required_keys if key not in checkpoint]
    if missing:
        return CheckpointProblem(
            path, f"lacks the key(s) {', '.join(missing)} (it has {', '.join(map(str, checkpoint)) or 'none'})"
        )
    return checkpoint


def _describe_load_error(error: Exception) -> str:
    """The reason `torch.load` failed, as a phrase that follows the file name."""
    if isinstance(error, FileNotFoundError):
        return "does not exist"
    if isinstance(error, IsADirectoryError):
        return "is a directory, not a checkpoint file"
    if isinstance(error, OSError):
        return f"cannot be read ({error.strerror or error})"
    message = str(error)
    if isinstance(error, pickle.UnpicklingError) and (refused := _REFUSED_GLOBAL.search(message)):
        return (
            f"holds {refused.group(1)}, which weights-only loading refuses to unpickle: a checkpoint may hold only "
            "tensors and plain values (str, int, float, bool, None, list, tuple, dict), so save hyperparameters such "
            "as paths as strings"
        )
    if isinstance(error, pickle.UnpicklingError) and (detail := _UNPICKLER_DETAIL.search(message)):
        return f"is corrupt or not a PyTorch checkpoint ({detail.group(1).strip()})"
    if isinstance(error, EOFError):
        return "is empty or truncated"
    # Only the first sentence: torch's zip reader appends a paragraph of generic advice.
    first_sentence = next(iter(message.strip().splitlines()), "").split(". ")[0]
    summary = f"{type(error).__name__}: {first_sentence}" if first_sentence else type(error).__name__
    return f"is corrupt or truncated ({summary})"
