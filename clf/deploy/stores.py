"""`open_store`: the deployment state store a registry's replicas share, files or SQL."""

from __future__ import annotations

import os
from pathlib import Path

from clf.deploy.sql_store import SqlDeploymentStore
from clf.deploy.state import DeploymentStore
from clf.deploy.store import StateStore

STATE_DB_ENV = "CLF_STATE_DB"
"""The environment variable `open_store` reads the SQL state store's URL from."""


def open_store(registry_dir: str | Path, state_db: str | None = None) -> StateStore:
    """The deployment store of a registry: its ``deployment/`` folder, or a SQL database.

    Args:
        registry_dir: the registry folder.
        state_db: a SQLAlchemy URL (``postgresql+psycopg://...``); by default the ``CLF_STATE_DB`` environment
            variable, and without either the registry's folder.

    Returns:
        A `DeploymentStore` or a `clf.deploy.sql_store.SqlDeploymentStore`.
    """
    url = state_db or os.environ.get(STATE_DB_ENV) or None
    return DeploymentStore(registry_dir) if url is None else SqlDeploymentStore(url)
