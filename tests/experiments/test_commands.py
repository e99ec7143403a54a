"""Tests for clf/experiments/commands.py: the `clf ab`, `clf db` and `clf labels` actions, called directly and through
the CLI."""

from __future__ import annotations

import gzip
import json

import pytest

from clf.cli import main
from clf.experiments.commands import analyze, create, current, list_experiments, promote, status, stop, upgrade
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
    assert current(db=db_url)["revision"] is None
    first = upgrade(db=db_url)
    again = upgrade(db=db_url)
    assert first == again == current(db=db_url)
    assert first["revision"] == first["head"] == "0002"
    printed = capsys.readouterr().out
    assert printed.count('"revision": "0002"') == 3 and '"revision": null' in printed
    with_password = "postgresql+psycopg://clf:s3cret@127.0.0.1:9/none"
    with pytest.raises(DatabaseUnavailableError, match="cannot use the experiments database") as caught:
        current(db=with_password)
    assert "s3cret" not in str(caught.value)


def test_an_experiment_from_create_to_promote(db_url, tiny_registry, capsys):
    registry = str(tiny_registry.base_dir)
    created = create(name="cli run", treatment="v1.1.0", traffic_split=0.4, db=db_url, registry=registry)
    assert created["control_version"] == "v1.0.0"  # the production version by default
    assert created["status"] == "running" and created["traffic_split"] == 0.4
    experiment_id = created["id"]
    assert json.loads(capsys.readouterr().out) == created
    with pytest.raises(ExperimentConflictError, match=f"clf ab stop {experiment_id}"):
        create(name="again", treatment="v1.1.0", db=db_url, registry=registry)

    engine = make_engine(db_url)
    seed_outcomes(engine, experiment_id, "v1.0.0", correct=80, with_feedback=100, without_feedback=10)
    seed_outcomes(engine, experiment_id, "v1.1.0", correct=90, with_feedback=100)
    engine.dispose()

    counts = status(experiment_id, db=db_url)
    assert counts["arms"]["control"] == {"version": "v1.0.0", "predictions": 110, "with_feedback": 100}
    analysis = analyze(experiment_id, db=db_url)
    assert analysis["recommendation"] == "promote" and analysis["test"]["p_value"] == pytest.approx(0.04767, abs=1e-5)
    assert [e["id"] for e in list_experiments(status="running", db=db_url)] == [experiment_id]

    with WebhookReceiver() as hook:
        decision = promote(experiment_id, db=db_url, registry=registry, slack_webhook=hook.url)
        assert decision["outcome"] == "promoted" and decision["notification"] == "sent"
        assert "promoted v1.1.0" in hook.texts[0]
    assert tiny_registry.production_version() == "v1.1.0"
    assert list_experiments(status="completed", db=db_url)[0]["results"]["decision"]["outcome"] == "promoted"
    with pytest.raises(ExperimentStateError):
        stop(experiment_id, db=db_url)


def test_stop_and_the_error_that_names_the_missing_control(db_url, tiny_registry, tmp_path):
    registry = str(tiny_registry.base_dir)
    with pytest.raises(InvalidExperimentError, match="no production version to use as the control; give --control"):
        create(name="x", treatment="v1.1.0", db=db_url, registry=str(tmp_path / "empty-registry"))
    created = create(name="x", control="v1.1.0", treatment="v1.0.0", db=db_url, registry=registry)
    stopped = stop(created["id"], db=db_url)
    assert stopped["status"] == "stopped" and stopped["end_date"] is not None
    assert list_experiments(status="running", db=db_url) == []


def test_the_cli_runs_each_action_and_its_parser_requires_what_the_action_needs(db_url, tiny_registry, capsys):
    registry = str(tiny_registry.base_dir)
    main(["db", "upgrade", "--db", db_url])
    assert json.loads(capsys.readouterr().out)["revision"] == "0002"
    main(
        [
            "ab",
            "create",
            "--name",
            "cli",
            "--treatment",
            "v1.1.0",
            "--traffic-split",
            "0.3",
            "--db",
            db_url,
            "--registry",
            registry,
        ]
    )
    experiment_id = json.loads(capsys.readouterr().out)["id"]
    main(["ab", "status", str(experiment_id), "--db", db_url])
    assert json.loads(capsys.readouterr().out)["traffic_split"] == 0.3
    for words, missing in [
        (["ab", "status", "--db", db_url], "experiment_id"),
        (["ab", "create", "--name", "x", "--db", db_url], "treatment"),
        (["ab", "explode"], "explode"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(words)
        assert exited.value.code == 2 and missing in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ab", "create", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for expected in ("--name", "--treatment", "--traffic_split", "share of users sent to the treatment"):
        assert expected in help_text


def test_labels_import_and_report_through_the_cli(db_url, tmp_path, capsys):
    from datetime import UTC, datetime

    from clf.experiments.quality_log import QualityLog
    from clf.inference.prediction import LabelProbability, Prediction
    from clf.serving.routing import Route
    from clf.serving.service import PredictionEvent

    ranked = (LabelProbability("cs.CL", 0.8), LabelProbability("cs.CV", 0.2))
    answers = [
        Prediction("cs.CL", 0.8, ranked, version="v1.0.0", arm="live", prediction_id=f"p{i}", top_k=ranked)
        for i in range(3)
    ]
    at = datetime(2026, 6, 1, 5, tzinfo=UTC).timestamp()
    ids = ("2401.00001v1", "2401.00002", None)
    with QualityLog(db_url) as quality:
        quality.log_event(PredictionEvent(["a", "b", "c"], answers, Route("v1.0.0", "live"), None, 1.0, None, at,
                                          arxiv_ids=ids))  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "cs.CL.jsonl").write_text('{"arxiv_id": "2401.00001", "label": "cs.CL"}\n')
    with gzip.open(run / "more.jsonl.gz", "wt") as handle:
        handle.write('{"id": "2401.00002v2", "primary": "cs.CV", "title": "t"}\n{"id": "2401.09999", "primary": "x"}\n')
    (run / "notes.txt").write_text("not read")

    main(["labels", "import", str(run), "--db", db_url])
    assert json.loads(capsys.readouterr().out) == {
        "path": str(run), "papers": 3, "matched": 2, "updated": 2, "unmatched": 1,
    }  # fmt: skip
    main(["labels", "report", "--db", db_url, "--version", "v1.0.0", "--window-hours", "6"])
    (window,) = json.loads(capsys.readouterr().out)
    assert (window["papers"], window["labelled"], window["start"]) == (3, 2, "2026-06-01T00:00:00+00:00")
    assert window["measured"]["accuracy"]["value"] == 0.5 and window["estimated"]["value"] == pytest.approx(0.8)

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "2401.00001", "primary": "cs.LG"}\n{"id": "2401.00002"}\n')
    with pytest.raises(SystemExit) as exited:
        main(["labels", "import", str(bad), "--db", db_url])
    error = capsys.readouterr().err
    assert exited.value.code == 1 and f"{bad}, line 2: needs an arXiv id" in error and "nothing was imported" in error
    main(["labels", "report", "--db", db_url])
    (window,) = json.loads(capsys.readouterr().out)
    assert window["measured"]["accuracy"]["value"] == 0.5  # the good first line of the bad file was not stored
    (tmp_path / "empty").mkdir()
    for missing, says in [(tmp_path / "absent.jsonl", "no such file or folder"), (tmp_path / "empty", "no *.jsonl")]:
        with pytest.raises(SystemExit):
            main(["labels", "import", str(missing), "--db", db_url])
        assert says in capsys.readouterr().err
