"""Three `clf serve` replicas as separate processes behind a real nginx, on one registry and one state store.

What crosses a process boundary here is real: each replica is ``python -m clf serve`` on its own loopback port,
clients go through Debian's nginx, a real Prometheus scrapes the replicas every second, the PostgreSQL store is a
real server that the test stops and starts, and a replica is killed with SIGKILL. The "hosts" are processes on
loopback (not network namespaces): docs/SCALING.md says so.

Every request carries a user id, and a canary split places a user by ``stable_bucket(user, "canary-<version>")``,
so which version must answer each request is known in advance: the tests check every answer against it, and
each replica's own Prometheus counters against the answers it gave.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from clf.deploy import Action, GateVerdict, Phase, evaluate_gates
from clf.deploy.fleet import store_metrics
from clf.deploy.gates import CanaryGates
from clf.deploy.prometheus_source import PrometheusMetrics
from clf.deploy.sql_store import SqlDeploymentStore
from clf.deploy.state import DeploymentStore
from clf.deploy.store import StateStore
from clf.serving.routing import stable_bucket
from tests.conftest import REPO
from tests.deploy.conftest import PAPERS
from tests.helpers.exports import build_registry
from tests.helpers.nginx import NginxServer
from tests.helpers.postgres import PostgresServer
from tests.helpers.prometheus_server import PrometheusServer
from tests.helpers.serve_process import ServeProcess

pytestmark = pytest.mark.timeout(600)

CANARY, FAULTY, PRODUCTION = "v1.1.0", "v1.2.0", "v1.0.0"
INTERVAL = 0.5
"""--fleet.deploy_interval_seconds of every replica: how often it ticks, publishes, and follows."""
FOLLOW_DELAY = 10.0
"""The most the tests let a replica take to follow a change: one tick interval plus loading a model, with room for
a machine running three replicas, nginx and Prometheus on two cores."""
COMMON = [
    "--fleet.deploy_interval_seconds", str(INTERVAL), "--fleet.lease_seconds", "3", "--batching.max_wait_ms", "2",
    "--gates.min_requests", "10", "--gates.p95_slack_ms", "2000", "--rollback.min_requests", "10",
    "--alerts.interval_seconds", "3600",
]  # fmt: skip
GATES = CanaryGates(min_requests=10, p95_slack_ms=2000.0)


@pytest.fixture
def registry(tmp_path, tiny_exports):
    """v1.0.0 in production, v1.1.0 a good candidate, v1.2.0 a candidate that fails on replica c."""
    return build_registry(tmp_path / "registry", {**tiny_exports, FAULTY: tiny_exports[CANARY]}, production=PRODUCTION)


@dataclass
class Fleet:
    """Replica processes by name, and nginx in front of them."""

    replicas: dict[str, ServeProcess]
    nginx: NginxServer
    store: StateStore

    def versions(self, name: str) -> dict:
        return requests.get(f"{self.replicas[name].url}/versions", timeout=10).json()

    def counters(self, name: str) -> dict[tuple[str, str], float]:
        """Replica `name`'s clf_predictions_total and clf_prediction_errors_total by version."""
        text = requests.get(f"{self.replicas[name].url}/metrics", params={"format": "prometheus"}, timeout=10).text
        return {
            (sample.name, sample.labels.get("version", "")): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name in ("clf_predictions_total", "clf_prediction_errors_total")
        }

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 120.0) -> float:
        """Polls `condition` until true; returns the seconds it took."""
        began = time.monotonic()
        while not condition():
            if time.monotonic() - began > timeout:
                raise AssertionError(f"{what}: not within {timeout:.0f} s; state {self.store.load()}")
            time.sleep(0.1)
        return time.monotonic() - began

    def decisions(self, action: str | None = None) -> list[dict]:
        return [d for d in self.store.decisions() if action is None or d["action"] == action]

    def all_serve(self, predicate: Callable[[dict], bool], names: list[str] | None = None) -> bool:
        return all(predicate(self.versions(name)) for name in names or self.replicas)


