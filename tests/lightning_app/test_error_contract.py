"""Every error ``/openapi.json`` documents, provoked for real: each (operation, status) pair published with the error
shape gets a request that produces it, and its answer has that status, the documented shape and the reason named.

The model is a real tiny export behind a predictor that is slow on papers titled ``SLOW`` and fails on papers titled
``FAIL``, so that shed load (429), deadlines (504) and model errors (500) are requests like any other. A test of its
own checks that the table below covers everything the schema documents, so a new documented error needs a case.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests

from clf.inference.predictor import ModelPredictor
from clf.serving import ClassificationService
from clf.serving.config import Batching, RequestLimits
from lightning_app.app import create_app
from lightning_app.feedback import FeedbackGuard
from lightning_app.schemas import ErrorResponse
from tests.helpers.http_service import LoopbackServer

TOKEN = "labelling-team-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PAPER = {"title": "Attention is all you need", "abstract": "We propose the Transformer, based on attention alone."}
SLOW = {"title": "SLOW", "abstract": "A paper the scripted model takes a long time over."}
FAIL = {"title": "FAIL", "abstract": "A paper the scripted model fails on."}
LIMIT = 8  # feedback requests per minute; the 429 case sends past it
SLOW_SECONDS = 1.2
"""How long the scripted model takes over a SLOW paper; the request deadline is half of it."""


class ScriptedPredictor(ModelPredictor):
    """A real model that sleeps on texts starting ``SLOW`` and raises on texts starting ``FAIL``."""

    def predict_texts(self, texts, batch_size=32):
        if any(text.startswith("SLOW") for text in texts):
            time.sleep(SLOW_SECONDS)
        if any(text.startswith("FAIL") for text in texts):
            raise RuntimeError("scripted model failure")
        return super().predict_texts(texts, batch_size)


def _feedback(prediction_id: str, label: str) -> None:
    if label == "cs.LG":
        raise LookupError(f"no prediction {prediction_id} in the experiments database")
    if label == "cs.RO":
        raise RuntimeError("experiments database unreachable")


@dataclass
class Api:
    url: str
    prediction_id: str
    closed_url: str


@pytest.fixture(scope="module")
def api(tiny_exports, tmp_path_factory) -> Iterator[Api]:
    from tests.helpers.exports import build_registry

    registry = build_registry(tmp_path_factory.mktemp("errors") / "registry", tiny_exports, production="v1.0.0")
    service = ClassificationService(
        registry, batching=Batching(max_wait_ms=1, max_batch_size=1, max_queue=1), warmup=False
    )
    scripted = ScriptedPredictor(registry.version_dir("v1.1.0"), "v1.1.0", device="cpu")
    service.load("v1.1.0", predictor=scripted)
    service.swap("v1.1.0")
    app = create_app(
        service,
        limits=RequestLimits(max_body_bytes=20_000, request_timeout=SLOW_SECONDS / 2),
        feedback=_feedback,
        feedback_guard=FeedbackGuard([TOKEN], rate_limit=f"{LIMIT}/minute"),
    )
    closed = ClassificationService(registry, batching=Batching(max_wait_ms=1))
    closed_app = create_app(closed, close_service_on_shutdown=False)
    with LoopbackServer(app) as server, LoopbackServer(closed_app) as closed_server:
        closed.close()
        answer = requests.post(f"{server.url}/predict", json=PAPER, timeout=30)
        yield Api(server.url, answer.json()["predictions"][0]["prediction_id"], closed_server.url)


def _post(url: str, path: str, body: object = None, headers: dict | None = None, data: bytes | None = None):
    return requests.post(f"{url}{path}", json=body if data is None else None, data=data, headers=headers, timeout=30)


def _overload(api: Api) -> requests.Response:
    """Slow papers in the worker and the queue (max_queue 1): a paper sent meanwhile is shed."""
    busy = [threading.Thread(target=_post, args=(api.url, "/predict", SLOW)) for _ in range(2)]
    for thread in busy:
        thread.start()
    try:
        for _ in range(50):  # the first answers that arrive before the slow papers fill the queue may be 200
            answer = _post(api.url, "/predict", PAPER)
            if answer.status_code == 429:
                return answer
            time.sleep(0.02)
        return answer
    finally:
        for thread in busy:
            thread.join(30)
        time.sleep(SLOW_SECONDS)  # the worker finishes the slow paper its client stopped waiting for


def _timed_out(api: Api) -> requests.Response:
    try:
        return _post(api.url, "/predict", {**SLOW, "abstract": "again " * 5})
    finally:
        time.sleep(SLOW_SECONDS)


def _rate_limited(api: Api) -> requests.Response:
    for _ in range(LIMIT + 1):
        answer = _post(api.url, "/feedback", {"prediction_id": api.prediction_id, "true_label": "cs.CV"}, AUTH)
        if answer.status_code == 429:
            return answer
    raise AssertionError(f"no 429 after {LIMIT + 1} feedback requests")


Case = Callable[[Api], requests.Response]
CASES: dict[tuple[str, str, int], tuple[str, Case]] = {
    ("POST", "/predict", 413): ("too_large", lambda a: _post(a.url, "/predict", data=b"[" + b" " * 30_000 + b"]")),
    ("POST", "/predict", 422): ("empty_text", lambda a: _post(a.url, "/predict", {"title": "", "abstract": " "})),
    ("POST", "/predict", 429): ("overloaded", _overload),
    ("POST", "/predict", 500): ("model_error", lambda a: _post(a.url, "/predict", FAIL)),
    ("POST", "/predict", 503): ("unavailable", lambda a: _post(a.closed_url, "/predict", PAPER)),
    ("POST", "/predict", 504): ("timeout", _timed_out),
    ("POST", "/feedback", 401): (
        "unauthorized",
        lambda a: _post(a.url, "/feedback", {"prediction_id": a.prediction_id, "true_label": "cs.CV"}),
    ),
    ("POST", "/feedback", 403): (
        "forbidden",
        lambda a: _post(
            a.url,
            "/feedback",
            {"prediction_id": a.prediction_id, "true_label": "cs.CV"},
            {"Authorization": "Bearer " + "x" * 30},
        ),
    ),  # fmt: skip
    ("POST", "/feedback", 404): (
        "unknown_prediction",
        lambda a: _post(a.url, "/feedback", {"prediction_id": a.prediction_id, "true_label": "cs.LG"}, AUTH),
    ),
    ("POST", "/feedback", 413): (
        "too_large",
        lambda a: _post(a.url, "/feedback", {"prediction_id": "x" * 30_000, "true_label": "cs.CV"}, AUTH),
    ),
    ("POST", "/feedback", 422): ("invalid_shape", lambda a: _post(a.url, "/feedback", {"true_label": "cs.CV"}, AUTH)),
    ("POST", "/feedback", 503): (
        "unavailable",
        lambda a: _post(a.url, "/feedback", {"prediction_id": a.prediction_id, "true_label": "cs.RO"}, AUTH),
    ),
    ("POST", "/feedback", 429): ("rate_limited", _rate_limited),
    ("GET", "/quality", 404): ("not_found", lambda a: requests.get(f"{a.url}/quality", timeout=30)),
    ("GET", "/shadow", 404): ("not_found", lambda a: requests.get(f"{a.url}/shadow", timeout=30)),
    ("GET", "/metrics", 422): (
        "invalid_parameter",
        lambda a: requests.get(f"{a.url}/metrics", params={"window_minutes": 0}, timeout=30),
    ),
}


def _documented_errors(url: str) -> set[tuple[str, str, int]]:
    """(method, path, status) of every answer /openapi.json documents in the error shape."""
    document = requests.get(f"{url}/openapi.json", timeout=30).json()
    found = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if int(status) >= 400 and schema.get("$ref", "").endswith("/ErrorResponse"):
                    found.add((method.upper(), path, int(status)))
    return found


def test_every_documented_error_has_a_case(api):
    assert _documented_errors(api.url) == set(CASES)


def test_the_schema_publishes_the_request_and_response_models(api):
    document = requests.get(f"{api.url}/openapi.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    for model in ("PaperWithUser", "PaperBatch", "PredictResponse", "FeedbackRecorded", "ErrorResponse", "Versions",
                  "ModelHealth", "Liveness"):  # fmt: skip
        assert model in schemas, model
    feedback = document["paths"]["/feedback"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(feedback["required"]) == {"prediction_id", "true_label"}
    predict = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert len(predict["anyOf"]) == 3, "one paper, a list, or {papers, user_id}"


@pytest.mark.parametrize("case", list(CASES), ids=lambda c: f"{c[0]} {c[1]} {c[2]}")
def test_each_documented_error_answers_as_documented(api, case):
    reason, send = CASES[case]
    answer = send(api)
    assert answer.status_code == case[2], answer.text
    body = ErrorResponse.model_validate(answer.json())
    assert body.reason == reason and body.error
    if case[2] in (429, 503) and reason != "rate_limited":
        assert int(answer.headers["Retry-After"]) == body.retry_after_s >= 1
