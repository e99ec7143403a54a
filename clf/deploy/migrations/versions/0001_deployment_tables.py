"""The five deployment tables, as clf made them with ``create_all`` before they were migrated: only the missing ones
are created, so a database made that way is adopted as it is.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = {
    "clf_deploy_state": lambda: [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    ],
    "clf_deploy_decisions": lambda: [
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    ],
    "clf_deploy_lease": lambda: [
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
    ],
    "clf_deploy_replicas": lambda: [
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
    ],
    "clf_deploy_alerts": lambda: [
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("sent_at", sa.Float(), nullable=False),
    ],
}
"""Each table's columns (fresh Column objects per call: a Column belongs to one table)."""


def upgrade() -> None:
    """Creates whichever deployment tables the database lacks."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in TABLES.items():
        if name not in existing:
            op.create_table(name, *columns())


def downgrade() -> None:
    """Drops the deployment tables."""
    for name in reversed(TABLES):
        op.drop_table(name)
