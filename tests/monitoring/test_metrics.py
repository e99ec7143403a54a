"""Tests for clf/monitoring/metrics.py and histograms.py: the Prometheus exposition parses and counts what was
served, snapshots give the same numbers as plain JSON, percentiles are read from buckets as Prometheus reads them,
and several processes merge in multiprocess mode."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from clf.monitoring.histograms import LATENCY_BUCKETS_S, add, quantile, subtract
from clf.monitoring.metrics import ServiceMetrics, window_metrics
from tests.conftest import REPO


def _samples(metrics: ServiceMetrics) -> dict[tuple[str, tuple], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_the_exposition_counts_requests_predictions_errors_and_buckets():
    metrics = ServiceMetrics()
    metrics.loaded("v1", max_batch_size=8)
    metrics.observe("v1", 30.0, [0.9, None, 0.4], service_ms=20.0, batch_size=3)
    metrics.request(200, "v1", "production")
    metrics.request(422)
    metrics.rejected("client_error", "empty_text")
    samples = _samples(metrics)
    assert samples[("clf_predictions_total", (("version", "v1"),))] == 3
    assert samples[("clf_prediction_errors_total", (("version", "v1"),))] == 1
    assert samples[("clf_requests_total", (("arm", "production"), ("code", "200"), ("version", "v1")))] == 1
    assert samples[("clf_requests_total", (("arm", "none"), ("code", "422"), ("version", "none")))] == 1
    assert samples[("clf_rejections_total", (("kind", "client_error"), ("reason", "empty_text")))] == 1
    assert samples[("clf_model_latency_seconds_count", (("batch", "2-3"), ("version", "v1")))] == 3
    assert samples[("clf_model_latency_seconds_count", (("batch", "8-15"), ("version", "v1")))] == 0, (
        "series exist from the load on, so that Prometheus's increase() counts their first requests"
    )
    assert samples[("clf_confidence_count", (("version", "v1"),))] == 2
    assert any(name.startswith("process_") for name, _ in samples), "the process collector"


def test_unsure_answers_are_counted_per_version_beside_the_predictions():
    metrics = ServiceMetrics()
    metrics.loaded("v1")
    metrics.loaded("v2")
    metrics.observe("v1", 30.0, [0.9, 0.4, 0.3, None], unsure=2)
    metrics.observe("v1", 30.0, [0.8])
    samples = _samples(metrics)
    assert samples[("clf_unsure_predictions_total", (("version", "v1"),))] == 2, "the unsure share is 2 of 5"
    assert samples[("clf_predictions_total", (("version", "v1"),))] == 5
    assert samples[("clf_unsure_predictions_total", (("version", "v2"),))] == 0, "the series exists from the load on"


def test_live_version_and_traffic_shares_follow_swaps_and_splits():
    metrics = ServiceMetrics()
    metrics.went_live("v1")
    metrics.traffic({"v1": 0.9, "v2": 0.1})
    metrics.went_live("v2")
    metrics.traffic({"v2": 1.0})
    samples = _samples(metrics)
    assert samples[("clf_live_version", (("version", "v1"),))] == 0
    assert samples[("clf_live_version", (("version", "v2"),))] == 1
    assert samples[("clf_traffic_share", (("version", "v1"),))] == 0
    assert samples[("clf_traffic_share", (("version", "v2"),))] == 1
    assert samples[("clf_live_changes_total", (("version", "v2"),))] == 1


def test_a_window_is_the_difference_of_two_snapshots():
    metrics = ServiceMetrics()
    metrics.observe("v1", 10.0, [0.9] * 5, service_ms=8.0, batch_size=1)
    before = metrics.snapshot()
    metrics.observe("v1", 50.0, [0.9, None], service_ms=40.0, batch_size=2)
    window = window_metrics(subtract(metrics.snapshot(), before)["versions"]["v1"])
    assert (window["total"], window["errors"], window["error_rate"]) == (2, 1, 0.5)
    assert list(window["model_latency_by_batch"]) == ["2-3"], "the earlier batch of 1 is outside the window"
    assert 40.0 / 1.25 <= window["model_latency_by_batch"]["2-3"]["p95_ms"] <= 40.0 * 1.25
    assert window_metrics(None) == {**window_metrics({}), "total": 0}


def test_percentiles_from_the_buckets_are_within_a_bucket_of_the_exact_ones():
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=np.log(0.03), sigma=0.6, size=5000)
    counts = [0.0] * (len(LATENCY_BUCKETS_S) + 1)
    for value in values:
        counts[int(np.searchsorted(LATENCY_BUCKETS_S, value))] += 1
    for q in (0.5, 0.95, 0.99):
        exact = float(np.quantile(values, q))
        assert exact / 1.25 <= quantile(q, LATENCY_BUCKETS_S, counts) <= exact * 1.25


def test_histogram_quantile_edge_cases():
    assert quantile(0.5, [1.0, 2.0], [0, 0, 0]) is None
    assert quantile(0.99, [1.0, 2.0], [0, 1, 5]) == 2.0, "in the +Inf bucket: the highest finite bound"
    assert quantile(0.5, [1.0, 2.0], [2, 0, 0]) == 0.5, "the first bucket starts at 0"
    with pytest.raises(ValueError, match="3 bounds"):
        quantile(0.5, [1.0, 2.0, 3.0], [1, 2])


def test_snapshots_add_and_subtract_element_wise():
    a = {"v": {"predictions": 3, "latency": [1, 2], "model_latency": {"1": [1, 0, 2]}}}
    b = {"v": {"predictions": 1, "latency": [0, 1, 4], "model_latency": {"2-3": [1]}}}
    assert add(a, b) == {"v": {"predictions": 4, "latency": [1, 3, 4], "model_latency": {"1": [1, 0, 2], "2-3": [1]}}}
    assert subtract(b, a)["v"]["predictions"] == 0, "never below zero (a restarted replica)"


def test_several_processes_merge_in_multiprocess_mode(tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    worker = textwrap.dedent(
        """
        import sys
        from clf.monitoring.metrics import ServiceMetrics
        metrics = ServiceMetrics()
        metrics.loaded("v1")
        metrics.observe("v1", 10.0, [0.8] * int(sys.argv[1]), service_ms=5.0, batch_size=1)
        metrics.went_live("v1")
        """
    )
    for count in (3, 4):
        subprocess.run([sys.executable, "-c", worker, str(count)], cwd=REPO, env=env, check=True, timeout=120)
    reader = "from clf.monitoring.metrics import ServiceMetrics; print(ServiceMetrics().exposition().decode())"
    text = subprocess.run(
        [sys.executable, "-c", reader], cwd=REPO, env=env, check=True, timeout=120, capture_output=True, text=True
    ).stdout
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("clf_predictions_total", (("version", "v1"),))] == 7, "both processes' counts, summed"
    assert samples[("clf_model_latency_seconds_count", (("batch", "1"), ("version", "v1")))] == 7
