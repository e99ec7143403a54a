"""Base helper: one way to run a package's Alembic migrations on the caller's connection and transaction.

The experiment tables (`clf.experiments.migrations`) and the deployment tables (`clf.deploy.migrations`) each ship a
script folder whose ``env.py`` calls `run_online`; their ``upgrade`` functions call `upgrade_to_head`. No alembic.ini
is read: the configuration is built in code around the connection, and each set of tables records its revision in
a version table of its own, so they can share one database (with Optuna's study tables too).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # Alembic loads when a migration runs, not with every command that imports a store
    from alembic.config import Config
    from sqlalchemy.engine import Connection

_ONE_AT_A_TIME = threading.Lock()  # Alembic's `context` and `op` are module globals: one migration per process


def alembic_config(script_location: Path, connection: Connection | None = None) -> Config:
    """An Alembic configuration for a shipped script folder, built in code (no alembic.ini).

    Args:
        script_location: the folder holding ``env.py`` and ``versions/``.
        connection: the connection ``env.py`` migrates; without one, Alembic commands that need a database fail.

    Returns:
        The configuration; `alembic.command` functions accept it.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(script_location).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(script_location: Path, connection: Connection) -> None:
    """Brings the tables of `script_location` on `connection` to the newest revision, inside its transaction.

    Migrations run one at a time in a process, whichever tables they are for: threads starting stores together would
    otherwise share Alembic's module-global context.

    Args:
        script_location: the folder holding ``env.py`` and ``versions/``.
        connection: an open connection; the caller commits.
    """
    from alembic import command

    with _ONE_AT_A_TIME:
        command.upgrade(alembic_config(script_location, connection), "head")


def run_online(version_table: str, lock_key: int, entry_point: str, **options: Any) -> None:
    """What a shipped ``env.py`` runs: migrates the configuration's connection inside its transaction.

    On PostgreSQL the transaction first takes the advisory lock `lock_key`: processes starting together would each
    see no table and each CREATE it (the second failing with DuplicateTable); one at a time, and DDL being
    transactional, the next one sees the committed tables.

    Args:
        version_table: where Alembic records the revision of these tables.
        lock_key: the PostgreSQL advisory lock held while migrating.
        entry_point: what to run instead, named in the error of offline mode or a missing connection.
        **options: further `alembic.context.configure` options (``target_metadata``, ``render_as_batch``).

    Raises:
        RuntimeError: in Alembic's offline (SQL script) mode, or when the configuration carries no connection.
    """
    from alembic import context
    from sqlalchemy import text

    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError(f"these migrations run online only, on a connection: use {entry_point}")
    context.configure(connection=connection, version_table=version_table, **options)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        context.run_migrations()
