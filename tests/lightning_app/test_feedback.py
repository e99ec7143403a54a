"""POST /feedback decides A/B promotions, so only a token holder may write it, only on ids this service issued, at a
bounded rate; every refusal is a counted 4xx that writes nothing."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import sqlalchemy as sa

from clf.experiments.database import make_engine
from clf.experiments.framework import ABTestingFramework
from clf.experiments.serving import ExperimentSync
from clf.experiments.tables import PredictionLog
from clf.inference.prediction import Prediction
from clf.serving import ClassificationService
from clf.serving.config import Batching
from clf.serving.errors import InvalidInputError
from clf.serving.prediction_ids import PredictionIds
from lightning_app.app import create_app
from lightning_app.feedback import FeedbackGuard
from lightning_app.server import RATE_LIMITS_FILE
from tests.conftest import load_shared_papers
from tests.helpers.http_service import LoopbackServer

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=4)]
TOKEN = "labelling-team-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Running:
    url: str
    service: ClassificationService
    framework: ABTestingFramework
    clock: Clock
    db: str

    def predict(self, user: str) -> dict:
        answer = requests.post(f"{self.url}/predict", json={**PAPERS[0], "user_id": user}, timeout=30)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"][0]

    def feedback(self, prediction_id: object, headers: dict | None = None, label: str = "cs.CV") -> requests.Response:
        body = {"prediction_id": prediction_id, "true_label": label}
        return requests.post(f"{self.url}/feedback", json=body, headers=headers, timeout=30)

    def labels(self) -> dict[str, str | None]:
        self.framework.flush()
        engine = make_engine(self.db)
        try:
            with engine.connect() as connection:
                return dict(connection.execute(sa.select(PredictionLog.id, PredictionLog.true_label)).all())
        finally:
            engine.dispose()

    def client_errors(self) -> dict[str, int]:
        return requests.get(f"{self.url}/metrics", timeout=30).json()["client_errors"]["by_reason"]


@pytest.fixture
def running(tiny_registry, tmp_path) -> Iterator[Running]:
    """clf serve's feedback wiring: an experiment on the live version, signed ids with a clock seam, one token."""
    clock = Clock()
    ids = PredictionIds(b"k" * 32, max_age_s=3600, clock=clock)
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1), prediction_ids=ids)
    db = f"sqlite:///{tmp_path / 'experiments.db'}"
    framework = ABTestingFramework(db, registry=tiny_registry, flush_interval_seconds=0.1)
    framework.create_experiment("feedback", "v1.0.0", "v1.1.0", traffic_split=0.5)
    sync = ExperimentSync(framework, service)
    sync.sync()
    app = create_app(
        service,
        feedback=functools.partial(framework.record_feedback, verify=ids.verify),
        feedback_guard=FeedbackGuard([TOKEN], rate_limit="40/minute"),
        on_shutdown=[sync.close],
    )
    with LoopbackServer(app) as server:
        yield Running(server.url, service, framework, clock, db)


def test_feedback_with_the_token_on_an_issued_id_is_recorded(running):
    prediction = running.predict("alice")
    answer = running.feedback(prediction["prediction_id"], AUTH)
    assert answer.status_code == 200 and answer.json() == {
        "recorded": True,
        "prediction_id": prediction["prediction_id"],
    }
    assert running.labels()[prediction["prediction_id"]] == "cs.CV"


def test_without_the_right_token_nothing_is_written(running):
    prediction = running.predict("bob")
    missing = running.feedback(prediction["prediction_id"])
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    wrong = running.feedback(prediction["prediction_id"], {"Authorization": "Bearer not-the-token-at-all!"})
    assert wrong.status_code == 403 and wrong.json()["reason"] == "forbidden"
    assert running.feedback(prediction["prediction_id"], {"Authorization": TOKEN}).status_code == 401, "no scheme"
    assert running.labels()[prediction["prediction_id"]] is None
    assert running.client_errors() == {"forbidden": 1, "unauthorized": 2}


