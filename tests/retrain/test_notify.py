"""Tests for clf/retrain/notify.py: real SMTP (with login) and Slack deliveries on loopback; failures never raise."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from clf.retrain.config import EmailConfig, SlackConfig
from clf.retrain.notify import EmailDelivery, Notifier, summarize
from clf.retrain.outcomes import GrowthDecision, RetrainDecision, RetrainResult, RunStatus
from clf.retrain.triggers import QualitySnapshot, TriggersConfig, decide
from tests.retrain.conftest import SmtpSink, drift_report, start_smtp


@pytest.fixture
def smtp_with_login():
    """A loopback SMTP server that accepts only user `clf` with password `s3cret`."""
    sink, logins = SmtpSink(), []

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"clf", b"s3cret")
        logins.append((auth_data.login, ok))
        return AuthResult(success=ok)

    controller, port = start_smtp(
        sink, authenticator=authenticate, auth_require_tls=False, auth_exclude_mechanism=["LOGIN"]
    )
    try:
        yield sink, port, logins
    finally:
        controller.stop()


def email_config(port: int, **changes) -> EmailConfig:
    values = {"enabled": True, "host": "127.0.0.1", "port": port, "recipients": ["a@example.org", "b@example.org"]}
    return EmailConfig(**{**values, **changes})


def test_email_logs_in_with_the_password_from_the_named_environment_variable(smtp_with_login, monkeypatch):
    sink, port, logins = smtp_with_login
    monkeypatch.setenv("RETRAIN_TEST_SMTP_PASSWORD", "s3cret")
    notifier = Notifier(email_config(port, user="clf", password_env="RETRAIN_TEST_SMTP_PASSWORD"), SlackConfig())

    assert notifier.send("Retraining: v1.1.0 promoted", "accuracy +0.03") == {"email": "sent", "slack": "disabled"}

    (mail,) = sink.wait_for(1)
    assert logins == [(b"clf", True)]
    assert mail["Subject"] == "Retraining: v1.1.0 promoted" and mail["To"] == "a@example.org, b@example.org"
    assert mail.get_payload(decode=True).decode().strip() == "accuracy +0.03"
    assert sorted(sink.envelopes[0].rcpt_tos) == ["a@example.org", "b@example.org"]


def test_a_missing_password_fails_without_raising_and_names_the_variable(smtp_with_login, monkeypatch, caplog):
    sink, port, logins = smtp_with_login
    monkeypatch.delenv("RETRAIN_TEST_SMTP_PASSWORD", raising=False)
    config = email_config(port, user="clf", password_env="RETRAIN_TEST_SMTP_PASSWORD")
    assert Notifier(config, SlackConfig()).send_email("s", "m") is EmailDelivery.FAILED
    assert "RETRAIN_TEST_SMTP_PASSWORD (email.password_env) is not set" in caplog.text
    assert logins == [] and sink.messages == []


def test_an_unreachable_smtp_server_and_disabled_channels(webhook, refusing_port):
    slack = SlackConfig(enabled=True, webhook_url=webhook.url)
    notifier = Notifier(email_config(refusing_port, timeout_seconds=2), slack)
    assert notifier.send("Retraining failed", "boom", "critical") == {"email": "failed", "slack": "sent"}
    assert webhook.texts == [":rotating_light: *[clf retrain] Retraining failed*\nboom"]
    assert Notifier(EmailConfig(), SlackConfig()).send("s", "m") == {"email": "disabled", "slack": "disabled"}


def test_the_slack_url_can_come_from_the_named_environment_variable(webhook, monkeypatch):
    monkeypatch.setenv("RETRAIN_TEST_SLACK", webhook.url)
    notifier = Notifier(EmailConfig(), SlackConfig(enabled=True, webhook_env="RETRAIN_TEST_SLACK"))
    assert notifier.send_slack("Retraining skipped", "3 new papers") == "sent"
    assert webhook.texts == [":information_source: *[clf retrain] Retraining skipped*\n3 new papers"]


def test_a_run_skipped_although_a_trigger_fired_says_which_and_why():
    decision = decide(
        TriggersConfig(),
        growth=GrowthDecision(RetrainDecision.SKIP, 0, 300, 0.0, 0.1, "no new papers"),
        quality=QualitySnapshot("v1.0.0", 300, drift=drift_report(alarm=True)),
        schedule_due=False,
    )
    result = RetrainResult(run_id=7, status=RunStatus.SKIPPED, triggers=decision)

    subject, body, level = summarize(result)

    assert (subject, level) == ("Retraining skipped although drift fired", "info")
    assert "Decision: skip: drift fired, but there are no new papers to retrain on" in body.splitlines()
    assert "Trigger growth: silent: no new papers" in body.splitlines()
