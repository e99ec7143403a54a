"""`clf ab ACTION`, `clf db ACTION` and `clf labels ACTION`: one function per action; each prints JSON and returns it.

clf ab create --name bigger-lr --treatment v1.1.0 --traffic_split 0.5     # control: the production version
clf ab analyze 1
clf labels import ../shared/data/arxiv/new_papers.jsonl.gz --db sqlite:///models/experiments.db
clf labels report --window_hours 24
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from clf.experiments.database import DEFAULT_DB_URL
from clf.io import print_json
from clf.registry.commands import DEFAULT_REGISTRY


def create(
    *,
    name: str,
    treatment: str,
    control: str | None = None,
    traffic_split: float = 0.5,
    db: str = DEFAULT_DB_URL,
    registry: str = DEFAULT_REGISTRY,
) -> Any:
    """Start an A/B experiment between two registered versions.

    A running `clf serve --feedback.experiments_db URL` picks it up on its own: it loads the treatment and routes each
    user (by a hash of the user id) to the same arm every time.

    Args:
        name: what the experiment tests.
        treatment: the candidate version.
        control: the version most users keep; the registry's production version when left out.
        traffic_split: the share of users sent to the treatment, in [0, 1].
        db: the experiments database, a SQLAlchemy URL (postgresql+psycopg://user@host/db in production).
        registry: the registry folder.

    Returns:
        What was printed, as JSON-ready Python objects.

    Raises:
        InvalidExperimentError: when no --control is given and the registry has no production version.
    """
    from clf.experiments.errors import InvalidExperimentError

    with _framework(db, registry) as framework:
        if control is None:
            control = framework.registry.production_version()
            if control is None:
                raise InvalidExperimentError(
                    f"{registry} has no production version to use as the control; give --control vX.Y.Z "
                    "or promote one (clf registry promote vX.Y.Z)"
                )
        return print_json(framework.create_experiment(name, control, treatment, traffic_split).to_json())


def status(experiment_id: int, db: str = DEFAULT_DB_URL) -> Any:
    """Show an experiment and its counts so far.

    Args:
        experiment_id: the experiment (see clf ab list).
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    with _framework(db) as framework:
        return print_json(
            {**framework.get_experiment(experiment_id).to_json(), "arms": framework.arm_counts(experiment_id)}
        )


def analyze(experiment_id: int, db: str = DEFAULT_DB_URL) -> Any:
    """Analyse an experiment: accuracy with 95% CIs, z-test, recommendation (saved with the experiment).

    Args:
        experiment_id: the experiment (see clf ab list).
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    with _framework(db) as framework:
        return print_json(framework.analyze_experiment(experiment_id).to_json())


def promote(
    experiment_id: int, db: str = DEFAULT_DB_URL, registry: str = DEFAULT_REGISTRY, slack_webhook: str | None = None
) -> Any:
    """Make the treatment production if it won; the experiment completes and Slack is told.

    Args:
        experiment_id: the experiment (see clf ab list).
        db: the experiments database, a SQLAlchemy URL.
        registry: the registry folder.
        slack_webhook: a Slack incoming-webhook URL that gets the decision.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    alerts = None
    if slack_webhook:
        from clf.monitoring.alerts import AlertManager

        alerts = AlertManager(slack_webhook=slack_webhook)
    with _framework(db, registry, alerts) as framework:
        return print_json(framework.promote_winner(experiment_id).to_json())


def stop(experiment_id: int, db: str = DEFAULT_DB_URL) -> Any:
    """Stop an experiment early: all traffic back to the control, its logs kept.

    Args:
        experiment_id: the experiment (see clf ab list).
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    with _framework(db) as framework:
        return print_json(framework.stop_experiment(experiment_id).to_json())


def list_experiments(status: Literal["running", "stopped", "completed"] | None = None, db: str = DEFAULT_DB_URL) -> Any:
    """List the experiments, newest first.

    Args:
        status: only experiments in this state.
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    with _framework(db) as framework:
        return print_json([experiment.to_json() for experiment in framework.list_experiments(status)])


def _framework(db: str, registry: str | None = None, alerts: Any = None) -> Any:
    from clf.experiments.framework import ABTestingFramework

    # A registry only for the actions that use one: ModelRegistry creates a missing folder.
    return ABTestingFramework(db, registry=registry, alerts=alerts)


def upgrade(db: str = DEFAULT_DB_URL) -> Any:
    """Create or migrate the experiments database's tables to the newest schema.

    Safe to run again: a database at the newest revision is left alone. Services and `clf ab` also upgrade on first
    use.

    Args:
        db: the experiments database, a SQLAlchemy URL (postgresql+psycopg://user@host/db in production).

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    from clf.experiments.database import upgrade as upgrade_schema

    return _revision(db, upgrade_schema)


def current(db: str = DEFAULT_DB_URL) -> Any:
    """Show the experiments database's schema revision and the newest one.

    Args:
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    from clf.experiments.database import current_revision

    return _revision(db, current_revision)


def _revision(db: str, step: Callable[[Any], str | None]) -> Any:
    from clf.experiments.database import head_revision, make_engine, redacted

    engine = make_engine(db)
    try:
        return print_json({"database": redacted(engine), "revision": step(engine), "head": head_revision()})
    finally:
        engine.dispose()


def import_labels(path: str, db: str = DEFAULT_DB_URL) -> Any:
    """Import true labels by arXiv id: a papers JSON Lines file (.gz too) or a collection run's folder.

    Each line names a paper (``id`` or ``arxiv_id``, a version suffix ignored) and its true category (``primary`` or
    ``label``). Every answer the service gave for that paper gets the label; the file is checked whole before
    anything is stored.

    Args:
        path: a JSON Lines file, or a folder whose *.jsonl and *.jsonl.gz files are read.
        db: the experiments database, a SQLAlchemy URL.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    from pathlib import Path

    from clf.experiments.label_files import read_labels
    from clf.experiments.quality_log import QualityLog

    pairs = read_labels(Path(path))
    with QualityLog(db) as quality:
        return print_json({"path": path, **quality.import_labels(pairs).to_json()})


def label_report(db: str = DEFAULT_DB_URL, version: str | None = None, window_hours: float = 24.0) -> Any:
    """Measured and estimated accuracy per version and time window, with label coverage and delay.

    Args:
        db: the experiments database, a SQLAlchemy URL.
        version: one model version; every version when left out.
        window_hours: the length of a window.

    Returns:
        What was printed, as JSON-ready Python objects.
    """
    from clf.experiments.quality_log import QualityLog

    with QualityLog(db) as quality:
        return print_json([window.to_json() for window in quality.windows(version, window_hours)])
