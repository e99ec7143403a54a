"""Real `clf serve` processes under the attacks a client can mount: garbage input never rolls production back nor
fails a canary, an overload is shed with 429 instead of queued without bound or rolled back."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests

from clf.deploy import Action, DeploymentStore, Phase, request_deployment
from tests.conftest import load_shared_papers
from tests.helpers.exports import build_registry
from tests.helpers.serve_process import ServeProcess

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=16)]
JSON = {"content-type": "application/json"}

# What a client can send that is not a paper. Each: the raw body, the status, and the reason it is counted under.
GARBAGE = {
    "lone surrogate": (b'{"title": "ab", "abstract": "c \\ud800 d"}', 422, "invalid_encoding"),
    "invalid UTF-8": (b'{"title": "ab", "abstract": "c \xff\xfe d"}', 422, "invalid_encoding"),
    "5,000 nested arrays": (b"[" * 5000 + b"]" * 5000, 422, "too_deep"),
    "not JSON": (b"{'title': 'single quotes'}", 422, "invalid_json"),
    "wrong type": (b'{"title": ["ab"], "abstract": "c"}', 422, "invalid_shape"),
    "nothing left once cleaned": (b'{"title": "\\u202e\\u200b", "abstract": "\\u0000"}', 422, "empty_text"),
}
ROLLOUT_ENDS = {Action.PROMOTED, Action.ROLLED_BACK, Action.ROLLBACK_FAILED}


@pytest.fixture
def released_twice(tmp_path, tiny_exports):
    """v1.0.0 released, then v1.1.0 promoted over it (so there is a version to roll back to), v1.2.0 registered."""
    exports = {**tiny_exports, "v1.2.0": tiny_exports["v1.1.0"]}
    registry = build_registry(tmp_path / "registry", exports, production="v1.0.0")
    registry.promote_to_production("v1.1.0", reason="second release")
    return registry


def post(url: str, body: bytes | dict, timeout: float = 30.0) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(f"{url}/predict", data=data, headers=JSON, timeout=timeout)


def test_a_third_of_requests_with_lone_surrogates_does_not_roll_production_back(released_twice):
    flags = [
        "--fleet.deploy_interval_seconds",
        "0.1",
        "--rollback.min_requests",
        "10",
        "--rollback.window_minutes",
        "1",
    ]
    with ServeProcess(released_twice.base_dir, flags) as server:
        surrogate = GARBAGE["lone surrogate"][0]
        answers = [post(server.url, surrogate if n % 3 == 0 else PAPERS[n % 16]) for n in range(60)]
        for name, (body, status, reason) in GARBAGE.items():
            answer = post(server.url, body)
            assert (answer.status_code, answer.json()["reason"]) == (status, reason), name
        time.sleep(1.0)  # ten ticks of the rollback monitor
        metrics = requests.get(f"{server.url}/metrics", timeout=30).json()
        versions = requests.get(f"{server.url}/versions", timeout=30).json()
    bad = [answer for n, answer in enumerate(answers) if n % 3 == 0]
    assert {a.status_code for a in bad} == {422} and all("lone UTF-16 surrogate" in a.json()["error"] for a in bad)
    assert {a.status_code for n, a in enumerate(answers) if n % 3} == {200}
    assert metrics["client_errors"]["by_reason"]["invalid_encoding"] == 20 + 2
    assert metrics["client_errors"]["total"] == 20 + len(GARBAGE)
    assert (metrics["total"], metrics["errors"]) == (40, 0), "garbage is neither a prediction nor a model error"
    assert released_twice.production_version() == "v1.1.0" and versions["live_version"] == "v1.1.0"
    assert not [d for d in DeploymentStore(released_twice.base_dir).decisions() if d["action"] in ROLLOUT_ENDS]


@dataclass
class Clients:
    """Threads posting papers (and, `garbage_share` of the time, lone surrogates) with fresh user ids until stopped."""

    url: str
    threads: int = 4
    garbage_share: float = 0.0
    timeout: float = 30.0
    answers: list[tuple[int, float, dict, dict]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            with self._lock:
                n, self._count = self._count, self._count + 1
            garbage = n % 10 < round(self.garbage_share * 10)
            body = GARBAGE["lone surrogate"][0] if garbage else json.dumps({**PAPERS[n % 16], "user_id": f"u{n}"})
            started = time.monotonic()
            try:
                answer = session.post(f"{self.url}/predict", data=body, headers=JSON, timeout=self.timeout)
                self.answers.append(
                    (answer.status_code, time.monotonic() - started, dict(answer.headers), answer.json())
                )
            except BaseException as err:  # noqa: BLE001 - a request that got no answer is the finding
                self.failures.append(err)

    def __enter__(self) -> Clients:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def statuses(self) -> Counter:
        return Counter(status for status, *_ in self.answers)


def wait_for_rollout_end(registry, timeout: float = 90.0) -> dict:
    store, deadline = DeploymentStore(registry.base_dir), time.monotonic() + timeout
    while time.monotonic() < deadline:
        ends = [d for d in store.decisions() if d["action"] in ROLLOUT_ENDS]
        if ends and store.load().phase == Phase.IDLE:
            return ends[-1]
        time.sleep(0.1)
    raise AssertionError(f"the rollout did not end: {store.load()}")


def test_a_canary_sent_the_same_garbage_is_judged_on_its_real_failures_only(released_twice):
    flags = ["--fleet.deploy_interval_seconds", "0.1", "--gates.min_requests", "10", "--gates.p95_slack_ms", "60"]
    with ServeProcess(released_twice.base_dir, flags) as server, Clients(server.url, garbage_share=0.3) as clients:
        request_deployment(released_twice, "canary", "v1.2.0", stages=[50, 100], stage_seconds=1.5)
        end = wait_for_rollout_end(released_twice)
    assert clients.failures == [] and set(clients.statuses()) == {200, 422}
    assert clients.statuses()[422] >= 0.25 * len(clients.answers)
    assert end["action"] == Action.PROMOTED, end["reason"]
    assert released_twice.production_version() == "v1.2.0"
    canary_answers = [body for status, _, _, body in clients.answers if status == 200 and body["arm"] == "canary"]
    assert canary_answers, "the canary took traffic"


@pytest.fixture
def trained_releases(tmp_path, trained_export):
    """A real pretrained MiniLM (about 10 ms a paper here) released as v1.0.0, v1.1.0 over it, v1.2.0 registered."""
    exports = {version: trained_export for version in ("v1.0.0", "v1.1.0", "v1.2.0")}
    registry = build_registry(tmp_path / "registry", exports, production="v1.0.0")
    registry.promote_to_production("v1.1.0", reason="second release")
    yield registry
    shutil.rmtree(tmp_path / "registry", ignore_errors=True)


def test_an_overload_is_shed_with_retry_after_and_is_not_rolled_back(trained_releases):
    timeout, batch, queue = 4.0, 8, 16
    flags = ["--batching.max_batch_size", str(batch), "--batching.max_queue", str(queue)]
    flags += ["--limits.request_timeout", str(timeout), "--fleet.deploy_interval_seconds", "0.2"]
    flags += ["--rollback.min_requests", "10", "--rollback.window_minutes", "1"]
    flags += ["--gates.min_requests", "10", "--gates.p95_slack_ms", "50"]
    with ServeProcess(trained_releases.base_dir, flags) as server:
        unloaded = [post(server.url, PAPERS[n % 16]) for n in range(20)]
        assert {a.status_code for a in unloaded} == {200}
        request_deployment(trained_releases, "canary", "v1.2.0", stages=[50, 100], stage_seconds=6.0)
        with Clients(server.url, threads=200, timeout=timeout + 30) as clients:
            time.sleep(10.0)
        metrics = requests.get(f"{server.url}/metrics", timeout=30).json()
    statuses = clients.statuses()
    assert clients.failures == [] and set(statuses) <= {200, 429, 504}, statuses
    assert statuses[200] > 0 and statuses[429] > 0, statuses
    shed = [(headers, body) for status, _, headers, body in clients.answers if status == 429]
    assert all(int(headers["retry-after"]) >= 1 and body["reason"] == "overloaded" for headers, body in shed)
    # An accepted request waits behind at most queue / batch batches: its time in the server stays bounded.
    model_p95, queue_p95 = metrics["model_latency_p95_ms"], metrics["queue_p95_ms"]
    assert queue_p95 <= (queue / batch + 1) * model_p95 * 2 + 100, (queue_p95, model_p95)
    accepted = [seconds for status, seconds, _, _ in clients.answers if status == 200]
    assert max(accepted) < timeout + 2.0, "an accepted request waited past the deadline"
    assert (metrics["errors"], metrics["shed"]) == (0, statuses[429])
    decisions = DeploymentStore(trained_releases.base_dir).decisions()
    assert not [d for d in decisions if d["action"] in (Action.ROLLED_BACK, Action.ROLLBACK_FAILED)], decisions[-3:]
    assert trained_releases.production_version() in ("v1.1.0", "v1.2.0")
    unloaded_p95 = np.percentile([a.elapsed.total_seconds() for a in unloaded], 95)
    print(
        f"overload: {dict(statuses)}; unloaded p95 {unloaded_p95:.3f} s, accepted p95 {np.percentile(accepted, 95):.3f}"
        f" s; server queue p95 {queue_p95:.0f} ms, model p95 {model_p95:.0f} ms"
    )
