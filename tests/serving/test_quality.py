"""Tests for clf/serving/quality.py: the quality watch fills windows from the service's answers, tests each full one
against the reference off the request path, alerts when a version starts and stops alarming, and publishes it all."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from clf.inference import Prediction
from clf.inference.prediction import LabelProbability
from clf.monitoring.quality_metrics import QualityMetrics
from clf.serving.config import QualityConfig
from clf.serving.quality import MAX_PENDING, QualityWatch
from tests.monitoring.test_drift import LABELS, answers, reference

WINDOW = 40


def event(probabilities: np.ndarray, *, version: str = "v1", flagged: bool = False, error: str | None = None):
    """One request as the service hands it to listeners: one answer per probability row."""
    records = []
    for row in probabilities:
        ranked = tuple(LabelProbability(LABELS[i], float(row[i])) for i in np.argsort(-row))
        records.append(
            Prediction(ranked[0].label, ranked[0].probability, ranked[:3], out_of_scope=flagged, version=version,
                       top_k=ranked)
        )  # fmt: skip
    return SimpleNamespace(texts=["x" * 900] * len(records), records=records, error=error)


@pytest.fixture
def watch():
    alerts: list[tuple[str, str, str]] = []
    registry = CollectorRegistry()
    sample = reference()
    watch = QualityWatch(
        QualityConfig(window_papers=WINDOW, permutations=200),
        lambda version: sample if version == "v1" else None,
        metrics=QualityMetrics(registry),
        alert=lambda *message: alerts.append(message),
        clock=lambda: 1_780_000_000.0,
    )
    watch.alerts, watch.registry = alerts, registry  # what the tests read
    return watch


def test_answers_fill_windows_that_check_tests_against_the_reference(watch):
    rng = np.random.default_rng(1)
    for _ in range(3):
        watch.observe(event(answers(rng, WINDOW // 2)))
    assert watch.snapshot()["versions"]["v1"]["current"] == {"papers": 20, "out_of_scope": 0, "pending_windows": 1}

    (report,) = watch.check()

    assert report["version"] == "v1" and report["papers"] == WINDOW and not report["alarm"]
    assert report["ended_at"] == "2026-05-28T20:26:40+00:00"
    state = watch.snapshot()["versions"]["v1"]
    assert state["windows"] == 1 and state["alarms"] == 0 and state["last_window"] == report
    assert state["reference"]["papers"] == 500 and state["papers"] == 60
    assert watch.check() == [] and watch.alerts == []


def test_a_version_alarms_once_when_it_starts_and_once_when_it_stops(watch):
    rng = np.random.default_rng(2)
    watch.observe(event(answers(rng, WINDOW, shift=0.9), flagged=True))
    (alarmed,) = watch.check()
    watch.observe(event(answers(rng, WINDOW, shift=0.9), flagged=True))
    watch.check()  # still alarming: no second message
    watch.observe(event(answers(rng, WINDOW)))
    (calm,) = watch.check()

    assert alarmed["alarm"] and set(alarmed["reasons"]) == {"mmd", "out_of_scope"} and not calm["alarm"]
    (started, stopped) = watch.alerts
    assert started[0] == "Drift on v1" and started[2] == "warning" and "out-of-scope share 100.0%" in started[1]
    assert stopped[0] == "Drift cleared on v1" and stopped[2] == "info"
    summary = watch.summary()["v1"]
    assert summary["windows"] == 3 and summary["alarms"] == 2 and summary["alarming"] is False
    exposition = generate_latest(watch.registry).decode()
    assert 'clf_drift_windows_total{alarm="true",version="v1"} 2.0' in exposition
    assert 'clf_out_of_scope_predictions_total{version="v1"} 80.0' in exposition
    assert 'clf_drift_alarm{version="v1"} 0.0' in exposition
    assert 'clf_reference_accuracy{version="v1"} 0.8' in exposition


def test_when_checks_fall_behind_the_oldest_full_window_is_dropped_and_counted(watch):
    rng = np.random.default_rng(3)
    for _ in range(MAX_PENDING + 2):
        watch.observe(event(answers(rng, WINDOW)))

    assert watch.snapshot()["versions"]["v1"]["dropped_windows"] == 2
    assert len(watch.check()) == MAX_PENDING


def test_failed_papers_are_skipped_and_a_version_without_a_reference_is_only_counted(watch):
    rng = np.random.default_rng(4)
    watch.observe(event(answers(rng, 5), error="every paper failed"))
    watch.observe(event(answers(rng, WINDOW), version="v2", flagged=True))

    state = watch.snapshot()["versions"]
    assert "v1" not in state and state["v2"]["reference"] is None and state["v2"]["papers"] == WINDOW
    assert state["v2"]["out_of_scope"] == WINDOW and state["v2"]["current"]["papers"] == 0 and watch.check() == []


def test_measured_accuracy_is_read_from_the_labels_database_and_published(watch):
    window = SimpleNamespace(
        to_json=lambda: {"version": "v1", "coverage": 0.25, "measured": {"accuracy": {"value": 0.71}}}
    )
    watch.measured = lambda: [window]

    watch.refresh_measured()

    assert watch.snapshot()["measured"] == [window.to_json()]
    exposition = generate_latest(watch.registry).decode()
    assert 'clf_measured_accuracy{version="v1"} 0.71' in exposition
    assert 'clf_label_coverage{version="v1"} 0.25' in exposition
