"""Alembic's entry point for the deployment tables; `clf.deploy.migrations.upgrade` drives it with its connection."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from clf.deploy.migrations import SCHEMA_LOCK_KEY, VERSION_TABLE


def run_migrations() -> None:
    """Migrates the connection in ``config.attributes["connection"]`` inside its transaction.

    Raises:
        RuntimeError: in Alembic's offline (SQL script) mode, or when the configuration carries no connection.
    """
    connection = context.config.attributes.get("connection")
    if context.is_offline_mode() or connection is None:
        raise RuntimeError("the deployment migrations run online only, through clf.deploy.migrations.upgrade")
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together would each see no table and each CREATE it (the second fails with
            # DuplicateTable): one at a time, and DDL being transactional, the next one sees the committed tables.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        context.run_migrations()


# Alembic sets `context.config` while it runs this file; pytest's doctest collection imports it without Alembic.
if hasattr(context, "config"):
    run_migrations()
