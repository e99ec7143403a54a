"""Tests for clf/deploy/blue_green.py: the switch, the watch on the controller's clock (against blue, and against the
rollback watch's thresholds), and a watch resumed by a restarted process."""

from __future__ import annotations

import pytest

from clf.deploy import Action, DeploymentController, LiveSince, Phase, request_deployment
from tests.deploy.conftest import GATES, ROLLBACK, Clock, FaultyPredictor, answer, fail, service_on


@pytest.fixture
def blue(tiny_registry):
    """A service on v1.0.0 (blue) that has answered 40 requests, and a controller on a clock moved by hand."""
    clock = Clock()
    service = service_on(tiny_registry, clock)
    answer(service, 40)
    yield service, DeploymentController(service, gates=GATES, rollback_thresholds=ROLLBACK, clock=clock), clock
    service.close()


def test_green_is_switched_to_watched_for_its_whole_window_and_blue_unloaded(blue, tiny_registry):
    service, controller, clock = blue
    request_deployment(tiny_registry, "blue_green", "v1.1.0", watch_seconds=600)
    assert [d.action for d in controller.tick()] == [Action.GREEN_LOADED, Action.SWITCHED]
    state = controller.store.load()
    assert state.phase == Phase.WATCHING and state.live == LiveSince("v1.1.0", clock.now)
    assert state.baseline_metrics["total"] == 40, "blue's metrics before the switch are the yardstick"
    assert tiny_registry.production_version() == "v1.1.0" and service.loaded_versions == ["v1.0.0", "v1.1.0"]
    answer(service, 40)
    clock.advance(599)
    assert controller.tick() == [] and "v1.0.0" in service.loaded_versions, "blue stays loaded for the watch"
    clock.advance(1)
    (passed,) = controller.tick()
    assert passed.action == Action.WATCH_PASSED
    assert "600 s without degradation; gates passed; model latency p95 at " in passed.reason
    assert service.loaded_versions == ["v1.1.0"] and controller.store.load().phase == Phase.IDLE


def test_green_that_breaks_the_rollback_thresholds_is_rolled_back_even_without_blue_metrics(tiny_registry):
    clock = Clock()
    service = service_on(tiny_registry, clock)  # blue answered nothing: no yardstick
    green = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    service.load("v1.1.0", predictor=green)
    controller = DeploymentController(service, gates=GATES, rollback_thresholds=ROLLBACK, clock=clock)
    controller.switch_to_green("v1.1.0", watch_seconds=600)
    green.armed.set()
    fail(service, 20)
    clock.advance(30)
    (rollback,) = controller.tick()
    assert rollback.action == Action.ROLLED_BACK and "error rate 100.0% above 10%" in rollback.reason
    assert tiny_registry.production_version() == "v1.0.0" and service.live_version == "v1.0.0"
    state = controller.store.load()
    assert state.phase == Phase.IDLE and state.live == LiveSince("v1.0.0", clock.now)
    service.close()


def test_a_watch_passes_on_rollback_thresholds_alone_when_green_saw_too_little_traffic(blue, tiny_registry):
    service, controller, clock = blue
    controller.switch_to_green("v1.1.0", watch_seconds=60)
    answer(service, 3)
    clock.advance(60)
    (passed,) = controller.tick()
    assert passed.action == Action.WATCH_PASSED and "gates not judged: 3 of 10 requests" in passed.reason


def test_a_restarted_process_serves_green_and_starts_the_watch_again(blue, tiny_registry):
    service, controller, clock = blue
    controller.switch_to_green("v1.1.0", watch_seconds=600)
    clock.advance(500)
    service.close()  # the process dies during the watch

    second = service_on(str(tiny_registry.base_dir), clock)  # the registry already names green
    resumed = DeploymentController(second, gates=GATES, rollback_thresholds=ROLLBACK, clock=clock)
    assert second.live_version == "v1.1.0"
    assert resumed.store.decisions()[-1]["action"] == Action.RESUMED
    state = resumed.store.load()
    assert state.phase == Phase.WATCHING and state.stage_started_at == clock.now
    assert state.live == LiveSince("v1.1.0", clock.now - 500), "green went live at the switch, not at the restart"
    clock.advance(599)
    assert resumed.tick() == []
    clock.advance(1)
    assert [d.action for d in resumed.tick()] == [Action.WATCH_PASSED]
    second.close()
