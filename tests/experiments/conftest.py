"""Fixtures for the A/B tests: one database URL per backend (a SQLite file, and a fresh database on a real loopback
PostgreSQL server), so every test that takes `db_url` runs on both."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from clf.experiments.records import log_row
from clf.experiments.tables import PredictionLog
from clf.inference.prediction import Prediction
from tests.helpers.exports import build_registry
from tests.helpers.postgres import PostgresServer

_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty experiments database: a SQLite file, or a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'experiments.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"experiments_{next(_databases)}"
    admin = sa.create_engine(server.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield server.url.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def shared_registry(tmp_path_factory: pytest.TempPathFactory, tiny_exports: dict[str, Path]):
    """A registry with v1.0.0 (production) and v1.1.0, shared by the tests of a module that never promote."""
    return build_registry(tmp_path_factory.mktemp("registry") / "models", tiny_exports, production="v1.0.0")


def seed_outcomes(
    engine: sa.Engine,
    experiment_id: int,
    version: str,
    correct: int,
    with_feedback: int,
    without_feedback: int = 0,
    latency_ms: float = 10.0,
    prefix: str = "",
) -> list[str]:
    """Inserts logged predictions with known outcomes: `correct` of `with_feedback` right, plus some unlabelled.

    Wrong predictions say ``cs.DB`` for a true ``cs.CV``; right ones say ``cs.CV`` for ``cs.CV``.

    Returns:
        The ids of the rows, in insertion order.
    """
    rows = []
    for index in range(with_feedback + without_feedback):
        right = index < correct
        row = log_row(
            f"{prefix}{version}-{index}",
            experiment_id,
            version,
            "a paper",
            Prediction("cs.CV" if right else "cs.DB", 0.9, ()),
            latency_ms + index % 10,
            user_id=f"u{index}",
            created_at=datetime.now(UTC),
        )
        row["true_label"] = "cs.CV" if index < with_feedback else None
        rows.append(row)
    with engine.begin() as connection:
        connection.execute(sa.insert(PredictionLog.__table__), rows)
    return [row["id"] for row in rows]
