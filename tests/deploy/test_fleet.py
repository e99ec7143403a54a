"""Tests for a fleet of replicas on one state store (clf/deploy/fleet.py, the lease in clf/deploy/controller.py):
one leader drives, the others follow the saved split and the registry, the gates judge the summed numbers of every
replica, a replica that takes a lapsed lease over resumes the rollout, and an alert is sent once per fleet.

In process, on a clock that moves only when told to: every service, replica and controller reads the same `Clock`,
so which predictions a window holds is decided by the test, not by how fast the machine runs. The stores are the
registry's folder and a SQLite database (PostgreSQL, across processes, is in tests/deploy/test_fleet_processes.py).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest

from clf.deploy import Action, DeploymentController, DeploymentStore, Phase, request_deployment
from clf.deploy.canary import canary_split, is_canary_split
from clf.deploy.fleet import Replica, thin, window_counts
from clf.deploy.sql_store import SqlDeploymentStore
from clf.deploy.store import ReplicaRecord
from clf.monitoring import AlertManager
from tests.deploy.conftest import GATES, ROLLBACK, Clock, answer, service_on

CANARY = "v1.1.0"


@pytest.fixture(params=["files", "sqlite"])
def store(request, tiny_registry, tmp_path):
    if request.param == "files":
        return DeploymentStore(tiny_registry.base_dir)
    return SqlDeploymentStore(f"sqlite:///{tmp_path / 'state.db'}")


class Fleet:
    """Replicas a, b, c: a service, a `Replica` and a controller each, on one registry, one store and one clock."""

    def __init__(self, registry, store, clock, faults=None, names=("a", "b", "c")) -> None:
        self.registry, self.store, self.clock = registry, store, clock
        self.services, self.controllers = {}, {}
        for name in names:
            service = service_on(registry, clock, fault_injection=(faults or {}).get(name))
            replica = Replica(service, store, name, f"http://{name}", clock=clock)
            self.services[name] = service
            self.controllers[name] = DeploymentController(
                service,
                store=store,
                gates=GATES,
                rollback_thresholds=ROLLBACK,
                clock=clock,
                replica=replica,
                lease_seconds=90,  # longer than the stages: a tick order within one step never hands it over
            )

    def tick(self, *names: str) -> dict[str, list]:
        return {name: self.controllers[name].tick() for name in names or self.controllers}

    def close(self) -> None:
        for service in self.services.values():
            service.close()


@pytest.fixture
def fleet(tiny_registry, store):
    clock = Clock()
    fleet = Fleet(tiny_registry, store, clock)
    yield fleet
    fleet.close()


def _canary_answers(service) -> int:
    return int((service.monitor.get_metrics(60)["by_version"].get(CANARY) or {}).get("total") or 0)


def test_one_replica_drives_and_the_others_serve_its_split(fleet):
    request_deployment(fleet.registry, "canary", CANARY, stages=[50, 100], stage_seconds=60, store=fleet.store)
    decisions = fleet.tick()
    assert [d.action for d in decisions["a"]] == [Action.STAGE_STARTED]
    assert decisions["b"] == [] and decisions["c"] == [], "followers decide nothing"
    assert fleet.store.lease().holder == "a"
    split = canary_split(fleet.store.load())
    for name, service in fleet.services.items():
        assert service.traffic_rule == split, f"replica {name} serves another split"
        assert CANARY in service.loaded_versions
    assert [d["action"] for d in fleet.store.decisions()] == [Action.REQUESTED, Action.STAGE_STARTED]


def test_the_gates_judge_the_canary_requests_of_every_replica(fleet):
    request_deployment(fleet.registry, "canary", CANARY, stages=[50, 100], stage_seconds=60, store=fleet.store)
    fleet.tick()
    fleet.clock.advance(1)
    for offset, service in enumerate(fleet.services.values()):
        answer(service, 30, start=100 * offset)
    fleet.tick("b", "c")  # publish their snapshots
    seen = fleet.controllers["a"].context.metrics(CANARY, 1.0)
    assert seen["total"] == sum(_canary_answers(s) for s in fleet.services.values())
    assert seen["total"] > _canary_answers(fleet.services["a"]), "not only the leader's own requests"
    assert seen["replicas"] == 3 and seen["model_latency_by_batch"]


def test_a_canary_failing_on_one_replica_only_is_rolled_back_by_the_leader(tiny_registry, store):
    clock = Clock()
    fleet = Fleet(tiny_registry, store, clock, faults={"c": {CANARY: 1.0}})
    try:
        request_deployment(tiny_registry, "canary", CANARY, stages=[50, 100], stage_seconds=60, store=store)
        fleet.tick()
        clock.advance(1)
        for name, service in fleet.services.items():
            for i in range(30):
                with contextlib.suppress(RuntimeError):  # replica c's canary half fails
                    service.predict({"title": f"paper {i}", "abstract": "text"}, user_id=f"{name}-{i}")
        leader_alone = fleet.services["a"].monitor.get_metrics(5)["by_version"][CANARY]
        assert leader_alone["error_rate"] == 0.0, "the leader's own canary requests are all fine"
        fleet.tick("b", "c")
        (withdrawn,) = fleet.tick("a")["a"]
        assert withdrawn.action == Action.ROLLED_BACK and "canary error rate" in withdrawn.reason
        fleet.tick("b", "c")
        for name, service in fleet.services.items():
            assert not is_canary_split(service.traffic_rule), name
            assert service.loaded_versions == ["v1.0.0"], name
    finally:
        fleet.close()


def test_a_promotion_is_followed_by_every_replica_at_its_next_tick(fleet):
    request_deployment(fleet.registry, "canary", CANARY, stages=[50, 100], stage_seconds=60, store=fleet.store)
    fleet.tick()
    for stage in (0, 1):
        for offset, service in enumerate(fleet.services.values()):
            answer(service, 20, start=1000 * stage + 100 * offset)
        fleet.clock.advance(60)
        fleet.tick("b", "c")
        fleet.tick("a")
    assert fleet.registry.production_version() == CANARY
    assert fleet.store.decisions()[-1]["action"] == Action.PROMOTED
    fleet.tick("b", "c")
    for name, service in fleet.services.items():
        assert (service.live_version, service.loaded_versions) == (CANARY, [CANARY]), name


def test_a_replica_takes_a_lapsed_lease_over_and_resumes_the_canary_at_its_stage(fleet):
    request_deployment(fleet.registry, "canary", CANARY, stages=[25, 50, 100], stage_seconds=60, store=fleet.store)
    fleet.tick()
    for offset, service in enumerate(fleet.services.values()):
        answer(service, 40, start=100 * offset)
    fleet.clock.advance(60)
    fleet.tick()  # a passes stage 25 %
    assert fleet.store.load().stage == 50
    # a dies: it ticks no more, and its lease lapses 90 s after its last tick
    fleet.clock.advance(80)
    assert fleet.tick("b", "c") == {"b": [], "c": []}, "the lease has not lapsed yet"
    fleet.clock.advance(11)
    taken = fleet.tick("b", "c")
    (resumed,) = taken["b"]
    assert taken["c"] == [] and fleet.store.lease().holder == "b"
    assert resumed.action == Action.RESUMED and resumed.stage == 50
    assert "replica b took the rollout lease over from a" in resumed.reason
    state = fleet.store.load()
    assert state.phase == Phase.CANARY and state.stage_started_at == fleet.clock.now, "the stage starts again"
    for name in ("b", "c"):
        assert fleet.services[name].traffic_rule == canary_split(state)


def test_a_replica_that_leaves_hands_the_lease_over_at_once(fleet):
    fleet.tick()
    assert fleet.store.lease().holder == "a"
    fleet.controllers["a"].close()
    assert fleet.store.lease() is None
    fleet.tick("b")
    assert fleet.store.lease().holder == "b"
    left = {r.id: r for r in fleet.store.replicas()}["a"]
    assert left.stopped_at == fleet.clock.now


def test_the_leader_forgets_replicas_silent_for_longer_than_any_window(fleet):
    fleet.tick()
    assert {r.id for r in fleet.store.replicas()} == {"a", "b", "c"}
    fleet.clock.advance(30 * 60)
    fleet.tick("a", "b")  # c is gone, but its last half hour still counts for an hour-long window
    assert {r.id for r in fleet.store.replicas()} == {"a", "b", "c"}
    fleet.clock.advance(31 * 60 + 60)
    fleet.tick("a", "b")
    assert {r.id for r in fleet.store.replicas()} == {"a", "b"}


def test_a_fleet_sends_each_alert_once_per_cool_down(store):
    clock = Clock()
    managers = [AlertManager(cooldown_seconds=60, clock=clock, claim=store.claim_alert) for _ in range(3)]
    breach = {"total": 100, "errors": 50, "error_rate": 0.5, "by_version": {}}
    raised = [len(manager.check_and_alert(breach)) for manager in managers]
    assert raised == [1, 0, 0]
    clock.advance(61)
    assert len(managers[2].check_and_alert(breach)) == 1


def test_the_shared_cool_down_falls_back_to_the_replicas_own_when_the_store_fails():
    def unreachable(*_):
        raise OSError("state store down")

    manager = AlertManager(cooldown_seconds=60, claim=unreachable)
    breach = {"total": 100, "errors": 50, "error_rate": 0.5, "by_version": {}}
    assert len(manager.check_and_alert(breach)) == 1 and manager.check_and_alert(breach) == []


def test_window_counts_take_the_snapshot_at_the_window_start():
    snapshot = lambda at, n: {"at": at, "versions": {"v": {"predictions": n, "errors": 0}}}  # noqa: E731
    snapshots = [snapshot(0, 0), snapshot(10, 5), snapshot(20, 12), snapshot(30, 20)]
    record = ReplicaRecord("r", 30.0, started_at=0.0, snapshots=snapshots)
    assert window_counts(record, "v", 20)["predictions"] == 8
    assert window_counts(record, "v", 15)["predictions"] == 15
    assert window_counts(replace(record, started_at=25.0, snapshots=snapshots[-1:]), "v", 20) == {
        "predictions": 20,
        "errors": 0,
    }, "a replica started within the window: all it counted"
    assert window_counts(record, "other", 0) == {}


def test_old_snapshots_are_thinned_but_the_longest_window_keeps_its_start():
    history = [{"at": float(t)} for t in range(0, 4000, 5)]
    kept = thin(history, now=4000.0, keep_seconds=3600.0)
    ages = [4000.0 - s["at"] for s in kept]
    assert ages[0] > 3600 and all(age <= 3600 for age in ages[1:])
    assert sum(1 for age in ages if age <= 120) == 24, "every snapshot of the last two minutes"
    assert len(kept) < 90
