"""A controller restarted on the same store (new service, registry and controller objects: a new process) decides
the same as one that never stopped, for each fact a strategy remembers between ticks: when the live version went
live, the last rollback the registry refused, and the traffic split a canary installed.

Each test runs twice, ``restart=False`` (one process throughout) and ``restart=True`` (the process replaced at the
marked point), and asserts one outcome for both.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from clf.deploy import Action, DeploymentController, DeploymentStore, LiveSince, RollbackThresholds, request_rollback
from clf.deploy.canary import is_canary_split
from clf.monitoring import PredictionMonitor
from clf.registry import ModelRegistry
from clf.serving import ClassificationService
from clf.serving.config import Batching
from tests.deploy.conftest import GATES, Clock, FaultyPredictor, fail, service_on
from tests.helpers.exports import build_registry

THRESHOLDS = RollbackThresholds(min_requests=10, window_minutes=5.0)


def serving_broken(registry_dir: str, version: str, other: str, monitor: PredictionMonitor) -> ClassificationService:
    """A process that started on `version` whose model now fails (it starts on `other` to load the faulty copy)."""
    service = ClassificationService(registry_dir, other, batching=Batching(max_wait_ms=1), monitor=monitor)
    broken = FaultyPredictor(ModelRegistry(registry_dir).version_dir(version), version, error=True, armed=False)
    service.load(version, predictor=broken)  # the warm-up passes
    broken.armed.set()
    service.swap(version)
    service.unload(other)
    return service


@pytest.mark.parametrize("restart", [False, True], ids=["never-stopped", "restarted"])
def test_a_refused_rollback_is_not_retried_before_its_window_is_over(tmp_path, tiny_exports, restart):
    registry = build_registry(tmp_path / "registry", tiny_exports)
    registry.promote_to_production("v1.1.0")  # the first release: nothing to roll back to
    base, clock = str(registry.base_dir), Clock()

    def process() -> tuple[ClassificationService, DeploymentController]:
        service = serving_broken(base, "v1.1.0", "v1.0.0", PredictionMonitor(clock=clock))
        return service, DeploymentController(service, gates=GATES, rollback_thresholds=THRESHOLDS, clock=clock)

    service, controller = process()
    fail(service, 20)
    assert [d.action for d in controller.tick()] == [Action.ROLLBACK_FAILED]
    refused = controller.store.load().refused_rollback
    assert (refused.version, refused.at) == ("v1.1.0", clock.now) and "nothing to roll back to" in refused.reason
    if restart:
        service.close()
        service, controller = process()  # a new process: its monitor sees the errors go on
    clock.advance(10)
    fail(service, 20)
    for _ in range(5):
        clock.advance(50)
        assert controller.tick() == [], "one alert per window, not one per tick"
    clock.advance(50)  # 310 s after the refusal: the 5-minute window is over
    fail(service, 20)
    assert [d.action for d in controller.tick()] == [Action.ROLLBACK_FAILED]
    actions = [d["action"] for d in DeploymentStore(base).decisions()]
    assert actions == [Action.ROLLBACK_FAILED, Action.ROLLBACK_FAILED]
    service.close()


@pytest.mark.parametrize("restart", [False, True], ids=["never-stopped", "restarted"])
def test_production_is_judged_since_it_went_live_not_since_the_process_started(tiny_registry, restart):
    # One monitor for both processes: the fleet-wide metrics several replicas (or a restarted one) would read.
    base, clock = str(tiny_registry.base_dir), Clock()
    monitor = PredictionMonitor(clock=clock)
    service = ClassificationService(base, batching=Batching(max_wait_ms=1), monitor=monitor)
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    service.load("v1.1.0", predictor=broken)
    broken.armed.set()
    controller = DeploymentController(service, gates=GATES, rollback_thresholds=THRESHOLDS, clock=clock)
    went_live = clock.now
    tiny_registry.promote_to_production("v1.1.0", reason="released without a rollout")
    assert [d.action for d in controller.tick()] == [Action.FOLLOWED_REGISTRY]
    fail(service, 20)
    clock.advance(120)
    if restart:
        service.close()
        service = serving_broken(base, "v1.1.0", "v1.0.0", monitor)
        controller = DeploymentController(service, gates=GATES, rollback_thresholds=THRESHOLDS, clock=clock)
        assert controller.store.load().live == LiveSince("v1.1.0", went_live)
    (rollback,) = controller.tick()
    assert rollback.action == Action.ROLLED_BACK and rollback.metrics["v1.1.0"]["errors"] == 20
    assert tiny_registry.production_version() == "v1.0.0" and service.live_version == "v1.0.0"
    service.close()


@pytest.mark.parametrize("restart", [False, True], ids=["never-stopped", "restarted"])
def test_a_canary_split_withdrawn_from_another_process_is_dropped(tiny_registry, restart):
    base, clock = str(tiny_registry.base_dir), Clock()

    def process(start: Callable[[DeploymentController], object] = lambda c: None) -> tuple:
        service = service_on(base, clock)
        controller = DeploymentController(service, gates=GATES, rollback_thresholds=THRESHOLDS, clock=clock)
        start(controller)
        return service, controller

    service, controller = process(lambda c: c.start_canary("v1.1.0", stages=[10, 100], stage_seconds=600))
    if restart:
        service.close()
        service, controller = process()  # resumes the canary: its split is derived from the saved state
        assert controller.store.decisions()[-1]["action"] == Action.RESUMED
    assert is_canary_split(service.traffic_rule) and service.traffic_rule.treatment_share == 0.1
    request_rollback(ModelRegistry(base), "from another shell")
    assert controller.tick() == []
    assert service.traffic_rule.versions == {"v1.0.0"} and service.loaded_versions == ["v1.0.0"]
    assert tiny_registry.production_version() == "v1.0.0"
    service.close()