def test_forged_foreign_and_expired_ids_are_refused_before_anything_is_written(running):
    prediction = running.predict("carol")
    random_part, issued, _, _ = prediction["prediction_id"].split(".")
    forged = f"{random_part}.{issued}.{'0' * 12}.{'0' * 12}"
    foreign = PredictionIds(b"another fleet's key!").issue(prediction["version"], prediction["arm"])
    for refused, status, reason in (
        (forged, 403, "foreign_prediction"),
        (foreign, 403, "foreign_prediction"),
        ("9f1c2e", 403, "foreign_prediction"),
        (3, 422, "invalid_shape"),
    ):
        answer = running.feedback(refused, AUTH)
        assert (answer.status_code, answer.json()["reason"]) == (status, reason), refused
    running.clock.now += 2 * 3600
    expired = running.feedback(prediction["prediction_id"], AUTH)
    assert (expired.status_code, expired.json()["reason"]) == (422, "expired_prediction")
    assert "issued 2 h ago" in expired.json()["error"]
    assert set(running.labels().values()) == {None}
    assert running.client_errors() == {"expired_prediction": 1, "foreign_prediction": 3, "invalid_shape": 1}


def test_an_id_signed_for_another_arm_is_refused(running):
    prediction = running.predict("dave")
    other_arm = "treatment" if prediction["arm"] == "control" else "control"
    moved = running.service.prediction_ids.issue(prediction["version"], other_arm)
    experiment = int(prediction["experiment_id"])
    answer = Prediction.from_json(prediction)
    running.framework.log_prediction(experiment, prediction["version"], "text", answer, 5.0, prediction_id=moved)
    answer = running.feedback(moved, AUTH)
    assert (answer.status_code, answer.json()["reason"]) == (403, "foreign_prediction")
    assert f"for {prediction['version']} ({prediction['arm']})" in answer.json()["error"]


def test_feedback_is_rate_limited_per_client_with_retry_after(running):
    prediction = running.predict("erin")
    statuses = [running.feedback(prediction["prediction_id"], AUTH).status_code for _ in range(40)]
    assert statuses == [200] * 40
    limited = running.feedback(prediction["prediction_id"], AUTH)
    assert limited.status_code == 429 and 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.json()["reason"] == "rate_limited" and limited.json()["retry_after_s"] >= 1
    # Guessing tokens counts against the same limit.
    assert (
        running.feedback(prediction["prediction_id"], {"Authorization": "Bearer guess-guess-guess"}).status_code == 429
    )


def test_guards_sharing_the_rate_limit_storage_admit_a_client_once_in_total(tmp_path):
    """The workers of `clf serve --workers N` count feedback in one file: with a count per worker (each guard its own
    memory), a client got N times its limit. tests/lightning_app/test_rate_limits.py runs the workers as processes."""
    storage = f"sqlite:///{tmp_path / RATE_LIMITS_FILE}"
    workers = [FeedbackGuard([TOKEN], rate_limit="5/minute", storage=storage) for _ in range(3)]
    admitted = []
    for attempt in range(12):
        with contextlib.suppress(InvalidInputError):
            workers[attempt % 3].admit("10.0.0.7")
            admitted.append(attempt)
    assert admitted == [0, 1, 2, 3, 4]
    workers[0].admit("10.0.0.8")  # every client has a limit of its own
    with pytest.raises(InvalidInputError, match="retry after"):
        FeedbackGuard([TOKEN], rate_limit="5/minute", storage=storage).admit("10.0.0.7")


def test_without_a_configured_token_feedback_is_switched_off(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    with LoopbackServer(create_app(service, feedback=lambda *_: None)) as server:
        answer = requests.post(f"{server.url}/feedback", json={"prediction_id": "x", "true_label": "cs.CV"}, timeout=30)
    assert answer.status_code == 403 and "--feedback.token_file" in answer.json()["error"]


@pytest.mark.parametrize("token", ["short", ""])
def test_guessable_tokens_are_refused_at_start(token):
    with pytest.raises(ValueError, match="at least 16 characters"):
        FeedbackGuard([token])
