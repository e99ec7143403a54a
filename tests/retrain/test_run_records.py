"""Tests for clf/experiments/runs.py: the retraining_runs records on SQLite (the table the pipeline writes)."""

from __future__ import annotations

import pytest

from clf.experiments.database import make_engine
from clf.experiments.errors import ExperimentError
from clf.experiments.runs import RUN_FIELDS, RetrainingRunStore
from tests.retrain.conftest import experiments_db


@pytest.fixture
def store(tmp_path) -> RetrainingRunStore:
    return RetrainingRunStore(make_engine(experiments_db(f"sqlite:///{tmp_path / 'runs.db'}")))


def test_a_run_is_started_updated_and_finished(store):
    run_id = store.start("schedule")
    assert store.get(run_id)["status"] == "running" and store.get(run_id)["completed_at"] is None
    store.update(run_id, new_data_count=12, metrics={"growth": {"decision": "retrain"}})
    store.update(run_id, metrics={"promotion": {"decision": "archive"}})
    evidence = {"fired": ["drift"], "triggers": {"drift": {"fired": True, "mmd_p_value": 0.001}}}
    record = store.finish(run_id, "completed", model_version="v1.1.0", training_time_seconds=1.5, evidence=evidence)
    assert set(record) == set(RUN_FIELDS) and store.get(run_id)["evidence"] == evidence
    assert record["metrics"] == {"growth": {"decision": "retrain"}, "promotion": {"decision": "archive"}}
    assert record["status"] == "completed" and record["completed_at"] >= record["started_at"]
    assert record["new_data_count"] == 12 and record["model_version"] == "v1.1.0"


def test_list_is_newest_first_and_filters(store):
    first, second = store.start("manual"), store.start("schedule")
    store.finish(first, "failed", error_message="boom")
    assert [r["id"] for r in store.list()] == [second, first]
    assert [r["id"] for r in store.list(status="failed")] == [first]
    assert len(store.list(limit=1)) == 1


def test_unknown_runs_and_columns_are_named(store):
    with pytest.raises(ExperimentError, match="retraining run 42 does not exist"):
        store.get(42)
    run_id = store.start("manual")
    with pytest.raises(ExperimentError, match=r"no updatable column \['started_at'\]"):
        store.update(run_id, started_at=None)