def _start(registry_dir, names: dict[str, list[str]]) -> dict[str, ServeProcess]:
    processes = {
        name: ServeProcess(registry_dir, [*COMMON, "--fleet.replica_id", name, *extra]) for name, extra in names.items()
    }
    with ThreadPoolExecutor(len(processes)) as pool:  # three model loads at once
        list(pool.map(lambda p: p.__enter__(), processes.values()))
    return processes


@dataclass
class Traffic:
    """Client threads posting one paper per request through nginx, each with a fresh user id, until stopped."""

    url: str
    threads: int = 4
    prefix: str = "u"
    answers: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            user = f"{self.prefix}-{next(self._ids)}"
            sent = time.monotonic()
            try:
                response = session.post(
                    f"{self.url}/predict", json={**PAPERS[hash(user) % 16], "user_id": user}, timeout=60
                )
            except requests.RequestException as err:
                self.failures.append(f"{user}: {err}")
                continue
            body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
            self.answers.append(
                {
                    "user": user,
                    "status": response.status_code,
                    "version": body.get("version"),
                    "replica": response.headers.get("x-clf-replica"),
                    "ms": (time.monotonic() - sent) * 1000,
                    "at": time.time(),
                }
            )

    def __enter__(self) -> Traffic:
        self._stop.clear()
        self._workers = [threading.Thread(target=self._client, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(90)

    def run_for(self, seconds: float) -> Traffic:
        with self:
            time.sleep(seconds)
        return self


def _canary_users(answers: list[dict], version: str, share: float) -> list[dict]:
    """The answers whose user the canary split sends to `version` at `share` (and at every later stage)."""
    return [a for a in answers if stable_bucket(a["user"], f"canary-{version}") < share]


def _value(result: list[dict]) -> float:
    """The number of a one-sample instant-query result (0 when empty)."""
    return float(result[0]["value"][1]) if result else 0.0


def _deploy(registry_dir, version: str, *extra: str) -> None:
    command = [
        sys.executable, "-m", "clf", "deploy", "canary", version, "--deployment.registry", str(registry_dir),
        "--skip-validation", "true", *extra,
    ]  # fmt: skip
    subprocess.run(command, cwd=REPO, check=True, timeout=120, capture_output=True)


def _stop(processes: dict[str, ServeProcess]) -> None:
    for process in processes.values():
        if process.process is not None and process.returncode is None:
            process.__exit__(None, None, None)


def test_three_replicas_behind_nginx_follow_one_leader_and_judge_fleet_wide_numbers(registry):
    registry_dir = registry.base_dir
    processes = _start(registry_dir, {"a": [], "b": [], "c": ["--inject_errors", f"{FAULTY}=1.0"]})
    addresses = [p.url.removeprefix("http://") for p in processes.values()]
    try:
        with NginxServer(addresses) as nginx, PrometheusServer(addresses) as prometheus:
            fleet = Fleet(processes, nginx, DeploymentStore(registry_dir))
            fleet.wait_for("a leader", lambda: fleet.store.lease() is not None)

            # 1. A canary that fails on replica c only is rolled back on the fleet's error rate.
            _deploy(registry_dir, FAULTY, "--deployment.stages", "[50, 100]", "--deployment.stage_seconds", "60")
            with Traffic(nginx.url, prefix="faulty") as faulty:
                fleet.wait_for("the faulty canary withdrawn", lambda: fleet.decisions(Action.ROLLED_BACK))
            (withdrawn,) = fleet.decisions(Action.ROLLED_BACK)
            assert withdrawn["version"] == FAULTY and "canary error rate" in withdrawn["reason"]
            assert withdrawn["metrics"][FAULTY]["replicas"] == 3
            errors = {name: fleet.counters(name).get(("clf_prediction_errors_total", FAULTY), 0) for name in processes}
            assert errors["a"] == 0 and errors["b"] == 0 and errors["c"] > 0, errors
            fleet.wait_for(
                "every replica drops the faulty canary", lambda: fleet.all_serve(lambda v: FAULTY not in str(v))
            )

            # 2. A good canary, requested from another shell: every replica serves its split.
            _deploy(registry_dir, CANARY, "--deployment.stages", "[50, 100]", "--deployment.stage_seconds", "8")
            fleet.wait_for(
                "every replica on the 50 % split", lambda: fleet.all_serve(lambda v: CANARY in v["traffic_rule"])
            )
            before = {name: fleet.counters(name) for name in processes}
            traffic = Traffic(nginx.url, prefix="split").run_for(3.0)
            after = {name: fleet.counters(name) for name in processes}
            assert not traffic.failures and {a["status"] for a in traffic.answers} == {200}
            stage = fleet.store.load()
            assert stage.phase == Phase.CANARY and stage.stage == 50, "the 3 s of traffic fell within the 8 s stage"
            for answer in traffic.answers:
                expected = CANARY if stable_bucket(answer["user"], f"canary-{CANARY}") < 0.5 else PRODUCTION
                assert answer["version"] == expected, answer
            for name in processes:
                mine = [a for a in traffic.answers if a["replica"] == name]
                canary = sum(1 for a in mine if a["version"] == CANARY)
                counted = after[name].get(("clf_predictions_total", CANARY), 0) - before[name].get(
                    ("clf_predictions_total", CANARY), 0
                )
                assert mine and counted == canary, (name, counted, canary)

            # 3. Prometheus sees the fleet as the clients did, and gives the gates' verdict the store gives.
            answered = sum(1 for t in (faulty, traffic) for a in t.answers if a["status"] == 200)
            fleet.wait_for(
                "Prometheus to count every answer",
                lambda: _value(prometheus.query('sum(clf_requests_total{code="200"})')) == answered,
                timeout=30,
            )
            # increase() extrapolates a window's first and last scrapes to its edges: over W seconds with 1 s scrapes
            # it may count up to W / (W - 2) of what happened. A quiet tail keeps W long against the traffic.
            time.sleep(max(0.0, traffic.answers[-1]["at"] + 10 - time.time()))
            window = (time.time() - traffic.answers[0]["at"] + 1) / 60
            since = time.time() - window * 60
            clients = {v: sum(1 for a in traffic.answers if a["version"] == v) for v in (CANARY, PRODUCTION)}
            fleet.wait_for(
                "every replica's snapshot in the store",
                lambda: all(store_metrics(fleet.store.replicas(), v, since)["total"] == clients[v] for v in clients),
                timeout=30,
            )
            by_store = {v: store_metrics(fleet.store.replicas(), v, since) for v in clients}
            prom = {v: PrometheusMetrics(prometheus.url).metrics(v, window) for v in clients}
            seconds = int(window * 60) + 1
            most = seconds / (seconds - 2.0)

            def near(measured: float, count: int) -> bool:
                return 0.9 * count <= measured <= most * count + 2

            rate = _value(prometheus.query(f'sum(increase(clf_requests_total{{code="200"}}[{seconds}s]))'))
            assert near(rate, len(traffic.answers)), (rate, len(traffic.answers), seconds)
            for version, count in clients.items():
                assert near(prom[version]["total"], count), (version, prom[version]["total"], count, seconds)
            client_p95 = sorted(a["ms"] for a in traffic.answers)[int(0.95 * len(traffic.answers))]
            fleet_p95 = 1000 * _value(
                prometheus.query(
                    f"histogram_quantile(0.95, sum by (le) (increase(clf_request_latency_seconds_bucket[{seconds}s])))"
                )
            )
            assert 0 < fleet_p95 <= client_p95 * 1.25, (fleet_p95, client_p95)
            verdicts = {
                evaluate_gates(by_store[CANARY], by_store[PRODUCTION], GATES).verdict,
                evaluate_gates(prom[CANARY], prom[PRODUCTION], GATES).verdict,
            }
            assert verdicts == {GateVerdict.PASS}

            # 4. Promoted on fleet-wide numbers, and followed by every replica.
            with Traffic(nginx.url, prefix="promote"):
                fleet.wait_for("the canary promoted", lambda: fleet.decisions(Action.PROMOTED), timeout=180)
                promoted_at = time.monotonic()
                fleet.wait_for(
                    "every replica on the promoted version",
                    lambda: fleet.all_serve(lambda v: v["live_version"] == CANARY and v["loaded_versions"] == [CANARY]),
                    timeout=FOLLOW_DELAY,
                )
                followed_in = time.monotonic() - promoted_at
            passed = fleet.decisions(Action.STAGE_PASSED)
            assert passed and all(d["metrics"][CANARY]["replicas"] == 3 for d in passed)
            assert followed_in <= FOLLOW_DELAY
            assert len(fleet.decisions(Action.PROMOTED)) == 1, "promoted once, by one replica"
    finally:
        _stop(processes)


def test_the_fleet_survives_a_state_store_outage_and_the_death_of_its_leader(registry):
    """PostgreSQL as the state store: stopped for 20 s mid-canary, then the lease holder is SIGKILLed under load."""
    registry_dir = registry.base_dir
    with PostgresServer() as database, ExitStack() as stack:
        store = SqlDeploymentStore(database.url)
        db = ["--fleet.state_db", database.url]
        processes = _start(registry_dir, {name: db for name in ("a", "b", "c")})
        stack.callback(_stop, processes)
        nginx = stack.enter_context(NginxServer([p.url.removeprefix("http://") for p in processes.values()]))
        fleet = Fleet(processes, nginx, store)
        fleet.wait_for("a leader", lambda: store.lease() is not None)
        _deploy(
            registry_dir,
            CANARY,
            "--deployment.state_db",
            database.url,
            "--deployment.stages",
            "[50, 100]",
            "--deployment.stage_seconds",
            "8",
        )
        fleet.wait_for(
            "every replica on the 50 % split", lambda: fleet.all_serve(lambda v: CANARY in v["traffic_rule"])
        )
        logged = len(store.decisions())

        # The store goes away for 20 s: serving goes on, on the split each replica last installed.
        database.stop(keep_data=True)
        outage = Traffic(nginx.url, prefix="outage").run_for(20.0)
        database.restart()
        assert not outage.failures and {a["status"] for a in outage.answers} == {200}, outage.failures[:3]
        assert _canary_users(outage.answers, CANARY, 0.5), "canary users were served during the outage"
        assert all(a["version"] == CANARY for a in _canary_users(outage.answers, CANARY, 0.5))
        assert all(
            a["version"] == PRODUCTION for a in outage.answers if stable_bucket(a["user"], f"canary-{CANARY}") >= 0.5
        ), "no replica moved on to the next stage without the store"
        assert len(store.decisions()) >= logged, "nothing logged before the outage is lost"

        # The rollout resumes; in its last stage the lease holder dies, under load through nginx.
        with Traffic(nginx.url, prefix="kill") as load:
            fleet.wait_for("the 100 % stage", lambda: store.load().stage == 100, timeout=120)
            leader = store.lease().holder
            processes[leader].process.kill()
            processes[leader].process.wait(timeout=30)
            fleet.wait_for(
                "another replica resumes the canary",
                lambda: any(
                    d["action"] == Action.RESUMED and f"over from {leader}" in d["reason"] for d in store.decisions()
                ),
                timeout=60,
            )
            fleet.wait_for("the canary promoted", lambda: fleet.decisions(Action.PROMOTED), timeout=120)
        assert not load.failures, load.failures[:3]
        assert {a["status"] for a in load.answers} == {200}, "nginx sent the dead replica's requests elsewhere"
        survivors = [name for name in processes if name != leader]
        fleet.wait_for(
            "the survivors serve the promoted version",
            lambda: fleet.all_serve(lambda v: v["live_version"] == CANARY, survivors),
            timeout=FOLLOW_DELAY,
        )
        assert registry.production_version() == CANARY
        assert store.lease().holder in survivors
