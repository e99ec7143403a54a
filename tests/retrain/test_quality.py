"""Tests for clf/retrain/quality.py: the evidence the retraining triggers read from the logged answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clf.experiments.quality_log import QualityLog
from clf.retrain.quality import production_quality
from tests.experiments.test_quality_log import answer, served

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def test_measured_accuracy_reads_the_newest_labelled_answers_not_the_newest_window(make_config):
    # Labels arrive days after the answers: the newest window has none, yet the trigger must see the accuracy.
    config = make_config(triggers={"window_papers": 4, "min_labelled": 1})
    with QualityLog(config.db, flush_interval_seconds=60) as log:
        for day in range(10):
            served(log, [answer("cs.CL", 0.8)], at=T0 + timedelta(days=day), arxiv_ids=(f"2606.000{day:02d}",))
        log.import_labels([(f"2606.000{day:02d}", "cs.CL" if day < 4 else "cs.CV") for day in range(6)])

    snapshot = production_quality(config)("v1.0.0")

    assert snapshot is not None and snapshot.papers == 4  # days 6..9: no label yet
    measured = snapshot.measured_accuracy
    assert measured is not None and measured["n"] == 4  # days 2..5: the newest four labelled answers
    assert measured["value"] == 0.5  # days 2 and 3 right (cs.CL), 4 and 5 wrong
