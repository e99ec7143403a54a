"""Alembic's entry point for the deployment tables; `clf.deploy.migrations.upgrade` drives it with its connection."""

from __future__ import annotations

from alembic import context

from clf.deploy.migrations import SCHEMA_LOCK_KEY, VERSION_TABLE
from clf.migrations import run_online

# Alembic sets `context.config` while it runs this file; pytest's doctest collection imports it without Alembic.
if hasattr(context, "config"):
    run_online(VERSION_TABLE, SCHEMA_LOCK_KEY, "clf.deploy.migrations.upgrade (a SqlDeploymentStore's first use)")
