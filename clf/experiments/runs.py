"""`RetrainingRunStore`: the ``retraining_runs`` table — one row per run of the retraining pipeline.

    store = RetrainingRunStore(make_engine("sqlite:///models/experiments.db"))
    run_id = store.start("schedule")
    store.update(run_id, new_data_count=2284, dataset_size=3100)
    store.finish(run_id, "completed", model_version="v1.1.0", metrics={...})
    store.list(limit=20)

Like `ExperimentStore`, every call is its own short transaction and the tables are created on first use.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from clf.experiments.errors import ExperimentError
from clf.experiments.store import ExperimentStore
from clf.experiments.tables import RetrainingRun, utc_now

RUN_FIELDS = (
    "id",
    "trigger_type",
    "dataset_size",
    "new_data_count",
    "model_version",
    "status",
    "started_at",
    "completed_at",
    "training_time_seconds",
    "metrics",
    "error_message",
    "evidence",
)
"""The columns of a run record, in the order `RetrainingRunStore.list` returns them."""

_UPDATABLE = frozenset(RUN_FIELDS) - {"id", "started_at"}


class RetrainingRunStore:
    """Reads and writes ``retraining_runs`` rows.

    Args:
        engine: the experiments database (any SQLAlchemy engine; see `clf.experiments.database.make_engine`).
        auto_upgrade: create or upgrade the tables on first use.
    """

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        self._store = ExperimentStore(engine, auto_upgrade=auto_upgrade)

    def start(self, trigger_type: str, status: str = "running") -> int:
        """Inserts a run that starts now.

        Args:
            trigger_type: what started it (``schedule``, ``manual``, ...).
            status: its status until `finish`.

        Returns:
            The run's id.
        """
        with self._store.session("recording a retraining run") as session:
            row = RetrainingRun(trigger_type=trigger_type, status=status, started_at=utc_now())
            session.add(row)
            session.flush()
            return int(row.id)

    def update(self, run_id: int, **fields: Any) -> dict[str, Any]:
        """Sets some columns of a run.

        Args:
            run_id: the run.
            **fields: column → value; `metrics` is merged into the stored metrics, not replaced.

        Returns:
            The run record after the update.

        Raises:
            ExperimentError: for an unknown run or column.
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ExperimentError(
                f"retraining_runs has no updatable column {sorted(unknown)}; allowed: {sorted(_UPDATABLE)}"
            )
        with self._store.session("updating a retraining run") as session:
            row = session.get(RetrainingRun, run_id)
            if row is None:
                raise ExperimentError(f"retraining run {run_id} does not exist")
            if "metrics" in fields:
                fields["metrics"] = {**(row.metrics or {}), **(fields["metrics"] or {})}
            for name, value in fields.items():
                setattr(row, name, value)
            session.flush()
            return _record(row)

    def finish(self, run_id: int, status: str, **fields: Any) -> dict[str, Any]:
        """Ends a run: sets its final status, ``completed_at`` (now) and any other columns.

        Args:
            run_id: the run.
            status: ``completed``, ``skipped`` or ``failed``.
            **fields: other columns, as for `update`.

        Returns:
            The finished run record.
        """
        return self.update(run_id, status=status, completed_at=utc_now(), **fields)

    def get(self, run_id: int) -> dict[str, Any]:
        """One run record.

        Args:
            run_id: the run's id.

        Returns:
            The run's columns as a dict.

        Raises:
            ExperimentError: for an unknown run.
        """
        with self._store.session("reading a retraining run") as session:
            row = session.get(RetrainingRun, run_id)
            if row is None:
                raise ExperimentError(f"retraining run {run_id} does not exist")
            return _record(row)

    def list(self, limit: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Run records, newest first.

        Args:
            limit: at most this many.
            status: only runs with this status.

        Returns:
            JSON-ready records (timestamps as ISO-8601 strings).
        """
        query = sa.select(RetrainingRun).order_by(RetrainingRun.started_at.desc(), RetrainingRun.id.desc())
        if status is not None:
            query = query.where(RetrainingRun.status == status)
        if limit is not None:
            query = query.limit(limit)
        with self._store.session("listing retraining runs") as session:
            return [_record(row) for row in session.scalars(query)]


def _record(row: RetrainingRun) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in RUN_FIELDS}
    for name in ("started_at", "completed_at"):
        if isinstance(record[name], datetime):
            record[name] = record[name].isoformat(timespec="seconds")
    return record
