"""Tests for clf/experiments/framework.py on SQLite and PostgreSQL: create, route, log, feedback, analyse, promote."""

from __future__ import annotations

import hashlib
import math
import shutil
import time

import pytest
import sqlalchemy as sa

from clf.experiments.errors import (
    ExperimentConflictError,
    ExperimentError,
    ExperimentNotFoundError,
    ExperimentStateError,
    InvalidExperimentError,
    UnknownPredictionError,
)
from clf.experiments.framework import ABTestingFramework
from clf.experiments.records import ExperimentOutcome
from clf.experiments.tables import ExperimentStatus, PredictionLog
from clf.inference.prediction import LabelProbability, Prediction
from clf.monitoring.alerts import AlertManager, Delivery
from clf.registry import RegistryError
from clf.serving.routing import Route, stable_bucket
from clf.serving.service import PredictionEvent
from tests.experiments.conftest import seed_outcomes
from tests.helpers.webhook import WebhookReceiver


@pytest.fixture
def framework(db_url, shared_registry):
    with ABTestingFramework(db_url, registry=shared_registry, flush_interval_seconds=60) as running:
        yield running


def stored_logs(framework: ABTestingFramework) -> dict[str, PredictionLog]:
    with sa.orm.Session(framework.engine) as session:
        return {row.id: row for row in session.scalars(sa.select(PredictionLog))}


# ------------------------------------------------------------------------------------------------------ create


def test_create_starts_a_running_experiment(framework):
    experiment = framework.create_experiment("bigger lr", control="v1.0.0", treatment="v1.1.0", traffic_split=0.25)

    assert (experiment.name, experiment.control_version, experiment.treatment_version) == (
        "bigger lr",
        "v1.0.0",
        "v1.1.0",
    )
    assert experiment.traffic_split == 0.25 and experiment.status is ExperimentStatus.RUNNING
    assert experiment.start_date.tzinfo is not None and experiment.end_date is None and experiment.results is None
    assert framework.get_experiment(experiment.id) == experiment
    assert framework.running_experiment_for("v1.0.0") == experiment
    assert framework.running_experiment_for("v1.1.0") is None
    assert framework.list_experiments() == [experiment] == framework.list_experiments("running")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"name": " "}, InvalidExperimentError, "needs a name"),
        ({"traffic_split": 1.5}, InvalidExperimentError, r"--traffic-split .* must be in \[0, 1\], got 1.5"),
        ({"traffic_split": -0.1}, InvalidExperimentError, "must be in"),
        ({"traffic_split": math.nan}, InvalidExperimentError, "must be in"),
        ({"traffic_split": True}, InvalidExperimentError, "must be in"),
        ({"treatment": "v1.0.0"}, InvalidExperimentError, "both v1.0.0; an experiment compares two different"),
        ({"treatment": "v9.9.9"}, InvalidExperimentError, "treatment version 'v9.9.9' is not usable.*registry create"),
        ({"control": "banana"}, InvalidExperimentError, "control version 'banana' is not usable"),
    ],
)
def test_create_refuses_a_bad_definition_and_says_why(framework, kwargs, error, message):
    arguments = {"name": "exp", "control": "v1.0.0", "treatment": "v1.1.0", "traffic_split": 0.5, **kwargs}
    with pytest.raises(error, match=message):
        framework.create_experiment(**arguments)
    assert framework.list_experiments() == []


def test_one_running_experiment_per_control(framework):
    first = framework.create_experiment("first", "v1.0.0", "v1.1.0")
    with pytest.raises(ExperimentConflictError, match=f"experiment {first.id} is already running on control v1.0.0"):
        framework.create_experiment("second", "v1.0.0", "v1.1.0")
    other_control = framework.create_experiment("reverse", "v1.1.0", "v1.0.0")  # another control is fine

    stopped = framework.stop_experiment(first.id)

    assert stopped.status is ExperimentStatus.STOPPED and stopped.end_date >= stopped.start_date
    again = framework.create_experiment("second", "v1.0.0", "v1.1.0")
    assert [e.id for e in framework.list_experiments("running")] == [again.id, other_control.id]
    assert [e.id for e in framework.list_experiments(ExperimentStatus.STOPPED)] == [first.id]


