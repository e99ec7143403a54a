"""`clf serve`: load the service, set up logging and alerts, and run the HTTP application on uvicorn."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from clf.deploy.gates import RollbackThresholds

log = logging.getLogger("clf.serving.http")

FEEDBACK_TOKEN_ENV = "CLF_FEEDBACK_TOKEN"
"""The environment variable that may hold the feedback token (one, or several separated by commas)."""
DASHBOARD_TOKEN_ENV = "CLF_DASHBOARD_TOKEN"
"""The environment variable that may hold the dashboard's action token(s), comma-separated."""


def serve(
    port: int = 8000,
    host: str = "127.0.0.1",
    registry: str = "models/classification",
    version: str | None = None,
    base_model: str | None = None,
    device: str = "auto",
    backend: Literal["torch", "onnx"] = "torch",
    dtype: Literal["auto", "float32", "bfloat16"] = "auto",
    max_batch_size: int | None = None,
    forward_batch_size: int | None = None,
    max_wait_ms: float = 5.0,
    batching: bool = True,
    max_queue: int | None = None,
    request_timeout: float = 30.0,
    max_body_bytes: int = 1_000_000,
    max_inputs: int = 64,
    max_text_chars: int = 20_000,
    workers: int = 1,
    slack_webhook: str | None = None,
    alert_interval_seconds: float = 60.0,
    rollouts: bool | None = None,
    deploy_interval_seconds: float = 5.0,
    state_db: str | None = None,
    replica_id: str | None = None,
    advertise_url: str | None = None,
    lease_seconds: float = 15.0,
    prometheus_url: str | None = None,
    prometheus_selector: str = "",
    canary_max_p95_ratio: float = 1.2,
    canary_p95_slack_ms: float = 10.0,
    canary_min_requests: int = 50,
    rollback_max_error_rate: float = 0.10,
    rollback_min_requests: int = 20,
    rollback_window_minutes: float = 5.0,
    rollback_on_latency: bool = False,
    rollback_max_p95_ms: float = 500.0,
    experiments_db: str | None = None,
    experiment_sync_seconds: float = 10.0,
    feedback_token_file: str | None = None,
    feedback_rate_limit: str = "60/minute",
    feedback_max_age_hours: float = 720.0,
    prediction_key_file: str | None = None,
    dashboard_token_file: str | None = None,
    inject_errors: str | None = None,
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
        dtype: the torch backend's weights: auto (bfloat16 on a GPU or CPU that runs it natively — AVX512-BF16 or
            AMX — where it measured 1.6x the papers/s of float32 with 0.997 agreement, float32 elsewhere), float32,
            or bfloat16. The start-up log says which was picked.
        max_batch_size: most texts gathered from concurrent requests into one step of a version's worker (default:
            8 on a CPU, 64 on a GPU).
        forward_batch_size: texts per forward pass within a step, sorted by length first (default: 8 on a CPU,
            max_batch_size on a GPU).
        max_wait_ms: how long a partly filled batch waits for more requests.
        batching: gather concurrent requests into shared forward passes (--batching false: one request per pass).
        max_queue: most papers waiting per version; beyond it requests are shed with 429 and Retry-After (default:
            4 × max_batch_size, so an accepted request waits at most about four batches).
        request_timeout: seconds a prediction may take; past it the client gets 504 and the request leaves the
            queue if its batch has not started.
        max_body_bytes: larger request bodies are refused with 413.
        max_inputs: most papers in one request (more: 422 too_many_papers).
        max_text_chars: most characters in one paper's title and abstract together (more: 422 text_too_long).
        workers: worker processes sharing the port, each a replica of its own (models loaded once per worker), with
            their Prometheus metrics merged (prometheus_client's multiprocess mode in a fresh temporary folder unless
            PROMETHEUS_MULTIPROC_DIR is set).
        slack_webhook: a Slack incoming-webhook URL for alerts (error rate, p95 latency, low confidence).
        alert_interval_seconds: how often the alert thresholds are checked.
        rollouts: run the deployment controller here: carry out `clf deploy blue-green|canary` requests on
            --registry, follow its production version (`clf registry promote`, `clf deploy rollback` from another
            shell), and roll production back on its own (the rollback monitor). Default: on, off with --version (a
            pinned version is never swapped away). --rollouts false serves the version it starts with until
            restarted: a worker beside the one that runs rollouts. The start-up log says which it is.
        deploy_interval_seconds: how often rollouts advance and the rollback monitor looks at production; also how
            often this replica publishes its heartbeat and metrics to the state store, and the most a follower lags
            behind the lease holder (plus the time to load a model).
        state_db: a SQLAlchemy URL of the deployment state store shared by replicas that share no filesystem
            (postgresql+psycopg://user@host/db); also the CLF_STATE_DB environment variable. Default: the registry's
            deployment/ folder.
        replica_id: this replica's name in the fleet (default: <hostname>-<pid>).
        advertise_url: where this replica answers, as others should read it in clf deploy status (default:
            http://<host>:<port>).
        lease_seconds: how long the rollout lease lasts unless renewed; a replica that dies holding it is replaced
            as leader after this long.
        prometheus_url: a Prometheus server scraping every replica: the gates then judge its fleet-wide numbers
            (increase and histogram buckets over the window). Default: the replicas' snapshots in the state store.
        prometheus_selector: extra label matchers for those queries, e.g. job="clf".
        canary_max_p95_ratio: a canary stage fails when the canary's model latency p95 over the stage (service time
            at comparable batch sizes, queue excluded) reaches production's times this (and production's plus
            --canary-p95-slack-ms).
        canary_p95_slack_ms: latency a canary may always add to production's p95 (timer noise of fast models, busy
            machines).
        canary_min_requests: canary requests a stage needs before it is judged.
        rollback_max_error_rate: the rollback monitor rolls production back above this rate of model errors
            (client errors, shed load and timeouts never count).
        rollback_min_requests: requests the monitor's window needs before it judges.
        rollback_window_minutes: the window the rollback monitor judges.
        rollback_on_latency: also roll production back when its model latency p95 passes --rollback-max-p95-ms.
            Off by default: overload slows every version alike; the latency alert fires either way.
        rollback_max_p95_ms: the model latency p95 that rolls production back with --rollback-on-latency.
        experiments_db: a SQLAlchemy URL of the A/B experiments database; when set, the running experiment of the
            live version routes users, every routed prediction is logged there, and POST /feedback records true
            labels.
        experiment_sync_seconds: how often the experiments database is checked for a started or ended experiment.
        feedback_token_file: a file holding the token(s) POST /feedback requires (one per line; also the
            CLF_FEEDBACK_TOKEN environment variable, comma-separated). Without any, feedback is refused with 403.
        feedback_rate_limit: feedback requests allowed per client address, e.g. 60/minute.
        feedback_max_age_hours: feedback on a prediction older than this is refused.
        prediction_key_file: the key that signs prediction ids (hex), shared by replicas that take feedback for one
            another; created when missing. Default: <registry>/secrets/prediction_ids.key.
        dashboard_token_file: a file holding the token(s) that may act from /dashboard (roll back), one per line; also
            CLF_DASHBOARD_TOKEN (comma-separated). Without any the dashboard is read-only.
        inject_errors: fault injection for drills and tests, VERSION=RATE: this replica fails that share of the
            version's papers (chosen by a hash of the text) as model errors. Never set in normal serving.
        json_logs: log one JSON object per line (also CLF_JSON_LOGS=1).
        log_level: DEBUG, INFO, WARNING or ERROR.

    Raises:
        RuntimeError: when FastAPI or uvicorn is not installed.
        ValueError: when --rollouts true is given with --version, --canary-max-p95-ratio is below 1, a feedback
            token is too short, --feedback-rate-limit or --inject-errors does not parse, or --workers is below 1.
    """
    options = {name: value for name, value in locals().items() if name != "workers"}
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if rollouts and version is not None:
        raise ValueError(
            f"--rollouts true cannot be combined with --version {version}: rollouts move the served version with the "
            "registry; drop --version to run them, or drop --rollouts true to serve the pinned version"
        )

    if workers > 1:
        _serve_workers(options, workers)
        return
    server = _build_server(**options)
    server.run()


WORKER_OPTIONS_ENV = "CLF_SERVE_OPTIONS"
"""Where `clf serve --workers N` hands its options to each worker process (JSON)."""


def _serve_workers(options: dict[str, Any], workers: int) -> None:
    """Runs `workers` uvicorn worker processes on one port, each building its own service from `options`."""
    import json
    import shutil
    import tempfile

    import uvicorn

    from clf.monitoring.metrics import MULTIPROC_ENV

    os.environ[WORKER_OPTIONS_ENV] = json.dumps(options)
    created = None
    if not os.environ.get(MULTIPROC_ENV):
        created = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="clf-metrics-")
    log.info("starting %d workers on %s:%d (metrics merged in %s)", workers, options["host"], options["port"],
             os.environ[MULTIPROC_ENV])  # fmt: skip
    try:
        uvicorn.run(
            "lightning_app.server:worker_app",
            factory=True,
            host=options["host"],
            port=options["port"],
            workers=workers,
            log_config=None,
            access_log=True,
            timeout_graceful_shutdown=30,
        )
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def worker_app() -> Any:
    """The application of one `clf serve --workers N` worker process (uvicorn's factory).

    Returns:
        The FastAPI application, built from the options in `WORKER_OPTIONS_ENV`.
    """
    import json

    options = json.loads(os.environ[WORKER_OPTIONS_ENV])
    return _build_server(**options).config.app


def _build_server(
    port: int,
    host: str,
    registry: str,
    version: str | None,
    base_model: str | None,
    device: str,
    backend: Literal["torch", "onnx"],
    dtype: Literal["auto", "float32", "bfloat16"],
    max_batch_size: int | None,
    forward_batch_size: int | None,
    max_wait_ms: float,
    batching: bool,
    max_queue: int | None,
    request_timeout: float,
    max_body_bytes: int,
    max_inputs: int,
    max_text_chars: int,
    slack_webhook: str | None,
    alert_interval_seconds: float,
    rollouts: bool | None,
    deploy_interval_seconds: float,
    state_db: str | None,
    replica_id: str | None,
    advertise_url: str | None,
    lease_seconds: float,
    prometheus_url: str | None,
    prometheus_selector: str,
    canary_max_p95_ratio: float,
    canary_p95_slack_ms: float,
    canary_min_requests: int,
    rollback_max_error_rate: float,
    rollback_min_requests: int,
    rollback_window_minutes: float,
    rollback_on_latency: bool,
    rollback_max_p95_ms: float,
    experiments_db: str | None,
    experiment_sync_seconds: float,
    feedback_token_file: str | None,
    feedback_rate_limit: str,
    feedback_max_age_hours: float,
    prediction_key_file: str | None,
    dashboard_token_file: str | None,
    inject_errors: str | None,
    json_logs: bool,
    log_level: str,
) -> Any:
    """Loads the service, its controller and its application, and returns the uvicorn server that runs them."""
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError('clf serve needs FastAPI and uvicorn: pip install "clf[serve]"') from err

    from clf.deploy.controller import DeploymentController
    from clf.deploy.fleet import Replica
    from clf.deploy.gates import CanaryGates, RollbackThresholds
    from clf.deploy.stores import open_store
    from clf.monitoring.alerts import AlertManager
    from clf.monitoring.logs import configure_logging
    from clf.serving.prediction_ids import PredictionIds
    from clf.serving.service import ClassificationService
    from lightning_app.app import create_app
    from lightning_app.dashboard import Dashboard, cached, running_experiment
    from lightning_app.feedback import FeedbackGuard

    configure_logging(json_logs=json_logs, level=log_level)  # replaces the CLI's plain stderr handler too
    guard = FeedbackGuard(
        _tokens(feedback_token_file, FEEDBACK_TOKEN_ENV, "--feedback-token-file"), rate_limit=feedback_rate_limit
    )
    key_file = Path(prediction_key_file) if prediction_key_file else Path(registry) / "secrets" / "prediction_ids.key"
    prediction_ids = PredictionIds.from_key_file(key_file, max_age_s=feedback_max_age_hours * 3600)
    service = ClassificationService(
        registry,
        version,
        Path(base_model) if base_model else None,
        device=device,
        backend=backend,
        dtype=dtype,
        max_batch_size=max_batch_size,
        forward_batch_size=forward_batch_size,
        max_wait_ms=max_wait_ms,
        batching=batching,
        max_queue=max_queue,
        prediction_ids=prediction_ids,
        max_inputs=max_inputs,
        max_text_chars=max_text_chars,
        fault_injection=_fault_injection(inject_errors),
    )
    run_rollouts = version is None if rollouts is None else rollouts
    store = open_store(registry, state_db) if run_rollouts else None
    alerts = AlertManager(slack_webhook=slack_webhook, claim=store.claim_alert if store is not None else None)
    periodic: list[tuple[float, Callable[[], Any]]] = []
    on_shutdown: list[Callable[[], Any]] = []
    feedback = None
    thresholds = RollbackThresholds(
        max_error_rate=rollback_max_error_rate,
        max_p95_latency_ms=rollback_max_p95_ms,
        min_requests=rollback_min_requests,
        window_minutes=rollback_window_minutes,
        rollback_on_latency=rollback_on_latency,
    )
    replica = None
    controller = None
    experiment = None
    if store is not None:
        # Serves what the fleet serves before the first request arrives; the first tick takes the lease if it is
        # free and resumes a rollout left in progress.
        from clf.deploy.fleet import FleetMetrics, LocalMetrics

        gates = CanaryGates(
            max_p95_ratio=canary_max_p95_ratio, p95_slack_ms=canary_p95_slack_ms, min_requests=canary_min_requests
        )
        replica = Replica(service, store, replica_id, advertise_url or f"http://{host}:{port}")
        source = FleetMetrics(replica, LocalMetrics(service.monitor))
        if prometheus_url:
            from clf.deploy.prometheus_source import PrometheusMetrics

            source = PrometheusMetrics(prometheus_url, prometheus_selector)
        controller = DeploymentController(
            service,
            store=store,
            alerts=alerts,
            gates=gates,
            rollback_thresholds=thresholds,
            replica=replica,
            source=source,
            lease_seconds=lease_seconds,
        )
        periodic.append((deploy_interval_seconds, controller.tick))
        on_shutdown.append(controller.close)
        log.info(
            "replica %s (%s) on %s; gates judge %s", replica.id, replica.url, store.where,
            f"Prometheus at {prometheus_url}" if prometheus_url else "the fleet's snapshots in the store",
        )  # fmt: skip
    log.info("%s", _rollouts_line(run_rollouts, version, registry, deploy_interval_seconds, thresholds))
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
        feedback = functools.partial(framework.record_feedback, verify=prediction_ids.verify)

        experiment = cached(functools.partial(running_experiment, framework, service))
        if not guard.enabled:
            log.warning(
                "POST /feedback refuses every request: no token (--feedback-token-file or %s)", FEEDBACK_TOKEN_ENV
            )
    app = create_app(
        service,
        alert_manager=alerts,
        alert_interval_seconds=alert_interval_seconds,
        max_body_bytes=max_body_bytes,
        request_timeout_seconds=request_timeout,
        periodic=periodic,
        on_shutdown=on_shutdown,
        feedback=feedback,
        feedback_guard=guard,
        replica_id=replica.id if replica is not None else replica_id,
        dashboard=Dashboard(
            service,
            controller,
            alerts,
            experiment,
            _tokens(dashboard_token_file, DASHBOARD_TOKEN_ENV, "--dashboard-token-file"),
        ),
    )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=True, timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    log.info(
        "serving %s on http://%s:%d (%s, %s; batching %s, up to %d texts per step, %d per forward pass, %d queued at "
        "most, %g s per request)",
        service.live_version,
        host,
        port,
        service.device,
        service.predictor().dtype,
        "on" if batching else "off",
        service.max_batch_size,
        service.forward_batch_size,
        service.max_queue,
        request_timeout,
    )
    return server


def _rollouts_line(
    enabled: bool, version: str | None, registry: str, interval: float, thresholds: RollbackThresholds
) -> str:
    """The start-up log line saying what this process does, or does not do, about rollouts and rollbacks."""
    if enabled:
        latency = (
            f" or a model latency p95 above {thresholds.max_p95_latency_ms:g} ms"
            if thresholds.rollback_on_latency
            else " (latency only with --rollback-on-latency true)"
        )
        return (
            f"rollouts on: every {interval:g} s this process carries out clf deploy blue-green/canary requests on "
            f"{registry}, follows its production version, and rolls production back above "
            f"{thresholds.max_error_rate:.0%} model errors over {thresholds.window_minutes:g} min{latency}"
        )
    why = f"--version {version} pins the served version" if version is not None else "--rollouts false"
    return (
        f"rollouts off ({why}): this process carries out no clf deploy request on {registry}, does not follow its "
        "production version and rolls nothing back on its own; one clf serve on that registry must run with rollouts on"
    )


def _fault_injection(spec: str | None) -> dict[str, float]:
    """``VERSION=RATE`` (comma-separated for several) as a dict; empty without a spec."""
    if not spec:
        return {}
    faults = {}
    for part in spec.split(","):
        version, _, rate = part.partition("=")
        try:
            value = float(rate)
        except ValueError:
            value = -1.0
        if not version.strip() or not 0.0 <= value <= 1.0:
            raise ValueError(f"--inject-errors takes VERSION=RATE with a rate in [0, 1], like v1.1.0=0.5; got {part!r}")
        faults[version.strip()] = value
    return faults


def _tokens(token_file: str | None, env: str, option: str) -> list[str]:
    """Tokens: the file's non-empty lines, and the environment variable's comma-separated values."""
    tokens = [part.strip() for part in os.environ.get(env, "").split(",") if part.strip()]
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise FileNotFoundError(f"{option} {token_file}: file not found")
        tokens += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tokens
