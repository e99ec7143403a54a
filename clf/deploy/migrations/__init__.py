"""Alembic migrations of the deployment tables (``clf_deploy_*``, `clf.deploy.sql_store`); `upgrade` runs them, and
`SqlDeploymentStore` calls it on first use, so a new database gets its tables and an older one its newer migrations.

Their version is kept in ``clf_deploy_alembic_version``, so the deployment tables can share a database with the
experiment tables and Optuna's, each keeping its own. Revision 0001 adopts a database whose tables an older clf made
without Alembic: it creates only the tables that are missing.

A new migration: change the tables in `clf.deploy.sql_store`, write ``versions/NNNN_what.py`` (``revision``,
``down_revision`` and an ``upgrade()`` of ``alembic.op`` calls), and check it on a database at the previous head.
"""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

MIGRATIONS_DIR = Path(__file__).parent
"""Alembic's script folder: env.py and versions/."""

VERSION_TABLE = "clf_deploy_alembic_version"
"""Where Alembic records the schema revision of the deployment tables."""

SCHEMA_LOCK_KEY = 0x636C6673
"""PostgreSQL advisory lock ("clfs") held while migrating, so replicas starting together upgrade one at a time."""

_ONE_AT_A_TIME = threading.Lock()  # Alembic's `context` and `op` are module globals: one migration per process


def upgrade(connection: sa.Connection) -> str | None:
    """Brings the deployment tables on `connection` to the newest revision, inside its transaction.

    Args:
        connection: an open connection; the caller commits (on PostgreSQL the transaction holds `SCHEMA_LOCK_KEY`).

    Returns:
        The revision the database is at now.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.attributes["connection"] = connection
    with _ONE_AT_A_TIME:
        command.upgrade(config, "head")
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()
