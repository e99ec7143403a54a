"""Tests for clf/experiments/serving.py: a real HTTP server routing by the running experiment, logs reaching the
database, and a database outage that costs no prediction and no log."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from clf.experiments.database import make_engine
from clf.experiments.framework import ABTestingFramework
from clf.experiments.serving import ExperimentSync, SyncOutcome
from clf.experiments.tables import PredictionLog
from clf.serving import ClassificationService, WeightedSplit
from clf.serving.config import Batching
from lightning_app.app import create_app
from tests.conftest import load_shared_papers
from tests.helpers.http_service import LoopbackServer
from tests.helpers.postgres import PostgresServer

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=8)]


def wait_until(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout:g} s")
        time.sleep(0.05)


def logged_ids(url: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(PredictionLog.id)).scalars().all()
    finally:
        engine.dispose()


def test_the_http_server_routes_by_the_running_experiment_and_logs_every_prediction(db_url, tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=2))
    framework = ABTestingFramework(db_url, registry=tiny_registry, flush_interval_seconds=0.2)
    experiment = framework.create_experiment("over http", "v1.0.0", "v1.1.0", traffic_split=0.5)
    sync = ExperimentSync(framework, service)
    app = create_app(service, periodic=[(0.1, sync.sync)], on_shutdown=[sync.close])
    users = [f"user-{i}" for i in range(30)]
    arms: dict[str, set[tuple[str, str]]] = {user: set() for user in users}
    prediction_ids = []

    with LoopbackServer(app) as server:

        def rule() -> str:
            return requests.get(f"{server.url}/versions", timeout=30).json()["traffic_rule"]

        wait_until(lambda: rule().startswith("WeightedSplit"), what="the experiment's rule installed")
        for _ in range(2):
            for index, user in enumerate(users):
                body = {"papers": [PAPERS[index % len(PAPERS)]], "user_id": user}
                answer = requests.post(f"{server.url}/predict", json=body, timeout=30).json()
                expected = framework.route_prediction(experiment.id, user)
                assert (answer["arm"], answer["version"]) == (expected.arm, expected.version)
                [record] = answer["predictions"]
                assert record["experiment_id"] == str(experiment.id)
                arms[user].add((answer["arm"], answer["version"]))
                prediction_ids.append(record["prediction_id"])
        assert all(len(seen) == 1 for seen in arms.values())  # the same user, the same arm, every time
        assert {arm for seen in arms.values() for arm, _ in seen} == {"control", "treatment"}
        wait_until(lambda: len(logged_ids(db_url)) == 60, what="the logs written by the flusher")

        framework.stop_experiment(experiment.id)
        wait_until(lambda: rule().startswith("SingleVersion"), what="the rule removed")
        answer = requests.post(f"{server.url}/predict", json={**PAPERS[0], "user_id": users[0]}, timeout=30).json()
        assert (answer["arm"], answer["version"]) == ("live", "v1.0.0")
        assert "experiment_id" not in answer["predictions"][0]
        assert requests.get(f"{server.url}/versions", timeout=30).json()["loaded_versions"] == ["v1.0.0"]

    assert sorted(logged_ids(db_url)) == sorted(prediction_ids)  # nothing after the stop, nothing lost


def test_sync_installs_once_and_leaves_a_rollout_rule_alone(db_url, tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    framework = ABTestingFramework(db_url, registry=tiny_registry)
    sync = ExperimentSync(framework, service)
    assert sync.sync() is SyncOutcome.UNCHANGED and service.loaded_versions == ["v1.0.0"]
    experiment = framework.create_experiment("exp", "v1.0.0", "v1.1.0", traffic_split=0.2)

    assert sync.sync() is SyncOutcome.STARTED
    assert service.traffic_rule == framework.traffic_rule(experiment.id) and sync.experiment_id == experiment.id
    assert sync.sync() is SyncOutcome.UNCHANGED
    canary = WeightedSplit("v1.0.0", "v1.1.0", 0.05, salt="canary", treatment_arm="canary")
    service.set_traffic_rule(canary)
    assert sync.sync() is SyncOutcome.UNCHANGED and service.traffic_rule == canary
    service.set_traffic_rule(None)  # the rollout ended: the experiment's rule comes back
    assert sync.sync() is SyncOutcome.STARTED and service.traffic_rule == framework.traffic_rule(experiment.id)

    framework.stop_experiment(experiment.id)
    assert sync.sync() is SyncOutcome.ENDED
    assert service.traffic_rule.versions == {"v1.0.0"} and service.loaded_versions == ["v1.0.0"]
    sync.close()
    service.close()


# -------------------------------------------------------------------------------------------------------- outage


class SqliteLock:
    """An outage of a SQLite database: another connection holds the write lock until `end`."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self._holder: sqlite3.Connection | None = None

    def begin(self) -> None:
        self._holder = sqlite3.connect(self.path, isolation_level=None)
        self._holder.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        assert self._holder is not None
        self._holder.execute("ROLLBACK")
        self._holder.close()


class PostgresDown:
    """An outage of a PostgreSQL server: it stops, then comes back on the same port with the same data."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server
        self.url = server.url

    def begin(self) -> None:
        self.server.stop(keep_data=True)

    def end(self) -> None:
        self.server.restart()


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteLock(tmp_path / "experiments.db")
        return
    with PostgresServer() as server:
        yield PostgresDown(server)


def test_a_database_outage_costs_no_prediction_and_no_log(outage, tiny_registry):
    engine = make_engine(outage.url, connect_timeout_seconds=0.1)
    framework = ABTestingFramework(engine, registry=tiny_registry, flush_interval_seconds=0.1)
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    experiment = framework.create_experiment("outage", "v1.0.0", "v1.1.0", traffic_split=0.5)
    sync = ExperimentSync(framework, service)
    assert sync.sync() is SyncOutcome.STARTED
    rule = service.traffic_rule
    made: list[str] = []

    def predict(users: range) -> None:
        for i in users:
            [record] = service.predict(PAPERS[i % len(PAPERS)], user_id=f"user-{i}")
            assert record.arm == framework.route_prediction(experiment.id, f"user-{i}").arm
            made.append(record.prediction_id)

    predict(range(20))
    wait_until(lambda: framework.logs.written == 20, what="the first logs written")

    outage.begin()
    predict(range(20, 50))  # every prediction is still answered, by the experiment's arms
    wait_until(lambda: not framework.logs.healthy, what="the flusher noticing the outage")
    assert sync.sync() in (SyncOutcome.DATABASE_UNAVAILABLE, SyncOutcome.UNCHANGED)  # SQLite still reads
    assert service.traffic_rule == rule
    result = framework.flush()
    assert not result.ok and result.pending == 30 and framework.logs.written == 20

    outage.end()
    wait_until(lambda: framework.logs.written == 50, what="the buffered logs written after the outage")

    assert framework.logs.pending == 0 and framework.logs.healthy and framework.logs.dropped == 0
    sync.close()
    service.close()
    assert sorted(logged_ids(outage.url)) == sorted(made) and len(made) == 50
