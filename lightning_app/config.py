"""The option groups of `clf serve` that belong to the HTTP application, and `ServeConfig`, all of them in one record.

The service's own groups live with it (`clf.serving.config`: ``service``, ``batching``, ``limits``), the gates with
the deployment (`clf.deploy.gates`: ``gates``, ``rollback``); `clf serve` takes them all as typed parameters, so that
jsonargparse builds ``--fleet.state_db``, ``--config`` and ``--print_config`` from the field docstrings below.
"""

from __future__ import annotations

from dataclasses import dataclass

from clf.deploy.gates import CanaryGates, RollbackThresholds
from clf.serving.config import Batching, QualityConfig, RequestLimits, ServiceConfig


@dataclass(frozen=True)
class FleetConfig:
    """Rollouts, and this replica as a member of a fleet that shares one deployment state store.

    Attributes:
        rollouts: run the deployment controller here: carry out `clf deploy blue-green|canary` requests on
            --registry, follow its production version (`clf registry promote`, `clf deploy rollback` from another
            shell), and roll production back on its own (the rollback monitor). Default: on, off with
            --service.version (a pinned version is never swapped away). false serves the version it starts with until
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
        lease_seconds: how long the rollout lease lasts unless renewed; a replica that dies holding it is replaced as
            leader after this long.
        prometheus_url: a Prometheus server scraping every replica: the gates then judge its fleet-wide numbers
            (increase and histogram buckets over the window). Default: the replicas' snapshots in the state store.
        prometheus_selector: extra label matchers for those queries, e.g. job="clf".
    """

    rollouts: bool | None = None
    deploy_interval_seconds: float = 5.0
    state_db: str | None = None
    replica_id: str | None = None
    advertise_url: str | None = None
    lease_seconds: float = 15.0
    prometheus_url: str | None = None
    prometheus_selector: str = ""


@dataclass(frozen=True)
class FeedbackConfig:
    """A/B experiments and POST /feedback: who may send true labels, how often, and on which predictions.

    Attributes:
        experiments_db: a SQLAlchemy URL of the A/B experiments database; when set, the running experiment of the
            live version routes users, every routed prediction is logged there, and POST /feedback records true
            labels.
        experiment_sync_seconds: how often the experiments database is checked for a started or ended experiment.
        token_file: a file holding the token(s) POST /feedback requires (one per line; also the CLF_FEEDBACK_TOKEN
            environment variable, comma-separated). Without any, feedback is refused with 403.
        rate_limit: feedback requests allowed per client address, e.g. 60/minute (shared by the workers of one
            clf serve --workers N).
        max_age_hours: feedback on a prediction older than this is refused.
        prediction_key_file: the key that signs prediction ids (hex), shared by replicas that take feedback for one
            another; created when missing. Default: <registry>/secrets/prediction_ids.key.
    """

    experiments_db: str | None = None
    experiment_sync_seconds: float = 10.0
    token_file: str | None = None
    rate_limit: str = "60/minute"
    max_age_hours: float = 720.0
    prediction_key_file: str | None = None


@dataclass(frozen=True)
class DashboardConfig:
    """Who may act from /dashboard.

    Attributes:
        token_file: a file holding the token(s) that may act from /dashboard (roll back), one per line; also
            CLF_DASHBOARD_TOKEN (comma-separated). Without any the dashboard is read-only.
    """

    token_file: str | None = None


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go (error rate, p95 latency, low confidence) and how often they are checked.

    Attributes:
        slack_webhook: a Slack incoming-webhook URL for alerts; without one they are only logged.
        interval_seconds: how often the alert thresholds are checked.
    """

    slack_webhook: str | None = None
    interval_seconds: float = 60.0


@dataclass(frozen=True)
class LoggingConfig:
    """The server's log.

    Attributes:
        json_logs: log one JSON object per line (also CLF_JSON_LOGS=1).
        level: DEBUG, INFO, WARNING or ERROR.
    """

    json_logs: bool = False
    level: str = "INFO"


@dataclass(frozen=True)
class ServeConfig:
    """Every setting of one `clf serve`: its parameters of the same names (`lightning_app.server.serve`).

    Attributes:
        host: the address to bind.
        port: the TCP port.
        registry: the registry folder.
        workers: worker processes sharing the port.
        inject_errors: fault injection for drills, VERSION=RATE.
        service: what is served and on what (`ServiceConfig`).
        batching: how requests are gathered (`Batching`).
        limits: request limits (`RequestLimits`).
        gates: the canary gates (`CanaryGates`).
        rollback: the rollback monitor's thresholds (`RollbackThresholds`).
        fleet: rollouts, the state store and this replica's place in the fleet (`FleetConfig`).
        feedback: POST /feedback and the A/B experiments database (`FeedbackConfig`).
        dashboard: the /dashboard page (`DashboardConfig`).
        alerts: alert delivery (`AlertsConfig`).
        logging: the server's log (`LoggingConfig`).
        quality: the quality watch (`QualityConfig`).
    """

    host: str
    port: int
    registry: str
    workers: int
    inject_errors: str | None
    service: ServiceConfig
    batching: Batching
    limits: RequestLimits
    gates: CanaryGates
    rollback: RollbackThresholds
    fleet: FleetConfig
    feedback: FeedbackConfig
    dashboard: DashboardConfig
    alerts: AlertsConfig
    logging: LoggingConfig
    quality: QualityConfig
