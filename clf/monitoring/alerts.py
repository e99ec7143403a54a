"""`AlertManager`: threshold alerts on `PredictionMonitor` metrics, posted to a Slack incoming webhook.

    alerts = AlertManager(slack_webhook="https://hooks.slack.com/services/T000/B000/XXXX")
    raised = alerts.check_and_alert(monitor.get_metrics(window_minutes=5))
    alerts.send("Rolled back to v1.2.0", "v1.3.0 failed its health check.", level="critical")

Every alert and message is logged (logger ``clf.monitoring.alerts``) whether or not a webhook is set. Posting
retries connection errors, timeouts, HTTP 5xx and 429 with exponential backoff and never raises: a message that
cannot be delivered is logged as an error. Posts happen in the calling thread, so a call can block for up to
``(max_retries + 1) * timeout_seconds`` plus the backoff waits; call from a background task, not a request handler.

Examples:
    >>> from clf.monitoring.alerts import AlertManager
    >>> alerts = AlertManager(clock=lambda: 0.0)  # no webhook: alerts are logged only
    >>> metrics = {"window_minutes": 5.0, "total": 40, "errors": 4, "error_rate": 0.1, "latency_p95_ms": 80.0}
    >>> [alert.title for alert in alerts.check_and_alert(metrics)]
    ['High error rate (all versions)']
    >>> alerts.check_and_alert(metrics)  # the same alert again within the cooldown is suppressed
    []
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import requests

from clf.http import retry_after_seconds

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 30.0
"""The longest wait between attempts, whatever the backoff or a 429's ``Retry-After`` asks for."""


class AlertKind(StrEnum):
    """What an alert is about; with the version, the key its cooldown is kept under."""

    HIGH_ERROR_RATE = "high_error_rate"
    HIGH_LATENCY = "high_latency"
    LOW_CONFIDENCE = "low_confidence"


class AlertLevel(StrEnum):
    """How urgent a message is; sets its Slack icon and the level it is logged at."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Delivery(StrEnum):
    """What became of a message."""

    SENT = "sent"
    """The webhook answered 2xx."""
    FAILED = "failed"
    """Every attempt failed, or the webhook refused it with a 4xx other than 429; logged as an error."""
    LOGGED = "logged"
    """No webhook is configured; the message was only logged."""


_ICONS = {
    AlertLevel.INFO: ":information_source:",
    AlertLevel.WARNING: ":warning:",
    AlertLevel.CRITICAL: ":rotating_light:",
}
_LOG_LEVELS = {AlertLevel.INFO: logging.INFO, AlertLevel.WARNING: logging.WARNING, AlertLevel.CRITICAL: logging.ERROR}


@dataclass(frozen=True)
class AlertThresholds:
    """When `AlertManager.check_and_alert` raises an alert; each fires when the value is strictly above its limit."""

    max_error_rate: float = 0.05
    """Largest acceptable fraction of failed requests in the window."""
    max_p95_latency_ms: float = 200.0
    """Largest acceptable 95th-percentile latency in the window, in milliseconds."""
    max_low_confidence_rate: float = 0.30
    """Largest acceptable fraction of successes below the monitor's low-confidence threshold."""
    min_requests: int = 20
    """Windows (or versions within one) with fewer requests than this raise no alert: 1 error in 2 pages nobody."""

    def __post_init__(self) -> None:
        for name in ("max_error_rate", "max_low_confidence_rate"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"AlertThresholds.{name} must be a fraction in [0, 1), got {value}")
        if not self.max_p95_latency_ms > 0:
            raise ValueError(f"AlertThresholds.max_p95_latency_ms must be > 0, got {self.max_p95_latency_ms}")
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) or self.min_requests < 1:
            raise ValueError(f"AlertThresholds.min_requests must be an int >= 1, got {self.min_requests!r}")