def test_without_a_registry_experiments_cannot_be_created(db_url):
    with (
        ABTestingFramework(db_url) as framework,
        pytest.raises(InvalidExperimentError, match="needs the model registry"),
    ):
        framework.create_experiment("exp", "v1.0.0", "v1.1.0")


def test_tables_are_created_on_first_use_unless_upgrades_are_left_to_clf_db(db_url):
    manual = ABTestingFramework(db_url, auto_upgrade=False)
    with pytest.raises(ExperimentError, match="at schema revision None, this clf needs 0002: run clf db upgrade"):
        manual.list_experiments()
    manual.close()
    with ABTestingFramework(db_url) as automatic:
        assert automatic.list_experiments() == []
    with ABTestingFramework(db_url, auto_upgrade=False) as manual:
        assert manual.list_experiments() == []


def test_unknown_ids_states_and_statuses_are_clear_errors(framework):
    with pytest.raises(ExperimentNotFoundError, match="no experiment 404 in .*; list them with clf ab list"):
        framework.get_experiment(404)
    with pytest.raises(ExperimentNotFoundError):
        framework.stop_experiment(404)
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
    framework.stop_experiment(experiment.id)
    with pytest.raises(ExperimentStateError, match="is stopped, not running"):
        framework.stop_experiment(experiment.id)
    with pytest.raises(InvalidExperimentError, match="--status must be one of running, stopped, completed"):
        framework.list_experiments("paused")


# ----------------------------------------------------------------------------------------------------- routing


