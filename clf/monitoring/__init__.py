"""Production monitoring: windowed prediction metrics, Slack alerts and structured logs.

    monitor = PredictionMonitor()
    monitor.log_prediction(input_length=812, predictions=preds, latency_ms=41.3, version="v1.2.0")
    alerts = AlertManager(slack_webhook=webhook_url)
    alerts.check_and_alert(monitor.get_metrics(window_minutes=5))
    configure_logging(json_logs=True)

`PredictionMonitor` keeps recent predictions in a bounded ring and summarises them for people and the embedded gates;
`ServiceMetrics` holds the same events as Prometheus counters and histograms (``prometheus_client``), which a
Prometheus server, or the fleet's shared store, sums over replicas;
`AlertManager` turns its metrics into Slack alerts and posts other messages through the same channel;
`configure_logging` switches the whole process, uvicorn included, to one JSON object per log line.
"""

from clf.monitoring.alerts import Alert, AlertKind, AlertLevel, AlertManager, AlertThresholds, Delivery
from clf.monitoring.health import HealthCheck, HealthReport
from clf.monitoring.logs import JSONFormatter, configure_logging
from clf.monitoring.metrics import PROMETHEUS_CONTENT_TYPE, ServiceMetrics, window_metrics
from clf.monitoring.monitor import PredictionMonitor, PredictionRecord

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "Alert",
    "AlertKind",
    "AlertLevel",
    "AlertManager",
    "AlertThresholds",
    "Delivery",
    "HealthCheck",
    "HealthReport",
    "JSONFormatter",
    "PredictionMonitor",
    "PredictionRecord",
    "ServiceMetrics",
    "configure_logging",
    "window_metrics",
]
