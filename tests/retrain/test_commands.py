"""Tests for clf/retrain/commands.py: `retrain run|schedule|history` as the CLI calls them."""

from __future__ import annotations

import json
import logging
import os
import signal

import pytest
import yaml
from jsonargparse import CLI

from clf.retrain.commands import RetrainingRunFailed, retrain, schedule
from clf.retrain.config import RetrainingConfig


@pytest.fixture
def write_config(tmp_path, make_config):
    """Writes a retraining YAML (skipping by default: growth_threshold 100) and returns its path."""

    def write(**overrides) -> str:
        config = make_config(**{"growth_threshold": 100.0, **overrides})
        path = tmp_path / "retraining.yaml"
        path.write_text(yaml.safe_dump(config.to_dict()))
        return str(path)

    return write


def test_run_prints_its_result_and_history_lists_it(write_config, capsys):
    path = write_config()
    result = retrain("run", retrain_config=path)
    assert result["status"] == "skipped" and result["growth"]["decision"] == "skip"
    assert json.loads(capsys.readouterr().out) == result
    history = retrain("history", retrain_config=path)
    assert [(r["id"], r["status"], r["trigger_type"]) for r in history] == [(result["run_id"], "skipped", "manual")]
    assert retrain("history", retrain_config=path, status="failed") == []


def test_a_failed_run_raises_for_a_non_zero_exit_after_printing_and_recording_it(write_config, tmp_path, capsys):
    path = write_config(registry=str(tmp_path / "no_production"))
    with pytest.raises(RetrainingRunFailed, match=r"retraining run 1 failed: RetrainingError: .*no version is in"):
        retrain("run", retrain_config=path)
    assert json.loads(capsys.readouterr().out)["status"] == "failed"
    (record,) = retrain("history", retrain_config=path)
    assert record["status"] == "failed" and "no version is in production" in record["error_message"]


def test_dry_run_decides_without_recording(write_config, registry):
    path = write_config(growth_threshold=0.1)
    result = retrain("run", retrain_config=path, dry_run=True)
    assert result["status"] == "dry_run" and result["run_id"] is None and result["growth"]["decision"] == "retrain"
    assert result["version"] is None and [v["version"] for v in registry.list_versions()] == ["v1.0.0"]
    assert retrain("history", retrain_config=path) == []


def test_schedule_runs_every_interval_until_max_runs(write_config):
    path = write_config(schedule_every_hours=2.0)
    now = [1000.0]
    waits = []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return False

    results = schedule(RetrainingConfig.from_yaml(path), max_runs=3, clock=lambda: now[0], sleep=sleep)
    assert [r["status"] for r in results] == ["skipped"] * 3
    assert waits == [7200.0, 7200.0], "start to start, and no wait after the last run"
    history = retrain("history", retrain_config=path)
    assert [r["trigger_type"] for r in history] == ["schedule"] * 3


def test_sigterm_ends_the_schedule_cleanly_and_restores_the_handlers(write_config):
    path = write_config()
    before = signal.getsignal(signal.SIGTERM)

    def sleep(seconds: float) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered to the schedule's handler
        return False

    results = schedule(RetrainingConfig.from_yaml(path), sleep=sleep)
    assert [r["status"] for r in results] == ["skipped"]
    assert signal.getsignal(signal.SIGTERM) is before


class _SigintDuringTheWait(logging.Handler):
    """Sends SIGINT (from a SIGALRM) shortly after the schedule announces its wait, however long the run before took."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Next retraining run in"):
            self.armed = True
            signal.setitimer(signal.ITIMER_REAL, 0.2)


def test_the_default_wait_is_cut_short_by_sigint(write_config, caplog):
    path = write_config(schedule_every_hours=1000.0)
    caplog.set_level(logging.INFO, logger="clf.retrain.commands")
    trigger = _SigintDuringTheWait()
    logger = logging.getLogger("clf.retrain.commands")
    logger.addHandler(trigger)
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        results = retrain("schedule", retrain_config=path)  # would wait 1000 hours without the signal
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        logger.removeHandler(trigger)
    assert trigger.armed and len(results) == 1


def test_the_function_parses_as_clf_parses_it(write_config, capsys):
    path = write_config()
    retrain("run", retrain_config=path)
    capsys.readouterr()
    args = ["--action", "history", "--retrain_config", path, "--status", "skipped", "--limit", "5"]
    result = CLI(retrain, args=args, as_positional=False, prog="clf retrain")
    assert [r["status"] for r in result] == ["skipped"]
    assert json.loads(capsys.readouterr().out) == result
