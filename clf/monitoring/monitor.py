"""`PredictionMonitor`: windowed metrics of a serving process's predictions, for people and the embedded gates.

The service logs one record per classified input; `get_metrics` summarises the last few minutes (error rate,
latency percentiles, confidence) overall and per model version: the JSON of ``GET /metrics``, and what the gates of a
single replica judge. (The Prometheus exposition, which sums across replicas, is `clf.monitoring.metrics`.)
Latency comes three ways: end to end (what the client waited), queue wait, and model latency (the service time of
the batch the paper ran in, also per batch size), so that gates can judge a model apart from the load it is under.
Requests that never reached a model are counted apart (`log_rejection`): client errors by reason, shed load,
timeouts; none of them is a prediction or an error of the model.

>>> now = [1_000_000.0]
>>> monitor = PredictionMonitor(clock=lambda: now[0])
>>> monitor.log_prediction(
...     input_length=812, predictions=[{"label": "cs.LG", "probability": 0.9}], latency_ms=40.0, version="v1.2.0"
... )
>>> monitor.log_prediction(input_length=0, predictions=None, latency_ms=3.0, error="empty text", version="v1.2.0")
>>> metrics = monitor.get_metrics(window_minutes=5)
>>> metrics["total"], metrics["error_rate"], metrics["avg_confidence"]
(2, 0.5, 0.9)
>>> now[0] += 6 * 60  # six minutes later both records are outside a five-minute window
>>> monitor.get_metrics(window_minutes=5)["total"], monitor.get_metrics(window_minutes=5)["error_rate"]
(0, None)
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)
"""The end-to-end latency percentiles the monitor reports (``latency_p50_ms``, ...)."""


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One classified input (or failed attempt), as kept in the monitor's ring."""

    timestamp: float
    """Epoch seconds."""
    input_length: int
    """Size of the input as the caller measures it (the service passes the text's character count)."""
    latency_ms: float
    """Time the service took to answer, in milliseconds."""
    confidence: float | None
    """Top-1 probability; None for an error or an empty prediction list."""
    error: str | None
    """Short error description; None for a success."""
    version: str
    """Model version that served the request."""
    queue_ms: float | None = None
    """Time the request waited in its version's queue before its batch started; None when not measured."""
    service_ms: float | None = None
    """Time its batch spent in the model (the service time, queue wait excluded); None when not measured."""
    batch_size: int | None = None
    """Texts in that batch; None when not measured."""


