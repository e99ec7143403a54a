"""The production HTTP application: FastAPI over a `ClassificationService`, run by uvicorn (`clf serve`).

    POST /predict     {"title": ..., "abstract": ...} | [{...}, ...] | {"papers": [...], "user_id": ...}
    GET  /health      liveness: the process answers
    GET  /health/ml   200 {"status": "healthy", "checks": {...}} or 503 {"status": "unhealthy", ...}
    GET  /metrics     the prediction monitor's window (?window_minutes=5); the Prometheus counters and
                      histograms with ?format=prometheus or "Accept: text/plain"
    POST /feedback    {"prediction_id": ..., "true_label": "cs.CL"} with Authorization: Bearer <token>
                      (with an experiments database)
    GET  /versions    the loaded versions, the live one, the traffic rule and batching counts
    GET  /shadow      this replica's shadow candidate: what it was mirrored, answered, failed and dropped, and how it
                      compares with production (404 when no shadow runs)

Every error is JSON of one shape, ``{"error": "what and how to fix it", "reason": "invalid_encoding"}``
(`lightning_app.schemas.ErrorResponse`), and falls in one of three classes that are counted apart: the client's
fault (4xx, ``client_errors`` by reason), shed load (429 with ``Retry-After`` when a version's queue is full, 504
past ``limits.request_timeout``), and failures of the model or the server (500), the only ones that error-rate
alerts, canary gates and the rollback monitor judge.

Why FastAPI and not LitServe: the service's state (loaded versions, traffic rules for canary and A/B splits, the
prediction monitor) lives in one process and is changed at run time by the deployment layer. LitServe runs the
model in separate worker processes, where that state would need its own IPC; here dynamic batching is
`clf.serving.batching`, one worker thread per version, and the event loop only awaits its futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from clf.monitoring.metrics import PROMETHEUS_CONTENT_TYPE
from clf.monitoring.monitor import Rejection
from clf.monitoring.shadow import judge_shadow
from clf.serving.config import RequestLimits
from clf.serving.errors import (
    ClientErrorReason,
    DeadlineExceededError,
    InvalidInputError,
    OverloadedError,
    ServiceClosedError,
)
from clf.serving.health import check_model_health
from clf.serving.routing import traffic_shares
from clf.serving.shadow import shadow_observations
from lightning_app.dashboard import STATIC, Dashboard
from lightning_app.feedback import FeedbackGuard
from lightning_app.payloads import check_identifier, papers_and_user, read_json, validate
from lightning_app.schemas import (
    Feedback,
    FeedbackRecorded,
    Liveness,
    ModelHealth,
    PredictRequest,
    PredictResponse,
    Versions,
    error_responses,
)

if TYPE_CHECKING:
    from clf.monitoring.alerts import AlertManager
    from clf.monitoring.metrics import ServiceMetrics
    from clf.serving.quality import QualityWatch
    from clf.serving.service import ClassificationService

log = logging.getLogger("clf.serving.http")

_HTTP_REASONS = {404: ClientErrorReason.NOT_FOUND, 405: ClientErrorReason.METHOD_NOT_ALLOWED}
_ANY_JSON = {"application/json": {"schema": {"type": "object"}}}


def create_app(
    service: ClassificationService,
    *,
    alert_manager: AlertManager | None = None,
    alert_interval_seconds: float = 60.0,
    alert_window_minutes: float = 5.0,
    limits: RequestLimits = RequestLimits(),
    health_latency_ms: float = 500.0,
    close_service_on_shutdown: bool = True,
    periodic: Sequence[tuple[float, Callable[[], Any]]] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
    feedback: Callable[[str, str], Any] | None = None,
    feedback_guard: FeedbackGuard | None = None,
    replica_id: str | None = None,
    dashboard: Dashboard | None = None,
    quality: QualityWatch | None = None,
) -> FastAPI:
    """Builds the HTTP application around `service`.

    Args:
        service: the models to serve.
        alert_manager: checked every `alert_interval_seconds` against the monitor's last `alert_window_minutes`.
        alert_interval_seconds: how often the alert thresholds are checked.
        alert_window_minutes: the metrics window the alerts look at.
        limits: the largest body (413 past it) and the seconds a prediction may take (504 past them; dropped from
            its queue if its batch has not started); the paper limits are the service's own.
        health_latency_ms: the latency check's threshold in ``/health/ml``.
        close_service_on_shutdown: stop the service's workers when the server stops.
        periodic: ``(interval_seconds, job)`` pairs run in a worker thread every interval while the server runs
            (experiment sync, rollout watchers); a failing job is logged and runs again at its next turn.
        on_shutdown: run in order when the server stops, before the service closes (flush buffered logs).
        feedback: records the true label of a prediction (``POST /feedback``); without it that endpoint answers
            404. It raises LookupError for an unknown prediction, ValueError for a bad label, and `InvalidInputError`
            for a prediction id that fails its signature check.
        feedback_guard: the tokens and rate limit of ``POST /feedback``; without one (or without tokens in it) the
            endpoint refuses everything with 403.
        replica_id: sent as the ``X-Clf-Replica`` header of every answer, so that a client behind a load balancer
            (and an operator reading its logs) knows which replica answered.
        dashboard: what ``/dashboard`` shows and who may act on it; a read-only one over `service` by default.
        quality: the quality watch ``GET /quality`` reports (drift, out-of-scope share, estimated and measured
            accuracy per version); without one that endpoint answers 404.

    Returns:
        The FastAPI application (``app.state.service`` is the service).
    """

    jobs = list(periodic)
    guard = feedback_guard or FeedbackGuard()
    monitor = service.monitor
    if alert_manager is not None:

        def check_alerts() -> None:
            alert_manager.check_and_alert(monitor.get_metrics(alert_window_minutes))

        jobs.append((alert_interval_seconds, check_alerts))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_every(interval, job)) for interval, job in jobs]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for hook in on_shutdown:
                try:
                    await run_in_threadpool(hook)
                except Exception:
                    log.exception("shutdown hook %r failed", hook)
            if close_service_on_shutdown:
                await run_in_threadpool(service.close)

    app = FastAPI(title="clf", summary="arXiv paper classification", lifespan=lifespan)
    app.state.service = service
    app.add_middleware(_ServiceMiddleware, metrics=service.metrics, replica_id=replica_id)

    def reject(kind: Rejection, reason: str | None = None, version: str | None = None) -> None:
        monitor.log_rejection(kind, reason, version)
        service.metrics.rejected(kind, reason)

    request_models: dict[str, Any] = {}
    _publish_request_schemas(app, request_models)

    # ------------------------------------------------------------------------------------------------ errors

    @app.exception_handler(InvalidInputError)
    async def client_error(_: Request, err: InvalidInputError) -> JSONResponse:
        reject(Rejection.CLIENT_ERROR, err.reason)
        headers = {"WWW-Authenticate": 'Bearer realm="clf"'} if err.status == 401 else {}
        return _error(err.status, str(err), err.reason, err.retry_after_s, headers)

    @app.exception_handler(OverloadedError)
    async def overloaded(_: Request, err: OverloadedError) -> JSONResponse:
        reject(Rejection.SHED, version=err.version)
        return _error(429, str(err), "overloaded", err.retry_after_s)

    @app.exception_handler(DeadlineExceededError)
    async def timed_out(_: Request, err: DeadlineExceededError) -> JSONResponse:
        reject(Rejection.TIMEOUT)
        return _error(504, str(err), "timeout")

    @app.exception_handler(ServiceClosedError)
    async def closed(_: Request, err: ServiceClosedError) -> JSONResponse:
        reject(Rejection.SHED)
        return _error(503, str(err), "unavailable", 1)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        reason = _HTTP_REASONS.get(err.status_code, ClientErrorReason.INVALID_SHAPE)
        reject(Rejection.CLIENT_ERROR, reason)
        return _error(err.status_code, str(err.detail), reason, headers=dict(err.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def invalid_parameter(_: Request, err: RequestValidationError) -> JSONResponse:
        problem = err.errors()[0]
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "query")
        reject(Rejection.CLIENT_ERROR, ClientErrorReason.INVALID_PARAMETER)
        return _error(422, f"{where}: {problem.get('msg')}", ClientErrorReason.INVALID_PARAMETER)

    @app.exception_handler(Exception)
    async def server_error(_: Request, err: Exception) -> JSONResponse:
        log.error("request failed inside the service", exc_info=err)
        reject(Rejection.SERVER_ERROR)
        return _error(500, f"internal error ({type(err).__name__}); the service logged it", "server_error")

    # --------------------------------------------------------------------------------------------- endpoints

    @app.post(
        "/predict",
        openapi_extra=_request_body(PredictRequest, request_models),
        responses={200: {"model": PredictResponse}, **error_responses(413, 422, 429, 500, 503, 504)},
    )
    async def predict(
        request: Request, top_k: int | None = Query(None, ge=1, le=100, description="Also give the k most probable.")
    ) -> JSONResponse:
        """Classifies one paper or a list of them; a ``user_id`` routes through the running experiment or split.

        Each prediction says ``unsure`` when its top probability is below the model's abstention threshold;
        ``?top_k=5`` adds the five most probable categories with their (calibrated) probabilities.
        """
        papers, user_id = papers_and_user(await read_json(request, limits.max_body_bytes))
        # Cleaning up to 64 papers of LaTeX is milliseconds of regex work each: off the event loop, which must stay free
        # to answer /health and shed load while a large request is being checked.
        future = await run_in_threadpool(service.submit, papers, user_id, limits.request_timeout)
        try:
            predictions = await asyncio.wait_for(asyncio.wrap_future(future), limits.request_timeout)
        except TimeoutError:
            raise DeadlineExceededError(limits.request_timeout) from None
        except (DeadlineExceededError, ServiceClosedError):
            raise
        except Exception as err:  # every paper of the request failed inside the model: counted as model errors
            log.error("inference failed", exc_info=err)
            return _error(500, f"inference failed: {type(err).__name__}: {err}", "model_error")
        request.state.clf_route = (predictions[0].version, predictions[0].arm)
        answers = [replace(p, top_k=p.top_k[:top_k] if top_k and p.top_k else None).to_json() for p in predictions]
        return JSONResponse(
            {"predictions": answers, "version": predictions[0].version, "arm": predictions[0].arm, "user_id": user_id}
        )

    @app.post(
        "/feedback",
        openapi_extra=_request_body(Feedback, request_models),
        responses={200: {"model": FeedbackRecorded}, **error_responses(401, 403, 404, 413, 422, 429, 503)},
    )
    async def record_feedback(request: Request) -> JSONResponse:
        """Records the true category of an earlier prediction: ``{"prediction_id", "true_label"}``, with a token."""
        if feedback is None:
            raise InvalidInputError(
                "feedback needs clf serve --feedback.experiments_db URL", ClientErrorReason.NOT_FOUND, status=404
            )
        guard.admit(request.client.host if request.client else "unknown")
        guard.authorize(request.headers.get("authorization"))
        body = validate(Feedback, await read_json(request, limits.max_body_bytes))
        service.prediction_ids.check(body.prediction_id)
        check_identifier(body.true_label, "true_label")
        try:
            await run_in_threadpool(feedback, body.prediction_id, body.true_label)
        except InvalidInputError:
            raise
        except LookupError as err:
            raise InvalidInputError(str(err), ClientErrorReason.UNKNOWN_PREDICTION, status=404) from None
        except ValueError as err:
            raise InvalidInputError(str(err), ClientErrorReason.INVALID_LABEL) from None
        except Exception as err:
            log.exception("feedback not recorded")
            return _error(503, f"feedback not recorded: {err}", "unavailable", 5)
        return JSONResponse({"recorded": True, "prediction_id": body.prediction_id})

    board = dashboard or Dashboard(service)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard_page() -> FileResponse:
        return FileResponse(STATIC / "dashboard.html", media_type="text/html")

    @app.get("/dashboard/data", include_in_schema=False)
    async def dashboard_data() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(board.data))

    @app.post("/dashboard/rollback", include_in_schema=False)
    async def dashboard_rollback(request: Request) -> JSONResponse:
        if not board.can_act:
            raise InvalidInputError(
                "the dashboard is read-only: configure clf serve --dashboard.token_file (or CLF_DASHBOARD_TOKEN) "
                "on a replica that runs rollouts",
                ClientErrorReason.FORBIDDEN,
                status=403,
            )
        if not request.headers.get("authorization"):
            raise InvalidInputError("send Authorization: Bearer <dashboard token>", ClientErrorReason.UNAUTHORIZED, 401)
        if not board.authorized(request.headers.get("authorization")):
            raise InvalidInputError("wrong dashboard token", ClientErrorReason.FORBIDDEN, status=403)
        decision = await run_in_threadpool(board.rollback, "requested from the dashboard")
        return JSONResponse(decision)

    @app.get("/health", response_model=Liveness)
    async def liveness() -> dict[str, str]:
        """The process is up (it says nothing about the model: see /health/ml)."""
        return {"status": "ok"}

    @app.get("/health/ml", responses={200: {"model": ModelHealth}, 503: {"model": ModelHealth}})
    async def health_ml() -> JSONResponse:
        """Every model check; 503 when any fails."""
        report = await run_in_threadpool(check_model_health, service, latency_threshold_ms=health_latency_ms)
        return JSONResponse(report.to_json(), status_code=200 if report.healthy else 503)

    @app.get(
        "/metrics",
        responses={
            200: {"content": {**_ANY_JSON, "text/plain": {"schema": {"type": "string"}}}},
            **error_responses(422),
        },
    )
    async def metrics(
        request: Request,
        window_minutes: float = Query(5.0, gt=0, le=monitor.max_window_minutes),
        format: Literal["json", "prometheus"] = "json",
    ) -> Response:
        """The monitor's metrics over the last `window_minutes` as JSON; with ``?format=prometheus`` (or ``Accept:
        text/plain``) the Prometheus counters and histograms instead, which a Prometheus server sums over replicas."""
        accept = request.headers.get("accept", "")
        if format == "prometheus" or ("text/plain" in accept and "json" not in accept):
            text = await run_in_threadpool(service.metrics.exposition)
            return Response(text, media_type=PROMETHEUS_CONTENT_TYPE)
        # Off the event loop: a full monitor takes tens of milliseconds to summarise.
        return JSONResponse(await run_in_threadpool(monitor.get_metrics, window_minutes))

    @app.get("/quality", responses={200: {"content": _ANY_JSON}, **error_responses(404)})
    async def quality_report() -> JSONResponse:
        """Whether the answers are still right, per version: the last tested window against the version's reference
        sample (drift test, out-of-scope share, class mix, estimated accuracy), the window filling, and the measured
        accuracy where true labels have arrived (docs/MONITORING.md)."""
        if quality is None:
            raise InvalidInputError(
                "the quality watch is off; start clf serve without --quality.enabled false",
                ClientErrorReason.NOT_FOUND,
                status=404,
            )
        return JSONResponse(quality.snapshot())

    @app.get("/shadow", responses={200: {"content": _ANY_JSON}, **error_responses(404)})
    async def shadow() -> JSONResponse:
        """This replica's shadow candidate (clf deploy shadow): its counts since it started — papers mirrored to it,
        answered, failed and dropped by its bounded queue — and its numbers against production's answers to the same
        papers (agreement, confidence, model latency p95, error rate); the stage's verdict is the fleet's, in clf
        deploy status."""
        mirror = service.shadow
        if mirror is None:
            raise InvalidInputError(
                "no shadow runs on this replica; start one with clf deploy shadow VERSION --share S",
                ClientErrorReason.NOT_FOUND,
                status=404,
            )
        snapshot = await run_in_threadpool(mirror.snapshot)
        numbers = judge_shadow(shadow_observations([snapshot])).numbers
        counts = {key: value for key, value in snapshot.items() if key != "samples"}
        return JSONResponse({**counts, "numbers": numbers})

    @app.get("/versions", response_model=Versions)
    async def versions() -> dict[str, Any]:
        """What is loaded, how traffic is routed, and how many forward passes each version has run."""
        rule = service.traffic_rule
        return {
            "live_version": service.live_version,
            "loaded_versions": service.loaded_versions,
            "traffic_rule": repr(rule),
            "traffic_shares": traffic_shares(rule),
            "replica": replica_id,
            "batching": service.batch_stats(),
        }

    return app


def _error(
    status: int,
    message: str,
    reason: str,
    retry_after_s: int | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error answer in the one shape every endpoint uses."""
    body: dict[str, Any] = {"error": message, "reason": str(reason)}
    headers = dict(headers or {})
    if retry_after_s is not None:
        body["retry_after_s"] = retry_after_s
        headers["Retry-After"] = str(retry_after_s)
    return JSONResponse(body, status_code=status, headers=headers)


