"""Replicas that start together create the deployment tables once, without tripping over each other."""

from __future__ import annotations

import threading

import pytest

from clf.deploy.sql_store import SqlDeploymentStore
from tests.helpers.postgres import PostgresServer, postgres_available


def _start_together(url: str, replicas: int) -> list[BaseException]:
    barrier, errors = threading.Barrier(replicas), []

    def replica() -> None:
        store = SqlDeploymentStore(url)
        barrier.wait(10)
        try:
            store.load()  # the first use creates the tables
        except BaseException as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=replica) for _ in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


@pytest.mark.skipif(not postgres_available(), reason="PostgreSQL's server binaries are not installed")
def test_replicas_starting_together_on_postgresql_all_get_the_tables():
    with PostgresServer() as database:
        for _ in range(3):  # a race is a matter of timing: several fresh starts, each from no table at all
            with SqlDeploymentStore(database.url).engine.begin() as connection:
                tables = (
                    "clf_deploy_state, clf_deploy_decisions, clf_deploy_lease, clf_deploy_replicas, clf_deploy_alerts"
                )
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {tables} CASCADE")
            assert _start_together(database.url, replicas=6) == []


def test_replicas_starting_together_on_sqlite_all_get_the_tables(tmp_path):
    assert _start_together(f"sqlite:///{tmp_path / 'state.db'}", replicas=6) == []
