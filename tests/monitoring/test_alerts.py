"""`AlertManager`: thresholds, cooldown, and Slack posts to a real loopback receiver, failures included."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from clf.monitoring import (
    Alert,
    AlertKind,
    AlertLevel,
    AlertManager,
    AlertThresholds,
    Delivery,
    PredictionMonitor,
)
from tests.helpers.loopback import refusing_port
from tests.helpers.webhook import WEBHOOK_PATH, WebhookReceiver
from tests.monitoring.conftest import FakeClock

QUIET = {"error_rate": 0.0, "latency_p95_ms": 50.0, "low_confidence_rate": 0.0}


def _window(total: int = 100, **values: Any) -> dict[str, Any]:
    """A `get_metrics`-shaped dict, healthy except for `values`."""
    metrics = {"window_minutes": 5.0, "low_confidence_threshold": 0.5, "total": total, "errors": 0, **QUIET}
    metrics.update(values)
    if "errors" not in values and metrics["error_rate"] is not None:
        metrics["errors"] = round(metrics["error_rate"] * total)
    return metrics


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def sleeps() -> list[float]:
    return []


def _manager(hook: WebhookReceiver | None, clock: FakeClock, sleeps: list[float], **settings: Any) -> AlertManager:
    settings.setdefault("backoff_seconds", 0.5)
    return AlertManager(
        slack_webhook=hook.url if hook is not None else None, clock=clock, sleep=sleeps.append, **settings
    )


@pytest.mark.parametrize(
    ("key", "above", "at", "kind"),
    [
        ("error_rate", 0.051, 0.05, AlertKind.HIGH_ERROR_RATE),
        ("latency_p95_ms", 200.5, 200.0, AlertKind.HIGH_LATENCY),
        ("low_confidence_rate", 0.31, 0.30, AlertKind.LOW_CONFIDENCE),
    ],
)
def test_each_threshold_fires_above_its_limit_and_not_at_it(
    key: str, above: float, at: float, kind: AlertKind, clock: FakeClock, sleeps: list[float]
) -> None:
    at_limit = _manager(None, clock, sleeps).check_and_alert(_window(**{key: at}))
    raised = _manager(None, clock, sleeps).check_and_alert(_window(**{key: above}))

    assert at_limit == []
    assert [(a.kind, a.value, a.version, a.delivery) for a in raised] == [(kind, above, None, Delivery.LOGGED)]


def test_a_window_with_too_few_requests_raises_nothing(clock: FakeClock, sleeps: list[float]) -> None:
    thresholds = AlertThresholds(min_requests=20)
    bad = {"error_rate": 0.5, "latency_p95_ms": 900.0, "low_confidence_rate": 0.9}

    assert _manager(None, clock, sleeps, thresholds=thresholds).check_and_alert(_window(total=19, **bad)) == []
    raised = _manager(None, clock, sleeps, thresholds=thresholds).check_and_alert(_window(total=20, **bad))
    assert {a.kind for a in raised} == set(AlertKind)


def test_undefined_values_raise_nothing(clock: FakeClock, sleeps: list[float]) -> None:
    undefined = _window(error_rate=None, latency_p95_ms=None, low_confidence_rate=None, errors=0)

    assert _manager(None, clock, sleeps).check_and_alert(undefined) == []


def test_the_alert_reaches_slack_with_a_readable_message(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]
) -> None:
    raised = _manager(hook, clock, sleeps).check_and_alert(_window(total=40, error_rate=0.1, errors=4))

    assert [a.delivery for a in raised] == [Delivery.SENT]
    assert hook.payloads == [
        {
            "text": ":rotating_light: *[clf] High error rate (all versions)*\n"
            "Error rate 10.0% is above the 5.0% threshold: 4 of 40 requests failed in the last 5 minutes "
            "(all model versions)."
        }
    ]
    request = hook.requests[0]
    assert (request.method, request.path) == ("POST", WEBHOOK_PATH)
    assert request.headers["Content-Type"] == "application/json"


def test_latency_and_confidence_messages_name_value_threshold_window_and_version(clock: FakeClock) -> None:
    latency = Alert(AlertKind.HIGH_LATENCY, AlertLevel.WARNING, 250.0, 200.0, 60, window_minutes=5, version="v1.3.0")
    confidence = Alert(
        AlertKind.LOW_CONFIDENCE, AlertLevel.WARNING, 0.4, 0.3, 60, window_minutes=15, low_confidence_threshold=0.5
    )

    assert latency.title == "High p95 latency (v1.3.0)"
    assert latency.message == (
        "p95 latency 250 ms is above the 200 ms threshold over 60 requests in the last 5 minutes "
        "(model version v1.3.0)."
    )
    assert confidence.message == (
        "Low-confidence rate 40.0% (successful predictions with top-1 probability below 0.5) is above the 30.0% "
        "threshold over 60 requests in the last 15 minutes (all model versions)."
    )


def test_versions_are_checked_separately_when_there_are_several(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]
) -> None:
    metrics = _window(
        total=100,
        error_rate=0.04,
        by_version={"v1.2.0": _window(total=60, error_rate=0.0), "v1.3.0": _window(total=40, error_rate=0.1)},
    )

    raised = _manager(hook, clock, sleeps).check_and_alert(metrics)

    assert [(a.kind, a.version) for a in raised] == [(AlertKind.HIGH_ERROR_RATE, "v1.3.0")]
    assert "High error rate (v1.3.0)" in hook.texts[0]
    assert "4 of 40 requests failed in the last 5 minutes (model version v1.3.0)" in hook.texts[0]


def test_a_single_version_does_not_repeat_the_overall_alert(clock: FakeClock, sleeps: list[float]) -> None:
    metrics = _window(error_rate=0.2, by_version={"v1.2.0": _window(error_rate=0.2)})

    raised = _manager(None, clock, sleeps).check_and_alert(metrics)

    assert [(a.kind, a.version) for a in raised] == [(AlertKind.HIGH_ERROR_RATE, None)]


def test_alerts_from_a_real_monitor(hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]) -> None:
    monitor = PredictionMonitor(clock=clock)
    for index in range(30):
        failed = index % 10 == 0
        monitor.log_prediction(
            input_length=500,
            predictions=None if failed else [{"label": "cs.LG", "probability": 0.95}],
            error="CUDA out of memory" if failed else None,
            latency_ms=20.0,
            version="v1.2.0",
        )

    raised = _manager(hook, clock, sleeps).check_and_alert(monitor.get_metrics(window_minutes=5))

    assert [(a.kind, a.requests, a.errors, a.delivery) for a in raised] == [
        (AlertKind.HIGH_ERROR_RATE, 30, 3, Delivery.SENT)
    ]
    assert "3 of 30 requests failed in the last 5 minutes" in hook.texts[0]


def test_a_server_error_is_retried_until_it_succeeds(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]
) -> None:
    hook.respond_with(500, 503)

    delivery = _manager(hook, clock, sleeps, max_retries=3).send("Deployed", "v1.3.0 is live")

    assert delivery is Delivery.SENT
    assert [r.status for r in hook.requests] == [500, 503, 200]
    assert sleeps == [0.5, 1.0]  # exponential backoff from backoff_seconds
    assert hook.texts == [":information_source: *[clf] Deployed*\nv1.3.0 is live"]


def test_rate_limiting_waits_as_long_as_retry_after_asks(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]
) -> None:
    hook.respond_with(429, retry_after=7)

    assert _manager(hook, clock, sleeps).send("Promoted v1.3.0", "won the A/B test") is Delivery.SENT
    assert sleeps == [7.0]


def test_a_refused_message_is_not_retried(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    hook.respond_with(404)

    with caplog.at_level(logging.ERROR, logger="clf.monitoring"):
        assert _manager(hook, clock, sleeps).send("Deployed", "v1.3.0") is Delivery.FAILED

    assert len(hook.requests) == 1
    assert "HTTP 404" in caplog.text and "not retrying" in caplog.text


def test_giving_up_after_the_last_retry_logs_and_does_not_raise(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    hook.respond_with(500, 500, 500)

    with caplog.at_level(logging.WARNING, logger="clf.monitoring"):
        raised = _manager(hook, clock, sleeps, max_retries=2).check_and_alert(_window(error_rate=0.2))

    assert [a.delivery for a in raised] == [Delivery.FAILED]
    assert [r.status for r in hook.requests] == [500, 500, 500]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "not delivered" in r.getMessage()]
    assert len(failures) == 1
    assert "after 3 attempts" in failures[0].getMessage()
    assert "High error rate" in failures[0].getMessage()  # the undelivered message survives in the log


def test_a_dead_webhook_is_logged_promptly_without_leaking_its_secret(
    clock: FakeClock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    with refusing_port() as port:
        url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
        alerts = AlertManager(slack_webhook=url, max_retries=2, clock=clock, sleep=sleeps.append, timeout_seconds=30)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="clf.monitoring"):
            delivery = alerts.send("Rolled back", "v1.3.0 failed its health check", level="critical")
        elapsed = time.monotonic() - started

    assert delivery is Delivery.FAILED
    assert elapsed < 30.0, "a refused connection fails at once, it does not wait out the timeout"
    assert len(sleeps) == 2
    assert "cannot connect" in caplog.text
    assert "testsecret" not in caplog.text


def test_a_webhook_that_does_not_answer_times_out(
    clock: FakeClock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    with WebhookReceiver() as hook:
        hook.delay_next(30.0)  # cut short when the receiver stops
        alerts = _manager(hook, clock, sleeps, timeout_seconds=0.2, max_retries=0)
        started = time.monotonic()
        with caplog.at_level(logging.ERROR, logger="clf.monitoring"):
            delivery = alerts.send("Retraining finished", "v1.4.0 registered")
        elapsed = time.monotonic() - started

    assert delivery is Delivery.FAILED
    assert elapsed < 30.0, "the 0.2 s timeout cut the 30 s hang short"
    assert len(hook.requests) == 1 and hook.requests[0].status is None
    assert "no answer within 0.2 s" in caplog.text


def test_the_cooldown_suppresses_a_repeat_until_it_has_passed(
    hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]
) -> None:
    alerts = _manager(hook, clock, sleeps, cooldown_seconds=900)
    bad = _window(error_rate=0.2)

    assert len(alerts.check_and_alert(bad)) == 1
    clock.advance(899)
    assert alerts.check_and_alert(bad) == []
    clock.advance(1)
    assert [a.kind for a in alerts.check_and_alert(bad)] == [AlertKind.HIGH_ERROR_RATE]
    assert len(hook.payloads) == 2


def test_the_cooldown_is_kept_per_kind_and_version(clock: FakeClock, sleeps: list[float]) -> None:
    alerts = _manager(None, clock, sleeps)
    alerts.check_and_alert(_window(error_rate=0.2))

    later = alerts.check_and_alert(
        _window(
            error_rate=0.2,
            latency_p95_ms=300.0,
            by_version={"v1.2.0": _window(error_rate=0.2), "v1.3.0": _window()},
        )
    )

    assert [(a.kind, a.version) for a in later] == [
        (AlertKind.HIGH_LATENCY, None),
        (AlertKind.HIGH_ERROR_RATE, "v1.2.0"),
    ]


def test_without_a_webhook_alerts_are_logged_at_their_level(
    clock: FakeClock, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="clf.monitoring"):
        raised = _manager(None, clock, sleeps).check_and_alert(_window(error_rate=0.2, latency_p95_ms=300.0))

    assert [a.delivery for a in raised] == [Delivery.LOGGED, Delivery.LOGGED]
    levels = {r.getMessage().split(":")[0]: r.levelno for r in caplog.records}
    assert levels == {
        "High error rate (all versions)": logging.ERROR,
        "High p95 latency (all versions)": logging.WARNING,
    }


def test_send_and_notify_are_the_same_channel(hook: WebhookReceiver, clock: FakeClock, sleeps: list[float]) -> None:
    alerts = _manager(hook, clock, sleeps, source="clf-prod")

    alerts.send("A/B test", "v1.3.0 wins", level=AlertLevel.INFO)
    alerts.notify("Rollback", "back to v1.2.0", level="warning")

    assert hook.texts == [
        ":information_source: *[clf-prod] A/B test*\nv1.3.0 wins",
        ":warning: *[clf-prod] Rollback*\nback to v1.2.0",
    ]


def test_an_unknown_level_is_a_caller_error(clock: FakeClock, sleeps: list[float]) -> None:
    with pytest.raises(ValueError, match="level must be one of"):
        _manager(None, clock, sleeps).send("x", "y", level="loud")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"slack_webhook": "hooks.slack.com/services/T0/B0/X"}, "slack_webhook"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"max_retries": -1}, "max_retries"),
        ({"cooldown_seconds": -5}, "cooldown_seconds"),
    ],
)
def test_manager_settings_are_validated(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AlertManager(**settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_error_rate": 5}, "max_error_rate"),
        ({"max_p95_latency_ms": 0}, "max_p95_latency_ms"),
        ({"min_requests": 0}, "min_requests"),
    ],
)
def test_thresholds_are_validated(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"AlertThresholds.{message}"):
        AlertThresholds(**settings)


def test_an_empty_webhook_setting_means_log_only() -> None:
    assert AlertManager(slack_webhook="").send("x", "y") is Delivery.LOGGED
