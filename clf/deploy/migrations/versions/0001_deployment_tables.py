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

TABLES = ("clf_deploy_state", "clf_deploy_decisions", "clf_deploy_lease", "clf_deploy_replicas", "clf_deploy_alerts")


def upgrade() -> None:
    """Creates whichever deployment tables the database lacks."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())

    def create(name: str, *columns: sa.Column) -> None:
        if name not in existing:
            op.create_table(name, *columns)

    def at(name: str) -> sa.Column:
        return sa.Column(name, sa.Float(), nullable=False)

    def body() -> sa.Column:
        return sa.Column("body", sa.Text(), nullable=False)

    create("clf_deploy_state", sa.Column("id", sa.Integer(), primary_key=True), body(), at("updated_at"))
    create(
        "clf_deploy_decisions", sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True), at("at"), body()
    )
    holder = sa.Column("holder", sa.String(255), nullable=False)
    create(
        "clf_deploy_lease", sa.Column("id", sa.Integer(), primary_key=True), holder, at("acquired_at"), at("expires_at")
    )
    create("clf_deploy_replicas", sa.Column("id", sa.String(255), primary_key=True), at("heartbeat_at"), body())
    create("clf_deploy_alerts", sa.Column("key", sa.String(255), primary_key=True), at("sent_at"))


def downgrade() -> None:
    """Drops the deployment tables."""
    for name in reversed(TABLES):
        op.drop_table(name)
