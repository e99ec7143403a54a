"""The experiment tables as SQLAlchemy 2 declarative models; the Alembic migrations in ``migrations/`` create them.

    ab_test_experiments   one row per A/B experiment: its arms, split, dates, status and last results
    prediction_logs       one row per answered paper routed by an experiment, with feedback once it arrives
    retraining_runs       one row per retraining run (written by the retraining pipeline)

Every timestamp is timezone-aware UTC in Python, whatever the database keeps (SQLite has no time zones). JSON
columns use SQLAlchemy's portable `JSON` type, so the same models work on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class ExperimentStatus(StrEnum):
    """Where an experiment is in its life."""

    RUNNING = "running"
    """Routing traffic and collecting logs."""
    STOPPED = "stopped"
    """Stopped by hand before a decision; its traffic went back to control. It can still be analysed and promoted."""
    COMPLETED = "completed"
    """Decided by `ABTestingFramework.promote_winner`; the decision is in its results."""


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database: naive values are refused, values read back carry UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Converts an aware datetime to UTC for storage (without its zone on SQLite).

        Raises:
            ValueError: for a naive datetime, whose time zone would be a guess.
        """
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()}: give a timezone-aware one, e.g. datetime.now(UTC)")
        value = value.astimezone(UTC)
        # SQLite stores the wall-clock digits only; dropping the (UTC) zone keeps them comparable as text.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Returns stored times as aware UTC datetimes, whatever the database kept."""
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    """The current time, timezone-aware UTC.

    Returns:
        ``datetime.now(UTC)``.
    """
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """The declarative base of the experiment tables."""

    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class ABTestExperiment(Base):
    """An A/B experiment: `traffic_split` of the users go to `treatment_version`, the rest to `control_version`.

    At most one experiment per control version is running: a partial unique index enforces it in the database, so
    two processes creating experiments at once cannot both succeed.
    """

    __tablename__ = "ab_test_experiments"
    __table_args__ = (
        Index("ix_ab_test_experiments_status", "status"),
        Index(
            "uq_ab_test_experiments_running_control",
            "control_version",
            unique=True,
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    control_version: Mapped[str] = mapped_column(String(64))
    treatment_version: Mapped[str] = mapped_column(String(64))
    traffic_split: Mapped[float] = mapped_column(Float)
    """The share of users sent to the treatment, in [0, 1]."""
    start_date: Mapped[datetime]
    end_date: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(20))
    """An `ExperimentStatus` value."""
    results: Mapped[dict[str, Any] | None]
    """The last analysis, and the promotion decision once there is one."""


class PredictionLog(Base):
    """One answered paper of an experiment; `id` is the service's ``prediction_id``, which feedback names."""

    __tablename__ = "prediction_logs"
    __table_args__ = (
        Index("ix_prediction_logs_experiment_id", "experiment_id"),
        Index("ix_prediction_logs_model_version", "model_version"),
        Index("ix_prediction_logs_created_at", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    experiment_id: Mapped[int | None] = mapped_column(Integer, ForeignKey("ab_test_experiments.id"))
    model_version: Mapped[str] = mapped_column(String(64))
    input_text: Mapped[str] = mapped_column(Text)
    """The cleaned model input (title and abstract as the model saw them)."""
    predictions: Mapped[dict[str, Any]]
    """``label``, ``probability``, ``top3`` and ``arm`` as the service answered them."""
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime]
    user_id: Mapped[str | None] = mapped_column(String(200))
    true_label: Mapped[str | None] = mapped_column(String(100))
    """The correct category, once feedback arrives (`ABTestingFramework.record_feedback`)."""


class RetrainingRun(Base):
    """One run of the retraining pipeline: why it started, on how much data, what it produced and how it ended."""

    __tablename__ = "retraining_runs"
    __table_args__ = (
        Index("ix_retraining_runs_status", "status"),
        Index("ix_retraining_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trigger_type: Mapped[str] = mapped_column(String(50))
    """What started the run: ``schedule``, ``new_data``, ``drift``, ``manual``..."""
    dataset_size: Mapped[int | None] = mapped_column(Integer)
    new_data_count: Mapped[int | None] = mapped_column(Integer)
    model_version: Mapped[str | None] = mapped_column(String(64))
    """The version the run registered, if it got that far."""
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime]
    completed_at: Mapped[datetime | None]
    training_time_seconds: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None]
    error_message: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any] | None]
    """The retrain decision: every trigger's numbers, whether it fired and why (`clf.retrain.triggers.decide`)."""
