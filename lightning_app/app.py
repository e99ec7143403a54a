"""The production HTTP application: FastAPI over a `ClassificationService`, run by uvicorn (`clf serve`).

    POST /predict     {"title": ..., "abstract": ...} | [{...}, ...] | {"papers": [...], "user_id": ...}
    GET  /health      liveness: the process answers
    GET  /health/ml   200 {"status": "healthy", "checks": {...}} or 503 {"status": "unhealthy", ...}
    GET  /metrics     the prediction monitor's window (?window_minutes=5); Prometheus text with
                      ?format=prometheus or "Accept: text/plain"
    POST /feedback    {"prediction_id": ..., "true_label": "cs.CL"} (with an experiments database)
    GET  /versions    the loaded versions, the live one, the traffic rule and batching counts

Why FastAPI and not LitServe: the service's state (loaded versions, traffic rules for canary and A/B splits, the
prediction monitor) lives in one process and is changed at run time by the deployment layer. LitServe runs the
model in separate worker processes, where that state would need its own IPC; here dynamic batching is
`clf.serving.batching`, one worker thread per version, and the event loop only awaits its futures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from clf.monitoring.health import check_model_health
from clf.monitoring.monitor import PROMETHEUS_CONTENT_TYPE
from clf.serving.errors import InvalidInputError, ServiceClosedError

if TYPE_CHECKING:
    from clf.monitoring.alerts import AlertManager
    from clf.serving.service import ClassificationService

log = logging.getLogger("clf.serving.http")


def create_app(
    service: ClassificationService,
    *,
    alert_manager: AlertManager | None = None,
    alert_interval_seconds: float = 60.0,
    alert_window_minutes: float = 5.0,
    max_body_bytes: int = 1_000_000,
    request_timeout_seconds: float = 30.0,
    health_latency_ms: float = 500.0,
    close_service_on_shutdown: bool = True,
    periodic: Sequence[tuple[float, Callable[[], Any]]] = (),
    on_shutdown: Sequence[Callable[[], Any]] = (),
    feedback: Callable[[str, str], Any] | None = None,
) -> FastAPI:
    """Builds the HTTP application around `service`.

    Args:
        service: the models to serve.
        alert_manager: checked every `alert_interval_seconds` against the monitor's last `alert_window_minutes`.
        alert_interval_seconds: how often the alert thresholds are checked.
        alert_window_minutes: the metrics window the alerts look at.
        max_body_bytes: larger request bodies are refused with 413.
        request_timeout_seconds: a prediction not answered by then gets 504.
        health_latency_ms: the latency check's threshold in ``/health/ml``.
        close_service_on_shutdown: stop the service's workers when the server stops.
        periodic: ``(interval_seconds, job)`` pairs run in a worker thread every interval while the server runs
            (experiment sync, rollout watchers); a failing job is logged and runs again at its next turn.
        on_shutdown: run in order when the server stops, before the service closes (flush buffered logs).
        feedback: records the true label of a prediction (``POST /feedback``); without it that endpoint answers
            404. It raises LookupError for an unknown prediction and ValueError for a bad label.

    Returns:
        The FastAPI application (``app.state.service`` is the service).
    """

    jobs = list(periodic)
    if alert_manager is not None:

        def check_alerts() -> None:
            alert_manager.check_and_alert(service.monitor.get_metrics(alert_window_minutes))

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

    @app.exception_handler(_TooLarge)
    async def too_large(_: Request, err: _TooLarge) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=413)

    @app.exception_handler(InvalidInputError)
    async def invalid_input(_: Request, err: InvalidInputError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=422)

    @app.exception_handler(ServiceClosedError)
    async def closed(_: Request, err: ServiceClosedError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=503)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        """Classifies one paper or a list of them; a ``user_id`` routes through the running experiment or split."""
        payload = await _read_json(request, max_body_bytes)
        papers, user_id = _papers_and_user(payload)
        future = service.submit(papers, user_id)
        try:
            predictions = await asyncio.wait_for(asyncio.wrap_future(future), request_timeout_seconds)
        except TimeoutError:
            return JSONResponse({"error": f"no answer within {request_timeout_seconds:.0f} s"}, status_code=504)
        except ServiceClosedError:
            raise
        except Exception as err:
            log.exception("inference failed")
            return JSONResponse({"error": f"inference failed: {type(err).__name__}: {err}"}, status_code=500)
        return JSONResponse(
            {
                "predictions": predictions,
                "version": predictions[0]["version"],
                "arm": predictions[0]["arm"],
                "user_id": user_id,
            }
        )

    @app.post("/feedback")
    async def record_feedback(request: Request) -> JSONResponse:
        """Records the true category of an earlier prediction: ``{"prediction_id", "true_label"}``."""
        if feedback is None:
            return JSONResponse({"error": "feedback needs clf serve --experiments-db URL"}, status_code=404)
        payload = await _read_json(request, max_body_bytes)
        if not isinstance(payload, dict) or not all(isinstance(payload.get(k), str) for k in _FEEDBACK_FIELDS):
            raise InvalidInputError('send {"prediction_id": "...", "true_label": "cs.CL"}')
        try:
            await run_in_threadpool(feedback, payload["prediction_id"], payload["true_label"])
        except LookupError as err:
            return JSONResponse({"error": str(err)}, status_code=404)
        except ValueError as err:
            return JSONResponse({"error": str(err)}, status_code=422)
        except Exception as err:
            log.exception("feedback not recorded")
            return JSONResponse({"error": f"feedback not recorded: {err}"}, status_code=503)
        return JSONResponse({"recorded": True, "prediction_id": payload["prediction_id"]})

    @app.get("/health")
    async def liveness() -> dict[str, str]:
        """The process is up (it says nothing about the model: see /health/ml)."""
        return {"status": "ok"}

    @app.get("/health/ml")
    async def health_ml() -> JSONResponse:
        """Every model check; 503 when any fails."""
        report = await run_in_threadpool(check_model_health, service, latency_threshold_ms=health_latency_ms)
        return JSONResponse(report.to_json(), status_code=200 if report.healthy else 503)

    @app.get("/metrics")
    async def metrics(request: Request, window_minutes: float = 5.0, format: str = "json") -> Response:
        """The monitor's metrics over the last `window_minutes`, as JSON or Prometheus text."""
        if window_minutes <= 0:
            return JSONResponse({"error": "window_minutes must be positive"}, status_code=422)
        accept = request.headers.get("accept", "")
        if format == "prometheus" or (format == "json" and "text/plain" in accept and "json" not in accept):
            text = await run_in_threadpool(service.monitor.prometheus_text, window_minutes)
            return PlainTextResponse(text, media_type=PROMETHEUS_CONTENT_TYPE)
        if format != "json":
            return JSONResponse({"error": f"format must be json or prometheus, got {format!r}"}, status_code=422)
        # Off the event loop: a full monitor takes tens of milliseconds to summarise.
        return JSONResponse(await run_in_threadpool(service.monitor.get_metrics, window_minutes))

    @app.get("/versions")
    async def versions() -> dict[str, Any]:
        """What is loaded, how traffic is routed, and how many forward passes each version has run."""
        return {
            "live_version": service.live_version,
            "loaded_versions": service.loaded_versions,
            "traffic_rule": repr(service.traffic_rule),
            "batching": service.batch_stats(),
        }

    return app


