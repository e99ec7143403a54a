"""Tests for tests/helpers/postgres.py: a real PostgreSQL server on loopback, driven through SQLAlchemy."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import postgres as postgres_module
from tests.helpers.postgres import PostgresServer, postgres_available


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as running:
        yield running


def _refuses(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        return probe.connect_ex(("127.0.0.1", port)) != 0


def _alive(pid: int) -> bool:
    """Whether a process runs; a zombie (exited, not yet reaped by a non-reaping PID 1) does not count."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_postgres_is_installed() -> None:
    assert postgres_available(), "PostgreSQL server binaries are missing: apt-get install postgresql"


def test_url_points_at_the_clf_database_on_loopback(server: PostgresServer) -> None:
    assert server.url == f"postgresql+psycopg://clf@127.0.0.1:{server.port}/clf"
    engine = sa.create_engine(server.url)
    with engine.connect() as connection:
        row = connection.execute(
            sa.text("SELECT current_database(), current_user, inet_server_addr()::text, current_setting('fsync')")
        ).one()
    engine.dispose()
    assert tuple(row) == ("clf", "clf", "127.0.0.1/32", "off")


def test_rows_round_trip_and_committed_rows_are_shared_between_connections(server: PostgresServer) -> None:
    engine = sa.create_engine(server.url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE trials (id serial PRIMARY KEY, worker text NOT NULL, value real)"))
        connection.execute(
            sa.text("INSERT INTO trials (worker, value) VALUES (:worker, :value)"),
            [{"worker": "a", "value": 0.5}, {"worker": "a", "value": 0.25}],
        )

    with engine.connect() as first, engine.connect() as second:
        assert first.execute(sa.text("SELECT worker, value FROM trials ORDER BY id")).all() == [("a", 0.5), ("a", 0.25)]
        first.commit()  # end the read transaction so the next SELECT takes a fresh snapshot

        second.execute(sa.text("INSERT INTO trials (worker, value) VALUES ('b', 0.75)"))
        assert first.execute(sa.text("SELECT count(*) FROM trials")).scalar_one() == 2  # not yet committed
        first.commit()
        second.commit()
        assert first.execute(sa.text("SELECT worker FROM trials WHERE value > 0.6")).scalar_one() == "b"
    engine.dispose()


def test_stop_ends_the_server_and_removes_its_directory() -> None:
    began = time.monotonic()
    server = PostgresServer().start()
    took = time.monotonic() - began
    port, data_dir = server.port, server.data_dir
    pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    assert _alive(pid) and not _refuses(port)
    # How long start() took, initdb included: bounded by the call itself, not by a guess at the machine's speed.
    assert server.startup_seconds is not None and 0 < server.startup_seconds <= took

    server.stop()

    assert not _alive(pid)
    assert _refuses(port)
    assert not data_dir.parent.exists()
    server.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_missing_binaries_name_the_install_command(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="apt-get install postgresql"):
        PostgresServer(bin_dir=tmp_path).start()


def test_a_port_taken_after_probing_is_retried(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = postgres_module.free_port
        monkeypatch.setattr(postgres_module, "free_port", lambda: next(ports, None) or real_free_port())

        with PostgresServer() as server:
            assert server.port != taken
            assert f"port {taken} was taken" in caplog.text
            assert not _refuses(server.port)


def test_stop_keeping_data_then_restart_brings_the_same_cluster_back_on_the_same_port() -> None:
    with PostgresServer() as server:
        port, data_dir = server.port, server.data_dir
        engine = sa.create_engine(server.url)
        with engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE kept (x int)"))
            connection.execute(sa.text("INSERT INTO kept VALUES (7)"))
        engine.dispose()

        server.stop(keep_data=True)
        assert not server.running and _refuses(port) and data_dir.exists()
        with pytest.raises(sa.exc.OperationalError), engine.connect():
            pass

        assert server.restart() is server
        assert server.running and server.port == port and not _refuses(port)
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT x FROM kept")).scalar_one() == 7
        engine.dispose()
    assert not data_dir.parent.exists()
    with pytest.raises(RuntimeError, match="nothing to restart"):
        server.restart()
