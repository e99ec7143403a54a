"""`ExperimentStore`: the SQL behind the A/B framework — experiments, their status and results, and log queries.

Every method opens its own short transaction, creates the tables on first use (`ensure_schema`), and turns "cannot
reach the database" into `DatabaseUnavailableError`. `ABTestingFramework` adds the rules (validation, routing,
statistics, promotion) on top.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from clf.experiments.database import current_revision, head_revision, redacted, unavailable_as_error, upgrade
from clf.experiments.errors import (
    ExperimentConflictError,
    ExperimentError,
    ExperimentNotFoundError,
    ExperimentStateError,
    InvalidExperimentError,
    UnknownPredictionError,
)
from clf.experiments.records import Experiment
from clf.experiments.tables import ABTestExperiment, ExperimentStatus, PredictionLog, utc_now


class ExperimentStore:
    """Reads and writes the experiment tables.

    Args:
        engine: the experiments database.
        auto_upgrade: create or upgrade the tables on first use; with False, a database behind the shipped
            migrations is an error that says to run ``clf db upgrade``.
    """

    def __init__(self, engine: Engine, auto_upgrade: bool = True) -> None:
        self.engine = engine
        self.auto_upgrade = auto_upgrade
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def ensure_schema(self) -> None:
        """Creates or upgrades the tables the first time the database is used (see `auto_upgrade`).

        Raises:
            DatabaseUnavailableError: when the database cannot be reached (the next call tries again).
            ExperimentError: with ``auto_upgrade=False``, when the database is behind the shipped migrations.
        """
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            if self.auto_upgrade:
                upgrade(self.engine)
            else:
                current, head = current_revision(self.engine), head_revision()
                if current != head:
                    raise ExperimentError(
                        f"the experiments database {redacted(self.engine)} is at schema revision {current}, this clf "
                        f"needs {head}: run clf db upgrade --db URL"
                    )
            self._schema_ready = True

    @contextmanager
    def session(self, doing: str) -> Iterator[Session]:
        """A transaction (committed on success); `doing` names the operation in a `DatabaseUnavailableError`.

        Args:
            doing: what the transaction does, e.g. ``"reading experiment 3"``.

        Yields:
            The session; the schema is created first when missing.
        """
        self.ensure_schema()
        with unavailable_as_error(self.engine, doing), self._sessions.begin() as session:
            yield session

    # ------------------------------------------------------------------------------------------------ experiments

    def insert(self, name: str, control: str, treatment: str, traffic_split: float) -> Experiment:
        """Adds a running experiment.

        Args:
            name: a name for people.
            control: the control version (usually production).
            treatment: the version tested against it.
            traffic_split: share of users routed to the treatment, in (0, 1).

        Returns:
            The new experiment, with its id and start date.

        Raises:
            ExperimentConflictError: when one is already running on `control` (checked by the database's partial
                unique index, so two processes racing cannot both win).
        """
        running = self.running_for(control)
        if running is not None:
            raise _conflict(control, running.id)
        row = ABTestExperiment(
            name=name,
            control_version=control,
            treatment_version=treatment,
            traffic_split=traffic_split,
            start_date=utc_now(),
            end_date=None,
            status=ExperimentStatus.RUNNING.value,
            results=None,
        )
        try:
            with self.session("creating an experiment") as session:
                session.add(row)
        except IntegrityError as err:
            running = self.running_for(control)
            raise _conflict(control, running.id if running else None) from err
        return Experiment.from_row(row)

    def get(self, experiment_id: int) -> Experiment:
        """The experiment with this id.

        Args:
            experiment_id: the experiment's id.

        Returns:
            The experiment.

        Raises:
            ExperimentNotFoundError: for an unknown id.
        """
        with self.session(f"reading experiment {experiment_id}") as session:
            return Experiment.from_row(self._row(session, experiment_id, lock=False))

    def list(self, status: ExperimentStatus | str | None = None) -> list[Experiment]:
        """Every experiment, newest first, optionally only those with `status`.

        Args:
            status: keep only experiments in this status; None for all.

        Returns:
            The experiments.

        Raises:
            InvalidExperimentError: for an unknown status.
        """
        query = sa.select(ABTestExperiment).order_by(ABTestExperiment.id.desc())
        if status is not None:
            try:
                status = ExperimentStatus(status)
            except ValueError:
                allowed = ", ".join(s.value for s in ExperimentStatus)
                raise InvalidExperimentError(f"--status must be one of {allowed}, got {status!r}") from None
            query = query.where(ABTestExperiment.status == status.value)
        with self.session("listing experiments") as session:
            return [Experiment.from_row(row) for row in session.scalars(query)]

    def running_for(self, control_version: str) -> Experiment | None:
        """The running experiment whose control is `control_version`, or None.

        Args:
            control_version: the control version to look for.

        Returns:
            The running experiment, or None.
        """
        query = sa.select(ABTestExperiment).where(
            ABTestExperiment.control_version == control_version,
            ABTestExperiment.status == ExperimentStatus.RUNNING.value,
        )
        with self.session("looking up the running experiment") as session:
            row = session.scalars(query).first()
            return Experiment.from_row(row) if row is not None else None

    def stop(self, experiment_id: int) -> Experiment:
        """Marks a running experiment stopped, with its end date.

        Args:
            experiment_id: the experiment to stop.

        Returns:
            The stopped experiment.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            ExperimentStateError: when it is not running.
        """
        with self.session(f"stopping experiment {experiment_id}") as session:
            row = self._row(session, experiment_id)
            if row.status != ExperimentStatus.RUNNING.value:
                raise ExperimentStateError(
                    f"experiment {experiment_id} is {row.status}, not running; there is nothing to stop"
                )
            row.status, row.end_date = ExperimentStatus.STOPPED.value, utc_now()
            return Experiment.from_row(row)

    def save_results(self, experiment_id: int, **parts: Any) -> None:
        """Merges `parts` (``analysis=...``, ``decision=...``) into the experiment's results.

        Args:
            experiment_id: the experiment.
            **parts: top-level keys of the results JSON to set; other keys are kept.
        """
        with self.session(f"saving the results of experiment {experiment_id}") as session:
            row = self._row(session, experiment_id)
            row.results = {**(row.results or {}), **parts}

    def claim_completion(self, experiment_id: int) -> tuple[ExperimentStatus, datetime | None]:
        """Marks the experiment completed unless another caller already did.

        Args:
            experiment_id: the experiment to complete.

        Returns:
            Its status and end date before, for `release_completion`.

        Raises:
            ExperimentStateError: when it is already completed.
        """
        with self.session(f"completing experiment {experiment_id}") as session:
            row = self._row(session, experiment_id)
            if row.status == ExperimentStatus.COMPLETED.value:
                raise ExperimentStateError(
                    f"experiment {experiment_id} was completed at {row.end_date:%Y-%m-%d %H:%M} UTC; "
                    f"see its decision with clf ab status {experiment_id}"
                )
            previous = ExperimentStatus(row.status), row.end_date
            row.status, row.end_date = ExperimentStatus.COMPLETED.value, utc_now()
            return previous

    def release_completion(self, experiment_id: int, status: ExperimentStatus, end_date: datetime | None) -> None:
        """Undoes `claim_completion` (the promotion behind it failed).

        Args:
            experiment_id: the experiment.
            status: the status `claim_completion` returned.
            end_date: the end date `claim_completion` returned.
        """
        with self.session(f"reopening experiment {experiment_id}") as session:
            row = self._row(session, experiment_id)
            row.status, row.end_date = status.value, end_date

    # ----------------------------------------------------------------------------------------------- prediction logs

    def prediction_route(self, prediction_id: str) -> tuple[str, str]:
        """The version and arm a logged prediction was answered by (what its signed id was issued for).

        Args:
            prediction_id: the ``prediction_id`` of a logged `/predict` answer.

        Returns:
            ``(model_version, arm)``.

        Raises:
            UnknownPredictionError: when no logged prediction has that id.
        """
        query = sa.select(PredictionLog.model_version, PredictionLog.predictions).where(
            PredictionLog.id == prediction_id
        )
        with self.session(f"looking up prediction {prediction_id}") as session:
            row = session.execute(query).first()
        if row is None:
            raise _unknown(prediction_id)
        return row[0], str((row[1] or {}).get("arm", ""))

    def set_true_label(self, prediction_id: str, true_label: str) -> None:
        """Stores the feedback on one logged prediction.

        Args:
            prediction_id: the ``prediction_id`` of a logged `/predict` answer.
            true_label: the category the paper actually belongs to.

        Raises:
            UnknownPredictionError: when no logged prediction has that id.
        """
        statement = sa.update(PredictionLog).where(PredictionLog.id == prediction_id).values(true_label=true_label)
        with self.session(f"recording feedback on {prediction_id}") as session:
            # An UPDATE's result is a CursorResult; Session.execute is typed with the general Result.
            updated = cast(CursorResult[Any], session.execute(statement)).rowcount
        if not updated:
            raise _unknown(prediction_id)

    def counts(self, experiment_id: int) -> dict[str, tuple[int, int]]:
        """Model version → (predictions, predictions with feedback) logged for the experiment.

        Args:
            experiment_id: the experiment.

        Returns:
            One entry per version that answered.
        """
        logs = PredictionLog
        query = (
            sa.select(logs.model_version, sa.func.count(), sa.func.count(logs.true_label))
            .where(logs.experiment_id == experiment_id)
            .group_by(logs.model_version)
        )
        with self.session(f"counting the logs of experiment {experiment_id}") as session:
            return {version: (total, feedback) for version, total, feedback in session.execute(query)}

    # builtins.list: in the class body `list` is the method above.
    def outcomes(
        self, experiment_id: int
    ) -> tuple[dict[str, builtins.list[float]], dict[str, tuple[builtins.list[str], builtins.list[str]]]]:
        """What an analysis needs, per model version: every latency, and (predicted, true) labels with feedback.

        Args:
            experiment_id: the experiment.

        Returns:
            Version → latencies in ms, and version → (predicted labels, true labels) of the predictions with feedback.
        """
        logs = PredictionLog
        timing = sa.select(logs.model_version, logs.latency_ms).where(logs.experiment_id == experiment_id)
        feedback = sa.select(logs.model_version, logs.predictions, logs.true_label).where(
            logs.experiment_id == experiment_id, logs.true_label.is_not(None)
        )
        latencies: dict[str, list[float]] = {}
        labels: dict[str, tuple[list[str], list[str]]] = {}
        with self.session(f"reading the logs of experiment {experiment_id}") as session:
            for version, latency in session.execute(timing):
                latencies.setdefault(version, []).append(latency)
            for version, prediction, true_label in session.execute(feedback):
                predicted, true = labels.setdefault(version, ([], []))
                predicted.append(str(prediction.get("label")))
                true.append(true_label)
        return latencies, labels

    # ------------------------------------------------------------------------------------------------- internals

    def _row(self, session: Session, experiment_id: int, lock: bool = True) -> ABTestExperiment:
        # FOR UPDATE on PostgreSQL: concurrent status changes of one experiment queue instead of overwriting.
        row = session.get(ABTestExperiment, experiment_id, with_for_update=lock)
        if row is None:
            raise ExperimentNotFoundError(
                f"no experiment {experiment_id} in {redacted(self.engine)}; list them with clf ab list"
            )
        return row


def _conflict(control: str, running_id: int | None) -> ExperimentConflictError:
    which = f"experiment {running_id}" if running_id is not None else "another experiment"
    stop = f"clf ab stop {running_id if running_id is not None else 'ID'}"
    return ExperimentConflictError(
        f"{which} is already running on control {control}; stop it first ({stop}) or conclude it (clf ab promote)"
    )


def _unknown(prediction_id: str) -> UnknownPredictionError:
    return UnknownPredictionError(
        f"no logged prediction has id {prediction_id[:70]!r}; give the prediction_id of a /predict answer "
        "(only requests routed by an experiment are logged)"
    )
