"""`clf serve`: load the service, set up logging and alerts, and run the HTTP application on uvicorn."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("clf.serving.http")


def serve(
    port: int = 8000,
    host: str = "127.0.0.1",
    registry: str = "models/classification",
    version: str | None = None,
    base_model: str | None = None,
    device: str = "auto",
    backend: Literal["torch", "onnx"] = "torch",
    max_batch_size: int | None = None,
    forward_batch_size: int | None = None,
    max_wait_ms: float = 5.0,
    batching: bool = True,
    slack_webhook: str | None = None,
    alert_interval_seconds: float = 60.0,
    deploy_interval_seconds: float = 5.0,
    canary_max_p95_ratio: float = 1.2,
    canary_p95_slack_ms: float = 10.0,
    experiments_db: str | None = None,
    experiment_sync_seconds: float = 10.0,
    json_logs: bool = False,
    log_level: str = "INFO",
) -> None:
    """Serve the production model over HTTP: POST /predict, GET /health/ml, GET /metrics.

    Loads the registry's production version (or --version); with an empty registry, --base-model. Runs until
    interrupted (Ctrl-C or SIGTERM), answering the requests in flight before it exits.

    Args:
        port: the TCP port to listen on.
        host: the address to bind (0.0.0.0 for every interface).
        registry: the registry folder.
        version: serve this registered version instead of the production one.
        base_model: an export folder (runs/<name>/export) served when the registry holds no versions.
        device: cpu, cuda, cuda:N, or auto (CUDA when there is a GPU).
        backend: torch, or onnx to run every version with onnxruntime on the ONNX files `clf export --format onnx`
            wrote beside its weights (the int8 model when there is one). A version without them is refused.
        max_batch_size: most texts gathered from concurrent requests into one step of a version's worker (default:
            8 on a CPU, 64 on a GPU).
        forward_batch_size: texts per forward pass within a step, sorted by length first (default: 8 on a CPU,
            max_batch_size on a GPU).
        max_wait_ms: how long a partly filled batch waits for more requests.
        batching: gather concurrent requests into shared forward passes (--batching false: one request per pass).
        slack_webhook: a Slack incoming-webhook URL for alerts (error rate, p95 latency, low confidence).
        alert_interval_seconds: how often the alert thresholds are checked.
        deploy_interval_seconds: how often rollouts (clf deploy) advance and the rollback monitor looks at
            production. Rollouts and the rollback monitor run only when no --version pins the served version.
        canary_max_p95_ratio: a canary stage fails when the canary's p95 latency over the stage reaches production's
            times this (and production's plus --canary-p95-slack-ms).
        canary_p95_slack_ms: latency a canary may always add to production's p95 (timer noise of fast models, busy
            machines).
        experiments_db: a SQLAlchemy URL of the A/B experiments database; when set, the running experiment of the
            live version routes users, every routed prediction is logged there, and POST /feedback records true
            labels.
        experiment_sync_seconds: how often the experiments database is checked for a started or ended experiment.
        json_logs: log one JSON object per line (also CLF_JSON_LOGS=1).
        log_level: DEBUG, INFO, WARNING or ERROR.

    Raises:
        RuntimeError: when FastAPI or uvicorn is not installed.
        ValueError: when --canary-max-p95-ratio is below 1.
    """
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError('clf serve needs FastAPI and uvicorn: pip install "clf[serve]"') from err

    from clf.deploy.controller import DeploymentController
    from clf.deploy.gates import CanaryGates
    from clf.monitoring.alerts import AlertManager
    from clf.monitoring.logs import configure_logging
    from clf.serving.service import ClassificationService
    from lightning_app.app import create_app

    configure_logging(json_logs=json_logs, level=log_level)  # replaces the CLI's plain stderr handler too
    service = ClassificationService(
        registry,
        version,
        Path(base_model) if base_model else None,
        device=device,
        backend=backend,
        max_batch_size=max_batch_size,
        forward_batch_size=forward_batch_size,
        max_wait_ms=max_wait_ms,
        batching=batching,
    )
    alerts = AlertManager(slack_webhook=slack_webhook)
    periodic: list[tuple[float, Callable[[], Any]]] = []
    on_shutdown: list[Callable[[], Any]] = []
    feedback = None
    if version is None:
        # Resumes a rollout left in progress by a previous process before the first request arrives.
        gates = CanaryGates(max_p95_ratio=canary_max_p95_ratio, p95_slack_ms=canary_p95_slack_ms)
        controller = DeploymentController(service, alerts=alerts, gates=gates)
        periodic.append((deploy_interval_seconds, controller.tick))
    if experiments_db:
        from clf.experiments import ABTestingFramework, ExperimentSync

        framework = ABTestingFramework(experiments_db, registry=service.registry, alerts=alerts)
        sync = ExperimentSync(framework, service)
        try:
            sync.sync()  # a database that is down is retried on schedule; this catches a treatment that won't load
        except Exception:
            log.exception("experiment sync at start-up failed; retrying every %g s", experiment_sync_seconds)
        periodic.append((experiment_sync_seconds, sync.sync))
        on_shutdown.append(sync.close)
        feedback = framework.record_feedback
    app = create_app(
        service,
        alert_manager=alerts,
        alert_interval_seconds=alert_interval_seconds,
        periodic=periodic,
        on_shutdown=on_shutdown,
        feedback=feedback,
    )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=True, timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    log.info(
        "serving %s on http://%s:%d (%s; batching %s, up to %d texts per step, %d per forward pass)",
        service.live_version,
        host,
        port,
        service.device,
        "on" if batching else "off",
        service.max_batch_size,
        service.forward_batch_size,
    )
    server.run()