@dataclass(frozen=True)
class Alert:
    """One threshold breach, with its evidence.

    Attributes:
        kind: what breached.
        level: how urgent it is.
        value: the measured value (a fraction for rates, milliseconds for latency).
        threshold: the limit it is above.
        requests: the requests in the window (of `version`, when set).
        errors: the failed requests among them (None when the metrics did not say).
        window_minutes: the window the metrics cover (None when the metrics did not say).
        version: the model version the breach is about; None for all versions together.
        low_confidence_threshold: for `LOW_CONFIDENCE`, the top-1 probability under which a prediction counts.
        delivery: what became of the message (None until it has been sent).
    """

    kind: AlertKind
    level: AlertLevel
    value: float
    threshold: float
    requests: int
    errors: int | None = None
    window_minutes: float | None = None
    version: str | None = None
    low_confidence_threshold: float | None = None
    delivery: Delivery | None = None

    @property
    def title(self) -> str:
        """A one-line summary, e.g. ``High error rate (v1.2.0)``."""
        scope = self.version if self.version is not None else "all versions"
        names = {
            AlertKind.HIGH_ERROR_RATE: "High error rate",
            AlertKind.HIGH_LATENCY: "High p95 latency",
            AlertKind.LOW_CONFIDENCE: "Many low-confidence predictions",
        }
        return f"{names[self.kind]} ({scope})"

    @property
    def message(self) -> str:
        """What was measured, the threshold, the window and the version, in a sentence or two."""
        window = f"the last {self.window_minutes:g} minutes" if self.window_minutes is not None else "the window"
        scope = f"model version {self.version}" if self.version is not None else "all model versions"
        if self.kind is AlertKind.HIGH_ERROR_RATE:
            failed = f"{self.errors if self.errors is not None else format(self.value, '.1%')} of {self.requests}"
            return (
                f"Error rate {self.value:.1%} is above the {self.threshold:.1%} threshold: "
                f"{failed} requests failed in {window} ({scope})."
            )
        if self.kind is AlertKind.HIGH_LATENCY:
            return (
                f"p95 latency {self.value:.0f} ms is above the {self.threshold:.0f} ms threshold "
                f"over {self.requests} requests in {window} ({scope})."
            )
        below = f" below {self.low_confidence_threshold:g}" if self.low_confidence_threshold is not None else ""
        return (
            f"Low-confidence rate {self.value:.1%} (successful predictions with top-1 probability{below}) is above "
            f"the {self.threshold:.1%} threshold over {self.requests} requests in {window} ({scope})."
        )


