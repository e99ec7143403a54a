"""The monitor's metrics in Prometheus text exposition format (version 0.0.4), for ``GET /metrics``.

Counters per version (``clf_requests_total``, ``clf_errors_total``), windowed gauges per version and for all
versions together (``version="all"``), and the counters of requests without a prediction (client errors by reason,
shed load, timeouts, server faults).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Content-Type of `to_prometheus` output (Prometheus text exposition format 0.0.4)."""

ALL_VERSIONS = "all"
"""The ``version`` label of the windowed gauges computed over every version together."""

PERCENTILES = (50, 95, 99)
"""The end-to-end latency percentiles the monitor reports (``latency_p50_ms``, ...)."""

_COUNTERS = (
    ("requests_total", "clf_requests_total", "Classified inputs since the process started."),
    ("errors_total", "clf_errors_total", "Classification errors since the process started."),
)
_GAUGES = (
    ("total", "clf_window_requests", "Classified inputs in the last {w} minutes."),
    ("error_rate", "clf_window_error_rate", "Fraction of inputs that failed in the last {w} minutes."),
    ("avg_confidence", "clf_window_avg_confidence", "Mean top-1 probability of successes in the last {w} minutes."),
    (
        "low_confidence_rate",
        "clf_window_low_confidence_rate",
        "Fraction of successes with top-1 probability below {t:g} in the last {w} minutes.",
    ),
)
_LATENCY = ("clf_window_latency_ms", "Latency percentiles in milliseconds over the last {w} minutes.")
_TIMINGS = (
    ("clf_window_queue_latency_ms", "queue", "Queue wait percentiles in milliseconds over the last {w} minutes."),
    (
        "clf_window_model_latency_ms",
        "model_latency",
        "Model latency (batch service time) percentiles in milliseconds over the last {w} minutes.",
    ),
)
_REFUSED = (
    ("shed_total", "clf_shed_total", "Requests shed with 429 because a version's queue was full."),
    ("timeouts_total", "clf_timeouts_total", "Requests not answered by their deadline (504)."),
    ("server_errors_total", "clf_server_errors_total", "Faults of the HTTP layer outside any model (500)."),
)


def to_prometheus(metrics: Mapping[str, Any]) -> str:
    """Renders a `PredictionMonitor.get_metrics` dict in Prometheus text exposition format (version 0.0.4).

    Every sample carries a ``version`` label. The counters ``clf_requests_total`` and ``clf_errors_total`` have
    one sample per version (sum them for the total). The windowed gauges (``clf_window_requests``,
    ``clf_window_error_rate``, ``clf_window_avg_confidence``, ``clf_window_low_confidence_rate`` and
    ``clf_window_latency_ms`` with a ``quantile`` label) have one sample per version plus one with
    ``version="all"`` for the whole window, since percentiles cannot be summed; filter ``version!="all"`` before
    aggregating them. A value that is undefined (None) is left out rather than written as NaN. Serve it with
    `PROMETHEUS_CONTENT_TYPE`.

    Args:
        metrics: the dict `get_metrics` returns.

    Returns:
        The exposition text, ending in a newline.

    >>> from clf.monitoring.monitor import PredictionMonitor
    >>> monitor = PredictionMonitor(clock=lambda: 0.0)
    >>> prediction = [{"label": "cs.AI", "probability": 0.8}]
    >>> monitor.log_prediction(input_length=900, predictions=prediction, latency_ms=12.5, version="v1.0.0")
    >>> lines = to_prometheus(monitor.get_metrics(window_minutes=5)).splitlines()
    >>> print(*lines[:3], sep="\\n")
    # HELP clf_requests_total Classified inputs since the process started.
    # TYPE clf_requests_total counter
    clf_requests_total{version="v1.0.0"} 1
    >>> print(*[line for line in lines if line.startswith('clf_window_latency_ms{version="all"')], sep="\\n")
    clf_window_latency_ms{version="all",quantile="0.5"} 12.5
    clf_window_latency_ms{version="all",quantile="0.95"} 12.5
    clf_window_latency_ms{version="all",quantile="0.99"} 12.5
    """
    window = metrics.get("window_minutes", "?")
    threshold = metrics.get("low_confidence_threshold", float("nan"))
    versions: Mapping[str, Mapping[str, Any]] = metrics.get("by_version") or {}
    scopes = [(ALL_VERSIONS, metrics), *versions.items()]
    lines: list[str] = []
    for key, name, help_text in _COUNTERS:
        samples = [({"version": v}, m.get(key)) for v, m in versions.items()]
        lines += _family(name, "counter", help_text, samples)
    for key, name, help_text in _GAUGES:
        samples = [({"version": v}, m.get(key)) for v, m in scopes]
        lines += _family(name, "gauge", help_text.format(w=_number(window), t=threshold), samples)
    name, help_text = _LATENCY
    samples = [
        ({"version": v, "quantile": str(q / 100)}, m.get(f"latency_p{q}_ms")) for v, m in scopes for q in PERCENTILES
    ]
    lines += _family(name, "gauge", help_text.format(w=_number(window)), samples)
    for name, prefix, help_text in _TIMINGS:
        samples = [
            ({"version": v, "quantile": str(q / 100)}, m.get(f"{prefix}_p{q}_ms")) for v, m in scopes for q in (50, 95)
        ]
        lines += _family(name, "gauge", help_text.format(w=_number(window)), samples)
    reasons = metrics.get("client_errors_total") or {}
    samples = [({"reason": reason}, count) for reason, count in sorted(reasons.items())]
    lines += _family(
        "clf_client_errors_total", "counter", "Requests refused as the client's fault, by reason.", samples
    )
    for key, name, help_text in _REFUSED:
        lines += _family(name, "counter", help_text, [({}, metrics.get(key))])
    return "\n".join(lines) + "\n"


def _family(name: str, kind: str, help_text: str, samples: list[tuple[dict[str, str], Any]]) -> list[str]:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        if value is None:
            continue
        rendered = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels.items())
        lines.append(f"{name}{{{rendered}}} {_number(value)}" if rendered else f"{name} {_number(value)}")
    return lines


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
