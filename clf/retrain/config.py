"""`RetrainingConfig`: every setting of the retraining pipeline, loaded from ``configs/retraining.yaml``.

    config = RetrainingConfig.from_yaml("configs/retraining.yaml")
    config.growth_threshold   # 0.1

Each field is documented where it is declared; an unknown or invalid key is an error that names it
(``retraining.yaml: email.port must be in [1, 65535], got 0``). Secrets never live in the file: the SMTP password and
the Slack webhook URL are read from environment variables whose *names* the file gives.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from clf import DEFAULT_CATEGORIES
from clf.data.collector import DEFAULT_API_URL
from clf.experiments.database import DEFAULT_DB_URL


class RetrainingConfigError(ValueError):
    """A retraining config value is missing, unknown or out of range; the message names the field."""


@dataclass
class DataSourceConfig:
    """Where new papers come from."""

    source: Literal["snapshot", "api"] = "snapshot"
    """``snapshot``: a local JSON Lines file of papers; ``api``: the arXiv API."""
    snapshot_path: str | None = "../shared/data/arxiv/new_papers.jsonl.gz"
    """The snapshot file, for ``source: snapshot``."""
    api_url: str = DEFAULT_API_URL
    """The arXiv API endpoint, for ``source: api``."""
    api_delay_seconds: float = 3.0
    """Least time between two API requests (arXiv asks for at least 3 s)."""
    categories: list[str] = field(default_factory=lambda: list(DEFAULT_CATEGORIES))
    """The classes; papers whose primary category is elsewhere are not counted."""
    max_papers_per_category: int = 10_000
    """At most this many new papers per category are taken (the API is polite but slow)."""
    min_words: int = 50
    """The preprocessor's fewest words per paper (title and abstract) for a new paper to be kept."""
    seed: int = 42
    """Seed of sampling and of the split of the new papers."""

    def validate(self) -> None:
        """Checks the section's values.

        Raises:
            RetrainingConfigError: naming the ``data.*`` field that is missing or out of range.
        """
        if self.source == "snapshot" and not self.snapshot_path:
            raise RetrainingConfigError("data.snapshot_path is required when data.source is snapshot")
        if len(set(self.categories)) < 2:
            raise RetrainingConfigError(f"data.categories needs at least two distinct classes, got {self.categories}")
        _at_least("data.max_papers_per_category", self.max_papers_per_category, 1)
        _at_least("data.min_words", self.min_words, 1)
        if self.api_delay_seconds < 0:
            raise RetrainingConfigError(f"data.api_delay_seconds must be >= 0, got {self.api_delay_seconds}")


@dataclass
class EmailConfig:
    """Email notifications over SMTP (smtplib)."""

    enabled: bool = False
    """Send an email after each run."""
    host: str = "localhost"
    """The SMTP server."""
    port: int = 25
    """Its port (587 for STARTTLS submission, 25 for a local relay)."""
    sender: str = "clf-retraining@localhost"
    """The From address."""
    recipients: list[str] = field(default_factory=list)
    """The To addresses."""
    starttls: bool = False
    """Upgrade the connection with STARTTLS before logging in."""
    user: str | None = None
    """The SMTP login; none means no login."""
    password_env: str = "CLF_SMTP_PASSWORD"
    """The environment variable holding the SMTP password (never put the password in the YAML)."""
    timeout_seconds: float = 30.0
    """Socket timeout of the SMTP connection."""

    def validate(self) -> None:
        """Checks the section's values.

        Raises:
            RetrainingConfigError: naming the ``email.*`` field that is out of range, or when email is enabled without
                recipients.
        """
        if not 1 <= self.port <= 65535:
            raise RetrainingConfigError(f"email.port must be in [1, 65535], got {self.port}")
        if self.enabled and not self.recipients:
            raise RetrainingConfigError("email.recipients must list at least one address when email.enabled is true")
        if self.timeout_seconds <= 0:
            raise RetrainingConfigError(f"email.timeout_seconds must be > 0, got {self.timeout_seconds}")


@dataclass
class SlackConfig:
    """Slack notifications through an incoming webhook (`clf.monitoring.alerts.AlertManager`)."""

    enabled: bool = False
    """Post to Slack after each run."""
    webhook_env: str = "CLF_SLACK_WEBHOOK"
    """The environment variable holding the webhook URL (the URL is a secret: keep it out of the YAML)."""
    webhook_url: str | None = None
    """The webhook URL itself, when it is not a secret (a loopback receiver in tests); wins over `webhook_env`."""

    def validate(self) -> None:
        """Checks the section's values.

        Raises:
            RetrainingConfigError: when ``slack.webhook_url`` is set but is not an http(s) URL.
        """
        if self.webhook_url is not None and not self.webhook_url.startswith(("http://", "https://")):
            raise RetrainingConfigError(f"slack.webhook_url must be an http(s) URL, got {self.webhook_url[:12]!r}...")


