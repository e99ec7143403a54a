"""Rollouts under real traffic through the running service: canary promotion and rollback, blue-green switch and
rollback, the rollback monitor, and a restart in the middle of a canary."""

from __future__ import annotations

import time

import pytest

from clf.deploy import Action, DeploymentController, Phase, request_deployment, request_rollback
from clf.serving import ClassificationService
from tests.deploy.conftest import GATES, PAPERS, ROLLBACK, FaultyPredictor, Traffic
from tests.helpers.exports import build_registry


def test_a_healthy_canary_walks_every_stage_and_is_promoted(deployment, tiny_registry):
    with Traffic(deployment.url) as traffic:
        request_deployment(tiny_registry, "canary", "v1.1.0", stages=[10, 50, 100], stage_seconds=1.0)
        deployment.wait_until_idle()
        time.sleep(0.3)
    assert traffic.failures == [] and traffic.statuses() == {200}
    assert tiny_registry.production_version() == "v1.1.0" and deployment.service.live_version == "v1.1.0"
    assert deployment.service.loaded_versions == ["v1.1.0"]
    decisions = deployment.store.decisions()
    assert [d["stage"] for d in decisions if d["action"] == Action.STAGE_PASSED] == [10, 50, 100]
    assert decisions[-1]["action"] == Action.PROMOTED
    assert all("v1.1.0" in d["metrics"] for d in decisions if d["action"] == Action.STAGE_PASSED)
    assert {arm for _, _, arm in traffic.answers} >= {"production", "canary"}
    deployment.wait_for(lambda: any("promoted" in text for text in deployment.hook.texts))


def test_a_canary_with_injected_errors_is_rolled_back_at_the_first_stage(deployment, tiny_registry):
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    deployment.service.load("v1.1.0", predictor=broken)
    broken.armed.set()
    with Traffic(deployment.url) as traffic:
        request_deployment(tiny_registry, "canary", "v1.1.0", stages=[10, 50, 100], stage_seconds=30.0)
        deployment.wait_until_idle()
        after = len(traffic.answers)
        deployment.wait_for(lambda: len(traffic.answers) > after + 30)
    assert traffic.failures == []
    rollback = deployment.store.decisions()[-1]
    assert rollback["action"] == Action.ROLLED_BACK and rollback["stage"] == 10
    assert "error rate" in rollback["reason"] and rollback["metrics"]["v1.1.0"]["errors"] >= GATES.min_requests
    assert tiny_registry.production_version() == "v1.0.0" and deployment.service.loaded_versions == ["v1.0.0"]
    assert {status for status, _, _ in traffic.answers[after:]} == {200}, "after the rollback every request succeeds"
    deployment.wait_for(lambda: any("Rolled back canary v1.1.0" in text for text in deployment.hook.texts))


def test_a_slow_canary_is_rolled_back_on_latency_over_the_whole_stage(deployment, tiny_registry):
    slow = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", delay_s=0.4)
    deployment.service.load("v1.1.0", predictor=slow)
    with Traffic(deployment.url, threads=8) as traffic:
        request_deployment(tiny_registry, "canary", "v1.1.0", stages=[25, 100], stage_seconds=4.0)
        deployment.wait_until_idle()
    assert traffic.failures == [] and traffic.statuses() == {200}
    decisions = deployment.store.decisions()
    started = next(d for d in decisions if d["action"] == Action.STAGE_STARTED and d["stage"] == 25)
    rollback = decisions[-1]
    assert rollback["action"] == Action.ROLLED_BACK and rollback["stage"] == 25 and "p95" in rollback["reason"]
    # Latency is judged over the whole stage, not on its first requests (errors still cut a stage short).
    assert rollback["at"] - started["at"] >= 4.0
    assert tiny_registry.production_version() == "v1.0.0"


def test_blue_green_switch_and_rollback_answer_every_request(deployment, tiny_registry):
    with Traffic(deployment.url) as traffic:
        request_deployment(tiny_registry, "blue_green", "v1.1.0", watch_seconds=1.0)
        deployment.wait_until_idle()
        assert deployment.service.live_version == "v1.1.0" and tiny_registry.production_version() == "v1.1.0"
        switched = len(traffic.answers)
        deployment.wait_for(lambda: len(traffic.answers) > switched + 20)
        request_rollback(tiny_registry, "operator says so")  # from another process: the service follows
        deployment.wait_for(lambda: deployment.service.live_version == "v1.0.0")
        back = len(traffic.answers)
        deployment.wait_for(lambda: len(traffic.answers) > back + 20)
    assert traffic.failures == [] and traffic.statuses() == {200}
    versions = [version for _, version, _ in traffic.answers]
    assert versions[0] == "v1.0.0" and "v1.1.0" in versions and versions[-1] == "v1.0.0"
    assert [a for a in deployment.actions() if a != "requested"] == [
        Action.GREEN_LOADED,
        Action.SWITCHED,
        Action.WATCH_PASSED,
        Action.ROLLED_BACK,
        Action.FOLLOWED_REGISTRY,
    ]


