"""`ServiceMetrics`: the service's Prometheus metrics, on ``prometheus_client``.

Counters and histograms that a Prometheus server can sum over replicas and read percentiles from (the windowed
percentiles of `PredictionMonitor` cannot be aggregated: a p95 of p95s is no p95). Every name starts ``clf_``:

    clf_requests_total{version,arm,code}            POST /predict requests by answer status (version "none": refused
                                                    before any model was picked)
    clf_predictions_total{version}                  papers classified (or failed) by a model
    clf_prediction_errors_total{version}            of those, failures of the model
    clf_unsure_predictions_total{version}           of those, answers flagged unsure (top-1 probability below the
                                                    artifact's abstain_below): the unsure share is this over
                                                    clf_predictions_total
    clf_request_latency_seconds{version}            histogram: end-to-end latency per paper, queue included
    clf_model_latency_seconds{version,batch}        histogram: service time of the batch each paper ran in, by
                                                    batch-size bucket (1, 2-3, 4-7, ...): the canary gates' latency
    clf_model_latency_per_paper_seconds{version}    histogram: batch service time divided by its size
    clf_batch_size{version}                         histogram: texts per batch, once per paper
    clf_confidence{version}                         histogram: calibrated top-1 probability of each answer
    clf_rejections_total{kind,reason}               requests without a prediction: client errors, shed, timeouts
    clf_shadow_{mirrored,answered,errors,dropped}_total{version}
                                                    papers of a shadow candidate (`clf.serving.shadow`): queued for
                                                    it, answered, failed, and dropped by its bounded queue; never in
                                                    the counters above
    clf_model_loads_total{version} / clf_model_unloads_total{version} / clf_live_changes_total{version}
    clf_live_version{version} (1 for the live one)  clf_traffic_share{version} (the installed rule's shares)
    process_* / python_*                            the process collector (single-process mode)

Several worker processes on one host (``clf serve --workers N``, gunicorn) share one exposition in
``prometheus_client``'s multiprocess mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set before the process starts, every
worker writes its values there and `exposition` merges them (gauges per live process, with a ``pid`` label).

`snapshot` gives the same counters and buckets as plain JSON; replicas publish it to the deployment store, and
`window_metrics` turns the difference of two snapshots into the form the gates read.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

from clf.monitoring.histograms import BATCH_SIZE_BUCKETS, CONFIDENCE_BUCKETS, LATENCY_BUCKETS_S, add, quantile
from clf.monitoring.monitor import batch_bucket

PROMETHEUS_CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The Content-Type of `ServiceMetrics.exposition` (Prometheus text format)."""

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set to a folder before the processes start to merge several workers' metrics (prometheus_client's own name)."""

SHADOW_OUTCOMES = ("mirrored", "answered", "errors", "dropped")
"""What `ServiceMetrics.shadowed` counts of a shadow candidate's papers."""

NO_VERSION = "none"
"""The ``version`` and ``arm`` label of a request refused before a model was picked."""


