"""`ABTestingFramework`: A/B experiments between two registered model versions, kept in a SQL database.

    ab = ABTestingFramework("sqlite:///models/experiments.db", registry="models/classification", alerts=alerts)
    experiment = ab.create_experiment("bigger-lr", control="v1.0.0", treatment="v1.1.0", traffic_split=0.5)
    ab.route_prediction(experiment.id, "u-17")        # Route(version="v1.1.0", arm="treatment", experiment="1")
    service.add_prediction_listener(ab.log_event)     # every routed prediction → prediction_logs, in batches
    ab.record_feedback(prediction_id, "cs.CL")        # the true label of one prediction (also in the quality log)
    ab.analyze_experiment(experiment.id)              # accuracy with CIs, z-test, recommendation
    ab.promote_winner(experiment.id)                  # promote the treatment if it won; notify Slack
    ab.close()                                        # write the buffered logs

A user's arm is ``stable_bucket(user_id, salt=str(experiment_id)) < traffic_split``: SHA-256, so the same in every
process and after restarts, and exactly what the service's `WeightedSplit` computes. Prediction logs are buffered
(`PredictionLogBuffer`); a database outage never fails a prediction, and the logs wait in memory until it returns.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from clf.experiments.analysis import DecisionRule, ExperimentAnalysis, Recommendation, decide, summarize_arm
from clf.experiments.database import DEFAULT_DB_URL, make_engine
from clf.experiments.errors import InvalidExperimentError, UnknownPredictionError
from clf.experiments.logbuffer import FlushResult, PredictionLogBuffer
from clf.experiments.quality_log import QualityLog
from clf.experiments.records import Experiment, ExperimentDecision, ExperimentOutcome, log_row
from clf.experiments.store import ExperimentStore
from clf.experiments.tables import ExperimentStatus
from clf.registry import ModelRegistry, RegistryError
from clf.registry.versions import Version

if TYPE_CHECKING:  # importing clf.serving or clf.monitoring loads torch and Lightning; `clf ab list` needs neither
    from clf.inference.prediction import Prediction
    from clf.monitoring.alerts import AlertManager
    from clf.serving.routing import Route, WeightedSplit
    from clf.serving.service import PredictionEvent

log = logging.getLogger(__name__)

CONTROL_ARM = "control"
TREATMENT_ARM = "treatment"


class ABTestingFramework:
    """Creates, routes, logs, analyses and concludes A/B experiments.

    Args:
        db: the experiments database, a SQLAlchemy URL or an engine (`clf.experiments.database.make_engine`).
        registry: the model registry (folder or `ModelRegistry`); needed to create experiments and promote winners.
        alerts: where promotion decisions are announced (`AlertManager.send`); None logs them only.
        rule: when a treatment wins; `DecisionRule()` (p < 0.05, more than +2 accuracy points) by default.
        batch_size: prediction logs per insert; a full batch is written at once by the background flusher.
        flush_interval_seconds: the flusher writes (or retries) at least this often.
        max_buffered_logs: most logs held in memory while the database is away; beyond it the oldest are dropped,
            with an error in the log.
        auto_upgrade: create or upgrade the tables on first use; with False, a database behind the shipped
            migrations is an error that says to run ``clf db upgrade``.
        quality: the log of every served prediction (`QualityLog`, listening to the same service): feedback is
            recorded there too, and feedback on a prediction no experiment routed is accepted (stored there only).
            Its owner closes it; `close` does not.

    Raises:
        ExperimentError: for a database URL that does not parse or whose driver is missing.
        ValueError: for a buffer setting out of range.
    """

    def __init__(
        self,
        db: str | Engine = DEFAULT_DB_URL,
        registry: ModelRegistry | str | Path | None = None,
        alerts: AlertManager | None = None,
        *,
        rule: DecisionRule | None = None,
        batch_size: int = 100,
        flush_interval_seconds: float = 5.0,
        max_buffered_logs: int = 100_000,
        auto_upgrade: bool = True,
        quality: QualityLog | None = None,
    ) -> None:
        self.engine = make_engine(db)
        self.quality = quality
        self.registry = ModelRegistry(registry) if isinstance(registry, str | Path) else registry
        self.alerts = alerts
        self.rule = rule or DecisionRule()
        self.store = ExperimentStore(self.engine, auto_upgrade=auto_upgrade)
        self.logs = PredictionLogBuffer(
            self.engine,
            batch_size=batch_size,
            flush_interval_seconds=flush_interval_seconds,
            max_rows=max_buffered_logs,
            before_write=self.store.ensure_schema,
        )
        self._splits: dict[int, WeightedSplit] = {}

    # ---------------------------------------------------------------------------------------------- experiments

    def create_experiment(self, name: str, control: str, treatment: str, traffic_split: float = 0.5) -> Experiment:
        """Starts an experiment: `traffic_split` of the users go to `treatment`, the rest to `control`.

        Args:
            name: what it tests, for people.
            control: the version most users keep, normally the production version.
            treatment: the candidate version.
            traffic_split: the share of users routed to the treatment, in [0, 1].

        Returns:
            The running experiment.

        Raises:
            InvalidExperimentError: for an empty name, a split outside [0, 1], the same version twice, a version the
                registry does not hold, or no registry.
            ExperimentConflictError: when an experiment on the same control version is already running.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        if not isinstance(name, str) or not name.strip():
            raise InvalidExperimentError("the experiment needs a name (--name), e.g. 'distilbert-lr-3e-5'")
        if (
            isinstance(traffic_split, bool)
            or not isinstance(traffic_split, int | float)
            or math.isnan(traffic_split)
            or not 0.0 <= traffic_split <= 1.0
        ):
            raise InvalidExperimentError(
                f"--traffic-split is the treatment's share of users and must be in [0, 1], got {traffic_split!r}"
            )
        control, treatment = self._registered(control, "control"), self._registered(treatment, "treatment")
        if control == treatment:
            raise InvalidExperimentError(
                f"control and treatment are both {control}; an experiment compares two different versions"
            )
        experiment = self.store.insert(name.strip(), control, treatment, float(traffic_split))
        log.info(
            "experiment %d (%s) started: %s vs %s, %.0f%% of users to the treatment",
            experiment.id,
            experiment.name,
            control,
            treatment,
            100 * experiment.traffic_split,
        )
        return experiment

    def get_experiment(self, experiment_id: int) -> Experiment:
        """The experiment with this id.

        Args:
            experiment_id: the experiment's id.

        Returns:
            The experiment, as stored now.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        return self.store.get(experiment_id)

    def list_experiments(self, status: ExperimentStatus | str | None = None) -> list[Experiment]:
        """Every experiment, newest first, optionally only those with `status` (running, stopped, completed).

        Args:
            status: keep only experiments in this status; None for all.

        Returns:
            The experiments.

        Raises:
            InvalidExperimentError: for an unknown status.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        return self.store.list(status)

    def running_experiment_for(self, control_version: str) -> Experiment | None:
        """The running experiment whose control is `control_version`, or None.

        Args:
            control_version: the version serving as control, usually production.

        Returns:
            The running experiment, or None when there is none.

        Raises:
            DatabaseUnavailableError: when the database cannot be reached.
        """
        return self.store.running_for(control_version)

    def stop_experiment(self, experiment_id: int) -> Experiment:
        """Stops a running experiment: its traffic returns to control; its logs stay for analysis and promotion.

        Args:
            experiment_id: the experiment to stop.

        Returns:
            The stopped experiment.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            ExperimentStateError: when it is not running.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        experiment = self.store.stop(experiment_id)
        self.flush()
        log.info("experiment %d stopped", experiment_id)
        return experiment

    # --------------------------------------------------------------------------------------------------- routing

    def traffic_rule(self, experiment_id: int) -> WeightedSplit:
        """The service's traffic rule for an experiment (`ClassificationService.set_traffic_rule`).

        Arms ``control`` and ``treatment``; salt and experiment both ``str(experiment_id)``, so the service's
        routing and `route_prediction` agree and every prediction record carries the experiment id.

        Args:
            experiment_id: the experiment whose split to route by.

        Returns:
            The split between control and treatment, cached per experiment.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        from clf.serving.routing import WeightedSplit

        split = self._splits.get(experiment_id)
        if split is None:
            experiment = self.store.get(experiment_id)
            split = WeightedSplit(
                control=experiment.control_version,
                treatment=experiment.treatment_version,
                treatment_share=experiment.traffic_split,
                salt=str(experiment.id),
                control_arm=CONTROL_ARM,
                treatment_arm=TREATMENT_ARM,
                experiment=str(experiment.id),
            )
            self._splits[experiment_id] = split  # an experiment's arms and split never change
        return split

    def route_prediction(self, experiment_id: int, user_id: str | None) -> Route:
        """The arm and version for `user_id`: the same user always gets the same one, in every process.

        The experiment's definition is read once and cached, so routing a user costs one SHA-256.

        Args:
            experiment_id: the experiment.
            user_id: the user; None places an anonymous request at random.

        Returns:
            The route: version, arm (``control`` or ``treatment``) and the experiment id as a string.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            DatabaseUnavailableError: when the database cannot be reached (only on an experiment's first route).
        """
        return self.traffic_rule(experiment_id).route(user_id)

    # --------------------------------------------------------------------------------------------------- logging

    def log_prediction(
        self,
        experiment_id: int,
        model_version: str,
        input_text: str,
        prediction: Prediction,
        latency_ms: float,
        user_id: str | None = None,
        prediction_id: str | None = None,
    ) -> str:
        """Buffers one prediction log; returns at once and never raises for a database fault.

        Args:
            experiment_id: the experiment that routed it.
            model_version: the version that answered.
            input_text: the cleaned model input.
            prediction: the service's answer (its ``label``, ``probability``, ``top3``, ``arm`` are logged).
            latency_ms: time to answer.
            user_id: the caller's user id.
            prediction_id: the id feedback will name; by default the record's ``prediction_id``, or a new one.

        Returns:
            The prediction id.
        """
        prediction_id = prediction_id or prediction.prediction_id or uuid.uuid4().hex
        self.logs.add(log_row(prediction_id, experiment_id, model_version, input_text, prediction, latency_ms, user_id))
        return prediction_id

    def log_event(self, event: PredictionEvent) -> None:
        """The prediction listener: ``service.add_prediction_listener(framework.log_event)``.

        Buffers one row per paper of a request an experiment routed (``input_text`` is the cleaned text); requests
        outside experiments and failed requests are not logged. Never touches the database on the caller's thread.

        Args:
            event: what the service answered for one request, with its route and latency.
        """
        if event.error is not None or event.route.experiment is None:
            return
        answered = [
            (text, record.prediction_id, record.version, record)
            for text, record in zip(event.texts, event.records, strict=True)
            if not record.error and record.prediction_id and record.version  # the service stamps both on an answer
        ]
        try:
            experiment_id = int(event.route.experiment)
        except ValueError:
            log.debug("route experiment %r is not an A/B experiment id; not logged", event.route.experiment)
            return
        created_at = datetime.fromtimestamp(event.timestamp, UTC)
        self.logs.add(
            log_row(prediction_id, experiment_id, version, text, record, event.latency_ms, event.user_id, created_at)
            for text, prediction_id, version, record in answered
        )

    def flush(self) -> FlushResult:
        """Writes the buffered prediction logs now; never raises for a database fault (see `FlushResult.error`).

        Returns:
            How many rows were written, and the database error if the write failed (the rows stay buffered).
        """
        return self.logs.flush()

    def record_feedback(
        self,
        prediction_id: str,
        true_label: str,
        verify: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """Stores the true label of one logged prediction (flushing the buffer first, where it may still wait).

        A prediction an experiment logged gets its label in ``prediction_logs`` (for the A/B analysis) and, with a
        `quality` log, in ``served_predictions`` (for measured accuracy per version); one outside experiments, in
        ``served_predictions`` only.

        Args:
            prediction_id: the ``prediction_id`` of a prediction record.
            true_label: the correct category, e.g. ``cs.CL``.
            verify: called with the id and the version and arm it was logged with before anything is stored; it
                raises to refuse the feedback (the service's `PredictionIds.verify`, which checks the id's
                signature).

        Raises:
            InvalidExperimentError: for an empty label.
            UnknownPredictionError: when neither log has a prediction with that id.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        if not isinstance(true_label, str) or not true_label.strip():
            raise InvalidExperimentError(f"true_label must be a category such as 'cs.CL', got {true_label!r}")
        self.flush()
        try:
            route, logged = self.store.prediction_route(prediction_id), True
        except UnknownPredictionError:
            if self.quality is None:
                raise
            route, logged = self.quality.route(prediction_id), False
        if verify is not None:
            verify(prediction_id, *route)
        if logged:
            self.store.set_true_label(prediction_id, true_label.strip())
        if self.quality is not None:
            self.quality.record_label(prediction_id, true_label, source="feedback")

    # -------------------------------------------------------------------------------------------------- analysis

    def arm_counts(self, experiment_id: int) -> dict[str, dict[str, Any]]:
        """Predictions and feedback logged so far per arm, after flushing the buffer: cheap progress for a status.

        Args:
            experiment_id: the experiment.

        Returns:
            Arm (``control``, ``treatment``) → ``{"version", "predictions", "with_feedback"}``.

        Raises:
            ExperimentNotFoundError: for an unknown id.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        experiment = self.store.get(experiment_id)
        self.flush()
        counts = self.store.counts(experiment_id)
        result = {}
        for arm, version in _arms(experiment).items():
            total, feedback = counts.get(version, (0, 0))
            result[arm] = {"version": version, "predictions": total, "with_feedback": feedback}
        return result

    def analyze_experiment(self, experiment_id: int) -> ExperimentAnalysis:
        """Summarises both arms, tests their accuracies and recommends; saves it in the experiment's results.

        Per arm: predictions, predictions with feedback, accuracy with its 95 % Wilson interval, macro-F1, p95
        latency. Between arms: a two-sided two-proportion z-test (pooled variance) of the accuracies and the
        difference's 95 % interval. Buffered logs are flushed first so the analysis sees every prediction so far.

        Args:
            experiment_id: the experiment to analyse.

        Returns:
            The analysis (also saved under ``results["analysis"]`` of the experiment).

        Raises:
            ExperimentNotFoundError: for an unknown id.
            DatabaseUnavailableError: when the database cannot be reached.
        """
        experiment = self.store.get(experiment_id)
        self.flush()
        latencies, labels = self.store.outcomes(experiment_id)
        arms = {
            arm: summarize_arm(arm, version, latencies.get(version, []), *labels.get(version, ([], [])))
            for arm, version in _arms(experiment).items()
        }
        analysis = decide(experiment_id, arms[CONTROL_ARM], arms[TREATMENT_ARM], self.rule)
        self.store.save_results(experiment_id, analysis=analysis.to_json())
        log.info("experiment %d: %s (%s)", experiment_id, analysis.recommendation.value, analysis.reason)
        return analysis

    def promote_winner(self, experiment_id: int) -> ExperimentDecision:
        """Concludes an experiment: promotes the treatment when it won, else keeps the control; then notifies.

        The treatment wins when the analysis recommends PROMOTE (p < alpha and more than ``rule.min_improvement``
        better); anything else, inconclusive included, keeps the control and leaves the registry alone. Either way
        the experiment is completed (end date set, decision under ``results["decision"]``) and the decision, with
        its numbers, is sent through `alerts`.

        Args:
            experiment_id: the experiment to conclude.

        Returns:
            The decision with its evidence.

        Raises:
            InvalidExperimentError: without a registry.
            ExperimentNotFoundError: for an unknown id.
            ExperimentStateError: when it is already completed.
            RegistryError: when the registry refuses the promotion (the experiment is then left as it was).
            DatabaseUnavailableError: when the database cannot be reached.
        """
        if self.registry is None:
            raise InvalidExperimentError("promoting a winner needs the model registry: pass registry=... (--registry)")
        experiment = self.store.get(experiment_id)
        analysis = self.analyze_experiment(experiment_id)
        previous = self.store.claim_completion(experiment_id)
        before = self.registry.production_version()
        try:
            if analysis.recommendation is Recommendation.PROMOTE:
                reason = f"A/B experiment {experiment_id} ({experiment.name}): {analysis.reason}"
                self.registry.promote_to_production(experiment.treatment_version, reason=reason)
                outcome, winner = ExperimentOutcome.PROMOTED, experiment.treatment_version
            else:
                outcome, winner = ExperimentOutcome.KEPT_CONTROL, experiment.control_version
        except BaseException:
            self.store.release_completion(experiment_id, *previous)
            raise
        decision = ExperimentDecision(
            experiment_id=experiment_id,
            outcome=outcome,
            winner=winner,
            previous_production=before,
            production_version=self.registry.production_version(),
            reason=analysis.reason,
            analysis=analysis,
        )
        saved = {key: value for key, value in decision.to_json().items() if key not in ("analysis", "notification")}
        self.store.save_results(experiment_id, decision=saved)
        title, message = decision.announcement(experiment)
        delivery = self.alerts.send(title, message, level="info") if self.alerts is not None else None
        log.info("%s: %s", title, decision.reason)
        return replace(decision, notification=delivery)

    def close(self) -> FlushResult:
        """Stops the background flusher and writes the buffered logs; rows that still cannot be written are logged
        as lost.

        Returns:
            The final flush.
        """
        result = self.logs.close()
        self.engine.dispose()
        return result

    def __enter__(self) -> ABTestingFramework:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------- internals

    def _registered(self, version: str, role: str) -> str:
        """`version` in its canonical form, after checking the registry holds it."""
        if self.registry is None:
            raise InvalidExperimentError(
                f"checking the {role} version needs the model registry: pass registry=... (--registry DIR)"
            )
        try:
            canonical = str(Version.parse(version))
            self.registry.get_metadata(canonical)
        except RegistryError as err:
            raise InvalidExperimentError(
                f"{role} version {version!r} is not usable: {err}. Register it first: clf registry create "
                "--model-path runs/<name>/export --version vX.Y.Z"
            ) from err
        return canonical


def _arms(experiment: Experiment) -> dict[str, str]:
    return {CONTROL_ARM: experiment.control_version, TREATMENT_ARM: experiment.treatment_version}