def test_routing_is_sticky_and_splits_ten_thousand_users_within_two_points(framework, db_url, shared_registry):
    experiment = framework.create_experiment("split", "v1.0.0", "v1.1.0", traffic_split=0.3)
    users = [f"user-{i}" for i in range(10_000)]

    routes = {user: framework.route_prediction(experiment.id, user) for user in users}

    share = sum(route.arm == "treatment" for route in routes.values()) / len(users)
    assert 0.28 <= share <= 0.32
    assert {route.version for route in routes.values() if route.arm == "treatment"} == {"v1.1.0"}
    assert {route.version for route in routes.values() if route.arm == "control"} == {"v1.0.0"}
    assert {route.experiment for route in routes.values()} == {str(experiment.id)}
    # The same user, asked again, and asked of a fresh framework (a restarted process) on the same database.
    assert all(framework.route_prediction(experiment.id, user) == routes[user] for user in users[:500])
    with ABTestingFramework(db_url, registry=shared_registry) as restarted:
        assert all(restarted.route_prediction(experiment.id, user) == routes[user] for user in users)
    # The service's rule and the documented hash agree with it.
    rule = framework.traffic_rule(experiment.id)
    assert (rule.salt, rule.experiment, rule.treatment_share) == (str(experiment.id), str(experiment.id), 0.3)
    for user in users[:200]:
        digest = hashlib.sha256(f"{experiment.id}\x00{user}".encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") / 2**64
        assert bucket == stable_bucket(user, str(experiment.id))
        assert routes[user] == rule.route(user)
        assert routes[user].arm == ("treatment" if bucket < 0.3 else "control")


def test_arms_of_known_users_never_change(framework):
    experiment = framework.create_experiment("pinned", "v1.0.0", "v1.1.0", traffic_split=0.5)
    assert experiment.id == 1  # a fresh database on both backends; the pinned buckets below use salt "1"
    assert framework.route_prediction(1, "alice") == Route("v1.0.0", "control", "1")  # bucket 0.7097
    assert framework.route_prediction(1, "bob") == Route("v1.1.0", "treatment", "1")  # bucket 0.1137
    assert framework.route_prediction(1, "erin") == Route("v1.1.0", "treatment", "1")  # bucket 0.4837


# ----------------------------------------------------------------------------------------------------- logging


def event(experiment: str | None, texts: list[str], version: str = "v1.1.0", error: str | None = None):
    top3 = (LabelProbability("cs.CV", 0.7),)
    records = [
        Prediction("cs.CV", 0.7, top3, version=version, arm="treatment", experiment_id=experiment,
                   prediction_id=f"{text}-id")
        for text in texts
    ]  # fmt: skip
    route = Route(version, "treatment", experiment)
    return PredictionEvent(texts, [] if error else records, route, "u-1", 12.5, error, time.time())


def test_the_listener_logs_each_paper_of_an_experiment_request_only(framework):
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
    framework.log_event(event(str(experiment.id), ["first paper", "second paper"]))
    framework.log_event(event(None, ["outside any experiment"]))
    framework.log_event(event(str(experiment.id), ["failed"], error="RuntimeError: boom"))
    framework.log_event(event("canary-7", ["a rollout, not an A/B experiment"]))
    assert stored_logs(framework) == {}  # buffered, not yet written

    framework.flush()

    logs = stored_logs(framework)
    assert sorted(logs) == ["first paper-id", "second paper-id"]
    row = logs["first paper-id"]
    assert (row.experiment_id, row.model_version, row.input_text, row.user_id) == (
        experiment.id,
        "v1.1.0",
        "first paper",
        "u-1",
    )
    assert row.predictions == {
        "label": "cs.CV", "probability": 0.7, "top3": [{"label": "cs.CV", "probability": 0.7}], "arm": "treatment"
    }  # fmt: skip
    assert row.latency_ms == 12.5 and row.created_at.tzinfo is not None and row.true_label is None


def test_feedback_reaches_a_prediction_still_in_the_buffer(framework):
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
    prediction_id = framework.log_prediction(
        experiment.id, "v1.0.0", "a paper", Prediction("cs.CV", 0.6, ()), 9.0, "u-3"
    )
    assert framework.logs.pending == 1

    framework.record_feedback(prediction_id, "cs.RO")

    assert stored_logs(framework)[prediction_id].true_label == "cs.RO"
    with pytest.raises(UnknownPredictionError, match="no logged prediction has id 'nope'; give the prediction_id"):
        framework.record_feedback("nope", "cs.RO")
    with pytest.raises(InvalidExperimentError, match="true_label must be a category"):
        framework.record_feedback(prediction_id, "")


# ---------------------------------------------------------------------------------------------------- analysis


def test_analysis_matches_the_hand_computed_z_test_and_is_saved(framework):
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
    seed_outcomes(framework.engine, experiment.id, "v1.0.0", correct=80, with_feedback=100, without_feedback=50)
    seed_outcomes(framework.engine, experiment.id, "v1.1.0", correct=90, with_feedback=100, without_feedback=20)
    # Hand computation: pooled p = 170/200 = 0.85, SE = sqrt(0.85 * 0.15 * (1/100 + 1/100)), z = 0.10 / SE.
    z = 0.10 / math.sqrt(0.85 * 0.15 * 0.02)
    p_value = math.erfc(z / math.sqrt(2))  # two-sided: 2 * (1 - Phi(z))
    assert (round(z, 4), round(p_value, 4)) == (1.9803, 0.0477)

    analysis = framework.analyze_experiment(experiment.id)

    control, treatment = analysis.control, analysis.treatment
    assert (control.version, control.predictions, control.with_feedback, control.accuracy) == ("v1.0.0", 150, 100, 0.8)
    assert (treatment.version, treatment.predictions, treatment.with_feedback, treatment.accuracy) == (
        "v1.1.0",
        120,
        100,
        0.9,
    )
    assert analysis.test.z == pytest.approx(z) and analysis.test.p_value == pytest.approx(p_value)
    assert analysis.recommendation == "promote"
    assert control.latency_p95_ms == pytest.approx(19.0) and control.accuracy_ci == pytest.approx(
        (0.7112, 0.8666), abs=1e-4
    )
    saved = framework.get_experiment(experiment.id).results["analysis"]
    assert saved["recommendation"] == "promote" and saved["test"]["z"] == pytest.approx(z)
    assert framework.arm_counts(experiment.id) == {
        "control": {"version": "v1.0.0", "predictions": 150, "with_feedback": 100},
        "treatment": {"version": "v1.1.0", "predictions": 120, "with_feedback": 100},
    }


def test_an_experiment_without_logs_is_inconclusive(framework):
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
    analysis = framework.analyze_experiment(experiment.id)
    assert analysis.recommendation == "inconclusive" and analysis.test is None
    assert analysis.control.predictions == 0 and analysis.required_per_arm == 9806


# --------------------------------------------------------------------------------------------------- promotion


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


def promoting_framework(db_url, registry, webhook) -> ABTestingFramework:
    alerts = AlertManager(slack_webhook=webhook.url, backoff_seconds=0)
    return ABTestingFramework(db_url, registry=registry, alerts=alerts, flush_interval_seconds=60)


def test_a_better_treatment_is_promoted_and_slack_is_told(db_url, tiny_registry, webhook):
    with promoting_framework(db_url, tiny_registry, webhook) as framework:
        experiment = framework.create_experiment("bigger model", "v1.0.0", "v1.1.0")
        seed_outcomes(framework.engine, experiment.id, "v1.0.0", correct=80, with_feedback=100)
        seed_outcomes(framework.engine, experiment.id, "v1.1.0", correct=90, with_feedback=100)

        decision = framework.promote_winner(experiment.id)

        assert decision.outcome is ExperimentOutcome.PROMOTED and decision.winner == "v1.1.0"
        assert (decision.previous_production, decision.production_version) == ("v1.0.0", "v1.1.0")
        assert decision.notification is Delivery.SENT
        assert tiny_registry.production_version() == "v1.1.0"
        assert f"A/B experiment {experiment.id}" in tiny_registry.history()[-1].reason
        completed = framework.get_experiment(experiment.id)
        assert completed.status is ExperimentStatus.COMPLETED and completed.end_date is not None
        assert completed.results["decision"]["outcome"] == "promoted"
        assert completed.results["analysis"]["recommendation"] == "promote"
        [text] = webhook.texts
        assert f"A/B experiment {experiment.id} (bigger model): promoted v1.1.0" in text
        for number in ("accuracy 80.00%", "accuracy 90.00%", "difference +10.00%", "z=1.98", "p=0.0477", "71.12%"):
            assert number in text
        with pytest.raises(ExperimentStateError, match="was completed at"):
            framework.promote_winner(experiment.id)


def test_a_worse_treatment_is_not_promoted(db_url, tiny_registry, webhook):
    with promoting_framework(db_url, tiny_registry, webhook) as framework:
        experiment = framework.create_experiment("smaller model", "v1.0.0", "v1.1.0")
        seed_outcomes(framework.engine, experiment.id, "v1.0.0", correct=90, with_feedback=100)
        seed_outcomes(framework.engine, experiment.id, "v1.1.0", correct=80, with_feedback=100)

        decision = framework.promote_winner(experiment.id)

        assert decision.outcome is ExperimentOutcome.KEPT_CONTROL and decision.winner == "v1.0.0"
        assert tiny_registry.production_version() == "v1.0.0" and len(tiny_registry.history()) == 1
        assert framework.get_experiment(experiment.id).status is ExperimentStatus.COMPLETED
        [text] = webhook.texts
        assert "(smaller model): kept v1.0.0" in text and "difference -10.00%" in text


def test_a_failed_registry_promotion_leaves_the_experiment_running(db_url, tiny_registry, webhook):
    with promoting_framework(db_url, tiny_registry, webhook) as framework:
        experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0")
        seed_outcomes(framework.engine, experiment.id, "v1.0.0", correct=80, with_feedback=100)
        seed_outcomes(framework.engine, experiment.id, "v1.1.0", correct=90, with_feedback=100)
        shutil.rmtree(tiny_registry.version_dir("v1.1.0"))

        with pytest.raises(RegistryError):
            framework.promote_winner(experiment.id)

        still = framework.get_experiment(experiment.id)
        assert still.status is ExperimentStatus.RUNNING and still.end_date is None
        assert tiny_registry.production_version() == "v1.0.0" and webhook.requests == []


def test_promotion_needs_a_registry(db_url):
    with (
        ABTestingFramework(db_url) as framework,
        pytest.raises(InvalidExperimentError, match="needs the model registry"),
    ):
        framework.promote_winner(1)
