"""Training from Python: the one way clf trains, which ``clf fit``, ``clf tune`` and ``clf retrain`` all go through.

    from clf import training

    result = training.fit("configs/tiny.yaml", {"trainer.max_epochs": 1}, run_dir="runs/notebook")
    print(result.best_score, result.monitor, result.export_dir)

`fit` takes what ``clf fit --config`` takes (a YAML file, or a dict of the same keys) and overrides as dotted keys;
it returns a `RunResult`. `validate`, `test` and `predict` score or apply a checkpoint the same way, and
`config_keys` lists a config's keys without building anything. `TrainingSession` is the LightningCLI underneath, also
the one behind ``clf fit|validate|test|predict``.
"""

from clf.training.api import config_keys, fit, merge_overrides, predict, test, validate
from clf.training.errors import TrainingConfigError
from clf.training.result import RunResult, Stage
from clf.training.session import ConfigRequest, TrainingSession

__all__ = [
    "ConfigRequest",
    "RunResult",
    "Stage",
    "TrainingConfigError",
    "TrainingSession",
    "config_keys",
    "fit",
    "merge_overrides",
    "predict",
    "test",
    "validate",
]
