"""`fit`, `validate`, `test`, `predict`: train and evaluate from Python, with the same configs as ``clf fit``.

from clf import training

result = training.fit("configs/tiny.yaml", {"trainer.max_epochs": 1}, run_dir="runs/notebook")
result.best_score, result.export_dir
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import Callback

from clf.training.errors import TrainingConfigError
from clf.training.result import RunResult, Stage
from clf.training.session import ConfigRequest, TrainingSession

FitConfig = str | Path | Mapping[str, Any]
"""A fit config: a YAML file (any under ``configs/``) or a dict of the same keys."""


def fit(
    config: FitConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    ckpt_path: str | Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> RunResult:
    """Trains a model as ``clf fit --config CONFIG --key value ...`` does, and says what the run left.

    Every behaviour of ``clf fit`` applies: the always-on checkpoint, early stopping, divergence guard and export
    callbacks, halving the batch on out-of-memory errors, resuming from ``last`` with a fallback to its backup.

    Args:
        config: a fit config YAML file, or a dict of the same keys (``trainer``, ``model``, ``data``, ...).
        overrides: dotted keys applied on top, as flags would be: ``{"model.learning_rate": 1e-3,
            "trainer.max_epochs": 2}``; a nested dict as a value merges like a YAML section.
        run_dir: put every output of the run here (``trainer.default_root_dir``, ``checkpoints/``, ``export/``, the
            logger's files under ``logs/``) whatever folders the config names.
        ckpt_path: resume from a checkpoint: a path, ``last`` or ``best`` of this run's checkpoint folder. None
            trains from scratch, even from a resumed run's config.yaml (whose ``ckpt_path`` key is replaced).
        callbacks: further callbacks for this run only, e.g. a pruning callback; they survive out-of-memory retries.

    Returns:
        The run's folders, best checkpoint and score, export and final metrics, with its trainer and model.

    Raises:
        TrainingConfigError: naming the file or override key that does not parse (and the closest keys).
        FileNotFoundError: when `config` or the checkpoint `ckpt_path` names does not exist.
    """
    return _run(ConfigRequest(Stage.FIT, config, overrides or {}, run_dir, ckpt_path), callbacks)


def validate(
    config: FitConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    ckpt_path: str | Path | None = "best",
) -> RunResult:
    """Scores a checkpoint on the validation split, as ``clf validate`` does.

    Args:
        config: the fit config the checkpoint was trained with (a YAML file or a dict).
        overrides: dotted keys applied on top, as in `fit`.
        run_dir: the run folder `fit` was given, whose checkpoints ``best`` and ``last`` name.
        ckpt_path: the checkpoint: a path, ``best``, ``last``, or None for the freshly built model.

    Returns:
        The run, with the ``val/*`` metrics in ``metrics``.

    Raises:
        TrainingConfigError: naming the file or override key that does not parse.
        FileNotFoundError: when `config` or the checkpoint does not exist.
    """
    return _run(ConfigRequest(Stage.VALIDATE, config, overrides or {}, run_dir, ckpt_path))


def test(
    config: FitConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    ckpt_path: str | Path | None = "best",
) -> RunResult:
    """Scores a checkpoint on the test split and writes the test report, as ``clf test`` does.

    Args:
        config: the fit config the checkpoint was trained with (a YAML file or a dict).
        overrides: dotted keys applied on top, as in `fit`.
        run_dir: the run folder `fit` was given, whose checkpoints ``best`` and ``last`` name.
        ckpt_path: the checkpoint: a path, ``best``, ``last``, or None for the freshly built model.

    Returns:
        The run, with the ``test/*`` metrics in ``metrics`` and ``report_path`` (``test_report.json``).

    Raises:
        TrainingConfigError: naming the file or override key that does not parse.
        FileNotFoundError: when `config` or the checkpoint does not exist.
    """
    return _run(ConfigRequest(Stage.TEST, config, overrides or {}, run_dir, ckpt_path))


# pytest would collect a module-level function named test_*/test; this one is the API, not a test. (mypy does not
# model attributes set on a function.)
test.__test__ = False  # type: ignore[attr-defined]


def predict(
    config: FitConfig,
    overrides: Mapping[str, Any] | None = None,
    *,
    run_dir: str | Path | None = None,
    ckpt_path: str | Path | None = "best",
) -> RunResult:
    """Predicts ``data.predict_file`` (or the test split) into ``predictions.jsonl``, as ``clf predict`` does.

    Args:
        config: the fit config the checkpoint was trained with (a YAML file or a dict).
        overrides: dotted keys applied on top, e.g. ``{"data.predict_file": "papers.jsonl"}``.
        run_dir: the run folder `fit` was given, whose checkpoints ``best`` and ``last`` name.
        ckpt_path: the checkpoint: a path, ``best``, ``last``, or None for the freshly built model.

    Returns:
        The run, with ``predictions_path``.

    Raises:
        TrainingConfigError: naming the file or override key that does not parse.
        FileNotFoundError: when `config` or the checkpoint does not exist.
    """
    return _run(ConfigRequest(Stage.PREDICT, config, overrides or {}, run_dir, ckpt_path))


def config_keys(config: FitConfig, overrides: Mapping[str, Any] | None = None) -> set[str]:
    """Every key of a fit config, defaults included, checked but with nothing built or trained.

    Args:
        config: a fit config YAML file or dict.
        overrides: dotted keys applied on top, as in `fit`.

    Returns:
        The dotted keys (``model.learning_rate``, ``trainer.logger.init_args.save_dir``, ...), as `overrides` and
        search spaces name them.

    Raises:
        TrainingConfigError: naming the file or override key that does not parse.
        FileNotFoundError: when `config` names a missing file.
    """
    request = ConfigRequest(Stage.FIT, config, overrides or {}, instantiate=False)
    session = TrainingSession(request)
    return set(session.config[Stage.FIT.value].keys())


def merge_overrides(config: FitConfig, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The config as a plain dict with `overrides` written into it, the way a YAML file would spell them.

    Unlike `fit`, nothing is parsed or defaulted: what comes back is the file's own keys plus the overridden ones,
    for writing a config a person reads (the best trial of a study). A dotted key that crosses a ``class_path`` node
    (``trainer.logger.name``) lands in its ``init_args``, as jsonargparse reads it.

    Args:
        config: a fit config YAML file or dict (not modified).
        overrides: dotted keys and their values.

    Returns:
        A new nested dict.

    Raises:
        FileNotFoundError: when `config` names a missing file.
        TrainingConfigError: when the file is not a YAML mapping, or a key runs into a value that is not a section.
    """
    if isinstance(config, Mapping):
        merged = copy.deepcopy(dict(config))
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"fit config {path} not found")
        merged = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(merged, dict):
            raise TrainingConfigError(f"{path}: expected a mapping of config keys, got {type(merged).__name__}")
    for key, value in overrides.items():
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            if isinstance(node, dict) and "class_path" in node and part not in ("class_path", "init_args"):
                node = node.setdefault("init_args", {})
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise TrainingConfigError(f"override {key!r}: {part!r} is not a section of the config")
        if "class_path" in node and leaf not in ("class_path", "init_args"):
            node = node.setdefault("init_args", {})
        node[leaf] = value
    return merged


def _run(request: ConfigRequest, callbacks: Sequence[Callback] = ()) -> RunResult:
    session = TrainingSession(request, callbacks=callbacks)
    assert session.result is not None, "every stage method sets the result"
    return session.result
