"""Alembic migrations of the deployment tables (``clf_deploy_*``, `clf.deploy.sql_store`); `upgrade` runs them, and
`SqlDeploymentStore` calls it on first use, so a new database gets its tables and an older one its newer migrations.

Their version is kept in ``clf_deploy_alembic_version``, so the deployment tables can share a database with the
experiment tables and Optuna's, each keeping its own. Revision 0001 adopts a database whose tables an older clf made
without Alembic: it creates only the tables that are missing.

A new migration: change the tables in `clf.deploy.sql_store`, write ``versions/NNNN_what.py`` (``revision``,
``down_revision`` and an ``upgrade()`` of ``alembic.op`` calls), and check it on a database at the previous head.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from clf.migrations import upgrade_to_head

MIGRATIONS_DIR = Path(__file__).parent
"""Alembic's script folder: env.py and versions/."""

VERSION_TABLE = "clf_deploy_alembic_version"
"""Where Alembic records the schema revision of the deployment tables."""

SCHEMA_LOCK_KEY = 0x636C6673
"""PostgreSQL advisory lock ("clfs") held while migrating, so replicas starting together upgrade one at a time."""


def upgrade(connection: sa.Connection) -> str | None:
    """Brings the deployment tables on `connection` to the newest revision, inside its transaction.

    Args:
        connection: an open connection; the caller commits (on PostgreSQL the transaction holds `SCHEMA_LOCK_KEY`).

    Returns:
        The revision the database is at now.
    """
    from alembic.runtime.migration import MigrationContext

    upgrade_to_head(MIGRATIONS_DIR, connection)
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
