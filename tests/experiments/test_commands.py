"""Tests for clf/experiments/commands.py: the `clf ab` and `clf db` functions, called as the CLI calls them."""

from __future__ import annotations

import json

import pytest

from clf.experiments.commands import ab, db
from clf.experiments.database import make_engine
from clf.experiments.errors import (
    DatabaseUnavailableError,
    ExperimentConflictError,
    ExperimentStateError,
    InvalidExperimentError,
)
from tests.experiments.conftest import seed_outcomes
from tests.helpers.webhook import WebhookReceiver


def test_db_upgrade_and_current_print_the_revision_without_the_password(db_url, capsys):
    assert db("current", db=db_url)["revision"] is None
    first = db("upgrade", db=db_url)
    again = db("upgrade", db=db_url)
    assert first == again == db("current", db=db_url)
    assert first["revision"] == first["head"] == "0001"
    printed = capsys.readouterr().out
    assert printed.count('"revision": "0001"') == 3 and '"revision": null' in printed
    with_password = "postgresql+psycopg://clf:s3cret@127.0.0.1:9/none"
    with pytest.raises(DatabaseUnavailableError, match="cannot use the experiments database") as caught:
        db("current", db=with_password)
    assert "s3cret" not in str(caught.value)


def test_an_experiment_from_create_to_promote(db_url, tiny_registry, capsys):
    registry = str(tiny_registry.base_dir)
    created = ab("create", name="cli run", treatment="v1.1.0", traffic_split=0.4, db=db_url, registry=registry)
    assert created["control_version"] == "v1.0.0"  # the production version by default
    assert created["status"] == "running" and created["traffic_split"] == 0.4
    experiment_id = created["id"]
    assert json.loads(capsys.readouterr().out) == created
    with pytest.raises(ExperimentConflictError, match="clf ab stop --experiment-id"):
        ab("create", name="again", treatment="v1.1.0", db=db_url, registry=registry)

    engine = make_engine(db_url)
    seed_outcomes(engine, experiment_id, "v1.0.0", correct=80, with_feedback=100, without_feedback=10)
    seed_outcomes(engine, experiment_id, "v1.1.0", correct=90, with_feedback=100)
    engine.dispose()

    status = ab("status", experiment_id=experiment_id, db=db_url)
    assert status["arms"]["control"] == {"version": "v1.0.0", "predictions": 110, "with_feedback": 100}
    analysis = ab("analyze", experiment_id=experiment_id, db=db_url)
    assert analysis["recommendation"] == "promote" and analysis["test"]["p_value"] == pytest.approx(0.04767, abs=1e-5)
    assert [e["id"] for e in ab("list", status="running", db=db_url)] == [experiment_id]

    with WebhookReceiver() as hook:
        decision = ab("promote", experiment_id=experiment_id, db=db_url, registry=registry, slack_webhook=hook.url)
        assert decision["outcome"] == "promoted" and decision["notification"] == "sent"
        assert "promoted v1.1.0" in hook.texts[0]
    assert tiny_registry.production_version() == "v1.1.0"
    assert ab("list", status="completed", db=db_url)[0]["results"]["decision"]["outcome"] == "promoted"
    with pytest.raises(ExperimentStateError):
        ab("stop", experiment_id=experiment_id, db=db_url)


def test_stop_and_the_errors_that_name_the_missing_option(db_url, tiny_registry, tmp_path):
    registry = str(tiny_registry.base_dir)
    with pytest.raises(InvalidExperimentError, match="clf ab status needs --experiment-id"):
        ab("status", db=db_url)
    with pytest.raises(InvalidExperimentError, match="needs --name NAME and --treatment"):
        ab("create", name="x", db=db_url, registry=registry)
    with pytest.raises(InvalidExperimentError, match="no production version to use as the control; give --control"):
        ab("create", name="x", treatment="v1.1.0", db=db_url, registry=str(tmp_path / "empty-registry"))
    created = ab("create", name="x", control="v1.1.0", treatment="v1.0.0", db=db_url, registry=registry)
    stopped = ab("stop", experiment_id=created["id"], db=db_url)
    assert stopped["status"] == "stopped" and stopped["end_date"] is not None
    never = tmp_path / "not-a-registry"
    assert ab("list", status="running", db=db_url, registry=str(never)) == []
    assert not never.exists()  # only create and promote open the registry (which would create its folder)


def test_jsonargparse_turns_the_signatures_and_docstrings_into_options(db_url, capsys):
    from jsonargparse import CLI

    assert CLI(ab, args=["--action", "list", "--db", db_url], as_positional=False, prog="clf ab") == []
    assert CLI(db, args=["--action", "upgrade", "--db", db_url], as_positional=False)["revision"] == "0001"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        CLI(ab, args=["--help"], as_positional=False, prog="clf ab")
    help_text = " ".join(capsys.readouterr().out.split())
    for expected in ("--experiment_id", "--traffic_split", "--slack_webhook", "share of users sent to the treatment"):
        assert expected in help_text
    assert "{create,status,analyze,promote,stop,list}" in help_text
    with pytest.raises(SystemExit):
        CLI(ab, args=["--action", "explode"], as_positional=False, prog="clf ab")
