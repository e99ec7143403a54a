"""`clf ab` and `clf db`: A/B experiments and their database from the command line. Each prints JSON.

clf db upgrade --db sqlite:///models/experiments.db
clf ab create --name bigger-lr --treatment v1.1.0 --traffic-split 0.5     # control: the production version
clf ab status --experiment-id 1
clf ab analyze --experiment-id 1
clf ab promote --experiment-id 1 --slack-webhook https://hooks.slack.com/services/...
clf ab stop --experiment-id 1
clf ab list --status running
"""

from __future__ import annotations

import json
from typing import Any, Literal

from clf.experiments.database import DEFAULT_DB_URL


def ab(
    action: Literal["create", "status", "analyze", "promote", "stop", "list"],
    experiment_id: int | None = None,
    name: str | None = None,
    control: str | None = None,
    treatment: str | None = None,
    traffic_split: float = 0.5,
    status: Literal["running", "stopped", "completed"] | None = None,
    db: str = DEFAULT_DB_URL,
    registry: str = "models/classification",
    slack_webhook: str | None = None,
) -> Any:
    """A/B experiments between two registered versions: create, status, analyze, promote, stop, list.

    A running `clf serve --feedback.experiments_db URL` picks up a created experiment on its own: it loads the treatment
    and routes each user (by a hash of the user id) to the same arm every time. Prints JSON.

    Args:
        action: create (--name, --treatment, optionally --control and --traffic-split), status (the experiment and
            its counts so far), analyze (accuracy with 95% CIs, z-test, recommendation; saved with the experiment),
            promote (the treatment becomes production if it won; the experiment completes; Slack is told),
            stop (traffic back to control), list (optionally --status).
        experiment_id: the experiment, for status, analyze, promote and stop.
        name: for create: what the experiment tests.
        control: for create: the version most users keep; the registry's production version when left out.
        treatment: for create: the candidate version.
        traffic_split: for create: the share of users sent to the treatment, in [0, 1].
        status: for list: only experiments in this state.
        db: the experiments database, a SQLAlchemy URL (postgresql+psycopg://user@host/db in production).
        registry: the registry folder.
        slack_webhook: for promote: a Slack incoming-webhook URL that gets the decision.

    Returns:
        What was printed, as Python objects.

    Raises:
        InvalidExperimentError: when the action lacks an option it needs (``--experiment-id``; ``--name`` and
            ``--treatment`` for create), or create has no ``--control`` and the registry no production version.
    """
    from clf.experiments.errors import InvalidExperimentError
    from clf.experiments.framework import ABTestingFramework

    alerts = None
    if slack_webhook:
        from clf.monitoring.alerts import AlertManager

        alerts = AlertManager(slack_webhook=slack_webhook)
    if action in ("status", "analyze", "promote", "stop") and experiment_id is None:
        raise InvalidExperimentError(f"clf ab {action} needs --experiment-id N (see clf ab list)")
    result: Any
    models = registry if action in ("create", "promote") else None  # ModelRegistry creates a missing folder
    with ABTestingFramework(db, registry=models, alerts=alerts) as framework:
        if action == "create":
            if not name or not treatment:
                raise InvalidExperimentError("clf ab create needs --name NAME and --treatment vX.Y.Z")
            if control is None:
                control = framework.registry.production_version()
                if control is None:
                    raise InvalidExperimentError(
                        f"{registry} has no production version to use as the control; give --control vX.Y.Z "
                        "or promote one (clf registry promote vX.Y.Z)"
                    )
            result = framework.create_experiment(name, control, treatment, traffic_split).to_json()
        elif action == "status":
            result = {**framework.get_experiment(experiment_id).to_json(), "arms": framework.arm_counts(experiment_id)}
        elif action == "analyze":
            result = framework.analyze_experiment(experiment_id).to_json()
        elif action == "promote":
            result = framework.promote_winner(experiment_id).to_json()
        elif action == "stop":
            result = framework.stop_experiment(experiment_id).to_json()
        else:
            result = [experiment.to_json() for experiment in framework.list_experiments(status)]
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return result


def db(action: Literal["upgrade", "current"], db: str = DEFAULT_DB_URL) -> dict[str, Any]:
    """The experiments database: upgrade (create or migrate its tables) or current (its schema revision).

    `upgrade` is safe to run again: a database at the newest revision is left alone. Services and `clf ab` also
    upgrade on first use. Prints JSON.

    Args:
        action: upgrade (to the newest schema) or current (the revision it is at, and the newest one).
        db: the experiments database, a SQLAlchemy URL (postgresql+psycopg://user@host/db in production).

    Returns:
        What was printed: the database (password hidden), its revision and the newest revision.
    """
    from clf.experiments.database import current_revision, head_revision, make_engine, redacted, upgrade

    engine = make_engine(db)
    try:
        revision = upgrade(engine) if action == "upgrade" else current_revision(engine)
        result = {"database": redacted(engine), "revision": revision, "head": head_revision()}
    finally:
        engine.dispose()
    print(json.dumps(result, indent=2))
    return result
