"""`clf serve`: load the service, set up logging and alerts, and run the HTTP application on uvicorn."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser

from clf.deploy.gates import CanaryGates, RollbackThresholds
from clf.serving.config import Batching, QualityConfig, RequestLimits, ServiceConfig
from lightning_app.config import (
    AlertsConfig,
    DashboardConfig,
    FeedbackConfig,
    FleetConfig,
    LoggingConfig,
    ServeConfig,
)

log = logging.getLogger("clf.serving.http")

FEEDBACK_TOKEN_ENV = "CLF_FEEDBACK_TOKEN"
"""The environment variable that may hold the feedback token (one, or several separated by commas)."""
DASHBOARD_TOKEN_ENV = "CLF_DASHBOARD_TOKEN"
"""The environment variable that may hold the dashboard's action token(s), comma-separated."""


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    registry: str = "models/classification",
    workers: int = 1,
    inject_errors: str | None = None,
    service: ServiceConfig = ServiceConfig(),
    batching: Batching = Batching(),
    limits: RequestLimits = RequestLimits(),
    gates: CanaryGates = CanaryGates(),
    rollback: RollbackThresholds = RollbackThresholds(),
    fleet: FleetConfig = FleetConfig(),
    feedback: FeedbackConfig = FeedbackConfig(),
    dashboard: DashboardConfig = DashboardConfig(),
    alerts: AlertsConfig = AlertsConfig(),
    logging: LoggingConfig = LoggingConfig(),
    quality: QualityConfig = QualityConfig(),
) -> None:
    """Serve the production model over HTTP: POST /predict, GET /health/ml, GET /metrics.

    Loads the registry's production version (or --service.version); with an empty registry, --service.base_model.
    Runs until interrupted (Ctrl-C or SIGTERM), answering the requests in flight before it exits. The other options
    come in groups, each the typed settings of the class that uses it (its docstring is the group's title), and can
    all be set in a YAML file (--config configs/serve.yaml; --print_config writes one).

    Args:
        host: the address to bind (0.0.0.0 for every interface).
        port: the TCP port to listen on.
        registry: the registry folder: the models, the deployment state (unless --fleet.state_db) and the
            prediction-id key.
        workers: worker processes sharing the port, each a replica of its own (models loaded once per worker), with
            their Prometheus metrics merged (prometheus_client's multiprocess mode in a fresh temporary folder unless
            PROMETHEUS_MULTIPROC_DIR is set) and one feedback rate limit per client.
        inject_errors: fault injection for drills and tests, VERSION=RATE: this replica fails that share of the
            version's papers (chosen by a hash of the text) as model errors. Never set in normal serving.
        service: what is served and on what: --service.version, base_model, device, backend, dtype.
        batching: how concurrent requests are gathered into forward passes, and how many may wait.
        limits: what one request may hold and how long it may take.
        gates: the canary gates a stage must pass (CanaryGates).
        rollback: when the rollback monitor rolls production back (RollbackThresholds).
        fleet: rollouts, the shared deployment state and this replica's place in the fleet.
        feedback: POST /feedback and the A/B experiments database.
        dashboard: the /dashboard page.
        alerts: where alerts go and how often they are checked.
        logging: the server's log.
        quality: whether the answers are still right: out-of-scope answers, drift, estimated and measured accuracy.

    Raises:
        RuntimeError: when FastAPI or uvicorn is not installed.
        ValueError: when --fleet.rollouts true is given with --service.version, a feedback token is too short,
            --feedback.rate_limit or --inject_errors does not parse, or --workers is below 1.
    """
    config = ServeConfig(**locals())
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if fleet.rollouts and service.version is not None:
        raise ValueError(
            f"--fleet.rollouts true cannot be combined with --service.version {service.version}: rollouts move the "
            "served version with the registry; drop --service.version to run them, or drop --fleet.rollouts true to "
            "serve the pinned version"
        )
    if workers > 1:
        _serve_workers(config)
        return
    _build_server(config).run()