def test_green_that_degrades_after_the_switch_is_rolled_back_during_the_watch(deployment, tiny_registry):
    green = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    deployment.service.load("v1.1.0", predictor=green)
    with Traffic(deployment.url) as traffic:
        deployment.wait_for(lambda: len(traffic.answers) > 40)  # blue's metrics: the yardstick
        request_deployment(tiny_registry, "blue_green", "v1.1.0", watch_seconds=60.0)
        deployment.wait_for(lambda: deployment.store.load().phase == Phase.WATCHING)
        green.armed.set()
        deployment.wait_until_idle()
    assert traffic.failures == []
    assert deployment.store.decisions()[-1]["action"] == Action.ROLLED_BACK
    assert tiny_registry.production_version() == "v1.0.0" and deployment.service.live_version == "v1.0.0"


def test_a_green_that_fails_its_health_check_never_takes_traffic(deployment, tiny_registry):
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    deployment.service.load("v1.1.0", predictor=broken)
    broken.armed.set()
    with Traffic(deployment.url) as traffic:
        request_deployment(tiny_registry, "blue_green", "v1.1.0")
        deployment.wait_until_idle()
    assert traffic.statuses() == {200} and {v for _, v, _ in traffic.answers} == {"v1.0.0"}
    assert deployment.store.decisions()[-1]["action"] == Action.GREEN_REJECTED
    assert tiny_registry.production_version() == "v1.0.0"


def test_the_rollback_monitor_rolls_production_back_on_an_error_rate(deployment, tiny_registry):
    tiny_registry.promote_to_production("v1.1.0", reason="released without a rollout")
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    deployment.service.load("v1.1.0", predictor=broken)
    deployment.wait_for(lambda: deployment.service.live_version == "v1.1.0")  # the service follows the registry
    with Traffic(deployment.url) as traffic:
        broken.armed.set()
        deployment.wait_for(lambda: deployment.service.live_version == "v1.0.0")
    # The alert is the rollback's last step: once it is in, so is everything before it.
    deployment.wait_for(lambda: any("Rolled back v1.1.0" in text for text in deployment.hook.texts))
    assert traffic.failures == []
    rollback = deployment.store.decisions()[-1]
    assert rollback["action"] == Action.ROLLED_BACK and "error rate" in rollback["reason"]
    assert tiny_registry.production_version() == "v1.0.0"
    assert tiny_registry.history()[-1].reason == rollback["reason"].split("; now serving")[0]


def test_a_restart_in_the_middle_of_a_canary_resumes_its_stage(tiny_registry):
    def drive(service: ClassificationService, seconds: float, requests: int = 200) -> None:
        """At least `seconds` of traffic and at least `requests` requests (enough canary ones at 10 %)."""
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end or n < requests:
            service.predict(PAPERS[n % 16], user_id=f"u-{n}")
            n += 1

    first = ClassificationService(tiny_registry)
    controller = DeploymentController(first, gates=GATES)
    controller.start_canary("v1.1.0", stages=[10, 50, 100], stage_seconds=0.5)
    drive(first, 0.7)
    controller.tick()
    assert controller.store.load().stage == 50
    first.close()  # the process dies here; the state file stays

    second = ClassificationService(tiny_registry)  # serves production v1.0.0 again
    resumed = DeploymentController(second, gates=GATES)
    assert resumed.store.decisions()[-1]["action"] == Action.RESUMED
    state = resumed.store.load()
    assert state.phase == Phase.CANARY and state.stage == 50 and second.loaded_versions == ["v1.0.0", "v1.1.0"]
    assert {second.predict(PAPERS[0], user_id=f"u-{n}")[0].arm for n in range(60)} == {"production", "canary"}
    for _ in range(2):
        drive(second, 0.7)
        resumed.tick()
    assert tiny_registry.production_version() == "v1.1.0" and resumed.store.load().phase == Phase.IDLE
    second.close()


def test_with_nothing_to_roll_back_to_the_monitor_alerts_once_per_window(tmp_path, tiny_exports):
    registry = build_registry(tmp_path / "r", tiny_exports)
    registry.promote_to_production("v1.1.0")  # the first release: no earlier production version
    service = ClassificationService(registry, version="v1.0.0")
    broken = FaultyPredictor(registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    service.load("v1.1.0", predictor=broken)
    service.swap("v1.1.0")
    controller = DeploymentController(service, gates=GATES, rollback_thresholds=ROLLBACK)
    broken.armed.set()
    for n in range(20):
        with pytest.raises(RuntimeError):
            service.predict(PAPERS[n % 16])
    for _ in range(5):
        controller.tick()
    assert [d["action"] for d in controller.store.decisions()] == [Action.ROLLBACK_FAILED]
    assert service.live_version == "v1.1.0" and registry.production_version() == "v1.1.0"
    service.close()


def test_a_canary_that_does_not_load_is_withdrawn_not_retried_forever(deployment, tiny_registry):
    (tiny_registry.version_dir("v1.1.0") / "model.safetensors").write_bytes(b"not weights")
    request_deployment(tiny_registry, "canary", "v1.1.0", stages=[10, 100], stage_seconds=1.0)
    deployment.wait_until_idle(timeout=30)
    last = deployment.store.decisions()[-1]
    assert last["action"] == Action.ROLLED_BACK and "does not load" in last["reason"]
    assert deployment.service.loaded_versions == ["v1.0.0"] and tiny_registry.production_version() == "v1.0.0"