_FEEDBACK_FIELDS = ("prediction_id", "true_label")


async def _every(interval_seconds: float, job: Callable[[], Any]) -> None:
    """Runs `job` in a worker thread every `interval_seconds`; a failure is logged, never fatal to serving."""
    while True:
        await asyncio.sleep(interval_seconds)
        try:
            await run_in_threadpool(job)
        except Exception:
            log.exception("periodic job %r failed", job)


async def _read_json(request: Request, max_body_bytes: int) -> Any:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise _TooLarge(int(declared), max_body_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise _TooLarge(len(body), max_body_bytes)
    if not body:
        raise InvalidInputError('empty body; send JSON such as {"title": "...", "abstract": "..."}')
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InvalidInputError(f'the body is not valid JSON ({err}); send {{"title": ..., "abstract": ...}}') from err


def _papers_and_user(payload: Any) -> tuple[Any, str | None]:
    """Splits the three accepted shapes into (papers, user_id)."""
    user_id = None
    if isinstance(payload, dict):
        user_id = payload.get("user_id")
        if "papers" in payload:
            papers = payload["papers"]
            if not isinstance(papers, list):
                raise InvalidInputError("'papers' must be a list of {'title', 'abstract'} objects")
        else:
            papers = {key: value for key, value in payload.items() if key != "user_id"}
            unknown = sorted(set(papers) - {"title", "abstract", "text"})
            if unknown:
                raise InvalidInputError(f"unknown fields {unknown}; a paper has 'title' and 'abstract' (or 'text')")
    elif isinstance(payload, list):
        papers = payload
    else:
        raise InvalidInputError(f"expected a JSON object or list, got {type(payload).__name__}")
    if user_id is not None and not isinstance(user_id, (str, int)):
        raise InvalidInputError(f"'user_id' must be a string, got {type(user_id).__name__}")
    return papers, None if user_id is None else str(user_id)


class _TooLarge(InvalidInputError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"request body of {size} bytes is over the {limit}-byte limit; send fewer or shorter papers")
