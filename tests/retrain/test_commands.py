"""Tests for clf/retrain/commands.py: `clf retrain run|schedule|history` as users type them."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import signal

import pytest
import yaml

from clf.cli import main
from clf.retrain.commands import schedule
from clf.retrain.config import DataSourceConfig, EmailConfig, RetrainingConfig, SlackConfig, TriggersConfig
from tests.conftest import REPO

SHIPPED = REPO / "configs" / "retraining.yaml"


@pytest.fixture
def write_config(tmp_path, make_config):
    """Writes a retraining YAML (skipping by default: growth_threshold 100) and returns its path."""

    def write(**overrides) -> str:
        config = make_config(**{"growth_threshold": 100.0, **overrides})
        path = tmp_path / "retraining.yaml"
        path.write_text(yaml.safe_dump(config.to_dict()))
        return str(path)

    return write


def clf(capsys, *args: str):
    """Runs `clf ARGS` and returns the JSON it printed."""
    main(list(args))
    return json.loads(capsys.readouterr().out)


def test_run_prints_its_result_and_history_lists_it(write_config, capsys):
    path = write_config()
    result = clf(capsys, "retrain", "run", "--config", path)
    assert result["status"] == "skipped" and result["growth"]["decision"] == "skip"
    history = clf(capsys, "retrain", "history", "--config", path)
    assert [(r["id"], r["status"], r["trigger_type"]) for r in history] == [(result["run_id"], "skipped", "manual")]
    assert clf(capsys, "retrain", "history", "--config", path, "--status", "failed") == []


def test_a_flag_overrides_one_value_of_the_config(write_config, capsys):
    path = write_config()  # growth_threshold 100: this config skips
    result = clf(capsys, "retrain", "run", "--config", path, "--growth-threshold", "0.1", "--dry-run", "true")
    assert result["growth"]["threshold"] == 0.1 and result["growth"]["decision"] == "retrain"


def test_print_config_shows_the_shipped_settings_with_the_override_applied(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["retrain", "run", "--config", str(SHIPPED), "--growth_threshold", "0.2", "--print_config"])
    assert exited.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = {**RetrainingConfig().to_dict(), "growth_threshold": 0.2}
    assert {key: printed[key] for key in expected} == expected, "the shipped file spells out the defaults"
    assert printed["dry_run"] is False and "action" not in printed  # the action is the subcommand, not an option


def test_help_lists_every_retraining_setting(capsys):
    with pytest.raises(SystemExit):
        main(["retrain", "run", "--help"])
    shown = capsys.readouterr().out
    flags = [f"--{f.name}" for f in dataclasses.fields(RetrainingConfig)]
    sections = (
        ("data", DataSourceConfig),
        ("email", EmailConfig),
        ("slack", SlackConfig),
        ("triggers", TriggersConfig),
    )
    for section, cls in sections:
        flags += [f"--{section}.{f.name}" for f in dataclasses.fields(cls)]
    assert [flag for flag in flags if flag not in shown] == []
    assert "retrain when new papers / current dataset size reaches this ratio" in " ".join(shown.split())


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--email.port", "0"], 1, r"clf retrain: error: --email.port must be in \[1, 65535\], got 0"),
        (["--growth_threshold", "0"], 1, "clf retrain: error: --growth_threshold must be > 0, got 0"),
        (["--max_retries", "two"], 2, r'Parser key "max_retries":\s+Expected a <class .int.>'),
        (
            ["--retrain_config", str(SHIPPED)],
            2,
            f"clf retrain: error: use: clf retrain run --dry_run true --config {SHIPPED}",
        ),
    ],
    ids=["range", "threshold", "type", "old-option"],
)
def test_bad_settings_are_errors_naming_the_flag(capsys, args, code, message):
    with pytest.raises(SystemExit) as exited:
        main(["retrain", "run", "--dry_run", "true", *args])
    assert exited.value.code == code
    assert re.search(message, capsys.readouterr().err)


def test_an_unknown_key_in_the_yaml_is_named(tmp_path, capsys):
    path = tmp_path / "retraining.yaml"
    path.write_text("growth_treshold: 0.1\n")
    with pytest.raises(SystemExit) as exited:
        main(["retrain", "run", "--config", str(path)])
    assert exited.value.code == 2 and "growth_treshold" in capsys.readouterr().err


def test_a_failed_run_exits_1_after_printing_and_recording_it(write_config, tmp_path, capsys):
    path = write_config(registry=str(tmp_path / "no_production"))
    with pytest.raises(SystemExit) as exited:
        main(["retrain", "run", "--config", path])
    out, err = capsys.readouterr()
    assert exited.value.code == 1 and json.loads(out)["status"] == "failed"
    assert re.search(r"retraining run 1 failed: RetrainingError: .*no version is in", err)
    (record,) = clf(capsys, "retrain", "history", "--config", path)
    assert record["status"] == "failed" and "no version is in production" in record["error_message"]


def test_dry_run_records_its_decision_and_trains_nothing(write_config, registry, capsys):
    path = write_config(growth_threshold=0.1)
    result = clf(capsys, "retrain", "run", "--config", path, "--dry-run", "true")
    assert result["status"] == "dry_run" and result["growth"]["decision"] == "retrain"
    assert result["version"] is None and [v.version for v in registry.list_versions()] == ["v1.0.0"]
    (record,) = clf(capsys, "retrain", "history", "--config", path)
    assert record["id"] == result["run_id"] and record["status"] == "dry_run" and record["trigger_type"] == "growth"
    assert record["evidence"]["triggers"]["growth"]["fired"] is True and record["model_version"] is None


def test_schedule_runs_every_interval_until_max_runs(write_config, make_config, capsys):
    path = write_config()
    now = [1000.0]
    waits = []

    def sleep(seconds: float) -> bool:
        waits.append(seconds)
        now[0] += seconds
        return False

    config = make_config(growth_threshold=100.0, schedule_every_hours=2.0)
    results = schedule(config, max_runs=3, clock=lambda: now[0], sleep=sleep)
    assert [r["status"] for r in results] == ["skipped"] * 3
    assert waits == [7200.0, 7200.0], "start to start, and no wait after the last run"
    capsys.readouterr()
    history = clf(capsys, "retrain", "history", "--config", path)
    assert [r["trigger_type"] for r in history] == ["schedule"] * 3


def test_a_dry_run_prints_the_decision_with_every_triggers_evidence(write_config, capsys):
    path = write_config(growth_threshold=0.1)
    result = clf(capsys, "retrain", "run", "--config", path, "--dry_run", "true", "--triggers.mode", "all")
    triggers = result["triggers"]
    assert triggers["fire"] is False and triggers["fired"] == ["growth"]
    assert triggers["evidence"]["mode"] == "all" and triggers["evidence"]["origin"] == "manual"
    assert triggers["evidence"]["reason"] == "growth fired, but mode all needs drift, estimated_drop, measured_drop too"
    assert triggers["evidence"]["triggers"]["growth"]["growth_ratio"] == result["growth"]["growth_ratio"]
    assert triggers["evidence"]["triggers"]["drift"]["reason"] == "no evidence: no quality snapshot"
    (record,) = clf(capsys, "retrain", "history", "--config", path, "--status", "dry_run")
    assert record["evidence"] == triggers["evidence"] and record["model_version"] is None


def test_with_the_schedule_trigger_on_every_scheduled_pass_fires_it(make_config):
    config = make_config(growth_threshold=100.0, triggers={"schedule": True})
    (result,) = schedule(config, dry_run=True, max_runs=1, sleep=lambda seconds: False)
    assert result["triggers"]["fire"] is True and result["triggers"]["fired"] == ["schedule"]
    assert result["triggers"]["evidence"]["triggers"]["schedule"] == {
        "enabled": True,
        "fired": True,
        "due": True,
        "reason": "a scheduled run",
    }


def test_sigterm_ends_the_schedule_cleanly_and_restores_the_handlers(make_config):
    before = signal.getsignal(signal.SIGTERM)

    def sleep(seconds: float) -> bool:
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, delivered to the schedule's handler
        return False

    results = schedule(make_config(growth_threshold=100.0), sleep=sleep)
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


def test_the_default_wait_is_cut_short_by_sigint(write_config, caplog, capsys):
    path = write_config(schedule_every_hours=1000.0)
    caplog.set_level(logging.INFO, logger="clf.retrain.commands")
    trigger = _SigintDuringTheWait()
    logger = logging.getLogger("clf.retrain.commands")
    logger.addHandler(trigger)
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        main(["retrain", "schedule", "--config", path])  # would wait 1000 hours without the signal
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        logger.removeHandler(trigger)
    printed = json.loads(capsys.readouterr().out)  # one run's JSON: the schedule stopped after it
    assert trigger.armed and printed["status"] == "skipped"
