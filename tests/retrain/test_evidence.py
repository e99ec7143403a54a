"""Retraining on evidence end to end: a quality source injected into the real pipeline (real tiny fit, registry and
SQLite), its decision recorded in retraining_runs and sent by email and Slack on loopback."""

from __future__ import annotations

from clf.retrain import RunStatus
from clf.retrain.pipeline import RetrainingPipeline
from clf.retrain.triggers import QualitySnapshot
from tests.retrain.conftest import drift_report, interval, notifying, result_record

DRIFT = "the drift check over 300 papers alarms on mmd, out_of_scope"


class QualitySource:
    """A quality source as the service's would answer: the drift report of the newest window, and the accuracies."""

    def __init__(self, snapshot: QualitySnapshot | None = None, error: Exception | None = None) -> None:
        self.snapshot, self.error = snapshot, error
        self.asked: list[str] = []

    def __call__(self, version: str) -> QualitySnapshot | None:
        self.asked.append(version)
        if self.error:
            raise self.error
        return self.snapshot


def drifted(version: str = "v1.0.0") -> QualitySnapshot:
    return QualitySnapshot(
        version=version,
        papers=300,
        drift=drift_report(alarm=True, p_value=0.001),
        estimated_accuracy=interval(0.80, 0.02, 300),
        reference_accuracy=0.81,
        measured_accuracy=None,
        measured_reference=0.82,
    )


def test_drift_alone_retrains_and_the_record_and_notification_carry_its_evidence(make_config, smtp, webhook):
    sink, _ = smtp
    # growth_threshold 100: growth stays silent, so only the drift evidence can start this run.
    config = notifying(make_config, smtp, webhook, growth_threshold=100.0, promotion_threshold=1.0)
    quality = QualitySource(drifted())

    result = RetrainingPipeline(config, quality=quality).run_pipeline()

    assert result.status is RunStatus.COMPLETED, result.error
    assert quality.asked == ["v1.0.0"], "the production version's quality is asked for"
    assert result.triggers.fired == ["drift"] and result.version == "v1.1.0"
    evidence = result.triggers.evidence
    assert evidence["triggers"]["drift"]["reason"] == DRIFT and evidence["triggers"]["growth"]["fired"] is False
    assert evidence["triggers"]["measured_drop"]["reason"] == "no evidence: no measured accuracy for v1.0.0"
    assert result.to_json()["triggers"] == {"fire": True, "fired": ["drift"], "evidence": evidence}

    record = result_record(config, result.run_id)
    assert record["trigger_type"] == "drift" and record["status"] == "completed"
    assert record["evidence"] == evidence and record["evidence"]["triggers"]["drift"]["mmd_p_value"] == 0.001

    (mail,) = sink.wait_for(1)
    assert mail["Subject"] == "Retraining (drift): v1.1.0 archived"
    body = mail.get_payload(decode=True).decode()
    assert "Decision: retrain: drift fired (mode any)" in body and f"Trigger drift: fired: {DRIFT}" in body
    (text,) = webhook.texts
    assert f"Trigger drift: fired: {DRIFT}" in text


def test_a_dry_run_fires_on_drift_records_the_decision_and_sends_nothing(make_config, smtp):
    sink, _ = smtp
    config = make_config(growth_threshold=100.0, triggers={"mode": "any"})
    pipeline = RetrainingPipeline(config, quality=QualitySource(drifted()))

    result = pipeline.run_pipeline(dry_run=True)

    assert result.status is RunStatus.DRY_RUN and result.triggers.fire and result.triggers.fired == ["drift"]
    assert result.to_json()["triggers"]["evidence"]["triggers"]["drift"]["reason"] == DRIFT
    (record,) = pipeline.runs.list()
    assert record["status"] == "dry_run" and record["trigger_type"] == "drift" and record["id"] == result.run_id
    assert record["evidence"] == result.triggers.evidence and result.version is None and sink.messages == []


def test_evidence_about_another_version_is_not_judged(make_config):
    pipeline = RetrainingPipeline(make_config(growth_threshold=100.0), quality=QualitySource(drifted("v0.9.0")))

    result = pipeline.run_pipeline(dry_run=True)

    evidence = result.triggers.evidence
    assert not result.triggers.fire and result.triggers.fired == []
    assert evidence["quality_error"] == "the quality source answered for v0.9.0, not the production version v1.0.0"
    assert evidence["triggers"]["drift"]["reason"] == "no evidence: no quality snapshot"


def test_an_unavailable_quality_source_is_missing_evidence_and_growth_still_decides(make_config):
    broken = QualitySource(error=ConnectionError("experiments database is down"))

    result = RetrainingPipeline(make_config(growth_threshold=0.1), quality=broken).run_pipeline(dry_run=True)

    evidence = result.triggers.evidence
    assert result.triggers.fired == ["growth"] and result.triggers.fire
    assert evidence["quality_error"] == "ConnectionError: experiments database is down"
    assert evidence["triggers"]["drift"]["missing"] is True


def test_a_skipped_run_records_why_each_trigger_stayed_silent(make_config, smtp):
    sink, port = smtp
    config = make_config(
        growth_threshold=100.0,
        email={"enabled": True, "host": "127.0.0.1", "port": port, "recipients": ["ml-team@example.org"]},
    )
    healthy = QualitySnapshot(
        version="v1.0.0",
        papers=300,
        drift=drift_report(alarm=False, p_value=0.42),
        estimated_accuracy=interval(0.70, 0.10, 300),  # point far below, but the interval reaches 0.80
        reference_accuracy=0.81,
        measured_accuracy=interval(0.80, 0.05, 150),
        measured_reference=0.82,
    )

    result = RetrainingPipeline(config, quality=QualitySource(healthy)).run_pipeline()

    assert result.status is RunStatus.SKIPPED and result.triggers.fired == []
    record = result_record(config, result.run_id)
    assert record["trigger_type"] == "manual" and record["status"] == "skipped"
    triggers = record["evidence"]["triggers"]
    assert triggers["drift"]["reason"] == "the drift check over 300 papers raises no alarm (MMD p = 0.42)"
    assert "its upper end is not below" in triggers["estimated_drop"]["reason"]
    assert (
        triggers["measured_drop"]["reason"]
        == "no evidence: 150 labelled answers, fewer than --triggers.min_labelled 200"
    )
    (mail,) = sink.wait_for(1)
    assert mail["Subject"] == "Retraining skipped: no trigger fired"
    body = mail.get_payload(decode=True).decode()
    for name, judgement in triggers.items():
        assert f"Trigger {name}: silent: {judgement['reason']}" in body
