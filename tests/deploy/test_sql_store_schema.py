"""The deployment tables are Alembic's (clf/deploy/migrations): replicas starting together create them once, without
tripping over each other, and a database whose tables an older clf made with ``create_all`` is adopted as it is."""

from __future__ import annotations

import json
import multiprocessing

import pytest
import sqlalchemy as sa

from clf.deploy import Action, Decision
from clf.deploy.migrations import VERSION_TABLE
from clf.deploy.sql_store import SqlDeploymentStore
from tests.helpers.postgres import PostgresServer, postgres_available

TABLES = "clf_deploy_state, clf_deploy_decisions, clf_deploy_lease, clf_deploy_replicas, clf_deploy_alerts"
needs_postgres = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL's server binaries are not installed")


def _replica(url: str, barrier, errors) -> None:
    store = SqlDeploymentStore(url)
    barrier.wait(30)
    try:
        store.load()  # the first use creates the tables
    except BaseException as err:  # noqa: BLE001 - reported to the test
        errors.put(repr(err))


def _start_together(url: str, replicas: int) -> list[str]:
    """`replicas` processes (as replicas are; Alembic runs one migration per process at a time) open one store."""
    spawn = multiprocessing.get_context("spawn")
    barrier, errors = spawn.Barrier(replicas), spawn.Queue()
    processes = [spawn.Process(target=_replica, args=(url, barrier, errors)) for _ in range(replicas)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0] * replicas
    return [errors.get() for _ in range(errors.qsize())]


@needs_postgres
def test_replicas_starting_together_on_postgresql_all_get_the_tables():
    with PostgresServer() as database:
        for _ in range(2):  # a race is a matter of timing: several fresh starts, each from no table at all
            with SqlDeploymentStore(database.url).engine.begin() as connection:
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLES}, {VERSION_TABLE} CASCADE")
            assert _start_together(database.url, replicas=4) == []


def test_replicas_starting_together_on_sqlite_all_get_the_tables(tmp_path):
    assert _start_together(f"sqlite:///{tmp_path / 'state.db'}", replicas=4) == []


def _create_all_the_old_way(url: str) -> None:
    """The tables as clf made them before Alembic (``MetaData.create_all``), with a rollout and a decision in them."""
    metadata = sa.MetaData()
    state = sa.Table(
        "clf_deploy_state",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    decisions = sa.Table(
        "clf_deploy_decisions",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    for name, key, *columns in (
        ("clf_deploy_lease", "id", "holder", "acquired_at", "expires_at"),
        ("clf_deploy_replicas", "id", "heartbeat_at", "body"),
        ("clf_deploy_alerts", "key", "sent_at"),
    ):
        key_type = sa.Integer if name == "clf_deploy_lease" else sa.String(255)
        sa.Table(
            name,
            metadata,
            sa.Column(key, key_type, primary_key=True),
            *(sa.Column(c, sa.Float if c.endswith("_at") else sa.Text, nullable=False) for c in columns),
        )
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        metadata.create_all(connection)
        body = {"phase": "canary", "strategy": "canary", "candidate": "v1.1.0", "stages": [50, 100]}
        connection.execute(state.insert().values(id=1, body=json.dumps(body), updated_at=1.0))
        record = Decision(Action.REQUESTED, "v1.1.0", "asked", at=1.0).to_json()
        connection.execute(decisions.insert().values(at=1.0, body=json.dumps(record)))
    engine.dispose()


def _adopts(url: str) -> None:
    _create_all_the_old_way(url)
    store = SqlDeploymentStore(url)
    assert store.load().candidate == "v1.1.0", "the rollout in the old tables goes on"
    store.record(Decision(Action.STAGE_STARTED, "v1.1.0", "went on", stage=50))
    assert [d["action"] for d in store.decisions()] == [Action.REQUESTED, Action.STAGE_STARTED]
    assert store.acquire_lease("a", 60).holder == "a"
    with store.engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == "0001"


def test_a_sqlite_database_made_by_create_all_is_adopted_by_the_migrations(tmp_path):
    _adopts(f"sqlite:///{tmp_path / 'state.db'}")


@needs_postgres
def test_a_postgresql_database_made_by_create_all_is_adopted_by_the_migrations(postgres_server):
    _adopts(postgres_server.url)
