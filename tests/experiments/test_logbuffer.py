"""Tests for clf/experiments/logbuffer.py: batches, the flusher thread, shutdown, bounds and bad rows."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from clf.experiments.database import make_engine
from clf.experiments.logbuffer import PredictionLogBuffer
from clf.experiments.records import log_row
from clf.experiments.store import ExperimentStore
from clf.experiments.tables import PredictionLog
from clf.inference.prediction import Prediction


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def experiment_id(engine) -> int:
    return ExperimentStore(engine).insert("buffer test", "v1.0.0", "v1.1.0", 0.5).id


def rows(experiment_id: int | None, count: int, start: int = 0) -> list[dict]:
    prediction = Prediction("cs.CV", 0.8, (), arm="control")
    return [
        log_row(f"p{i}", experiment_id, "v1.0.0", f"text {i}", prediction, 12.5, f"u{i}", datetime.now(UTC))
        for i in range(start, start + count)
    ]


def stored(engine) -> list[str]:
    with engine.connect() as connection:
        return connection.execute(sa.select(PredictionLog.id)).scalars().all()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_full_batch_is_written_at_once_and_a_partial_one_waits(engine, experiment_id):
    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=60)
    buffer.add(rows(experiment_id, 99))
    time.sleep(0.3)
    assert stored(engine) == [] and buffer.pending == 99

    buffer.add(rows(experiment_id, 1, start=99))

    wait_for(lambda: len(stored(engine)) == 100)
    assert buffer.pending == 0 and buffer.written == 100
    buffer.close()


def test_each_insert_holds_at_most_one_batch(engine, experiment_id):
    sizes: list[int] = []

    @sa.event.listens_for(engine, "before_execute")
    def count_rows(connection, clause, multiparams, params, options):
        if getattr(clause, "table", None) is PredictionLog.__table__:
            sizes.append(len(multiparams) if multiparams else 1)

    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=60)
    buffer.add(rows(experiment_id, 250))
    wait_for(lambda: buffer.written == 250)

    assert sizes == [100, 100, 50]
    assert sorted(stored(engine), key=lambda i: int(i[1:])) == [f"p{i}" for i in range(250)]
    buffer.close()


def test_the_timer_writes_a_partial_batch(engine, experiment_id):
    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=0.1)
    buffer.add(rows(experiment_id, 3))
    wait_for(lambda: len(stored(engine)) == 3)
    buffer.close()


def test_close_writes_what_is_left_and_refuses_new_rows(engine, experiment_id):
    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=60)
    buffer.add(rows(experiment_id, 37))
    assert stored(engine) == []

    result = buffer.close()

    assert (result.written, result.pending, result.ok) == (37, 0, True)
    assert len(stored(engine)) == 37
    with pytest.raises(RuntimeError, match="closed"):
        buffer.add(rows(experiment_id, 1))


def test_a_retried_row_is_not_stored_twice(engine, experiment_id):
    buffer = PredictionLogBuffer(engine, batch_size=10, flush_interval_seconds=60)
    buffer.add(rows(experiment_id, 5))
    assert buffer.flush().written == 5
    buffer.add(rows(experiment_id, 5))  # as if the first commit's answer had been lost and the rows retried

    result = buffer.flush()

    assert result.ok and result.rejected == 0
    assert len(stored(engine)) == 5
    buffer.close()


def test_any_table_with_a_one_column_key_is_buffered_and_a_retried_row_is_stored_once(engine):
    from clf.experiments.tables import ServedPrediction

    ExperimentStore(engine).ensure_schema()
    table = ServedPrediction.__table__
    buffer = PredictionLogBuffer(
        engine, batch_size=10, flush_interval_seconds=60, table=table, what="served prediction"
    )
    row = {"prediction_id": "s1", "arxiv_id": None, "model_version": "v1.0.0", "arm": "live",
           "created_at": datetime.now(UTC), "label": "cs.CL", "probability": 0.9, "probabilities": {"cs.CL": 0.9},
           "text_chars": 10, "out_of_scope": None, "true_label": None, "label_source": None,
           "labelled_at": None}  # fmt: skip
    buffer.add([row, {**row, "prediction_id": "s2"}])
    assert buffer.flush().written == 2
    buffer.add(row)  # retried after a lost commit answer

    assert buffer.flush().ok
    with engine.connect() as connection:
        assert sorted(connection.execute(sa.select(table.c.prediction_id)).scalars()) == ["s1", "s2"]
    buffer.close()


def test_a_row_the_database_refuses_is_dropped_alone(engine, experiment_id, caplog):
    buffer = PredictionLogBuffer(engine, batch_size=10, flush_interval_seconds=60)
    buffer.add([*rows(experiment_id, 4), *rows(experiment_id + 1000, 1, start=4), *rows(experiment_id, 3, start=5)])

    result = buffer.flush()

    assert (result.written, result.rejected, result.pending, result.ok) == (7, 1, 0, True)
    assert sorted(stored(engine)) == sorted(f"p{i}" for i in (0, 1, 2, 3, 5, 6, 7))
    assert "dropped prediction log p4: the database refused it" in caplog.text
    buffer.close()


def test_while_the_database_is_away_the_buffer_keeps_the_newest_rows_up_to_its_bound(caplog):
    engine = make_engine("postgresql+psycopg://clf@127.0.0.1:9/none", connect_timeout_seconds=2)
    buffer = PredictionLogBuffer(engine, batch_size=100, flush_interval_seconds=60, max_rows=150)
    assert buffer.flush().ok  # nothing to write: no connection attempted

    buffer.add(rows(1, 100))
    wait_for(lambda: not buffer.healthy)
    with caplog.at_level(logging.ERROR, logger="clf.experiments.logbuffer"):
        buffer.add(rows(1, 300, start=100))

    assert buffer.pending == 150 and buffer.dropped == 250
    assert "prediction log buffer full (150 rows): dropped the oldest" in caplog.text
    result = buffer.flush()
    assert not result.ok and result.pending == 150 and "OperationalError" in result.error
    assert [row["id"] for row in buffer._rows][:2] == ["p250", "p251"]  # the newest rows, still in order
    caplog.clear()
    final = buffer.close(timeout=5)
    assert final.pending == 150
    assert "150 prediction logs could not be written" in caplog.text and "are lost" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"flush_interval_seconds": 0}, "flush_interval_seconds"),
        ({"max_rows": 10}, "max_rows"),
        (
            {
                "table": sa.Table(
                    "pairs",
                    sa.MetaData(),
                    sa.Column("a", sa.Integer, primary_key=True),
                    sa.Column("b", sa.Integer, primary_key=True),
                )
            },
            "one-column primary key",
        ),
    ],
)
def test_settings_out_of_range_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredictionLogBuffer(make_engine("sqlite://"), **kwargs)