_RENAMED = """
    version=service.version base_model=service.base_model device=service.device backend=service.backend
    dtype=service.dtype max_batch_size=batching.max_batch_size forward_batch_size=batching.forward_batch_size
    max_wait_ms=batching.max_wait_ms max_queue=batching.max_queue request_timeout=limits.request_timeout
    max_body_bytes=limits.max_body_bytes max_inputs=limits.max_inputs max_text_chars=limits.max_text_chars
    canary_max_p95_ratio=gates.max_p95_ratio canary_p95_slack_ms=gates.p95_slack_ms
    canary_min_requests=gates.min_requests rollback_max_error_rate=rollback.max_error_rate
    rollback_min_requests=rollback.min_requests rollback_window_minutes=rollback.window_minutes
    rollback_on_latency=rollback.rollback_on_latency rollback_max_p95_ms=rollback.max_p95_latency_ms
    rollouts=fleet.rollouts deploy_interval_seconds=fleet.deploy_interval_seconds state_db=fleet.state_db
    replica_id=fleet.replica_id advertise_url=fleet.advertise_url lease_seconds=fleet.lease_seconds
    prometheus_url=fleet.prometheus_url prometheus_selector=fleet.prometheus_selector
    experiments_db=feedback.experiments_db experiment_sync_seconds=feedback.experiment_sync_seconds
    feedback_token_file=feedback.token_file feedback_rate_limit=feedback.rate_limit
    feedback_max_age_hours=feedback.max_age_hours prediction_key_file=feedback.prediction_key_file
    dashboard_token_file=dashboard.token_file slack_webhook=alerts.slack_webhook
    alert_interval_seconds=alerts.interval_seconds json_logs=logging.json_logs log_level=logging.level
"""
RENAMED_OPTIONS = {f"--{old}": f"--{new}" for old, new in (pair.split("=") for pair in _RENAMED.split())}
"""The flat options `clf serve` took before its option groups, old → new; `clf` names the new one before parsing
(`clf.cli.old_spelling` reads it as ``serve.old_spellings``). The old ``--batching false`` is missing: ``--batching``
is now the group's own option (a YAML file of it); write ``--batching.enabled false``."""


CONFIG_ENV = "CLF_SERVE_CONFIG"
"""Where `clf serve --workers N` tells each worker process the path of its configuration (YAML, as --print_config
writes it)."""

RATE_LIMITS_FILE = "feedback-rate-limits.sqlite"
"""The file beside that configuration in which the workers count feedback requests together."""


def config_parser() -> ArgumentParser:
    """The parser of `serve`'s options, as the CLI builds it: it writes and reads the workers' configuration.

    Returns:
        A jsonargparse parser of every `serve` parameter.
    """
    parser = ArgumentParser(exit_on_error=False)
    parser.add_function_arguments(serve, as_positional=False)
    return parser


