"""Create served_predictions (every answered paper, its true label once known) and add retraining_runs.evidence.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Creates served_predictions with its indexes and adds the evidence column to retraining_runs."""
    op.create_table(
        "served_predictions",
        sa.Column("prediction_id", sa.String(64), primary_key=True),
        sa.Column("arxiv_id", sa.String(64), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("arm", sa.String(20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("label", sa.String(100), nullable=True),
        sa.Column("probability", sa.Float(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("text_chars", sa.Integer(), nullable=False),
        sa.Column("out_of_scope", sa.Boolean(), nullable=True),
        sa.Column("true_label", sa.String(100), nullable=True),
        sa.Column("label_source", sa.String(20), nullable=True),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_served_predictions_arxiv_id", "served_predictions", ["arxiv_id"])
    op.create_index("ix_served_predictions_model_version", "served_predictions", ["model_version"])
    op.create_index("ix_served_predictions_created_at", "served_predictions", ["created_at"])
    with op.batch_alter_table("retraining_runs") as batch:
        batch.add_column(sa.Column("evidence", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drops what `upgrade` added."""
    with op.batch_alter_table("retraining_runs") as batch:
        batch.drop_column("evidence")
    op.drop_table("served_predictions")
