"""`PredictionMonitor`: windowed metrics against hand-computed values, bounds, threads and Prometheus text."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest

from clf.monitoring import PredictionMonitor
from tests.monitoring.conftest import FakeClock


def _top1(probability: float, label: str = "cs.LG") -> list[dict[str, object]]:
    """A service answer whose top-1 probability is `probability`, listed after a lower-ranked class."""
    return [{"label": "cs.CV", "probability": probability / 2}, {"label": label, "probability": probability}]


def _log(monitor: PredictionMonitor, latency_ms: float = 10.0, confidence: float | None = 0.9, **kwargs) -> None:
    kwargs.setdefault("version", "v1.0.0")
    kwargs.setdefault("input_length", 100)
    predictions = None if kwargs.get("error") else _top1(confidence)
    monitor.log_prediction(predictions=predictions, latency_ms=latency_ms, **kwargs)


def test_latency_percentiles_interpolate_linearly_between_ranks(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    latencies = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]
    for latency in reversed(latencies):  # order of arrival must not matter
        _log(monitor, latency)

    metrics = monitor.get_metrics(window_minutes=5)

    # Linear interpolation: rank r = q * (n - 1) between sorted[floor(r)] and sorted[ceil(r)], n = 10.
    # p50: r = 4.5  -> 50 + 0.5 * (60 - 50) = 55
    # p95: r = 8.55 -> 90 + 0.55 * (100 - 90) = 95.5
    # p99: r = 8.91 -> 90 + 0.91 * (100 - 90) = 99.1
    assert metrics["latency_p50_ms"] == pytest.approx(55.0)
    assert metrics["latency_p95_ms"] == pytest.approx(95.5)
    assert metrics["latency_p99_ms"] == pytest.approx(99.1)


def test_error_rate_and_confidence_are_computed_over_the_right_records(clock: FakeClock) -> None:
    monitor = PredictionMonitor(low_confidence_threshold=0.5, clock=clock)
    for confidence in (0.9, 0.4, 0.5, 0.3):
        _log(monitor, confidence=confidence, input_length=200)
    _log(monitor, error="tokenizer failed", input_length=0)

    metrics = monitor.get_metrics(window_minutes=5)

    assert metrics["total"] == 5
    assert metrics["errors"] == 1
    assert metrics["error_rate"] == pytest.approx(1 / 5)
    # Confidence is the top-1 probability of the 4 successes; the error has none.
    assert metrics["avg_confidence"] == pytest.approx((0.9 + 0.4 + 0.5 + 0.3) / 4)
    # Strictly below 0.5: 0.4 and 0.3, not 0.5.
    assert metrics["low_confidence_rate"] == pytest.approx(2 / 4)
    assert metrics["avg_input_length"] == pytest.approx(800 / 5)
    assert metrics["low_confidence_threshold"] == 0.5
    assert metrics["window_minutes"] == 5.0


def test_confidence_is_the_highest_probability_whatever_the_order(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    predictions = [
        {"label": "cs.CL", "probability": 0.2},
        {"label": "cs.LG", "probability": 0.7},
        {"label": "cs.AI", "probability": 0.1},
    ]
    monitor.log_prediction(input_length=10, predictions=predictions, latency_ms=5.0, version="v1.0.0")

    assert monitor.get_metrics(window_minutes=1)["avg_confidence"] == pytest.approx(0.7)


def test_metrics_are_split_per_version(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    for latency in (10.0, 20.0, 30.0):
        _log(monitor, latency, confidence=0.8, version="v1.2.0")
    _log(monitor, 400.0, error="timeout", version="v1.3.0")
    _log(monitor, 200.0, confidence=0.2, version="v1.3.0")

    metrics = monitor.get_metrics(window_minutes=5)
    old, new = metrics["by_version"]["v1.2.0"], metrics["by_version"]["v1.3.0"]

    assert sorted(metrics["by_version"]) == ["v1.2.0", "v1.3.0"]
    assert (metrics["total"], old["total"], new["total"]) == (5, 3, 2)
    assert (old["error_rate"], new["error_rate"]) == (0.0, 0.5)
    assert old["latency_p50_ms"] == pytest.approx(20.0)
    assert new["latency_p50_ms"] == pytest.approx(300.0)
    assert (old["avg_confidence"], new["avg_confidence"]) == (pytest.approx(0.8), pytest.approx(0.2))
    assert (old["low_confidence_rate"], new["low_confidence_rate"]) == (0.0, 1.0)
    assert (old["requests_total"], old["errors_total"]) == (3, 0)
    assert (new["requests_total"], new["errors_total"]) == (2, 1)
    process_only = {"window_minutes", "low_confidence_threshold", "by_version", "client_errors", "server_errors"}
    process_only |= {"client_errors_total", "shed_total", "timeouts_total", "server_errors_total"}
    assert set(old) == set(metrics) - process_only


def test_window_counts_only_recent_records_and_old_ones_are_evicted(clock: FakeClock) -> None:
    monitor = PredictionMonitor(max_window_minutes=60, clock=clock)
    _log(monitor, 100.0, error="boom")
    clock.advance(3 * 60)
    _log(monitor, 10.0)

    assert monitor.get_metrics(window_minutes=2)["total"] == 1
    assert monitor.get_metrics(window_minutes=2)["error_rate"] == 0.0
    assert monitor.get_metrics(window_minutes=5)["total"] == 2

    clock.advance(58 * 60)  # the first record is now 61 minutes old, the second 58
    assert monitor.get_metrics(window_minutes=60)["total"] == 1
    assert len(monitor) == 1  # evicted, not just filtered
    clock.advance(3 * 60)
    assert len(monitor) == 1  # eviction happens on log and read, not in the background
    assert monitor.get_metrics(window_minutes=60)["total"] == 0
    assert len(monitor) == 0


def test_counters_keep_counting_after_records_leave_the_window(clock: FakeClock) -> None:
    monitor = PredictionMonitor(max_window_minutes=10, clock=clock)
    _log(monitor)
    _log(monitor, error="boom")
    clock.advance(11 * 60)
    _log(monitor)

    metrics = monitor.get_metrics(window_minutes=10)

    assert metrics["total"] == 1
    assert (metrics["requests_total"], metrics["errors_total"]) == (3, 1)


def test_timestamps_may_be_given_as_epoch_seconds_or_datetimes(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    _log(monitor, timestamp=clock.now - 30)
    _log(monitor, timestamp=datetime.fromtimestamp(clock.now - 90, UTC))
    _log(monitor, timestamp=clock.now - 10 * 60)  # outside a 5-minute window

    assert monitor.get_metrics(window_minutes=1)["total"] == 1
    assert monitor.get_metrics(window_minutes=5)["total"] == 2


def test_the_ring_never_holds_more_than_max_records(clock: FakeClock) -> None:
    monitor = PredictionMonitor(max_records=5, clock=clock)
    for latency in range(1, 9):
        _log(monitor, float(latency))

    metrics = monitor.get_metrics(window_minutes=5)

    assert len(monitor) == 5
    assert metrics["total"] == 5
    assert metrics["requests_total"] == 8
    assert metrics["latency_p50_ms"] == pytest.approx(6.0)  # the newest five: 4..8


def test_logging_from_many_threads_loses_no_record(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    threads, per_thread = 8, 500
    start = threading.Barrier(threads + 1)
    reads: list[int] = []

    def worker(index: int) -> None:
        start.wait()
        for _ in range(per_thread):
            _log(monitor, float(index), version=f"v1.{index % 2}.0")

    def reader() -> None:
        start.wait()
        for _ in range(20):
            reads.append(monitor.get_metrics(window_minutes=5)["total"])

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    pool.append(threading.Thread(target=reader))
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    metrics = monitor.get_metrics(window_minutes=5)

    assert metrics["total"] == metrics["requests_total"] == threads * per_thread
    assert metrics["by_version"]["v1.0.0"]["total"] == metrics["by_version"]["v1.1.0"]["total"] == 2000
    assert reads == sorted(reads)  # reads during the writes saw a consistent, growing ring


def test_an_empty_window_reports_zero_and_none_never_nan(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)

    metrics = monitor.get_metrics(window_minutes=5)

    assert metrics["total"] == metrics["errors"] == 0
    for key in ("error_rate", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "avg_confidence"):
        assert metrics[key] is None, key
    assert metrics["low_confidence_rate"] is None
    assert metrics["by_version"] == {}
    json.dumps(metrics, allow_nan=False)  # the service can return it as strict JSON


def test_a_window_of_errors_only_has_latency_but_no_confidence(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    _log(monitor, 30.0, error="model not loaded")

    metrics = monitor.get_metrics(window_minutes=5)

    assert metrics["error_rate"] == 1.0
    assert metrics["latency_p95_ms"] == 30.0
    assert metrics["avg_confidence"] is None
    assert metrics["low_confidence_rate"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"latency_ms": -1.0}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"input_length": -3}, "input_length"),
        ({"version": ""}, "version"),
        ({"predictions": None}, "predictions"),
        ({"predictions": {"label": "cs.LG", "probability": 0.9}}, "list of dicts"),
        ({"predictions": [{"label": "cs.LG"}]}, r"predictions\[0\]"),
        ({"predictions": [{"label": "cs.LG", "probability": 1.5}]}, r"predictions\[0\]\['probability'\]"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"error": 500}, "error"),
    ],
)
def test_malformed_records_are_refused_with_the_field_named(change: dict, message: str) -> None:
    fields = {"input_length": 10, "predictions": _top1(0.9), "latency_ms": 5.0, "version": "v1.0.0", **change}

    with pytest.raises(ValueError, match=message):
        PredictionMonitor().log_prediction(**fields)


def test_fields_must_be_passed_by_name() -> None:
    with pytest.raises(TypeError):
        PredictionMonitor().log_prediction(None, 10, _top1(0.9), 5.0, None, "v1.0.0")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"low_confidence_threshold": 0.0}, "low_confidence_threshold"),
        ({"max_window_minutes": 0}, "max_window_minutes"),
        ({"max_records": 0}, "max_records"),
    ],
)
def test_settings_are_validated(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PredictionMonitor(**settings)


def test_a_window_longer_than_the_records_kept_is_refused() -> None:
    with pytest.raises(ValueError, match=r"window_minutes must be in \(0, 60\].*max_window_minutes"):
        PredictionMonitor(max_window_minutes=60).get_metrics(window_minutes=90)


def test_queue_wait_and_model_latency_are_summarised_apart_and_per_batch_size(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    for queue_ms, service_ms, batch in ((0.0, 10.0, 1), (2.0, 12.0, 1), (400.0, 80.0, 8), (600.0, 90.0, 9)):
        _log(monitor, queue_ms + service_ms, queue_ms=queue_ms, service_ms=service_ms, batch_size=batch)
    _log(monitor, 5.0)  # no timings: counted as a prediction, left out of the timing summaries

    metrics = monitor.get_metrics(window_minutes=5)

    assert metrics["total"] == 5 and metrics["latency_p50_ms"] == pytest.approx(14.0)
    assert metrics["queue_p50_ms"] == pytest.approx(201.0) and metrics["model_latency_p50_ms"] == pytest.approx(46.0)
    assert metrics["model_latency_by_batch"] == {
        "1": {"papers": 2, "p50_ms": pytest.approx(11.0), "p95_ms": pytest.approx(11.9)},
        "8-15": {"papers": 2, "p50_ms": pytest.approx(85.0), "p95_ms": pytest.approx(89.5)},
    }
    # Per paper: 10, 12, 10, 10 ms.
    assert metrics["model_ms_per_paper_p50"] == pytest.approx(10.0)
    assert metrics["by_version"]["v1.0.0"]["model_latency_by_batch"] == metrics["model_latency_by_batch"]


def test_rejections_are_counted_by_kind_and_reason_and_are_never_predictions(clock: FakeClock) -> None:
    monitor = PredictionMonitor(clock=clock)
    _log(monitor)
    for _ in range(3):
        monitor.log_rejection("client_error", "invalid_encoding")
    monitor.log_rejection("client_error", "too_deep")
    monitor.log_rejection("shed", version="v1.0.0")
    monitor.log_rejection("timeout", version="v1.0.0")
    monitor.log_rejection("server_error")

    metrics = monitor.get_metrics(window_minutes=5)

    assert (metrics["total"], metrics["errors"], metrics["error_rate"]) == (1, 0, 0.0)
    assert metrics["client_errors"] == {"total": 4, "by_reason": {"invalid_encoding": 3, "too_deep": 1}}
    assert (metrics["shed"], metrics["timeouts"], metrics["server_errors"]) == (1, 1, 1)
    assert (metrics["by_version"]["v1.0.0"]["shed"], metrics["by_version"]["v1.0.0"]["timeouts"]) == (1, 1)
    clock.advance(6 * 60)
    later = monitor.get_metrics(window_minutes=5)
    assert later["client_errors"]["total"] == 0 and later["shed"] == 0
    assert later["client_errors_total"] == {"invalid_encoding": 3, "too_deep": 1} and later["shed_total"] == 1
    with pytest.raises(ValueError, match="is not a valid Rejection"):
        monitor.log_rejection("model_error")


@pytest.mark.parametrize(
    "fields",
    [{"queue_ms": -1.0}, {"service_ms": "fast"}, {"batch_size": 0}, {"batch_size": True}],
)
def test_malformed_timings_are_refused(fields) -> None:
    with pytest.raises(ValueError, match=next(iter(fields))):
        _log(PredictionMonitor(), **fields)