def _serve_workers(config: ServeConfig) -> None:
    """Runs `config.workers` uvicorn worker processes on one port, each building its own service from `config`."""
    import shutil
    import tempfile

    import uvicorn

    from clf.monitoring.metrics import MULTIPROC_ENV

    folder = Path(tempfile.mkdtemp(prefix="clf-serve-"))
    os.environ[CONFIG_ENV] = str(write_config(config, folder / "serve.yaml"))
    if not os.environ.get(MULTIPROC_ENV):
        (folder / "metrics").mkdir()
        os.environ[MULTIPROC_ENV] = str(folder / "metrics")
    log.info("starting %d workers on %s:%d (configuration, metrics and rate limits in %s)", config.workers,
             config.host, config.port, folder)  # fmt: skip
    try:
        uvicorn.run(
            "lightning_app.server:worker_app",
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            log_config=None,
            access_log=True,
            timeout_graceful_shutdown=30,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def write_config(config: ServeConfig, path: Path) -> Path:
    """Writes `config` as `clf serve --print_config` would, for `read_config` (the workers) to read back.

    Args:
        config: every setting.
        path: the YAML file to write.

    Returns:
        `path`.
    """
    parser = config_parser()
    path.write_text(parser.dump(parser.parse_object(dataclasses.asdict(config))), encoding="utf-8")
    return path


def read_config(path: str | Path) -> ServeConfig:
    """A configuration written by `clf serve --print_config` (or for the workers), as `serve` would receive it.

    Args:
        path: a YAML file of `serve`'s options.

    Returns:
        The configuration, every group a typed object.
    """
    parser = config_parser()
    parsed = parser.instantiate(parser.parse_path(str(path)))
    return ServeConfig(**{field.name: parsed[field.name] for field in dataclasses.fields(ServeConfig)})


def worker_app() -> Any:
    """The application of one `clf serve --workers N` worker process (uvicorn's factory).

    Returns:
        The FastAPI application, built from the configuration at `CONFIG_ENV`; its feedback rate limit is counted
        in the file beside it, together with the other workers.
    """
    path = Path(os.environ[CONFIG_ENV])
    return _build_server(read_config(path), rate_limits=f"sqlite:///{path.parent / RATE_LIMITS_FILE}").config.app


def _build_server(config: ServeConfig, rate_limits: str = "memory://") -> Any:
    """Loads the service, its controller and its application, and returns the uvicorn server that runs them.

    Args:
        config: every setting.
        rate_limits: the ``limits`` storage that counts feedback requests (shared by the workers of one serve).
    """
    try:
        import uvicorn
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise RuntimeError('clf serve needs FastAPI and uvicorn: pip install "clf[serve]"') from err

    from clf.deploy.controller import DeploymentController
    from clf.deploy.fleet import Replica
    from clf.deploy.stores import open_store
    from clf.monitoring.alerts import AlertManager
    from clf.monitoring.logs import configure_logging
    from clf.serving.prediction_ids import PredictionIds
    from clf.serving.service import ClassificationService
    from lightning_app.app import create_app
    from lightning_app.dashboard import Dashboard, cached, running_experiment
    from lightning_app.feedback import FeedbackGuard

    fleet, feedback_config, registry, version = config.fleet, config.feedback, config.registry, config.service.version
    configure_logging(json_logs=config.logging.json_logs, level=config.logging.level)  # replaces the CLI's handler
    tokens = _tokens(feedback_config.token_file, FEEDBACK_TOKEN_ENV, "--feedback.token_file")
    guard = FeedbackGuard(tokens, rate_limit=feedback_config.rate_limit, storage=rate_limits)
    key_file = Path(feedback_config.prediction_key_file or Path(registry) / "secrets" / "prediction_ids.key")
    prediction_ids = PredictionIds.from_key_file(key_file, max_age_s=feedback_config.max_age_hours * 3600)
    service = ClassificationService(
        registry,
        version,
        Path(config.service.base_model) if config.service.base_model else None,
        device=config.service.device,
        backend=config.service.backend,
        dtype=config.service.dtype,
        batching=config.batching,
        limits=config.limits,
        prediction_ids=prediction_ids,
        fault_injection=_fault_injection(config.inject_errors),
    )
    run_rollouts = version is None if fleet.rollouts is None else fleet.rollouts
    store = open_store(registry, fleet.state_db) if run_rollouts else None
    alerts = AlertManager(
        slack_webhook=config.alerts.slack_webhook, claim=store.claim_alert if store is not None else None
    )
    periodic: list[tuple[float, Callable[[], Any]]] = []
    on_shutdown: list[Callable[[], Any]] = []
    feedback = None
    replica = None
    controller = None
    experiment = None
    answers = _answer_log(config, service, on_shutdown)
    if store is not None:
        # Serves what the fleet serves before the first request arrives; the first tick takes the lease if it is
        # free and resumes a rollout left in progress.
        from clf.deploy.fleet import FleetMetrics, LocalMetrics, MetricsSource

        replica = Replica(
            service, store, fleet.replica_id, fleet.advertise_url or f"http://{config.host}:{config.port}"
        )
        source: MetricsSource = FleetMetrics(replica, LocalMetrics(service.monitor))
        if fleet.prometheus_url:
            from clf.deploy.prometheus_source import PrometheusMetrics

            source = PrometheusMetrics(fleet.prometheus_url, fleet.prometheus_selector)
        controller = DeploymentController(
            service,
            store=store,
            alerts=alerts,
            gates=config.gates,
            rollback_thresholds=config.rollback,
            replica=replica,
            source=source,
            lease_seconds=fleet.lease_seconds,
            labels=answers.true_labels if answers is not None else None,  # a shadow's accuracy on delayed labels
        )
        periodic.append((fleet.deploy_interval_seconds, controller.tick))
        on_shutdown.append(controller.close)
        log.info(
            "replica %s (%s) on %s; gates judge %s", replica.id, replica.url, store.where,
            f"Prometheus at {fleet.prometheus_url}" if fleet.prometheus_url else "the fleet's snapshots in the store",
        )  # fmt: skip
    log.info("%s", _rollouts_line(run_rollouts, version, registry, fleet.deploy_interval_seconds, config.rollback))
    if feedback_config.experiments_db:
        from clf.experiments import ABTestingFramework, ExperimentSync

        framework = ABTestingFramework(
            feedback_config.experiments_db, registry=service.registry, alerts=alerts, quality=answers
        )
        sync = ExperimentSync(framework, service)
        try:
            sync.sync()  # a database that is down is retried on schedule; this catches a treatment that won't load
        except Exception:
            log.exception(
                "experiment sync at start-up failed; retrying every %g s", feedback_config.experiment_sync_seconds
            )
        periodic.append((feedback_config.experiment_sync_seconds, sync.sync))
        on_shutdown.append(sync.close)
        feedback = functools.partial(framework.record_feedback, verify=prediction_ids.verify)

        experiment = cached(functools.partial(running_experiment, framework, service))
        if not guard.enabled:
            log.warning(
                "POST /feedback refuses every request: no token (--feedback.token_file or %s)", FEEDBACK_TOKEN_ENV
            )
    watch = _quality_watch(config, service, alerts, answers, periodic)
    if replica is not None and watch is not None:
        replica.quality = watch.summary
    app = create_app(
        service,
        alert_manager=alerts,
        alert_interval_seconds=config.alerts.interval_seconds,
        limits=config.limits,
        periodic=periodic,
        on_shutdown=on_shutdown,
        feedback=feedback,
        feedback_guard=guard,
        replica_id=replica.id if replica is not None else fleet.replica_id,
        dashboard=Dashboard(
            service,
            controller,
            alerts,
            experiment,
            _tokens(config.dashboard.token_file, DASHBOARD_TOKEN_ENV, "--dashboard.token_file"),
            quality=watch,
        ),
        quality=watch,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=config.host, port=config.port, log_config=None, access_log=True, timeout_graceful_shutdown=30
        )
    )
    batching = service.batching
    log.info(
        "serving %s on http://%s:%d (%s, %s; batching %s, up to %d texts per step, %d per forward pass, %d queued at "
        "most, %g s per request)",
        service.live_version,
        config.host,
        config.port,
        service.device,
        service.predictor().dtype,
        "on" if batching.enabled else "off",
        batching.max_batch_size,
        batching.forward_batch_size,
        batching.max_queue,
        config.limits.request_timeout,
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
            else " (latency only with --rollback.rollback_on_latency true)"
        )
        return (
            f"rollouts on: every {interval:g} s this process carries out clf deploy blue-green/canary requests on "
            f"{registry}, follows its production version, and rolls production back above "
            f"{thresholds.max_error_rate:.0%} model errors over {thresholds.window_minutes:g} min{latency}"
        )
    why = f"--service.version {version} pins the served version" if version is not None else "--fleet.rollouts false"
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
            raise ValueError(f"--inject_errors takes VERSION=RATE with a rate in [0, 1], like v1.1.0=0.5; got {part!r}")
        faults[version.strip()] = value
    return faults