class ServiceMetrics:
    """The Prometheus metrics of one serving process (see the module docstring).

    Args:
        multiprocess_dir: merge the metrics of every process writing to this folder; by default the
            ``PROMETHEUS_MULTIPROC_DIR`` environment variable (prometheus_client reads it when first imported, so it
            must be set before the process starts).
        clock: epoch seconds for `snapshot`; a test seam.
    """

    def __init__(self, multiprocess_dir: str | None = None, clock: Any = time.time) -> None:
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        if self.multiprocess_dir is None:
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        own = self.registry
        self.requests = Counter(
            "clf_requests", "POST /predict requests by answer.", ["version", "arm", "code"], registry=own
        )
        self.predictions = Counter("clf_predictions", "Papers classified by a model.", ["version"], registry=own)
        self.errors = Counter(
            "clf_prediction_errors",
            "Papers the model failed on (never the client's fault).",
            ["version"],
            registry=own,
        )
        self.unsure = Counter(
            "clf_unsure_predictions",
            "Answers flagged unsure: top-1 probability below the model's abstain_below.",
            ["version"],
            registry=own,
        )
        self.latency = Histogram(
            "clf_request_latency_seconds",
            "End-to-end latency per paper, queue included.",
            ["version"],
            buckets=LATENCY_BUCKETS_S,
            registry=own,
        )
        self.model_latency = Histogram(
            "clf_model_latency_seconds",
            "Service time of the batch each paper ran in, by batch-size bucket.",
            ["version", "batch"],
            buckets=LATENCY_BUCKETS_S,
            registry=own,
        )
        self.per_paper = Histogram(
            "clf_model_latency_per_paper_seconds",
            "Batch service time divided by the batch's size.",
            ["version"],
            buckets=LATENCY_BUCKETS_S,
            registry=own,
        )
        self.batch_size = Histogram(
            "clf_batch_size",
            "Texts in the batch each paper ran in.",
            ["version"],
            buckets=BATCH_SIZE_BUCKETS,
            registry=own,
        )
        self.confidence = Histogram(
            "clf_confidence",
            "Calibrated top-1 probability of each answer.",
            ["version"],
            buckets=CONFIDENCE_BUCKETS,
            registry=own,
        )
        self.rejections = Counter(
            "clf_rejections", "Requests without a prediction, by kind and reason.", ["kind", "reason"], registry=own
        )
        self.loads = Counter("clf_model_loads", "Model versions loaded.", ["version"], registry=own)
        self.unloads = Counter("clf_model_unloads", "Model versions unloaded.", ["version"], registry=own)
        self.live_changes = Counter(
            "clf_live_changes", "Times a version became the live one.", ["version"], registry=own
        )
        self.live = Gauge(
            "clf_live_version", "1 for the live version.", ["version"], registry=own, multiprocess_mode="liveall"
        )
        self.share = Gauge(
            "clf_traffic_share",
            "Share of traffic the installed rule sends each version.",
            ["version"],
            registry=own,
            multiprocess_mode="liveall",
        )
        self.shadow = {
            outcome: Counter(
                f"clf_shadow_{outcome}", f"Papers of a shadow candidate: {outcome}.", ["version"], registry=own
            )
            for outcome in SHADOW_OUTCOMES
        }
        self._lock = threading.Lock()
        self._shared: set[str] = set()
        self._live: str | None = None

    # ------------------------------------------------------------------------------------------------ recording

    def observe(
        self,
        version: str,
        latency_ms: float,
        confidences: Iterable[float | None],
        *,
        service_ms: float | None = None,
        batch_size: int | None = None,
        unsure: int = 0,
    ) -> None:
        """Records the papers of one request answered by `version` (a None confidence is a model error).

        Args:
            version: the version that answered.
            latency_ms: the end-to-end latency of the request.
            confidences: one per paper: its top-1 probability, or None when the model failed on it.
            service_ms: the service time of the batch the request ran in, when measured.
            batch_size: texts in that batch, when measured.
            unsure: how many of the answers were flagged unsure.
        """
        confidences = list(confidences)
        failures = sum(1 for value in confidences if value is None)
        self.predictions.labels(version).inc(len(confidences))
        if failures:
            self.errors.labels(version).inc(failures)
        if unsure:
            self.unsure.labels(version).inc(unsure)
        latency = self.latency.labels(version)
        for value in confidences:
            latency.observe(latency_ms / 1000)
            if value is not None:
                self.confidence.labels(version).observe(value)
        if service_ms is not None and batch_size:
            bucket = batch_bucket(batch_size)
            model, paper, size = (
                self.model_latency.labels(version, bucket),
                self.per_paper.labels(version),
                self.batch_size.labels(version),
            )
            for _ in confidences:
                model.observe(service_ms / 1000)
                paper.observe(service_ms / batch_size / 1000)
                size.observe(batch_size)

    def request(self, code: int, version: str | None = None, arm: str | None = None) -> None:
        """Counts one ``POST /predict`` answer.

        Args:
            code: the HTTP status sent.
            version: the version that answered (None when the request was refused before routing).
            arm: its traffic arm.
        """
        self.requests.labels(version or NO_VERSION, arm or NO_VERSION, str(code)).inc()

    def rejected(self, kind: str, reason: str | None = None) -> None:
        """Counts a request that got no prediction (see `PredictionMonitor.log_rejection`).

        Args:
            kind: client_error, shed, timeout or server_error.
            reason: the client error's reason; the kind itself when None.
        """
        self.rejections.labels(str(kind), str(reason or kind)).inc()

    def shadowed(self, version: str, outcome: str, papers: int = 1) -> None:
        """Counts papers of a shadow candidate (kept apart from the answering versions' counters).

        Args:
            version: the shadow candidate.
            outcome: one of `SHADOW_OUTCOMES`.
            papers: how many.
        """
        self.shadow[outcome].labels(version).inc(papers)

    def loaded(self, version: str, max_batch_size: int = 1) -> None:
        """Counts a model load, and creates the version's series at 0.

        A series born at its first request loses that request to Prometheus's ``increase`` (which starts from the
        first sample it sees); created at load, every request of the version counts.

        Args:
            version: the version loaded.
            max_batch_size: the largest batch it will run (its batch-size buckets are created up to it).
        """
        self.loads.labels(version).inc()
        self.predictions.labels(version)
        self.errors.labels(version)
        self.unsure.labels(version)
        for histogram in (self.latency, self.per_paper, self.batch_size, self.confidence):
            histogram.labels(version)
        for bucket in sorted({batch_bucket(size) for size in range(1, max(max_batch_size, 1) + 1)}):
            self.model_latency.labels(version, bucket)

    def unloaded(self, version: str) -> None:
        """Counts a model unload.

        Args:
            version: the version unloaded.
        """
        self.unloads.labels(version).inc()

    def went_live(self, version: str) -> None:
        """Marks `version` as the live one.

        Args:
            version: the new live version.
        """
        with self._lock:
            previous, self._live = self._live, version
        if previous is not None and previous != version:
            self.live.labels(previous).set(0)
        if previous != version:
            self.live_changes.labels(version).inc()
        self.live.labels(version).set(1)

    def traffic(self, shares: Mapping[str, float]) -> None:
        """Publishes the installed rule's share of traffic per version (versions no longer routed get 0).

        Args:
            shares: version → share of requests it is sent, summing to 1.
        """
        with self._lock:
            gone, self._shared = self._shared - set(shares), set(shares) | self._shared
        for version in gone:
            self.share.labels(version).set(0)
        for version, value in shares.items():
            self.share.labels(version).set(value)

    # ------------------------------------------------------------------------------------------------- reading

    def exposition(self) -> bytes:
        """The metrics in Prometheus text format (every worker's, merged, in multiprocess mode).

        Returns:
            The exposition, served with `PROMETHEUS_CONTENT_TYPE`.
        """
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
        return generate_latest(merged)

    def confidence_counts(self) -> dict[str, list[float]]:
        """Each version's answers per confidence bucket since start (`CONFIDENCE_BUCKETS`, +Inf last).

        Returns:
            version → counts per bucket (not cumulative).
        """
        return {key[0]: counts for key, counts in _bucket_counts(self.confidence).items()}

    def snapshot(self) -> dict[str, Any]:
        """This process's cumulative counters and buckets, per version, as plain JSON (see `window_metrics`).

        Returns:
            ``{"at": epoch seconds, "versions": {version: {"predictions", "errors", "latency": [...],
            "per_paper": [...], "model_latency": {batch: [...]}}}}``, bucket lists holding the count of each bucket
            of `LATENCY_BUCKETS_S` and a last one for +Inf.
        """
        predictions, errors = _label_sums(self.predictions), _label_sums(self.errors)
        latency, per_paper = _bucket_counts(self.latency), _bucket_counts(self.per_paper)
        model = _bucket_counts(self.model_latency)
        versions: dict[str, Any] = {}
        for version in sorted(predictions):
            versions[version] = {
                "predictions": predictions[version],
                "errors": errors.get(version, 0.0),
                "latency": latency.get((version,), []),
                "per_paper": per_paper.get((version,), []),
                "model_latency": {batch: counts for (v, batch), counts in sorted(model.items()) if v == version},
            }
        return {"at": float(self.clock()), "versions": versions}


