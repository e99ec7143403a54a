"""`clf tune`: an Optuna study over any fit config, with pruning and shared storage.

    clf tune --fit_config configs/quickstart.yaml --n_trials 20
    clf tune --fit_config configs/quickstart.yaml --storage postgresql+psycopg://user@db/optuna --study_name sweep1
    clf tune --config study.yaml --n_trials 5      # a YAML of these options (`clf tune ... --print_config` writes one)

Each trial is a `clf.training.fit` of the fit config with the trial's values, in ``<output_dir>/<study>/trial_NNNN/``
with its own checkpoints and TensorBoard logs. The study lives in a SQLite file by default
(``<output_dir>/<study>/study.db``) or in any SQLAlchemy database, so several `clf tune` workers on several machines
share it, and an interrupted study resumes. At the end: ``best_params.json``, ``best.yaml`` (the fit config with the
best values, ready for `clf fit --config`), and plots.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import optuna
import sqlalchemy
import yaml

from clf.io import append_jsonl, write_json_atomic, write_text_atomic
from clf.tune.errors import TuneError
from clf.tune.search_space import Parameter, check_keys, load_search_space

log = logging.getLogger(__name__)


def tune(
    *,
    fit_config: str,
    search_space: str | None = None,
    n_trials: int = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    output_dir: str = "runs/tune",
    epochs: int = 3,
    monitor: str = "val/acc",
    direction: Literal["maximize", "minimize"] = "maximize",
    seed: int = 42,
    n_startup_trials: int = 5,
) -> Path:
    """Search hyperparameters of a fit config with Optuna (TPE sampler, median pruning).

    Args:
        fit_config: the fit config to tune (any file under configs/, or a run's config.yaml).
        search_space: YAML of config keys to search (see configs/tune/default.yaml); the default space when unset.
        n_trials: trials this worker runs (workers sharing a study each run their own; a resumed study adds these).
        timeout: stop starting trials after this many seconds.
        storage: SQLAlchemy URL of the study database; a SQLite file in the study folder when unset.
        study_name: the study's name; the config file's stem when unset.
        output_dir: folder of the study's runs and results.
        epochs: epochs per trial.
        monitor: validation metric to optimise and prune on.
        direction: maximize or minimize `monitor`.
        seed: seed of the TPE sampler.
        n_startup_trials: completed trials before the median pruner starts pruning.

    Returns:
        The study folder, holding best_params.json, best.yaml, trials.jsonl and plots/.

    Raises:
        ValueError: when `n_trials` or `epochs` is below 1, or `timeout` is not positive.
        FileNotFoundError: when `fit_config` does not exist.
    """
    # torch and Lightning load only when a study runs, not for `clf --help`.
    from clf import training
    from clf.model.callbacks import TrainingDivergenceError
    from clf.model.oom import OutOfMemoryAdvice

    if n_trials < 1 or epochs < 1:
        raise ValueError(f"--n_trials and --epochs must be >= 1, got {n_trials} and {epochs}")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"--timeout must be > 0 seconds, got {timeout}")
    base = Path(fit_config)
    if not base.is_file():
        raise FileNotFoundError(f"--fit_config {fit_config}: file not found")
    name = study_name or base.stem
    study_dir = Path(output_dir) / name
    study_dir.mkdir(parents=True, exist_ok=True)
    parameters = load_search_space(search_space)
    check_keys(parameters, training.config_keys(base))
    study = optuna.create_study(
        study_name=name,
        storage=_storage(storage or f"sqlite:///{(study_dir / 'study.db').resolve()}"),
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=n_startup_trials),
        direction=direction,
        load_if_exists=True,
    )
    objective = _Objective(base, parameters, study_dir, epochs, monitor, direction)
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=timeout,
        # A trial that diverges or runs out of memory at batch size 1 fails alone; the study goes on.
        catch=(TrainingDivergenceError, OutOfMemoryAdvice),
        callbacks=[_TrialLog(study_dir / "trials.jsonl")],
        gc_after_trial=True,
    )
    _write_results(study, base, study_dir)
    return study_dir


# PostgreSQL's answers to a CREATE of something another session created meanwhile: unique_violation (on its
# catalogue), duplicate_table, duplicate_object.
_SCHEMA_RACE_STATES = frozenset({"23505", "42P07", "42710"})


def _storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    for attempt in range(1, attempts + 1):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as err:
            # Workers started together race to create Optuna's schema (CREATE TYPE / TABLE, alembic_version): the
            # loser finds it made by the winner on the next try.
            if _lost_schema_race(err) and attempt < attempts:
                time.sleep(0.5 * attempt)
                continue
            raise TuneError(
                f"--storage {_redact(url)}: cannot open the study database ({type(err).__name__}: {err}). Check the "
                "URL, that the server is reachable, and that its driver is installed (e.g. pip install "
                "'psycopg[binary]')."
            ) from err
    raise AssertionError("unreachable")


def _lost_schema_race(err: BaseException) -> bool:
    if isinstance(err, sqlalchemy.exc.IntegrityError):
        return True
    state = getattr(getattr(err, "orig", None), "sqlstate", None)
    return isinstance(err, sqlalchemy.exc.ProgrammingError) and state in _SCHEMA_RACE_STATES


def _redact(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


class _Objective:
    def __init__(
        self, base: Path, parameters: Sequence[Parameter], study_dir: Path, epochs: int, monitor: str, direction: str
    ) -> None:
        self.base, self.parameters, self.study_dir = base, parameters, study_dir
        self.epochs, self.monitor, self.mode = epochs, monitor, "max" if direction == "maximize" else "min"

    def __call__(self, trial: optuna.Trial) -> float:
        from clf import training
        from clf.tune.pruning import StrictPruningCallback

        overrides = {
            **{p.key: p.suggest(trial) for p in self.parameters},
            "trainer.max_epochs": self.epochs,
            "checkpoint.monitor": self.monitor,
            "checkpoint.mode": self.mode,
            "early_stopping.monitor": self.monitor,
            "early_stopping.mode": self.mode,
            "export.enabled": False,
        }
        pruning = StrictPruningCallback(trial, monitor=self.monitor)
        run = training.fit(
            self.base, overrides, run_dir=self.study_dir / f"trial_{trial.number:04d}", callbacks=[pruning]
        )
        pruning.check_pruned()
        if run.best_score is None:
            raise TuneError(f"trial {trial.number}: no {self.monitor} was recorded; is validation running?")
        return run.best_score


class _TrialLog:
    """Logs each finished trial and appends it to trials.jsonl."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        seconds = trial.duration.total_seconds() if trial.duration else None
        record = {
            "number": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "params": trial.params,
            "seconds": seconds,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        append_jsonl(self.path, [record])
        log.info(
            "trial %d %s: value %s, params %s, %.1f s",
            trial.number,
            trial.state.name,
            trial.value,
            trial.params,
            seconds or 0.0,
        )


def _write_results(study: optuna.Study, base: Path, study_dir: Path) -> None:
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not completed:
        log.warning("no trial of study %s completed; nothing to report", study.study_name)
        return
    best = study.best_trial
    write_json_atomic(
        study_dir / "best_params.json",
        {"params": best.params, "value": best.value, "trial": best.number, "study_name": study.study_name},
    )
    from clf import training

    merged = training.merge_overrides(base, best.params)
    header = f"# {base} with the best values of study {study.study_name!r} (trial {best.number}, {best.value:.4f})\n"
    write_text_atomic(study_dir / "best.yaml", header + yaml.safe_dump(merged, sort_keys=False))
    from clf.tune.plots import write_plots

    write_plots(study, study_dir / "plots")
    log.info(
        "best trial %d: %s = %.4f with %s; wrote %s",
        best.number,
        "value",
        best.value,
        best.params,
        study_dir / "best.yaml",
    )