def _answer_log(config: ServeConfig, service: Any, on_shutdown: list[Callable[[], Any]]) -> Any:
    """The log of every answer that late labels join (`QualityLog`), listening to `service`; None without
    --quality.db or --feedback.experiments_db, or with --quality.enabled false."""
    db = config.quality.db or config.feedback.experiments_db
    if not (config.quality.enabled and db):
        return None
    from clf.experiments.quality_log import QualityLog

    answers = QualityLog(db)
    service.add_prediction_listener(answers.log_event)
    on_shutdown.append(answers.close)
    return answers


def _quality_watch(
    config: ServeConfig,
    service: Any,
    alerts: Any,
    answers: Any,
    periodic: list[tuple[float, Callable[[], Any]]],
) -> Any:
    """The quality watch of `service` (None with --quality.enabled false), its jobs added to `periodic`; with the
    answer log, measured accuracy is read from it."""
    quality = config.quality
    if not quality.enabled:
        return None
    from datetime import UTC, datetime, timedelta

    from clf.monitoring.quality_metrics import QualityMetrics
    from clf.serving.quality import QualityWatch

    measured = None
    if answers is not None:

        def measured() -> list[Any]:
            since = datetime.now(UTC) - timedelta(hours=quality.window_hours * 7)
            return answers.windows(window_hours=quality.window_hours, since=since)

    watch = QualityWatch(
        quality,
        lambda version: service.predictor(version).artifact.reference,
        metrics=QualityMetrics(service.metrics.registry),
        alert=alerts.send,
        measured=measured,
    )
    service.add_prediction_listener(watch.observe)
    periodic.append((quality.check_interval_seconds, watch.check))
    if measured is not None:
        periodic.append((quality.measured_interval_seconds, watch.refresh_measured))
    return watch


def _tokens(token_file: str | None, env: str, option: str) -> list[str]:
    """Tokens: the file's non-empty lines, and the environment variable's comma-separated values."""
    tokens = [part.strip() for part in os.environ.get(env, "").split(",") if part.strip()]
    if token_file:
        path = Path(token_file)
        if not path.is_file():
            raise FileNotFoundError(f"{option} {token_file}: file not found")
        tokens += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tokens


serve.old_spellings = RENAMED_OPTIONS  # type: ignore[attr-defined]  # read by clf.cli.old_spelling
