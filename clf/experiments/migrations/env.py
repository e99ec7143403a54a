"""Alembic's entry point for the experiment tables; Alembic runs it, `clf.experiments.database.upgrade` drives it.

The connection comes from the configuration's attributes (see `clf.experiments.database.alembic_config`), so the
caller's engine and transaction are used and no alembic.ini or URL is read here.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from clf.experiments.database import MIGRATION_LOCK_KEY, VERSION_TABLE
from clf.experiments.tables import Base


def run_migrations() -> None:
    """Migrates the connection in ``config.attributes["connection"]`` inside its transaction.

    Raises:
        RuntimeError: in Alembic's offline (SQL script) mode, or when the configuration carries no connection.
    """
    if context.is_offline_mode():
        raise RuntimeError("the experiment migrations run online only: use clf db upgrade --db URL")
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("no connection to migrate: build the configuration with alembic_config(connection)")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()


# Alembic sets `context.config` while it runs this file; pytest's doctest collection imports it without Alembic.
if hasattr(context, "config"):
    run_migrations()
