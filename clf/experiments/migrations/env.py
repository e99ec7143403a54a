"""Alembic's entry point for the experiment tables; Alembic runs it, `clf.experiments.database.upgrade` drives it.

The connection comes from the configuration's attributes (see `clf.experiments.database.alembic_config`), so the
caller's engine and transaction are used and no alembic.ini or URL is read here.
"""

from __future__ import annotations

from alembic import context

from clf.experiments.database import MIGRATION_LOCK_KEY, VERSION_TABLE
from clf.experiments.tables import Base
from clf.migrations import run_online

# Alembic sets `context.config` while it runs this file; pytest's doctest collection imports it without Alembic.
if hasattr(context, "config"):
    run_online(
        VERSION_TABLE,
        MIGRATION_LOCK_KEY,
        "clf db upgrade --db URL",
        target_metadata=Base.metadata,
        render_as_batch=context.config.attributes["connection"].dialect.name == "sqlite",  # SQLite copies to alter
    )
