"""Tests for clf/retrain/config.py: the shipped YAML spells out every field, and every bad value is an error naming its
flag. (How `clf retrain` reads the YAML and the flags is in test_commands.py.)"""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from clf.retrain.config import (
    DataSourceConfig,
    EmailConfig,
    RetrainingConfig,
    RetrainingConfigError,
    SlackConfig,
    TriggersConfig,
)
from tests.conftest import REPO

SHIPPED = REPO / "configs" / "retraining.yaml"
SECTIONS = (("data", DataSourceConfig), ("email", EmailConfig), ("slack", SlackConfig), ("triggers", TriggersConfig))


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def test_the_shipped_yaml_names_every_field_of_every_section_and_no_secret():
    values = yaml.safe_load(SHIPPED.read_text())
    assert set(values) == field_names(RetrainingConfig)
    for section, cls in SECTIONS:
        assert set(values[section]) == field_names(cls), section
    assert "password" not in values["email"] and values["slack"]["webhook_url"] is None
    assert values["email"]["password_env"] == "CLF_SMTP_PASSWORD"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RetrainingConfig(growth_threshold=0), "--growth_threshold must be > 0, got 0"),
        (lambda: RetrainingConfig(promotion_threshold=2), r"--promotion_threshold must be in \[-1, 1\], got 2"),
        (lambda: RetrainingConfig(promotion_metric="loss"), "--promotion_metric must be accuracy or f1_macro"),
        (lambda: RetrainingConfig(max_retries=-1), "--max_retries must be >= 0, got -1"),
        (lambda: RetrainingConfig(schedule_every_hours=-1), "--schedule_every_hours must be > 0"),
        (lambda: RetrainingConfig(retry_delay_seconds=-1), "--retry_delay_seconds must be >= 0"),
        (lambda: RetrainingConfig(fit_overrides=["--trainer.max_epochs", "3"]), "--fit_overrides must map"),
        (lambda: EmailConfig(port=0), r"--email.port must be in \[1, 65535\], got 0"),
        (lambda: EmailConfig(enabled=True), "--email.recipients must list at least one address"),
        (lambda: EmailConfig(timeout_seconds=0), "--email.timeout_seconds must be > 0"),
        (lambda: DataSourceConfig(source="ftp"), "--data.source must be snapshot or api, got 'ftp'"),
        (lambda: DataSourceConfig(snapshot_path=None), "--data.snapshot_path is required"),
        (lambda: DataSourceConfig(categories=["cs.AI"]), "--data.categories needs at least two"),
        (lambda: DataSourceConfig(max_papers_per_category=0), "--data.max_papers_per_category must be >= 1"),
        (lambda: SlackConfig(webhook_url="hooks.slack.com/x"), "--slack.webhook_url must be an http"),
        (
            lambda: TriggersConfig(estimated_accuracy_drop=-0.1),
            r"--triggers.estimated_accuracy_drop must be in \[0, 1\)",
        ),
        (lambda: TriggersConfig(measured_accuracy_drop=1.0), r"--triggers.measured_accuracy_drop must be in \[0, 1\)"),
        (lambda: TriggersConfig(window_papers=0), "--triggers.window_papers must be >= 1, got 0"),
        (lambda: TriggersConfig(min_labelled=0), "--triggers.min_labelled must be >= 1, got 0"),
        (lambda: TriggersConfig(mode="most"), "--triggers.mode must be any or all, got 'most'"),
        (
            lambda: TriggersConfig(
                growth=False, drift=False, estimated_accuracy_drop=None, measured_accuracy_drop=None, schedule=False
            ),
            "--triggers: every trigger is off",
        ),
    ],
)
def test_bad_values_name_the_flag(build, message):
    with pytest.raises(RetrainingConfigError, match=message):
        build()


def test_to_dict_is_what_the_yaml_holds():
    config = RetrainingConfig(growth_threshold=0.3, data=DataSourceConfig(source="api"))
    values = config.to_dict()
    assert values["growth_threshold"] == 0.3 and values["data"]["source"] == "api"
    assert set(values) == set(yaml.safe_load(SHIPPED.read_text()))
