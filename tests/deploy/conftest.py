"""Fixtures for deployment tests: faulty model versions, a running service with its controller, live traffic."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from clf.deploy import CanaryGates, DeploymentController, DeploymentStore, Phase, RollbackThresholds
from clf.monitoring import AlertManager, PredictionMonitor
from clf.registry import ModelRegistry
from clf.serving import ClassificationService, ModelPredictor
from clf.serving.config import Batching
from lightning_app.app import create_app
from tests.conftest import load_shared_papers
from tests.helpers.http_service import LoopbackServer
from tests.helpers.webhook import WebhookReceiver

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=16)]


class FaultyPredictor(ModelPredictor):
    """A real model version whose forward pass fails, or is slow, while `armed` is set (from the start by default)."""

    def __init__(self, *args, error: bool = False, delay_s: float = 0.0, armed: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.error, self.delay_s = error, delay_s
        self.armed = threading.Event()
        if armed:
            self.armed.set()

    def predict_texts(self, texts, batch_size=32):
        if self.armed.is_set():
            time.sleep(self.delay_s)
            if self.error:
                raise RuntimeError("injected inference failure")
        return super().predict_texts(texts, batch_size)


@dataclass
class Traffic:
    """Client threads posting papers with fresh user ids to a running service until stopped."""

    url: str
    threads: int = 6
    answers: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._ids = itertools.count()
        self._workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            n = next(self._ids)
            try:
                response = session.post(
                    f"{self.url}/predict", json={**PAPERS[n % 16], "user_id": f"user-{n}"}, timeout=30
                )
                body = response.json()
                self.answers.append((response.status_code, body.get("version"), body.get("arm")))
            except BaseException as err:  # noqa: BLE001 - an unanswered request is the finding
                self.failures.append(err)

    def __enter__(self) -> Traffic:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def statuses(self) -> set[int]:
        return {status for status, _, _ in self.answers}


@dataclass
class Deployment:
    service: ClassificationService
    controller: DeploymentController
    url: str
    hook: WebhookReceiver

    @property
    def store(self) -> DeploymentStore:
        return self.controller.store

    def wait_until_idle(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while self.store.load().phase != Phase.IDLE:
            if time.monotonic() > deadline:
                raise AssertionError(f"still rolling out: {self.store.load()}")
            time.sleep(0.1)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            time.sleep(0.1)

    def actions(self) -> list[str]:
        return [record["action"] for record in self.store.decisions()]


GATES = CanaryGates(min_requests=10, p95_slack_ms=60.0)
ROLLBACK = RollbackThresholds(min_requests=10, window_minutes=1.0)


class Clock:
    """A clock that moves only when told to; it starts at the real time, so decisions read sensibly.

    Give it to the controller and to the service's monitor (`service_on`): predictions are stamped with it and
    windows measured on it, so a test decides exactly which predictions a window holds, however slowly the
    machine runs.
    """

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def service_on(registry: ModelRegistry | str, clock: Clock, **kwargs: Any) -> ClassificationService:
    """A service whose monitor runs on `clock` (no batching wait); `kwargs` go to `ClassificationService`."""
    return ClassificationService(
        registry, batching=Batching(max_wait_ms=1), monitor=PredictionMonitor(clock=clock), **kwargs
    )


def answer(service: ClassificationService, n: int, start: int = 0) -> None:
    """`n` predictions from users ``u-<start>``..., each of which must succeed."""
    for i in range(start, start + n):
        service.predict(PAPERS[i % 16], user_id=f"u-{i}")


def fail(service: ClassificationService, n: int) -> None:
    """`n` predictions on a version whose model fails: each one a model error in the monitor."""
    for i in range(n):
        with pytest.raises(RuntimeError, match="injected inference failure"):
            service.predict(PAPERS[i % 16])


@pytest.fixture
def deployment(tiny_registry) -> Iterator[Deployment]:
    """clf serve's wiring on loopback: the service, its controller ticking every 0.1 s, alerts to a receiver."""
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    with WebhookReceiver() as hook:
        alerts = AlertManager(slack_webhook=hook.url, cooldown_seconds=0)
        controller = DeploymentController(service, alerts=alerts, gates=GATES, rollback_thresholds=ROLLBACK)
        app = create_app(service, periodic=[(0.1, controller.tick)])
        with LoopbackServer(app) as server:
            yield Deployment(service, controller, server.url, hook)
