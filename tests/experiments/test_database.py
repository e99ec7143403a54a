"""Tests for clf/experiments/database.py, the shipped migrations and the tables, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.orm import Session

from clf.experiments.database import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from clf.experiments.errors import DatabaseUnavailableError, ExperimentError
from clf.experiments.tables import ABTestExperiment, Base, PredictionLog, RetrainingRun

TABLES = {"ab_test_experiments", "prediction_logs", "retraining_runs", "served_predictions", VERSION_TABLE}
INDEXES = {
    "ab_test_experiments": {"ix_ab_test_experiments_status", "uq_ab_test_experiments_running_control"},
    "prediction_logs": {
        "ix_prediction_logs_experiment_id",
        "ix_prediction_logs_model_version",
        "ix_prediction_logs_created_at",
    },
    "retraining_runs": {"ix_retraining_runs_status", "ix_retraining_runs_started_at"},
    "served_predictions": {
        "ix_served_predictions_arxiv_id",
        "ix_served_predictions_model_version",
        "ix_served_predictions_created_at",
    },
}


def test_upgrade_builds_every_table_and_index_from_an_empty_database(db_url):
    engine = make_engine(db_url)
    assert sa.inspect(engine).get_table_names() == []
    assert current_revision(engine) is None

    assert upgrade(db_url) == head_revision() == "0002"

    inspector = sa.inspect(engine)
    assert set(inspector.get_table_names()) == TABLES
    for table, names in INDEXES.items():
        assert {index["name"] for index in inspector.get_indexes(table)} == names, table
    columns = {c["name"] for c in inspector.get_columns("prediction_logs")}
    assert columns == {
        "id", "experiment_id", "model_version", "input_text", "predictions", "latency_ms", "created_at", "user_id",
        "true_label",
    }  # fmt: skip
    assert {c["name"] for c in inspector.get_columns("retraining_runs")} >= {
        "error_message", "training_time_seconds", "evidence",
    }  # fmt: skip
    assert [fk["referred_table"] for fk in inspector.get_foreign_keys("prediction_logs")] == ["ab_test_experiments"]
    engine.dispose()


def test_upgrade_from_0001_keeps_the_rows_and_adds_served_predictions_and_evidence(db_url):
    from alembic import command

    engine = make_engine(db_url)
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
    assert current_revision(engine) == "0001"
    assert "served_predictions" not in sa.inspect(engine).get_table_names()
    started = datetime(2024, 5, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO retraining_runs (trigger_type, status, started_at) VALUES ('manual', 'done', :t)"),
            {"t": started},
        )

    assert upgrade(engine) == "0002"

    with Session(engine) as session:
        run = session.scalars(sa.select(RetrainingRun)).one()
        assert (run.trigger_type, run.evidence) == ("manual", None)
        run.evidence = {"drift": {"p_value": 0.001}}
        session.commit()
    with Session(engine) as session:
        assert session.scalars(sa.select(RetrainingRun.evidence)).one() == {"drift": {"p_value": 0.001}}
    assert {c["name"] for c in sa.inspect(engine).get_columns("served_predictions")} == {
        "prediction_id", "arxiv_id", "model_version", "arm", "created_at", "label", "probability", "probabilities",
        "text_chars", "out_of_scope", "true_label", "label_source", "labelled_at",
    }  # fmt: skip
    engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.execute(
            sa.insert(ABTestExperiment.__table__),
            [{"name": "kept", "control_version": "v1.0.0", "treatment_version": "v1.1.0", "traffic_split": 0.5,
              "start_date": datetime.now(UTC), "status": "running"}],
        )  # fmt: skip

    assert upgrade(engine) == "0002"

    with engine.connect() as connection:
        assert connection.execute(sa.select(ABTestExperiment.name)).scalars().all() == ["kept"]
        assert connection.execute(sa.text(f"SELECT count(*) FROM {VERSION_TABLE}")).scalar_one() == 1
    engine.dispose()


def test_the_models_and_the_migrations_describe_the_same_schema(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        assert compare_metadata(context, Base.metadata) == []
    engine.dispose()


def test_the_database_allows_one_running_experiment_per_control(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    row = {"name": "a", "control_version": "v1.0.0", "treatment_version": "v1.1.0", "traffic_split": 0.5,
           "start_date": datetime.now(UTC), "status": "running"}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(sa.insert(ABTestExperiment.__table__), [row, {**row, "status": "stopped"}])
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.insert(ABTestExperiment.__table__), [{**row, "name": "b"}])
    engine.dispose()


def test_timestamps_come_back_timezone_aware_utc_and_json_round_trips(db_url):
    engine = make_engine(db_url)
    upgrade(engine)
    started = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        session.add(
            RetrainingRun(
                trigger_type="new_data",
                dataset_size=12_000,
                new_data_count=800,
                status="completed",
                started_at=started,
                metrics={"val/acc": 0.91, "per_class": {"cs.CL": [0.9, 0.8]}, "note": "ünïcode"},
            )
        )
    with Session(engine) as session:
        run = session.scalars(sa.select(RetrainingRun)).one()
        assert run.started_at == started and run.started_at.tzinfo == UTC
        assert run.started_at.hour == 12
        assert run.metrics == {"val/acc": 0.91, "per_class": {"cs.CL": [0.9, 0.8]}, "note": "ünïcode"}
        assert run.completed_at is None and run.error_message is None
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), Session(engine) as session, session.begin():
        session.add(RetrainingRun(trigger_type="manual", status="running", started_at=datetime(2024, 1, 1)))
    engine.dispose()


def test_a_sqlite_file_gets_its_folder_and_foreign_keys_are_enforced(tmp_path):
    url = f"sqlite:///{tmp_path / 'deep' / 'er' / 'experiments.db'}"
    engine = make_engine(url)
    upgrade(engine)
    assert (tmp_path / "deep" / "er" / "experiments.db").is_file()
    row = {"id": "p1", "experiment_id": 404, "model_version": "v1", "input_text": "x", "predictions": {},
           "latency_ms": 1.0, "created_at": datetime.now(UTC)}  # fmt: skip
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as connection:
        connection.execute(sa.insert(PredictionLog.__table__), [row])
    engine.dispose()


def test_the_migrations_ship_inside_the_package():
    import tomllib

    from setuptools import find_packages

    assert (MIGRATIONS_DIR / "env.py").is_file() and (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py")) == [
        "0001_experiments_prediction_logs_retraining_runs.py",
        "0002_served_predictions_retraining_evidence.py",
    ]
    # What setuptools puts in the wheel: the packages pyproject.toml finds, and the template as package data.
    root = MIGRATIONS_DIR.parents[2]
    setuptools_config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = find_packages(root, include=setuptools_config["packages"]["find"]["include"])
    assert {"clf.experiments.migrations", "clf.experiments.migrations.versions"} <= set(packages)
    assert "script.py.mako" in setuptools_config["package-data"]["clf.experiments.migrations"]


def test_bad_urls_and_missing_drivers_say_what_to_use():
    with pytest.raises(ExperimentError, match="not a database URL; use e.g. sqlite:///"):
        make_engine("experiments.db")
    with pytest.raises(ExperimentError, match="no driver"):
        make_engine("postgresql+nosuchdriver://u@localhost/db")


def test_an_unreachable_database_is_a_clear_error_without_the_password():
    engine = make_engine("postgresql+psycopg://clf:hunter2@127.0.0.1:9/none", connect_timeout_seconds=2)
    with pytest.raises(DatabaseUnavailableError, match="cannot use the experiments database") as caught:
        upgrade(engine)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
    assert "check that it is running" in str(caught.value)
