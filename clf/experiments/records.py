"""The plain records the A/B framework hands out: an experiment, a promotion decision, a prediction-log row.

They are frozen dataclasses detached from any database session, safe to keep, compare and print as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from clf.experiments.analysis import ExperimentAnalysis
from clf.experiments.tables import ABTestExperiment, ExperimentStatus, utc_now

if TYPE_CHECKING:
    from clf.inference.prediction import Prediction
    from clf.monitoring.alerts import Delivery


@dataclass(frozen=True)
class Experiment:
    """One A/B experiment as stored in ``ab_test_experiments``.

    Attributes:
        id: its id; also the salt of its user hashing and the ``experiment_id`` in prediction records.
        name: what it tests, for people.
        control_version: the version most traffic keeps (production when it started).
        treatment_version: the candidate.
        traffic_split: the share of users routed to the treatment, in [0, 1].
        start_date: when it was created (UTC).
        end_date: when it was stopped or completed (UTC), or None while it runs.
        status: running, stopped or completed.
        results: the last analysis (``analysis``) and, once completed, the promotion decision (``decision``).
    """

    id: int
    name: str
    control_version: str
    treatment_version: str
    traffic_split: float
    start_date: datetime
    end_date: datetime | None
    status: ExperimentStatus
    results: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: ABTestExperiment) -> Experiment:
        """The record of a table row.

        Args:
            row: a row of the ``ab_test_experiments`` table.

        Returns:
            The experiment, detached from the database session.
        """
        return cls(
            id=row.id,
            name=row.name,
            control_version=row.control_version,
            treatment_version=row.treatment_version,
            traffic_split=row.traffic_split,
            start_date=row.start_date,
            end_date=row.end_date,
            status=ExperimentStatus(row.status),
            results=row.results,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict, dates in ISO 8601.

        Returns:
            The experiment's fields, with the status as text.
        """
        return {
            "id": self.id,
            "name": self.name,
            "control_version": self.control_version,
            "treatment_version": self.treatment_version,
            "traffic_split": self.traffic_split,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "status": self.status.value,
            "results": self.results,
        }


class ExperimentOutcome(StrEnum):
    """What `ABTestingFramework.promote_winner` did."""

    PROMOTED = "promoted"
    """The treatment became the registry's production version."""
    KEPT_CONTROL = "kept_control"
    """The registry was left alone: the treatment did not win (or the data was inconclusive)."""


@dataclass(frozen=True)
class ExperimentDecision:
    """The end of an experiment, with its evidence.

    Attributes:
        experiment_id: the experiment, now completed.
        outcome: promoted or kept control.
        winner: the version the decision favours (the treatment when promoted, else the control).
        previous_production: the registry's production version before the decision.
        production_version: the registry's production version after it.
        reason: one sentence with the numbers behind the decision.
        analysis: the full analysis it rests on.
        notification: how the notification went (`Delivery`), or None without an AlertManager.
    """

    experiment_id: int
    outcome: ExperimentOutcome
    winner: str
    previous_production: str | None
    production_version: str | None
    reason: str
    analysis: ExperimentAnalysis
    notification: Delivery | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict.

        Returns:
            The decision's fields, with the outcome and notification as text and the analysis nested.
        """
        return {
            "experiment_id": self.experiment_id,
            "outcome": self.outcome.value,
            "winner": self.winner,
            "previous_production": self.previous_production,
            "production_version": self.production_version,
            "reason": self.reason,
            "analysis": self.analysis.to_json(),
            "notification": self.notification.value if self.notification is not None else None,
        }

    def announcement(self, experiment: Experiment) -> tuple[str, str]:
        """The notification's title and message, with the numbers a reader needs to trust the decision.

        Args:
            experiment: the concluded experiment (its versions, name and split go into the text).

        Returns:
            The title and the message body.
        """
        analysis = self.analysis
        kept = (
            experiment.treatment_version if self.outcome is ExperimentOutcome.PROMOTED else experiment.control_version
        )
        verb = "promoted" if self.outcome is ExperimentOutcome.PROMOTED else "kept"
        title = f"A/B experiment {experiment.id} ({experiment.name}): {verb} {kept}"
        lines = [
            f"{experiment.control_version} (control) vs {experiment.treatment_version} (treatment), "
            f"{experiment.traffic_split:.0%} of users to the treatment"
        ]
        for arm in (analysis.control, analysis.treatment):
            accuracy = "no feedback"
            if arm.accuracy is not None and arm.accuracy_ci is not None:
                low, high = arm.accuracy_ci
                accuracy = f"accuracy {arm.accuracy:.2%} (95% CI {low:.2%}-{high:.2%}), macro-F1 {arm.macro_f1:.3f}"
            p95 = f"{arm.latency_p95_ms:.1f} ms" if arm.latency_p95_ms is not None else "n/a"
            lines.append(
                f"{arm.arm} {arm.version}: {arm.predictions} predictions, {arm.with_feedback} with feedback, "
                f"{accuracy}, p95 latency {p95}"
            )
        if analysis.test is not None:
            test = analysis.test
            lines.append(
                f"difference {test.difference:+.2%} (95% CI {test.ci_low:+.2%} to {test.ci_high:+.2%}), "
                f"z={test.z:.2f}, p={test.p_value:.4f} (two-proportion z-test)"
            )
        lines.append(f"recommendation: {analysis.recommendation.value}; production is now {self.production_version}")
        return title, "\n".join(lines)


def log_row(
    prediction_id: str,
    experiment_id: int | None,
    model_version: str,
    input_text: str,
    prediction: Prediction,
    latency_ms: float,
    user_id: str | None = None,
    created_at: datetime | None = None,
) -> dict[str, Any]:
    """One ``prediction_logs`` row, every column present (the batch insert needs the same keys in every row).

    Args:
        prediction_id: the service's ``prediction_id`` (feedback names it).
        experiment_id: the experiment that routed the request.
        model_version: the version that answered.
        input_text: the cleaned model input.
        prediction: the service's answer; its ``label``, ``probability``, ``top3`` and ``arm`` are kept.
        latency_ms: time to answer the request.
        user_id: the caller's user id.
        created_at: when it was answered; now by default (must be timezone-aware).

    Returns:
        The row.
    """
    answer = prediction.to_json()
    kept = {key: answer[key] for key in ("label", "probability", "top3", "arm") if key in answer}
    return {
        "id": prediction_id,
        "experiment_id": experiment_id,
        "model_version": model_version,
        "input_text": input_text,
        "predictions": kept,
        "latency_ms": float(latency_ms),
        "created_at": created_at or utc_now(),
        "user_id": user_id,
        "true_label": None,
    }