class AlertManager:
    """Turns metrics into alerts, and posts alerts and other messages to Slack without ever raising.

    Alerts are keyed by kind and version: once one is raised, the same key is not raised again until
    `cooldown_seconds` have passed, whether or not its post got through (the log keeps it either way), so a
    lasting breach or a dead webhook does not turn into a storm of posts.

    Args:
        slack_webhook: a Slack incoming-webhook URL; None or ``""`` logs messages only.
        thresholds: when to alert.
        cooldown_seconds: how long an alert of one kind and version stays quiet after it was raised.
        timeout_seconds: per-attempt limit on connecting to and hearing back from the webhook.
        max_retries: attempts after the first, on connection errors, timeouts, HTTP 5xx and 429.
        backoff_seconds: wait before the first retry, doubled for each next one (a 429's ``Retry-After`` wins);
            no wait is longer than `MAX_WAIT_SECONDS`.
        source: prefixed to every Slack message's title, to tell services sharing a channel apart.
        clock: returns epoch seconds; a test seam for the cooldown.
        sleep: waits between attempts; a test seam.
        claim: shares the cool-down across replicas: ``claim(key, cooldown_seconds, now)`` returns whether this
            process may send alert `key` now (the deployment store's `claim_alert`), so a fleet sends each alert
            once. When it fails (the store is down) the process's own cool-down decides: an alert sent twice beats
            one lost.

    Raises:
        ValueError: when a setting is out of range or the webhook is not an http(s) URL (the message names it).
    """

    def __init__(
        self,
        slack_webhook: str | None = None,
        thresholds: AlertThresholds | None = None,
        cooldown_seconds: float = 900.0,
        timeout_seconds: float = 5.0,
        max_retries: int = 3,
        backoff_seconds: float = 1.0,
        source: str = "clf",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        claim: Callable[[str, float, float], bool] | None = None,
    ) -> None:
        if slack_webhook and urlsplit(slack_webhook).scheme not in ("http", "https"):
            raise ValueError(
                f"slack_webhook must be an http(s) URL like https://hooks.slack.com/services/..., "
                f"got one starting {slack_webhook[:12]!r}"
            )
        if not cooldown_seconds >= 0:
            raise ValueError(f"cooldown_seconds must be >= 0, got {cooldown_seconds}")
        if not timeout_seconds > 0:
            raise ValueError(f"timeout_seconds must be > 0, got {timeout_seconds}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be an int >= 0, got {max_retries!r}")
        if not backoff_seconds >= 0:
            raise ValueError(f"backoff_seconds must be >= 0, got {backoff_seconds}")
        self.slack_webhook = slack_webhook or None
        self.thresholds = thresholds if thresholds is not None else AlertThresholds()
        self.cooldown_seconds = float(cooldown_seconds)
        self.timeout_seconds = float(timeout_seconds)
        self.max_retries = max_retries
        self.backoff_seconds = float(backoff_seconds)
        self.source = source
        self.clock = clock
        self.sleep = sleep
        self.claim = claim
        self.recent: deque[dict[str, Any]] = deque(maxlen=50)
        """The last 50 messages sent (alerts and notifications), oldest first: title, message, level, at, delivery."""
        self._last_raised: dict[tuple[AlertKind, str | None], float] = {}
        self._lock = threading.Lock()

    def check_and_alert(self, metrics: Mapping[str, Any]) -> list[Alert]:
        """Raises an alert for each threshold the metrics breach, unless the same one is still cooling down.

        The window as a whole is checked, and each version in ``metrics["by_version"]`` too when it holds more
        than one (with a single version, its alerts would repeat the overall ones). A scope with fewer than
        ``thresholds.min_requests`` requests, or a value that is None, raises nothing.

        Args:
            metrics: a `PredictionMonitor.get_metrics` dict (keys ``total``, ``errors``, ``error_rate``,
                ``latency_p95_ms``, ``low_confidence_rate``, optionally ``window_minutes``,
                ``low_confidence_threshold`` and ``by_version``).

        Returns:
            The alerts raised by this call, each with its `Delivery`; breaches still cooling down are left out.
        """
        window = metrics.get("window_minutes")
        scopes: list[tuple[str | None, Mapping[str, Any]]] = [(None, metrics)]
        versions = metrics.get("by_version") or {}
        if len(versions) > 1:
            scopes += sorted(versions.items())
        raised = []
        for version, scope in scopes:
            for alert in self._breaches(scope, version, window, metrics.get("low_confidence_threshold")):
                if self._claim(alert.kind, version):
                    raised.append(replace(alert, delivery=self.send(alert.title, alert.message, alert.level)))
        return raised

    def send(self, title: str, message: str, level: AlertLevel | str = AlertLevel.INFO) -> Delivery:
        """Logs a message and posts it to the Slack webhook, with the alerts' retry rules; never raises.

        For other parts of the service (A/B promotion, deployment rollback, retraining) to notify through the
        same channel; also available as `notify`. The Slack text is ``<icon> *[source] title*`` with the message
        on the next line, in Slack's mrkdwn (so ``<``, ``>`` and ``&`` are markup there).

        Args:
            title: one line saying what happened.
            message: the details.
            level: ``info``, ``warning`` or ``critical``; sets the icon and the log level.

        Returns:
            `Delivery.SENT`, `Delivery.FAILED`, or `Delivery.LOGGED` when no webhook is set.

        Raises:
            ValueError: when `level` is not one of the `AlertLevel` values (a caller's bug, not a delivery failure).
        """
        try:
            level = AlertLevel(level)
        except ValueError:
            raise ValueError(f"level must be one of {[v.value for v in AlertLevel]}, got {level!r}") from None
        log.log(_LOG_LEVELS[level], "%s: %s", title, message, extra={"alert_level": level.value})
        if self.slack_webhook is None:
            delivery = Delivery.LOGGED
        else:
            delivery = self._post(self.slack_webhook, {"text": f"{_ICONS[level]} *[{self.source}] {title}*\n{message}"})
        with self._lock:
            self.recent.append(
                {"title": title, "message": message, "level": level.value, "at": float(self.clock()),
                 "delivery": delivery.value}
            )  # fmt: skip
        return delivery

    notify = send

    def _breaches(self, scope: Mapping[str, Any], version: str | None, window: Any, low_threshold: Any) -> list[Alert]:
        requests_seen = scope.get("total") or 0
        if requests_seen < self.thresholds.min_requests:
            return []
        checks = (
            (AlertKind.HIGH_ERROR_RATE, AlertLevel.CRITICAL, "error_rate", self.thresholds.max_error_rate),
            (AlertKind.HIGH_LATENCY, AlertLevel.WARNING, "latency_p95_ms", self.thresholds.max_p95_latency_ms),
            (
                AlertKind.LOW_CONFIDENCE,
                AlertLevel.WARNING,
                "low_confidence_rate",
                self.thresholds.max_low_confidence_rate,
            ),
        )
        found = []
        for kind, level, key, threshold in checks:
            value = scope.get(key)
            if value is None or not isinstance(value, int | float) or math.isnan(value) or value <= threshold:
                continue
            found.append(
                Alert(
                    kind=kind,
                    level=level,
                    value=float(value),
                    threshold=float(threshold),
                    requests=int(requests_seen),
                    errors=scope.get("errors"),
                    window_minutes=window,
                    version=version,
                    low_confidence_threshold=low_threshold if kind is AlertKind.LOW_CONFIDENCE else None,
                )
            )
        return found

    def _claim(self, kind: AlertKind, version: str | None) -> bool:
        """Marks the alert as raised now, unless it was raised within the cooldown (by any replica, with `claim`)."""
        now = float(self.clock())
        if self.claim is not None:
            try:
                return self.claim(f"{kind.value}:{version or 'all'}", self.cooldown_seconds, now)
            except Exception:
                log.warning("the shared alert cool-down is unreachable; this replica's own decides", exc_info=True)
        with self._lock:
            last = self._last_raised.get((kind, version))
            if last is not None and now - last < self.cooldown_seconds:
                log.debug("%s for %s suppressed: raised %.0f s ago", kind.value, version or "all versions", now - last)
                return False
            self._last_raised[(kind, version)] = now
            return True

    def _post(self, webhook: str, payload: dict[str, Any]) -> Delivery:
        attempts = self.max_retries + 1
        where = _redacted(webhook)
        problem = ""
        for attempt in range(1, attempts + 1):
            wait = self.backoff_seconds * 2 ** (attempt - 1)
            try:
                response = requests.post(webhook, json=payload, timeout=self.timeout_seconds)
            except requests.Timeout:
                problem = f"no answer within {self.timeout_seconds:g} s"
            except requests.ConnectionError as err:
                problem = f"cannot connect ({self._scrub(err)})"
            except requests.RequestException as err:
                log.error("Slack message not delivered to %s: %s; not retrying", where, self._scrub(err))
                return Delivery.FAILED
            else:
                if 200 <= response.status_code < 300:
                    return Delivery.SENT
                problem = f"HTTP {response.status_code} {response.text[:200]!r}"
                if response.status_code != 429 and response.status_code < 500:
                    log.error(
                        "Slack message not delivered: %s refused it with %s; not retrying. Check the slack_webhook "
                        "URL (Slack answers 403/404 for a revoked or mistyped one) and the message.",
                        where,
                        problem,
                    )
                    return Delivery.FAILED
                retry_after = retry_after_seconds(response.headers.get("Retry-After"), cap=MAX_WAIT_SECONDS)
                if retry_after is not None:
                    wait = retry_after
            if attempt < attempts:
                wait = min(wait, MAX_WAIT_SECONDS)
                log.warning(
                    "Slack post to %s failed (attempt %d of %d): %s; retrying in %.1f s",
                    where,
                    attempt,
                    attempts,
                    problem,
                    wait,
                )
                if wait > 0:
                    self.sleep(wait)
        log.error(
            "Slack message not delivered to %s after %d attempts: %s. The message was: %s",
            where,
            attempts,
            problem,
            payload.get("text", ""),
        )
        return Delivery.FAILED

    def _scrub(self, err: Exception) -> str:
        """The error's text without the webhook's secret path (requests puts the URL in its messages)."""
        text = f"{type(err).__name__}: {err}"
        if self.slack_webhook:
            path = urlsplit(self.slack_webhook).path
            text = text.replace(self.slack_webhook, _redacted(self.slack_webhook))
            if len(path) > 1:
                text = text.replace(path, "/...")
        return text


def _redacted(url: str | None) -> str:
    """The webhook's scheme and host only: the path of a Slack webhook is its secret."""
    if not url:
        return "<no webhook>"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/..."
