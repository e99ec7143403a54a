"""`Notifier`: tells a person what a retraining run did, by email (SMTP) and Slack. Never raises.

notifier = Notifier(config.email, config.slack)
notifier.send("Retraining: v1.1.0 promoted", "accuracy +0.031 ...")   # {"email": "sent", "slack": "sent"}
"""

from __future__ import annotations

import logging
import os
import smtplib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from enum import StrEnum

from clf.retrain.config import EmailConfig, SlackConfig
from clf.retrain.outcomes import PromotionDecision, RetrainResult, RunStatus

log = logging.getLogger(__name__)


class EmailDelivery(StrEnum):
    """What became of an email."""

    SENT = "sent"
    FAILED = "failed"
    DISABLED = "disabled"


class Notifier:
    """Sends one message to every enabled channel; a channel that fails is logged and reported, never raised.

    Args:
        email: the SMTP settings.
        slack: the Slack webhook settings.
    """

    def __init__(self, email: EmailConfig, slack: SlackConfig) -> None:
        self.email = email
        self.slack = slack

    def send(self, subject: str, message: str, level: str = "info") -> dict[str, str]:
        """Sends `message` by email and to Slack, as configured.

        Args:
            subject: the email subject and the Slack title.
            message: the body (plain text).
            level: ``info``, ``warning`` or ``critical`` (Slack's icon).

        Returns:
            ``{"email": ..., "slack": ...}``: each channel's delivery (``sent``, ``failed``, ``disabled``; Slack
            also ``logged`` when enabled without a URL).
        """
        return {"email": self.send_email(subject, message).value, "slack": self.send_slack(subject, message, level)}

    def send_email(self, subject: str, message: str) -> EmailDelivery:
        """Sends one plain-text email to every recipient.

        The password comes from the environment variable `EmailConfig.password_env`, read here (at send time) so
        that a rotated secret is picked up without a restart.

        Args:
            subject: the Subject line.
            message: the plain-text body.

        Returns:
            How it went.
        """
        cfg = self.email
        if not cfg.enabled:
            return EmailDelivery.DISABLED
        mail = EmailMessage()
        mail["Subject"] = subject
        mail["From"] = cfg.sender
        mail["To"] = ", ".join(cfg.recipients)
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="clf.retrain")
        mail.set_content(message)
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds) as smtp:
                if cfg.starttls:
                    smtp.starttls()
                if cfg.user:
                    password = os.environ.get(cfg.password_env)
                    if password is None:
                        log.error(
                            "Email not sent: email.user is %s but the environment variable %s (email.password_env) "
                            "is not set",
                            cfg.user,
                            cfg.password_env,
                        )
                        return EmailDelivery.FAILED
                    smtp.login(cfg.user, password)
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as err:
            log.error("Email to %s via %s:%d failed: %s", cfg.recipients, cfg.host, cfg.port, err)
            return EmailDelivery.FAILED
        log.info("Emailed %s: %s", ", ".join(cfg.recipients), subject)
        return EmailDelivery.SENT

    def send_slack(self, subject: str, message: str, level: str = "info") -> str:
        """Posts to the Slack webhook through `AlertManager.send` (with its retries).

        Args:
            subject: the message's title.
            message: the message's text.
            level: ``info``, ``warning`` or ``critical``; sets the message's Slack icon and log level.

        Returns:
            ``sent``, ``failed``, ``logged`` (enabled but no URL set) or ``disabled``.
        """
        if not self.slack.enabled:
            return "disabled"
        from clf.monitoring.alerts import AlertManager

        url = self.slack.webhook_url or os.environ.get(self.slack.webhook_env)
        if not url:
            log.warning("Slack is enabled but neither slack.webhook_url nor $%s is set", self.slack.webhook_env)
        return AlertManager(slack_webhook=url, source="clf retrain").send(subject, message, level).value


def summarize(result: RetrainResult) -> tuple[str, str, str]:
    """The notification of a run: subject, body (the decision with every trigger's evidence, dataset size, metrics,
    promotion, error) and level.

    Args:
        result: the finished (or failed) run.

    Returns:
        The subject, the body (one fact per line) and the level: ``critical`` for a failed run.
    """
    lines = [f"Run {result.run_id}: {result.status.value}"]
    if result.new_data:
        n = result.new_data
        lines.append(
            f"Production {n.production_version}, trained on data up to {n.last_training_date} ({n.date_source.value})"
        )
        lines.append(f"New papers: {n.count} {n.by_category}")
    if result.triggers:
        lines.append(f"Decision: {'retrain' if result.triggers.fire else 'skip'}: {result.triggers.reason}")
        for name, judgement in result.triggers.evidence["triggers"].items():
            lines.append(f"Trigger {name}: {'fired' if judgement['fired'] else 'silent'}: {judgement['reason']}")
        if "quality_error" in result.triggers.evidence:
            lines.append(f"Quality evidence unavailable: {result.triggers.evidence['quality_error']}")
    elif result.growth:
        lines.append(f"Decision: {result.growth.decision.value}: {result.growth.reason}")
    if result.dataset:
        lines.append(f"Dataset: {result.dataset.num_samples} samples {result.dataset.split_counts}")
    if result.comparison:
        for side in ("baseline", "candidate"):
            s = result.comparison[side]
            lines.append(
                f"{s['version']}: accuracy {s['accuracy']:.4f}, macro-F1 {s['f1_macro']:.4f} "
                f"on {s['num_samples']} test papers"
            )
    if result.promotion:
        lines.append(f"Promotion: {result.promotion.decision.value}: {result.promotion.reason}")
    if result.error:
        lines.append(f"Error: {result.error}")
    if result.status is RunStatus.FAILED:
        return f"Retraining failed: {result.error}"[:200], "\n".join(lines), "critical"
    if result.promotion:
        verb = "promoted" if result.promotion.decision is PromotionDecision.PROMOTE else "archived"
        fired = f" ({result.triggers.trigger_type})" if result.triggers and result.triggers.fired else ""
        return f"Retraining{fired}: {result.version} {verb}", "\n".join(lines), "info"
    if result.triggers and result.triggers.fired:
        return f"Retraining skipped although {result.triggers.trigger_type} fired", "\n".join(lines), "info"
    return "Retraining skipped: no trigger fired", "\n".join(lines), "info"
