"""Tests for clf/deploy/canary.py: stages judged on the controller's clock, the split derived from the saved state,
a stage short of traffic withdrawn, a canary that errors cut short mid-stage."""

from __future__ import annotations

import contextlib

import pytest

from clf.deploy import Action, DeploymentController, Phase
from clf.deploy.canary import canary_split, is_canary_split
from clf.serving.routing import WeightedSplit
from tests.deploy.conftest import GATES, PAPERS, Clock, FaultyPredictor, answer, service_on


@pytest.fixture
def canary(tiny_registry):
    """A service on v1.0.0 and a controller on a clock that only moves when told to."""
    clock = Clock()
    service = service_on(tiny_registry, clock)
    yield service, DeploymentController(service, gates=GATES, clock=clock), clock
    service.close()


def test_a_stage_passes_when_its_time_is_up_and_the_next_split_is_installed(canary):
    service, controller, clock = canary
    controller.start_canary("v1.1.0", stages=[10, 50, 100], stage_seconds=600)
    state = controller.store.load()
    assert service.traffic_rule == canary_split(state) and service.traffic_rule.treatment_share == 0.1
    answer(service, 200)  # about 20 canary requests at 10 %: enough for GATES
    clock.advance(599)
    assert controller.tick() == [], "a passing stage still runs its whole length"
    clock.advance(1)
    passed, started = controller.tick()
    assert (passed.action, passed.stage, started.action, started.stage) == (
        Action.STAGE_PASSED,
        10,
        Action.STAGE_STARTED,
        50,
    )
    assert passed.reason.startswith("gates passed; model latency p95 at "), "the decision says which latency"
    assert set(passed.metrics) == {"v1.0.0", "v1.1.0"}
    assert service.traffic_rule == canary_split(controller.store.load())
    assert service.traffic_rule.treatment_share == 0.5


def test_the_last_stage_promotes_the_canary_and_records_when_it_went_live(canary, tiny_registry):
    service, controller, clock = canary
    controller.start_canary("v1.1.0", stages=[50, 100], stage_seconds=60)
    for stage in (0, 1):
        answer(service, 60, start=stage * 60)
        clock.advance(60)
        controller.tick()
    state = controller.store.load()
    assert state.phase == Phase.IDLE and controller.store.decisions()[-1]["action"] == Action.PROMOTED
    assert (state.live.version, state.live.at) == ("v1.1.0", clock.now)
    assert tiny_registry.production_version() == "v1.1.0" and service.loaded_versions == ["v1.1.0"]


def test_a_stage_short_of_canary_requests_waits_then_is_withdrawn(canary):
    service, controller, clock = canary
    controller.start_canary("v1.1.0", stages=[10, 100], stage_seconds=60)
    answer(service, 20)  # two or so canary requests: not enough to judge
    clock.advance(60)
    assert controller.tick() == [], "the stage is extended while it waits for traffic"
    clock.advance(120)  # 3 stage lengths: max_stage_extension
    (withdrawn,) = controller.tick()
    assert withdrawn.action == Action.ROLLED_BACK and withdrawn.stage == 10
    assert "only" in withdrawn.reason and "canary requests after 180 s" in withdrawn.reason
    assert service.loaded_versions == ["v1.0.0"] and not is_canary_split(service.traffic_rule)


def test_a_canary_that_errors_is_withdrawn_before_its_stage_ends(canary, tiny_registry):
    service, controller, clock = canary
    broken = FaultyPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0", error=True, armed=False)
    service.load("v1.1.0", predictor=broken)
    broken.armed.set()
    controller.start_canary("v1.1.0", stages=[50, 100], stage_seconds=3600)
    for i in range(60):
        with contextlib.suppress(RuntimeError):  # the canary's half fails
            service.predict(PAPERS[i % 16], user_id=f"u-{i}")
    clock.advance(1)
    (withdrawn,) = controller.tick()
    assert withdrawn.action == Action.ROLLED_BACK and "canary error rate" in withdrawn.reason
    assert withdrawn.metrics["v1.1.0"]["errors"] >= GATES.min_requests
    assert tiny_registry.production_version() == "v1.0.0" and service.loaded_versions == ["v1.0.0"]


def test_the_split_is_a_function_of_the_saved_state_and_an_experiments_split_is_not_a_canarys(canary):
    _, controller, _ = canary
    controller.start_canary("v1.1.0", stages=[25, 100], stage_seconds=60)
    state = controller.store.load()
    again = canary_split(state)  # what a restarted process installs
    assert again == canary_split(state) and is_canary_split(again)
    assert {again.route(f"u-{n}").arm for n in range(100)} == {"production", "canary"}
    experiment = WeightedSplit("v1.0.0", "v1.1.0", 0.25, salt="exp-1", experiment="exp-1")
    assert not is_canary_split(experiment)