class PredictionMonitor:
    """Keeps recent prediction records in a bounded, thread-safe ring and summarises them on demand.

    Memory is bounded twice: records older than `max_window_minutes` are evicted as new ones arrive, and the ring
    never holds more than `max_records` (the oldest go first). The counters `requests_total` and `errors_total`
    count every record since the monitor was created and never decrease, as Prometheus counters must.

    Args:
        low_confidence_threshold: a success whose top-1 probability is below this counts as low-confidence.
        max_window_minutes: how far back records are kept; the largest `window_minutes` `get_metrics` accepts.
        max_records: hard cap on the records kept, whatever their age.
        clock: returns the current time in epoch seconds; a test seam for moving windows without sleeping.

    Raises:
        ValueError: when a setting is out of range (the message names it).
    """

    def __init__(
        self,
        low_confidence_threshold: float = 0.5,
        max_window_minutes: float = 60.0,
        max_records: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 < low_confidence_threshold <= 1.0:
            raise ValueError(f"low_confidence_threshold must be in (0, 1], got {low_confidence_threshold}")
        if not max_window_minutes > 0:
            raise ValueError(f"max_window_minutes must be > 0, got {max_window_minutes}")
        if isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1:
            raise ValueError(f"max_records must be an int >= 1, got {max_records!r}")
        self.low_confidence_threshold = float(low_confidence_threshold)
        self.max_window_minutes = float(max_window_minutes)
        self.max_records = max_records
        self.clock = clock
        self._records: deque[PredictionRecord] = deque(maxlen=max_records)
        self._lock = threading.Lock()
        self._requests_total: dict[str, int] = {}
        self._errors_total: dict[str, int] = {}
        self._rejections: deque[tuple[float, Rejection, str, str | None]] = deque(maxlen=max_records)
        self._rejections_total: dict[tuple[Rejection, str, str | None], int] = {}

    def log_prediction(
        self,
        *,
        input_length: int,
        predictions: Sequence[Mapping[str, Any]] | None,
        latency_ms: float,
        version: str,
        error: str | None = None,
        timestamp: float | datetime | None = None,
        queue_ms: float | None = None,
        service_ms: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Records one classified input. Safe to call from many threads at once.

        The arguments are keyword-only because two of them are bare numbers that would be easy to swap.

        Args:
            input_length: size of the input (the service passes the text's character count).
            predictions: what the service returned for the input: dicts with at least ``"label"`` and
                ``"probability"``; the highest probability is the record's confidence. None when `error` is set.
            latency_ms: time taken to answer, in milliseconds.
            version: the model version that served it, e.g. ``"v1.2.0"``.
            error: None for a success, else a short description; an error record has no confidence.
            timestamp: epoch seconds or a datetime (a naive one is local time, as `datetime.timestamp` reads it);
                None means now, by `clock`.
            queue_ms: time spent waiting for a batch, in milliseconds, when measured.
            service_ms: time the batch spent in the model, in milliseconds, when measured.
            batch_size: texts in that batch, when measured.

        Raises:
            ValueError: when a field is malformed (the message names it).
        """
        if isinstance(input_length, bool) or not isinstance(input_length, int) or input_length < 0:
            raise ValueError(f"input_length must be an int >= 0, got {input_length!r}")
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int | float) or not 0 <= latency_ms < math.inf:
            raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        if not isinstance(version, str) or not version:
            raise ValueError(f"version must be a non-empty string such as 'v1.2.0', got {version!r}")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"error must be None or a string, got {type(error).__name__}")
        confidence = None if error is not None else _confidence(predictions)
        if timestamp is None:
            stamp = float(self.clock())
        elif isinstance(timestamp, datetime):
            stamp = timestamp.timestamp()
        elif isinstance(timestamp, int | float) and not isinstance(timestamp, bool) and math.isfinite(timestamp):
            stamp = float(timestamp)
        else:
            raise ValueError(f"timestamp must be epoch seconds, a datetime or None, got {timestamp!r}")
        for name, value in (("queue_ms", queue_ms), ("service_ms", service_ms)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0):
                raise ValueError(f"{name} must be None or a number >= 0, got {value!r}")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be None or an int >= 1, got {batch_size!r}")
        record = PredictionRecord(
            stamp,
            input_length,
            float(latency_ms),
            confidence,
            error,
            version,
            None if queue_ms is None else float(queue_ms),
            None if service_ms is None else float(service_ms),
            batch_size,
        )
        with self._lock:
            self._records.append(record)
            self._requests_total[version] = self._requests_total.get(version, 0) + 1
            if error is not None:
                self._errors_total[version] = self._errors_total.get(version, 0) + 1
            self._evict(float(self.clock()))

    def log_rejection(self, kind: Rejection | str, reason: str | None = None, version: str | None = None) -> None:
        """Counts a request that got no prediction through no fault of a model: refused, shed, or timed out.

        None of these is a prediction: they never enter ``total``, ``errors`` or ``error_rate``, so no alert, canary
        gate or rollback judges a model on them.

        Args:
            kind: a `Rejection` (``client_error``, ``shed``, ``timeout``, ``server_error``).
            reason: for a client error, its reason (``invalid_encoding``, ...); the kind itself when None.
            version: the version it was routed to, when it got that far.

        Raises:
            ValueError: for an unknown kind.
        """
        kind = Rejection(kind)
        key = (kind, str(reason or kind), version)
        with self._lock:
            self._rejections.append((float(self.clock()), *key))
            self._rejections_total[key] = self._rejections_total.get(key, 0) + 1

    def get_metrics(self, window_minutes: float = 5.0) -> dict[str, Any]:
        """Summarises the records of the last `window_minutes`, overall and per version.

        Latency percentiles use numpy's default (linear) interpolation between the closest ranks, over every
        record, errors included; confidence metrics are over successes only. A value that is undefined for an
        empty window (or a window without successes) is None, never NaN.

        Args:
            window_minutes: how far back to look; at most `max_window_minutes`.

        Returns:
            A JSON-serialisable dict with the window's ``window_minutes``, ``low_confidence_threshold``,
            ``total``, ``errors``, ``error_rate``, ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``,
            ``avg_confidence``, ``low_confidence_rate``, ``avg_input_length``; the since-start counters
            ``requests_total`` and ``errors_total``; and ``by_version``, mapping each version seen in the window
            to a dict with the same keys (bar ``window_minutes``, ``low_confidence_threshold`` and
            ``by_version``), its counters being that version's. Requests without a prediction: ``client_errors``
            (``{"total", "by_reason"}``), ``shed``, ``timeouts`` and ``server_errors`` over the window, and since
            start ``client_errors_total`` (by reason), ``shed_total``, ``timeouts_total`` and
            ``server_errors_total``; each version has its own ``shed`` and ``timeouts``.

        Raises:
            ValueError: when `window_minutes` is not in (0, `max_window_minutes`].
        """
        if not 0 < window_minutes <= self.max_window_minutes:
            raise ValueError(
                f"window_minutes must be in (0, {self.max_window_minutes:g}], got {window_minutes}; older records "
                "are evicted, so raise PredictionMonitor(max_window_minutes=...) to look further back"
            )
        now = float(self.clock())
        with self._lock:
            self._evict(now)
            records = list(self._records)  # a C-level copy: the filtering below runs without the lock
            requests_total = dict(self._requests_total)
            errors_total = dict(self._errors_total)
            rejections = list(self._rejections)
            rejections_total = dict(self._rejections_total)
        cutoff = now - window_minutes * 60.0
        recent = [r for r in records if r.timestamp >= cutoff]
        refused = [(kind, reason, version) for stamp, kind, reason, version in rejections if stamp >= cutoff]
        by_version: dict[str, list[PredictionRecord]] = {}
        for record in recent:
            by_version.setdefault(record.version, []).append(record)
        metrics: dict[str, Any] = {
            "window_minutes": float(window_minutes),
            "low_confidence_threshold": self.low_confidence_threshold,
            **self._summarise(recent),
            "requests_total": sum(requests_total.values()),
            "errors_total": sum(errors_total.values()),
            **_rejection_counts(refused, rejections_total),
            "by_version": {},
        }
        for version in sorted(by_version):
            metrics["by_version"][version] = {
                **self._summarise(by_version[version]),
                "requests_total": requests_total.get(version, 0),
                "errors_total": errors_total.get(version, 0),
                "shed": sum(1 for kind, _, v in refused if kind == Rejection.SHED and v == version),
                "timeouts": sum(1 for kind, _, v in refused if kind == Rejection.TIMEOUT and v == version),
            }
        return metrics

    def __len__(self) -> int:
        """How many records the ring holds now (some may be older than a given window)."""
        with self._lock:
            return len(self._records)

    def _evict(self, now: float) -> None:
        # Records arrive in roughly increasing time; one logged late with an old timestamp stays until the records
        # before it are evicted, but `get_metrics` filters by timestamp, so it is never counted out of its window.
        cutoff = now - self.max_window_minutes * 60.0
        records = self._records
        while records and records[0].timestamp < cutoff:
            records.popleft()
        rejections = self._rejections
        while rejections and rejections[0][0] < cutoff:
            rejections.popleft()

    def _summarise(self, records: list[PredictionRecord]) -> dict[str, Any]:
        total = len(records)
        errors = sum(1 for r in records if r.error is not None)
        confidences = np.array([r.confidence for r in records if r.confidence is not None], dtype=float)
        p50, p95, p99 = _percentiles([r.latency_ms for r in records], *PERCENTILES)
        return {
            "total": total,
            "errors": errors,
            "error_rate": errors / total if total else None,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "avg_confidence": float(confidences.mean()) if confidences.size else None,
            "low_confidence_rate": (
                float((confidences < self.low_confidence_threshold).mean()) if confidences.size else None
            ),
            "avg_input_length": sum(r.input_length for r in records) / total if total else None,
            **_timing_summary(records),
        }


class Rejection(StrEnum):
    """A request that got no prediction, through no fault of a model (see `PredictionMonitor.log_rejection`)."""

    CLIENT_ERROR = "client_error"
    """Refused as the client's fault (4xx), counted by its reason."""
    SHED = "shed"
    """Refused because the version's queue was full (429)."""
    TIMEOUT = "timeout"
    """Not answered by its deadline (504)."""
    SERVER_ERROR = "server_error"
    """A fault of the HTTP layer outside any model (500)."""


def batch_bucket(batch_size: int) -> str:
    """The batch-size bucket model latency is compared within: ``1``, ``2-3``, ``4-7``, ``8-15``, ...

    Args:
        batch_size: texts in one batch.

    Returns:
        The bucket's label.

    >>> batch_bucket(1), batch_bucket(3), batch_bucket(8), batch_bucket(64)
    ('1', '2-3', '8-15', '64-127')
    """
    low = 1 << (batch_size.bit_length() - 1)
    return "1" if low == 1 else f"{low}-{2 * low - 1}"


def _percentiles(values: list[float], *quantiles: int) -> list[float | None]:
    if not values:
        return [None] * len(quantiles)
    return [float(v) for v in np.percentile(values, quantiles)]


def _timing_summary(records: list[PredictionRecord]) -> dict[str, Any]:
    """Queue wait and model latency of `records`: overall, per paper, and per batch-size bucket."""
    timed = [(r.service_ms, r.batch_size) for r in records if r.service_ms is not None and r.batch_size is not None]
    queue_p50, queue_p95 = _percentiles([r.queue_ms for r in records if r.queue_ms is not None], 50, 95)
    model_p50, model_p95 = _percentiles([ms for ms, _ in timed], 50, 95)
    per_paper_p50, per_paper_p95 = _percentiles([ms / size for ms, size in timed], 50, 95)
    buckets: dict[str, list[float]] = {}
    for ms, size in timed:
        buckets.setdefault(batch_bucket(size), []).append(ms)
    by_batch = {}
    for label in sorted(buckets, key=lambda b: int(b.split("-")[0])):
        p50, p95 = _percentiles(buckets[label], 50, 95)
        by_batch[label] = {"papers": len(buckets[label]), "p50_ms": p50, "p95_ms": p95}
    return {
        "queue_p50_ms": queue_p50,
        "queue_p95_ms": queue_p95,
        "model_latency_p50_ms": model_p50,
        "model_latency_p95_ms": model_p95,
        "model_ms_per_paper_p50": per_paper_p50,
        "model_ms_per_paper_p95": per_paper_p95,
        "model_latency_by_batch": by_batch,
    }


def _rejection_counts(
    window: list[tuple[Rejection, str, str | None]], totals: dict[tuple[Rejection, str, str | None], int]
) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for kind, reason, _ in window:
        if kind == Rejection.CLIENT_ERROR:
            by_reason[reason] = by_reason.get(reason, 0) + 1
    reasons_total: dict[str, int] = {}
    for (kind, reason, _), count in totals.items():
        if kind == Rejection.CLIENT_ERROR:
            reasons_total[reason] = reasons_total.get(reason, 0) + count

    def since_start(kind: Rejection) -> int:
        return sum(count for (k, _, _), count in totals.items() if k == kind)

    return {
        "client_errors": {"total": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items()))},
        "shed": sum(1 for kind, _, _ in window if kind == Rejection.SHED),
        "timeouts": sum(1 for kind, _, _ in window if kind == Rejection.TIMEOUT),
        "server_errors": sum(1 for kind, _, _ in window if kind == Rejection.SERVER_ERROR),
        "client_errors_total": dict(sorted(reasons_total.items())),
        "shed_total": since_start(Rejection.SHED),
        "timeouts_total": since_start(Rejection.TIMEOUT),
        "server_errors_total": since_start(Rejection.SERVER_ERROR),
    }


def _confidence(predictions: Sequence[Mapping[str, Any]] | None) -> float | None:
    if predictions is None:
        raise ValueError("predictions is None but error is not set: pass the service's predictions, or an error")
    if isinstance(predictions, str | bytes | Mapping) or not isinstance(predictions, Sequence):
        raise ValueError(f"predictions must be a list of dicts, got {type(predictions).__name__}")
    best: float | None = None
    for index, prediction in enumerate(predictions):
        if not isinstance(prediction, Mapping) or "probability" not in prediction:
            raise ValueError(f"predictions[{index}] must be a dict with a 'probability', got {prediction!r}")
        probability = prediction["probability"]
        if isinstance(probability, bool) or not isinstance(probability, int | float) or not 0 <= probability <= 1:
            raise ValueError(f"predictions[{index}]['probability'] must be a number in [0, 1], got {probability!r}")
        best = float(probability) if best is None else max(best, float(probability))
    return best