def window_metrics(counts: Mapping[str, Any] | None) -> dict[str, Any]:
    """A version's numbers over a window, from its snapshot counts over that window, in the form the gates read.

    Args:
        counts: one version's entry of a snapshot difference (`clf.monitoring.histograms.subtract`), summed over
            replicas; None when the version answered nothing.

    Returns:
        ``total``, ``errors``, ``error_rate``, ``latency_p50_ms``/``latency_p95_ms``, ``model_latency_p95_ms``,
        ``model_ms_per_paper_p95`` and ``model_latency_by_batch`` (``{batch: {"papers", "p50_ms", "p95_ms"}}``), the
        keys `PredictionMonitor.get_metrics` gives per version; percentiles read from the buckets.
    """
    counts = counts or {}
    total = int(round(float(counts.get("predictions") or 0.0)))
    errors = int(round(float(counts.get("errors") or 0.0)))
    by_batch = {}
    for label in sorted(counts.get("model_latency") or {}, key=lambda b: int(b.split("-")[0])):
        buckets = counts["model_latency"][label]
        papers = int(round(sum(buckets)))
        if papers:
            by_batch[label] = {"papers": papers, "p50_ms": _ms(0.5, buckets), "p95_ms": _ms(0.95, buckets)}
    model_all = None
    if by_batch:
        summed: list[float] = []
        for label in by_batch:
            summed = add(summed, counts["model_latency"][label])
        model_all = _ms(0.95, summed)
    latency, per_paper = counts.get("latency") or [], counts.get("per_paper") or []
    return {
        "total": total,
        "errors": errors,
        "error_rate": errors / total if total else None,
        "latency_p50_ms": _ms(0.5, latency) if latency else None,
        "latency_p95_ms": _ms(0.95, latency) if latency else None,
        "model_latency_p95_ms": model_all,
        "model_ms_per_paper_p95": _ms(0.95, per_paper) if per_paper else None,
        "model_latency_by_batch": by_batch,
    }


def _ms(q: float, buckets: list[float]) -> float | None:
    value = quantile(q, LATENCY_BUCKETS_S, buckets)
    return None if value is None else value * 1000


def _label_sums(counter: Counter) -> dict[str, float]:
    """A counter's value per ``version`` label, summed over its other labels."""
    sums: dict[str, float] = {}
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                version = sample.labels["version"]
                sums[version] = sums.get(version, 0.0) + sample.value
    return sums


def _bucket_counts(histogram: Histogram) -> dict[tuple[str, ...], list[float]]:
    """A histogram's count per bucket (not cumulative, +Inf last) for each combination of its labels."""
    cumulative: dict[tuple[str, ...], list[float]] = {}
    for family in histogram.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                key = tuple(value for name, value in sample.labels.items() if name != "le")
                cumulative.setdefault(key, []).append(sample.value)
    return {
        key: [values[0], *(b - a for a, b in zip(values, values[1:], strict=False))]
        for key, values in cumulative.items()
    }