@dataclass
class RetrainingConfig:
    """The whole retraining pipeline's settings."""

    registry: str = "models/classification"
    """The model registry folder; its production version is the one retrained and compared against."""
    db: str = DEFAULT_DB_URL
    """The experiments database (any SQLAlchemy URL) that holds the ``retraining_runs`` records."""
    work_dir: str = "data/retraining"
    """Where each run's new papers and augmented dataset go (``<work_dir>/<version>/``)."""
    runs_dir: str = "runs/retraining"
    """Where each run's training output goes (``<runs_dir>/<version>/``, with ``export/``)."""
    schedule_every_hours: float = 24.0
    """`clf retrain schedule`: hours from the start of one run to the start of the next."""
    growth_threshold: float = 0.10
    """Retrain when new papers / current dataset size reaches this ratio."""
    promotion_threshold: float = 0.02
    """Promote when the new version's improvement in `promotion_metric` is above this (absolute, e.g. 0.02 = 2
    points); otherwise archive it. -1 always promotes, 1 never does."""
    promotion_metric: Literal["accuracy", "f1_macro"] = "accuracy"
    """The metric the promotion threshold applies to."""
    max_retries: int = 1
    """Retries of a failed augment-and-train step (each in a fresh run folder) before the run fails."""
    retry_delay_seconds: float = 60.0
    """Wait before each retry."""
    fit_overrides: list[str] = field(default_factory=list)
    """Extra ``clf fit`` options applied on top of the production version's config, e.g.
    ``["--trainer.max_epochs", "3"]``."""
    data: DataSourceConfig = field(default_factory=DataSourceConfig)
    """Where new papers come from."""
    email: EmailConfig = field(default_factory=EmailConfig)
    """Email notifications."""
    slack: SlackConfig = field(default_factory=SlackConfig)
    """Slack notifications."""

    def __post_init__(self) -> None:
        if self.growth_threshold <= 0:
            raise RetrainingConfigError(f"growth_threshold must be > 0, got {self.growth_threshold}")
        if not -1 <= self.promotion_threshold <= 1:
            raise RetrainingConfigError(f"promotion_threshold must be in [-1, 1], got {self.promotion_threshold}")
        if self.promotion_metric not in ("accuracy", "f1_macro"):
            raise RetrainingConfigError(f"promotion_metric must be accuracy or f1_macro, got {self.promotion_metric!r}")
        if self.schedule_every_hours <= 0:
            raise RetrainingConfigError(f"schedule_every_hours must be > 0, got {self.schedule_every_hours}")
        _at_least("max_retries", self.max_retries, 0)
        if self.retry_delay_seconds < 0:
            raise RetrainingConfigError(f"retry_delay_seconds must be >= 0, got {self.retry_delay_seconds}")
        if not all(isinstance(option, str) for option in self.fit_overrides):
            raise RetrainingConfigError(f"fit_overrides must be a list of strings, got {self.fit_overrides}")
        self.data.validate()
        self.email.validate()
        self.slack.validate()

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "retraining config") -> RetrainingConfig:
        """Builds and validates a config from plain values (as loaded from YAML).

        Args:
            values: field → value; nested sections (``data``, ``email``, ``slack``) as dicts.
            source: named in error messages.

        Returns:
            The config.

        Raises:
            RetrainingConfigError: naming the unknown, mistyped or out-of-range field.
        """
        try:
            return _build(cls, values, "")
        except RetrainingConfigError as err:
            raise RetrainingConfigError(f"{source}: {err}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> RetrainingConfig:
        """Loads and validates ``configs/retraining.yaml`` (or any file of the same shape).

        Args:
            path: the YAML file.

        Returns:
            The validated config.

        Raises:
            FileNotFoundError: when the file does not exist.
            RetrainingConfigError: naming the field that is wrong.
        """
        import yaml

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"retraining config {path} not found; pass --retrain_config PATH (see configs/retraining.yaml)"
            )
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise RetrainingConfigError(f"{path}: expected a mapping of fields, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as they would be written to YAML.

        Returns:
            Nested dicts of the sections' fields.
        """
        return dataclasses.asdict(self)


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise RetrainingConfigError(f"{name} must be >= {minimum}, got {value}")


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise RetrainingConfigError(f"{prefix.rstrip('.') or 'the config'} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise RetrainingConfigError(
            f"unknown field {', '.join(prefix + name for name in unknown)}; known: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _convert(hints[name], value, prefix + name)
    return cls(**kwargs)


def _convert(hint: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name + ".")
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, name)
    if origin is Literal:
        if value not in args:
            raise RetrainingConfigError(f"{name} must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RetrainingConfigError(f"{name} must be a list, got {value!r}")
        return [_convert(args[0], item, f"{name}[{i}]") for i, item in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (bool, int, float, str) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise RetrainingConfigError(f"{name} must be {hint.__name__}, got {value!r}")
    return value
