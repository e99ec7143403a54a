"""Create ab_test_experiments, prediction_logs and retraining_runs with their indexes.

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

RUNNING = sa.text("status = 'running'")


def upgrade() -> None:
    """Creates the experiments, prediction logs and retraining runs tables with their indexes."""
    op.create_table(
        "ab_test_experiments",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("control_version", sa.String(64), nullable=False),
        sa.Column("treatment_version", sa.String(64), nullable=False),
        sa.Column("traffic_split", sa.Float(), nullable=False),
        sa.Column("start_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("results", sa.JSON(), nullable=True),
    )
    op.create_index("ix_ab_test_experiments_status", "ab_test_experiments", ["status"])
    op.create_index(
        "uq_ab_test_experiments_running_control",
        "ab_test_experiments",
        ["control_version"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )

    op.create_table(
        "prediction_logs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), sa.ForeignKey("ab_test_experiments.id"), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("input_text", sa.Text(), nullable=False),
        sa.Column("predictions", sa.JSON(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.String(200), nullable=True),
        sa.Column("true_label", sa.String(100), nullable=True),
    )
    op.create_index("ix_prediction_logs_experiment_id", "prediction_logs", ["experiment_id"])
    op.create_index("ix_prediction_logs_model_version", "prediction_logs", ["model_version"])
    op.create_index("ix_prediction_logs_created_at", "prediction_logs", ["created_at"])

    op.create_table(
        "retraining_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("trigger_type", sa.String(50), nullable=False),
        sa.Column("dataset_size", sa.Integer(), nullable=True),
        sa.Column("new_data_count", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("training_time_seconds", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
    )
    op.create_index("ix_retraining_runs_status", "retraining_runs", ["status"])
    op.create_index("ix_retraining_runs_started_at", "retraining_runs", ["started_at"])


def downgrade() -> None:
    """Drops the three tables `upgrade` created."""
    op.drop_table("retraining_runs")
    op.drop_table("prediction_logs")
    op.drop_table("ab_test_experiments")
