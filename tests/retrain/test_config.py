"""Tests for clf/retrain/config.py: the shipped YAML loads, and every bad value is an error naming its field."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from clf.retrain.config import RetrainingConfig, RetrainingConfigError
from tests.conftest import REPO

SHIPPED = REPO / "configs" / "retraining.yaml"


def test_the_shipped_config_loads_with_the_issue_defaults():
    config = RetrainingConfig.from_yaml(SHIPPED)
    assert config.growth_threshold == 0.10 and config.promotion_threshold == 0.02
    assert config.data.source == "snapshot" and config.data.snapshot_path.endswith("new_papers.jsonl.gz")
    assert len(config.data.categories) == 10
    assert config.to_dict() == RetrainingConfig().to_dict(), "the YAML spells out the defaults"


def test_every_field_of_the_shipped_yaml_is_a_config_field_and_none_holds_a_secret():
    values = yaml.safe_load(SHIPPED.read_text())
    names = {f.name for f in dataclasses.fields(RetrainingConfig)}
    assert set(values) == names
    assert "password" not in values["email"] and values["slack"]["webhook_url"] is None
    assert values["email"]["password_env"] == "CLF_SMTP_PASSWORD"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"growth_treshold": 0.1}, "unknown field growth_treshold"),
        ({"email": {"pasword": "x"}}, "unknown field email.pasword"),
        ({"growth_threshold": 0}, "growth_threshold must be > 0, got 0"),
        ({"promotion_threshold": 2}, r"promotion_threshold must be in \[-1, 1\], got 2"),
        ({"promotion_metric": "loss"}, "promotion_metric must be one of"),
        ({"max_retries": "two"}, "max_retries must be int, got 'two'"),
        ({"max_retries": -1}, "max_retries must be >= 0, got -1"),
        ({"email": {"port": 0}}, r"email.port must be in \[1, 65535\], got 0"),
        ({"email": {"enabled": True}}, "email.recipients must list at least one address"),
        ({"email": {"recipients": "ops@example.org"}}, "email.recipients must be a list"),
        ({"data": {"source": "ftp"}}, r"data.source must be one of \['snapshot', 'api'\]"),
        ({"data": {"snapshot_path": None}}, "data.snapshot_path is required"),
        ({"data": {"categories": ["cs.AI"]}}, "data.categories needs at least two"),
        ({"slack": {"webhook_url": "hooks.slack.com/x"}}, "slack.webhook_url must be an http"),
        ({"schedule_every_hours": -1}, "schedule_every_hours must be > 0"),
        ({"data": 3}, "data must be a mapping"),
    ],
)
def test_bad_values_name_the_field(values, message):
    with pytest.raises(RetrainingConfigError, match=message):
        RetrainingConfig.from_dict(values)


def test_a_yaml_error_names_the_file_and_a_missing_file_says_how_to_pass_one(tmp_path):
    bad = tmp_path / "retraining.yaml"
    bad.write_text("email:\n  port: 70000\n")
    with pytest.raises(RetrainingConfigError, match=rf"{bad}: email.port must be in"):
        RetrainingConfig.from_yaml(bad)
    with pytest.raises(FileNotFoundError, match="pass --retrain_config PATH"):
        RetrainingConfig.from_yaml(tmp_path / "missing.yaml")


def test_integers_are_accepted_for_float_fields():
    config = RetrainingConfig.from_dict({"schedule_every_hours": 6, "promotion_threshold": -1})
    assert config.schedule_every_hours == 6.0 and isinstance(config.schedule_every_hours, float)
    assert config.promotion_threshold == -1.0
