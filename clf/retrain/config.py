"""`RetrainingConfig`: every setting of the retraining pipeline, as typed dataclass fields.

jsonargparse turns the fields into the options of `clf retrain` (``--growth_threshold``, ``--data.source``,
``--email.port``...), which ``--config configs/retraining.yaml`` reads from YAML and any flag overrides:

    clf retrain run --config configs/retraining.yaml --growth_threshold 0.2
    clf retrain run --help                       # every setting, with its type and default

From Python, build it like any dataclass: ``RetrainingConfig(registry="models/classification",
data=DataSourceConfig(source="api"))``. An invalid value is an error that names its flag
(``--email.port must be in [1, 65535], got 0``). Secrets never live in the file: the SMTP password and the Slack
webhook URL are read from environment variables whose *names* the file gives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from clf import DEFAULT_CATEGORIES
from clf.data.collector import DEFAULT_API_URL
from clf.experiments.database import DEFAULT_DB_URL
from clf.retrain.outcomes import RetrainingConfigError
from clf.retrain.triggers import TriggersConfig

__all__ = [
    "DataSourceConfig",
    "EmailConfig",
    "RetrainingConfig",
    "RetrainingConfigError",
    "SlackConfig",
    "TriggersConfig",
]


@dataclass
class DataSourceConfig:
    """Where new papers come from.

    Attributes:
        source: ``snapshot``: a local JSON Lines file of papers; ``api``: the arXiv API.
        snapshot_path: the snapshot file, for ``source: snapshot``.
        api_url: the arXiv API endpoint, for ``source: api``.
        api_delay_seconds: least time between two API requests (arXiv asks for at least 3 s).
        categories: the classes; papers whose primary category is elsewhere are not counted.
        max_papers_per_category: at most this many new papers per category are taken (the API is polite but slow).
        min_words: the preprocessor's fewest words per paper (title and abstract) for a new paper to be kept.
        seed: seed of sampling and of the split of the new papers.

    Raises:
        RetrainingConfigError: naming the ``--data.*`` flag that is missing or out of range.
    """

    source: Literal["snapshot", "api"] = "snapshot"
    snapshot_path: str | None = "../shared/data/arxiv/new_papers.jsonl.gz"
    api_url: str = DEFAULT_API_URL
    api_delay_seconds: float = 3.0
    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    max_papers_per_category: int = 10_000
    min_words: int = 50
    seed: int = 42

    def __post_init__(self) -> None:
        if self.source not in ("snapshot", "api"):
            raise RetrainingConfigError(f"--data.source must be snapshot or api, got {self.source!r}")
        if self.source == "snapshot" and not self.snapshot_path:
            raise RetrainingConfigError("--data.snapshot_path is required when --data.source is snapshot")
        if len(set(self.categories)) < 2:
            raise RetrainingConfigError(f"--data.categories needs at least two distinct classes, got {self.categories}")
        _at_least("--data.max_papers_per_category", self.max_papers_per_category, 1)
        _at_least("--data.min_words", self.min_words, 1)
        if self.api_delay_seconds < 0:
            raise RetrainingConfigError(f"--data.api_delay_seconds must be >= 0, got {self.api_delay_seconds}")


@dataclass
class EmailConfig:
    """Email notifications over SMTP (smtplib).

    Attributes:
        enabled: send an email after each run.
        host: the SMTP server.
        port: its port (587 for STARTTLS submission, 25 for a local relay).
        sender: the From address.
        recipients: the To addresses.
        starttls: upgrade the connection with STARTTLS before logging in.
        user: the SMTP login; none means no login.
        password_env: the environment variable holding the SMTP password (never put the password in the YAML).
        timeout_seconds: socket timeout of the SMTP connection.

    Raises:
        RetrainingConfigError: naming the ``--email.*`` flag that is out of range, or when email is enabled without
            recipients.
    """

    enabled: bool = False
    host: str = "localhost"
    port: int = 25
    sender: str = "clf-retraining@localhost"
    recipients: list[str] = field(default_factory=list)
    starttls: bool = False
    user: str | None = None
    password_env: str = "CLF_SMTP_PASSWORD"
    timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise RetrainingConfigError(f"--email.port must be in [1, 65535], got {self.port}")
        if self.enabled and not self.recipients:
            raise RetrainingConfigError(
                "--email.recipients must list at least one address when --email.enabled is true"
            )
        if self.timeout_seconds <= 0:
            raise RetrainingConfigError(f"--email.timeout_seconds must be > 0, got {self.timeout_seconds}")


@dataclass
class SlackConfig:
    """Slack notifications through an incoming webhook (`clf.monitoring.alerts.AlertManager`).

    Attributes:
        enabled: post to Slack after each run.
        webhook_env: the environment variable holding the webhook URL (the URL is a secret: keep it out of the YAML).
        webhook_url: the webhook URL itself, when it is not a secret (a loopback receiver in tests); wins over
            `webhook_env`.

    Raises:
        RetrainingConfigError: when ``--slack.webhook_url`` is set but is not an http(s) URL.
    """

    enabled: bool = False
    webhook_env: str = "CLF_SLACK_WEBHOOK"
    webhook_url: str | None = None

    def __post_init__(self) -> None:
        if self.webhook_url is not None and not self.webhook_url.startswith(("http://", "https://")):
            raise RetrainingConfigError(f"--slack.webhook_url must be an http(s) URL, got {self.webhook_url[:12]!r}...")


@dataclass
class RetrainingConfig:
    """The whole retraining pipeline's settings.

    Attributes:
        registry: the model registry folder; its production version is the one retrained and compared against.
        db: the experiments database (any SQLAlchemy URL) that holds the ``retraining_runs`` records.
        work_dir: where each run's new papers and augmented dataset go (``<work_dir>/<version>/``).
        runs_dir: where each run's training output goes (``<runs_dir>/<version>/``, with ``export/``).
        schedule_every_hours: `clf retrain schedule`: hours from the start of one run to the start of the next.
        growth_threshold: retrain when new papers / current dataset size reaches this ratio (the threshold of the
            growth trigger, ``--triggers.growth``).
        promotion_threshold: promote when the new version's improvement in `promotion_metric` is above this
            (absolute, e.g. 0.02 = 2 points); otherwise archive it. -1 always promotes, 1 never does.
        promotion_metric: the metric the promotion threshold applies to.
        max_retries: retries of a failed augment-and-train step (each in a fresh run folder) before the run fails.
        retry_delay_seconds: wait before each retry.
        fit_overrides: fit-config keys set on top of the production version's config, as `clf.training.fit`
            takes them, e.g. ``{"trainer.max_epochs": 3}``.
        triggers: which evidence starts a retraining run (growth, drift, accuracy drops, schedule) and how they
            combine.
        data: where new papers come from.
        email: email notifications.
        slack: Slack notifications.

    Raises:
        RetrainingConfigError: naming the flag whose value is out of range.
    """

    registry: str = "models/classification"
    db: str = DEFAULT_DB_URL
    work_dir: str = "data/retraining"
    runs_dir: str = "runs/retraining"
    schedule_every_hours: float = 24.0
    growth_threshold: float = 0.10
    promotion_threshold: float = 0.02
    promotion_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    max_retries: int = 1
    retry_delay_seconds: float = 60.0
    fit_overrides: dict[str, Any] = field(default_factory=dict)
    triggers: TriggersConfig = field(default_factory=TriggersConfig)
    data: DataSourceConfig = field(default_factory=DataSourceConfig)
    email: EmailConfig = field(default_factory=EmailConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)

    def __post_init__(self) -> None:
        if self.growth_threshold <= 0:
            raise RetrainingConfigError(f"--growth_threshold must be > 0, got {self.growth_threshold}")
        if not -1 <= self.promotion_threshold <= 1:
            raise RetrainingConfigError(f"--promotion_threshold must be in [-1, 1], got {self.promotion_threshold}")
        if self.promotion_metric not in ("accuracy", "f1_macro"):
            raise RetrainingConfigError(
                f"--promotion_metric must be accuracy or f1_macro, got {self.promotion_metric!r}"
            )
        if self.schedule_every_hours <= 0:
            raise RetrainingConfigError(f"--schedule_every_hours must be > 0, got {self.schedule_every_hours}")
        _at_least("--max_retries", self.max_retries, 0)
        if self.retry_delay_seconds < 0:
            raise RetrainingConfigError(f"--retry_delay_seconds must be >= 0, got {self.retry_delay_seconds}")
        if not isinstance(self.fit_overrides, dict) or not all(isinstance(k, str) for k in self.fit_overrides):
            raise RetrainingConfigError(
                "--fit_overrides must map fit-config keys to values, e.g. '{\"trainer.max_epochs\": 3}', got "
                f"{self.fit_overrides!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as `clf retrain --config` reads them from YAML.

        Returns:
            Nested dicts of the sections' fields.
        """
        return dataclasses.asdict(self)


def _at_least(flag: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise RetrainingConfigError(f"{flag} must be >= {minimum}, got {value}")