def _request_body(model: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of an endpoint that reads its body itself (see `lightning_app.payloads`); the
    models it refers to are added to `definitions`."""
    schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
    definitions.update(schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _publish_request_schemas(app: FastAPI, definitions: dict[str, Any]) -> None:
    """Adds the request models that `_request_body` collected in `definitions` to the OpenAPI components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


class _ServiceMiddleware:
    """ASGI middleware: names the replica in an ``X-Clf-Replica`` header, and counts each ``POST /predict`` answer by
    status code with the version and arm that answered (``clf_requests_total``), whichever handler produced it."""

    def __init__(self, app: Any, metrics: ServiceMetrics, replica_id: str | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.header = [(b"x-clf-replica", replica_id.encode("latin-1", "replace"))] if replica_id else []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status[0] = int(message.get("status", 500))
                if self.header:
                    message = {**message, "headers": [*message.get("headers", []), *self.header]}
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if scope.get("path") == "/predict":
                version, arm = (scope.get("state") or {}).get("clf_route") or (None, None)
                self.metrics.request(status[0], version, arm)


async def _every(interval_seconds: float, job: Callable[[], Any]) -> None:
    """Runs `job` in a worker thread every `interval_seconds`; a failure is logged, never fatal to serving."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await run_in_threadpool(job)
        except Exception:
            log.exception("periodic job %r failed", job)
