"""`PrometheusMetrics`: the gates' numbers from a Prometheus server scraping every replica (``--fleet.prometheus_url``).

For a version over a window of W seconds it asks the HTTP API (``/api/v1/query``) for::

    sum(increase(clf_predictions_total{version="V"}[Ws]))                               papers answered
    sum(increase(clf_prediction_errors_total{version="V"}[Ws]))                         model errors
    sum by (batch, le) (increase(clf_model_latency_seconds_bucket{version="V"}[Ws]))   model latency buckets
    sum by (le) (increase(clf_request_latency_seconds_bucket{version="V"}[Ws]))        end-to-end buckets
    sum by (le) (increase(clf_model_latency_per_paper_seconds_bucket{version="V"}[Ws]))

and reads the percentiles from the summed buckets with the arithmetic of ``histogram_quantile``
(`clf.monitoring.histograms.quantile`), the one the store-based `FleetMetrics` uses: both sources give the gates the
same numbers up to what Prometheus's scrapes and extrapolation change. A server that does not answer raises
`PrometheusUnavailable`; the controller's tick fails and is retried, so no gate is judged on missing data.
"""

from __future__ import annotations

import math
from typing import Any

import requests

from clf.deploy.fleet import MetricsSource
from clf.monitoring.histograms import LATENCY_BUCKETS_S
from clf.monitoring.metrics import window_metrics


class PrometheusUnavailable(RuntimeError):
    """The Prometheus server did not answer a query, or answered an error."""


class PrometheusMetrics(MetricsSource):
    """Fleet-wide numbers from a Prometheus server (see the module docstring).

    Args:
        url: the server's base URL, e.g. ``http://prometheus:9090``.
        selector: extra label matchers for every query, e.g. ``job="clf"`` (several fleets on one server).
        timeout: seconds per query.
        session: the HTTP session (a test seam).
    """

    def __init__(
        self, url: str, selector: str = "", timeout: float = 5.0, session: requests.Session | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.selector = selector.strip().strip(",")
        self.timeout = timeout
        self.session = session or requests.Session()

    def metrics(self, version: str, window_minutes: float) -> dict[str, Any]:
        """A version's metrics over the last `window_minutes`, over every replica the server scrapes.

        Args:
            version: the version.
            window_minutes: how far back to look (at least one second).

        Returns:
            Its metrics in `PredictionMonitor.get_metrics` per-version form, or ``{"total": 0}``.

        Raises:
            PrometheusUnavailable: when the server does not answer.
        """
        window = f"[{max(int(math.ceil(window_minutes * 60)), 1)}s]"
        matchers = ",".join(part for part in (f'version="{_escape(version)}"', self.selector) if part)

        def increase(name: str) -> str:
            return f"increase({name}{{{matchers}}}{window})"

        predictions = self._scalar(f"sum({increase('clf_predictions_total')})")
        if not predictions:
            return {"total": 0}
        counts = {
            "predictions": predictions,
            "errors": self._scalar(f"sum({increase('clf_prediction_errors_total')})"),
            "latency": _buckets(self.query(f"sum by (le) ({increase('clf_request_latency_seconds_bucket')})")),
            "per_paper": _buckets(
                self.query(f"sum by (le) ({increase('clf_model_latency_per_paper_seconds_bucket')})")
            ),
            "model_latency": {},
        }
        by_batch: dict[str, list[dict[str, Any]]] = {}
        for sample in self.query(f"sum by (batch, le) ({increase('clf_model_latency_seconds_bucket')})"):
            by_batch.setdefault(sample["metric"].get("batch", ""), []).append(sample)
        counts["model_latency"] = {batch: _buckets(samples) for batch, samples in by_batch.items()}
        return window_metrics(counts)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Runs an instant query and returns its result vector.

        Args:
            promql: the expression.

        Returns:
            The ``data.result`` list (``{"metric": {...}, "value": [time, "number"]}`` each).

        Raises:
            PrometheusUnavailable: when the server does not answer or answers an error.
        """
        try:
            response = self.session.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=self.timeout)
            body = response.json()
        except (requests.RequestException, ValueError) as err:
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer {promql!r}: {err}") from err
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusUnavailable(f"Prometheus at {self.url} refused {promql!r}: {body.get('error', body)}")
        result = body["data"]["result"]
        return result if isinstance(result, list) else []

    def _scalar(self, promql: str) -> float:
        result = self.query(promql)
        value = float(result[0]["value"][1]) if result else 0.0
        return 0.0 if math.isnan(value) else value


def _buckets(samples: list[dict[str, Any]]) -> list[float]:
    """Cumulative ``le`` samples as counts per bucket of `LATENCY_BUCKETS_S` (+Inf last)."""
    cumulative = {}
    for sample in samples:
        le = sample["metric"].get("le")
        value = float(sample["value"][1])
        cumulative[math.inf if le == "+Inf" else float(le)] = 0.0 if math.isnan(value) else value
    if not cumulative:
        return []
    bounds = [*LATENCY_BUCKETS_S, math.inf]
    running = [cumulative.get(bound, 0.0) for bound in bounds]
    for index in range(1, len(running)):  # extrapolated increases can dip below the bucket before: keep monotone
        running[index] = max(running[index], running[index - 1])
    return [running[0], *(b - a for a, b in zip(running, running[1:], strict=False))]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
