"""Pruning that fails loudly when the monitored metric is missing."""

from __future__ import annotations

from lightning import LightningModule, Trainer
from optuna_integration import PyTorchLightningPruningCallback

from clf.tune.errors import TuneError


class StrictPruningCallback(PyTorchLightningPruningCallback):
    """Optuna's Lightning pruning callback, except that a monitored metric that was never logged is an error.

    Optuna's own callback only warns and never prunes, which silently turns a typo into a sweep without pruning.
    """

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reports the monitored metric to Optuna and prunes, raising `TuneError` when validation did not log it."""
        if not trainer.sanity_checking and self.monitor not in trainer.callback_metrics:
            logged = ", ".join(sorted(k for k in trainer.callback_metrics if k.startswith("val/"))) or "none"
            raise TuneError(
                f"--monitor {self.monitor!r} was not logged by validation (logged: {logged}); pass one of those."
            )
        super().on_validation_end(trainer, pl_module)
