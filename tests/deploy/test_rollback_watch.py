"""Tests for clf/deploy/rollback_watch.py: the idle service follows the registry, drops a canary split withdrawn
elsewhere but not an experiment's, judges production only since it went live, and rolls back on model latency only
when asked."""

from __future__ import annotations

import pytest

from clf.deploy import Action, DeploymentController, LiveSince, RollbackThresholds, request_rollback
from clf.deploy.canary import is_canary_split
from clf.serving.routing import WeightedSplit
from tests.deploy.conftest import GATES, ROLLBACK, Clock, FaultyPredictor, answer, fail, service_on


@pytest.fixture
def idle(tiny_registry):
    """A service on v1.0.0 with v1.1.0 loaded through a model that fails once armed, and a hand-moved clock."""
    clock = Clock()
    service = service_on(tiny_registry, clock)
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    service.load("v1.1.0", predictor=broken)
    controller = DeploymentController(service, gates=GATES, rollback_thresholds=ROLLBACK, clock=clock)
    yield service, controller, clock, broken
    service.close()


def test_the_service_follows_a_promotion_made_elsewhere_and_records_when(idle, tiny_registry):
    service, controller, clock, _ = idle
    assert controller.store.load().live == LiveSince("v1.0.0", clock.now), "a new store learns the live version"
    clock.advance(10)
    tiny_registry.promote_to_production("v1.1.0", reason="from another shell")
    (followed,) = controller.tick()
    assert followed.action == Action.FOLLOWED_REGISTRY and followed.reason == "registry production was v1.0.0"
    assert service.live_version == "v1.1.0" and service.loaded_versions == ["v1.1.0"]
    assert controller.store.load().live == LiveSince("v1.1.0", clock.now)
    assert controller.tick() == []


def test_a_version_promoted_again_is_judged_only_on_what_it_did_since(idle, tiny_registry):
    service, controller, clock, broken = idle
    tiny_registry.promote_to_production("v1.1.0")
    controller.tick()
    broken.armed.set()
    fail(service, 20)
    clock.advance(5)
    (rollback,) = controller.tick()
    assert rollback.action == Action.ROLLED_BACK and service.live_version == "v1.0.0"
    broken.armed.clear()  # fixed
    service.load("v1.1.0", predictor=broken)
    tiny_registry.promote_to_production("v1.1.0", reason="fixed")
    clock.advance(5)
    assert [d.action for d in controller.tick()] == [Action.FOLLOWED_REGISTRY]
    answer(service, 20)
    clock.advance(5)
    # The monitor's one-minute window still holds the 20 errors from before the rollback; they are not held
    # against the version now that it went live again.
    assert controller.tick() == [] and service.live_version == "v1.1.0"
    broken.armed.set()
    fail(service, 20)
    clock.advance(5)
    (again,) = controller.tick()
    assert again.action == Action.ROLLED_BACK and again.metrics["v1.1.0"]["errors"] == 20


def test_a_canary_split_withdrawn_from_another_process_is_dropped(idle, tiny_registry):
    service, controller, _, _ = idle
    controller.start_canary("v1.1.0", stages=[10, 100], stage_seconds=600)
    assert is_canary_split(service.traffic_rule)
    request_rollback(tiny_registry, "from another shell")
    assert controller.tick() == []
    assert service.traffic_rule.versions == {"v1.0.0"} and service.loaded_versions == ["v1.0.0"]


def test_an_experiments_split_is_left_alone(idle):
    service, controller, _, _ = idle
    experiment = WeightedSplit("v1.0.0", "v1.1.0", 0.5, salt="exp-7", experiment="exp-7")
    service.set_traffic_rule(experiment)
    assert controller.tick() == []
    assert service.traffic_rule == experiment and "v1.1.0" in service.loaded_versions


@pytest.mark.parametrize("opted_in", [False, True])
def test_a_slow_production_model_is_rolled_back_only_when_the_operator_opts_in(tiny_registry, opted_in):
    clock = Clock()
    service = service_on(tiny_registry, clock)
    slow = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", delay_s=0.1)
    service.load("v1.1.0", predictor=slow)
    tiny_registry.promote_to_production("v1.1.0")
    thresholds = RollbackThresholds(
        min_requests=10, window_minutes=1.0, max_p95_latency_ms=50.0, rollback_on_latency=opted_in
    )
    controller = DeploymentController(service, gates=GATES, rollback_thresholds=thresholds, clock=clock)
    controller.tick()  # follows the registry to v1.1.0
    answer(service, 12)
    clock.advance(5)
    decisions = controller.tick()
    if opted_in:
        (rollback,) = decisions
        assert rollback.action == Action.ROLLED_BACK and "model latency p95" in rollback.reason
        assert "above 50 ms" in rollback.reason and tiny_registry.production_version() == "v1.0.0"
    else:
        assert decisions == [] and tiny_registry.production_version() == "v1.1.0"
    service.close()
