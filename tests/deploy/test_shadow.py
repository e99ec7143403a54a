"""`clf deploy shadow` on real `clf serve` processes: the candidate sees the mirrored share of live requests, users'
answers come only from production, a failing candidate never reaches a user and is refused for canary, a passed one
(its accuracy judged on the papers whose labels were imported) proceeds to canary, and with two replicas the leader
judges the follower's paired answers too.

Which papers are mirrored is known in advance (`mirrored_share` of the paper's cleaned text), so every count is
checked exactly.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
import requests

from clf.deploy import Action, DeploymentController, DeploymentError, DeploymentStore, Phase, request_deployment
from clf.deploy.commands import DeploymentSettings, request_rollback, shadow
from clf.experiments.quality_log import QualityLog
from clf.monitoring.shadow import ShadowCriteria
from clf.serving import ModelPredictor
from clf.serving.config import RequestLimits
from clf.serving.inputs import paper_texts
from clf.serving.shadow import mirrored_share
from tests.conftest import load_shared_papers
from tests.deploy.conftest import PAPERS, Clock, answer, service_on
from tests.helpers.faults import DisagreeingPredictor
from tests.helpers.serve_process import ServeProcess

CANDIDATE, PRODUCTION = "v1.1.0", "v1.0.0"
COMMON = ["--fleet.deploy_interval_seconds", "0.2", "--fleet.lease_seconds", "2", "--batching.max_wait_ms", "2"]
COMMON += ["--batching.max_batch_size", "16"]  # the shadow's queue holds one batch: all 16 papers, so none is dropped
STAGE_SECONDS = 5
"""Long enough that a machine busy with other work still publishes every answer before the stage's 3 lengths end."""
LENIENT = ShadowCriteria(min_requests=1, min_agreement=0.0, max_confidence_drop=1.0, max_latency_ratio=math.inf)
"""Two tiny random models agree by chance: these criteria judge only errors (and need the counts to arrive)."""
ARXIV_IDS = [paper["id"] for paper in load_shared_papers(limit=len(PAPERS))]
"""The arXiv id of each of `PAPERS`, which requests send (``arxiv_id``) and labels arrive by."""


def picked(share: float) -> list[dict[str, str]]:
    limits = RequestLimits()
    texts = [paper_texts(p, max_inputs=limits.max_inputs, max_text_chars=limits.max_text_chars) for p in PAPERS]
    return [paper for paper, text in zip(PAPERS, texts, strict=True) if mirrored_share(text, CANDIDATE) < share]


def post_all(url: str) -> list[dict]:
    answers = []
    for paper, arxiv_id in zip(PAPERS, ARXIV_IDS, strict=True):
        response = requests.post(f"{url}/predict", json={**paper, "arxiv_id": arxiv_id}, timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.1)


def shadow_of(url: str) -> dict | None:
    response = requests.get(f"{url}/shadow", timeout=30)
    return response.json() if response.status_code == 200 else None


def test_a_passed_shadow_saw_its_share_answered_nobody_and_proceeds_to_canary(tiny_registry, tmp_path):
    """With a quality database, the stage judges accuracy on the mirrored papers whose labels were imported (here
    labelled before the stage, from production's earlier answers to the same papers)."""
    store = DeploymentStore(tiny_registry.base_dir)
    expected = len(picked(0.5))
    assert 0 < expected < len(PAPERS)
    criteria = replace(LENIENT, min_requests=expected, min_labelled=expected)
    db = f"sqlite:///{tmp_path / 'answers.db'}"
    with ServeProcess(tiny_registry.base_dir, [*COMMON, "--quality.db", db]) as server, QualityLog(db) as quality:
        answers = post_all(server.url)
        labels = [(arxiv_id, a["predictions"][0]["label"]) for arxiv_id, a in zip(ARXIV_IDS, answers, strict=True)]
        wait_for(lambda: len(quality.recent(PRODUCTION, papers=len(PAPERS))) == len(PAPERS))  # the server logged all
        assert quality.import_labels(labels).matched == len(PAPERS)
        request_deployment(
            tiny_registry, "shadow", CANDIDATE, share=0.5, stage_seconds=STAGE_SECONDS, criteria=criteria
        )
        wait_for(lambda: store.load().phase == Phase.SHADOW and shadow_of(server.url) is not None)
        answers = post_all(server.url)
        assert {(a["version"], a["arm"]) for a in answers} == {(PRODUCTION, "live")}
        assert CANDIDATE not in requests.get(f"{server.url}/versions", timeout=30).json()["loaded_versions"]
        wait_for(lambda: store.load().phase == Phase.IDLE)
        verdict = store.load().shadow_results[CANDIDATE]
        assert verdict["status"] == "passed", verdict
        assert verdict["numbers"]["paired"] == expected and verdict["numbers"]["errors"] == 0
        assert verdict["numbers"]["labelled"] == expected and verdict["numbers"]["production_accuracy"] == 1.0
        assert f"on {expected} labelled pairs" in verdict["reasons"][4]
        assert shadow_of(server.url) is None  # the stage ended: the candidate is unloaded

        decision = request_deployment(tiny_registry, "canary", CANDIDATE, stages=[50, 100], stage_seconds=3600)
        assert "after a passed shadow stage" in decision.reason
        wait_for(lambda: store.load().phase == Phase.CANARY)
        metrics = requests.get(f"{server.url}/metrics", params={"format": "prometheus"}, timeout=30).text
    assert f'clf_shadow_mirrored_total{{version="{CANDIDATE}"}} {float(expected)}' in metrics
    assert f'clf_shadow_answered_total{{version="{CANDIDATE}"}} {float(expected)}' in metrics
    actions = [record["action"] for record in store.decisions()]
    assert actions[:3] == [Action.REQUESTED, Action.SHADOW_STARTED, Action.SHADOW_PASSED]


def test_a_failing_shadow_never_reaches_a_user_and_is_refused_for_canary(tiny_registry):
    store = DeploymentStore(tiny_registry.base_dir)
    flags = [*COMMON, "--inject_errors", f"{CANDIDATE}=1.0"]
    with ServeProcess(tiny_registry.base_dir, flags) as server:
        request_deployment(tiny_registry, "shadow", CANDIDATE, share=1.0, stage_seconds=3600, criteria=ShadowCriteria())
        wait_for(lambda: store.load().phase == Phase.SHADOW and shadow_of(server.url) is not None)
        answers = post_all(server.url)
        assert {(a["version"], a["arm"]) for a in answers} == {(PRODUCTION, "live")}
        assert all(p["label"] and p["version"] == PRODUCTION for a in answers for p in a["predictions"])
        wait_for(lambda: store.load().phase == Phase.IDLE)  # errors end the stage long before its hour
        health = requests.get(f"{server.url}/metrics", timeout=30).json()
    assert health["errors"] == 0 and set(health["by_version"]) == {PRODUCTION}
    verdict = store.load().shadow_results[CANDIDATE]
    assert verdict["status"] == "failed" and verdict["reasons"][0].startswith("error rate 100.0%")
    with pytest.raises(DeploymentError, match=r"v1.1.0 failed its shadow stage: error rate 100.0%.*--force true"):
        request_deployment(tiny_registry, "canary", CANDIDATE)
    assert store.load().phase == Phase.IDLE
    forced = request_deployment(tiny_registry, "canary", CANDIDATE, force=True)
    assert "after a failed shadow stage (forced)" in forced.reason


def test_two_replicas_mirror_the_same_share_and_the_leader_judges_both(tiny_registry):
    store = DeploymentStore(tiny_registry.base_dir)
    expected = picked(0.5)
    criteria = ShadowCriteria(**{**LENIENT.to_json(), "max_latency_ratio": math.inf, "min_requests": 2 * len(expected)})
    with (
        ServeProcess(tiny_registry.base_dir, [*COMMON, "--fleet.replica_id", "a"]) as a,
        ServeProcess(tiny_registry.base_dir, [*COMMON, "--fleet.replica_id", "b"]) as b,
    ):
        wait_for(lambda: store.lease() is not None)
        request_deployment(
            tiny_registry, "shadow", CANDIDATE, share=0.5, stage_seconds=STAGE_SECONDS, criteria=criteria
        )
        wait_for(lambda: shadow_of(a.url) is not None and shadow_of(b.url) is not None)
        for server in (a, b):
            answers = post_all(server.url)
            assert {a["version"] for a in answers} == {PRODUCTION}
        wait_for(lambda: store.load().phase == Phase.IDLE)
        counters = [requests.get(f"{s.url}/metrics", params={"format": "prometheus"}, timeout=30).text for s in (a, b)]
    verdict = store.load().shadow_results[CANDIDATE]
    assert verdict["status"] == "passed", verdict
    assert verdict["numbers"]["replicas"] == 2 and verdict["numbers"]["paired"] == 2 * len(expected)
    for text in counters:  # the same papers mirrored on each replica
        assert f'clf_shadow_answered_total{{version="{CANDIDATE}"}} {float(len(expected))}' in text


# ------------------------------------------------------------------ the strategy in one process, on a clock it moves


@pytest.fixture
def fleet_of_one(tiny_registry):
    clock = Clock()
    service = service_on(tiny_registry, clock, warmup=False)
    controller = DeploymentController(service, clock=clock)
    yield service, controller, clock
    service.close()


def settle(service) -> None:
    mirror = service.shadow
    wait_for(
        lambda: mirror.queued == 0 and mirror.counts["answered"] + mirror.counts["errors"] == mirror.counts["mirrored"]
    )


def test_a_stage_short_of_paired_answers_fails_after_three_lengths(fleet_of_one, tiny_registry):
    service, controller, clock = fleet_of_one
    criteria = ShadowCriteria(min_requests=1000)
    request_deployment(tiny_registry, "shadow", CANDIDATE, share=1.0, stage_seconds=10, criteria=criteria)
    assert [d.action for d in controller.tick()] == [Action.SHADOW_STARTED]
    answer(service, 5)
    settle(service)
    clock.advance(11)
    assert controller.tick() == []  # its time is up, but 5 of 1000 pairs is no verdict yet
    clock.advance(20)
    [decision] = controller.tick()
    assert decision.action == Action.SHADOW_FAILED
    assert decision.reason == "too few paired answers after 31 s: 5 of 1000 paired answers: not judged yet"
    assert service.shadow is None and controller.store.load().shadow_results[CANDIDATE]["status"] == "failed"


def test_a_withdrawn_shadow_stops_mirroring_and_leaves_no_verdict(fleet_of_one, tiny_registry):
    service, controller, _ = fleet_of_one
    request_deployment(tiny_registry, "shadow", CANDIDATE, share=1.0, stage_seconds=10)
    controller.tick()
    assert service.shadow is not None and service.shadow.version == CANDIDATE
    request_rollback(tiny_registry, "not now")
    controller.tick()
    assert service.shadow is None and controller.store.load().shadow_results == {}
    assert tiny_registry.production_version() == PRODUCTION


def test_a_restarted_service_mirrors_again_and_the_stage_clock_runs_on(fleet_of_one, tiny_registry):
    service, controller, clock = fleet_of_one
    request_deployment(tiny_registry, "shadow", CANDIDATE, share=0.5, stage_seconds=10)
    controller.tick()
    started = controller.store.load().stage_started_at
    service.close()
    restarted = service_on(tiny_registry, clock, warmup=False)
    try:
        clock.advance(5)
        again = DeploymentController(restarted, clock=clock)
        assert again.store.load().stage_started_at == started
        assert restarted.shadow is not None and restarted.shadow.share == 0.5
        assert again.store.decisions()[-1]["action"] == Action.RESUMED
    finally:
        restarted.close()


def test_a_share_outside_0_1_is_refused_before_validation_and_nothing_is_requested(tiny_registry):
    settings = DeploymentSettings(registry=str(tiny_registry.base_dir))
    with pytest.raises(DeploymentError, match=r"--share must be in \(0, 1\], got 1.5"):
        shadow(CANDIDATE, share=1.5, deployment=settings)
    assert DeploymentStore(tiny_registry.base_dir).load().phase == Phase.IDLE


@pytest.mark.parametrize(
    ("truth", "status", "accuracy"),
    [
        ("production", "failed", r"accuracy \d+\.\d% vs production's 100\.0% on 16 labelled pairs, .*: fail"),
        ("candidate", "passed", r"accuracy 100\.0% vs production's \d+\.\d% on 16 labelled pairs, .*: pass"),
        ("none arrived", "passed", r"accuracy: 0 of 16 labelled pairs needed: not judged"),
        ("unreadable", "passed", r"accuracy: 0 of 16 labelled pairs needed: not judged"),
    ],
)
def test_a_shadow_is_judged_on_accuracy_where_the_mirrored_papers_labels_arrived(
    tiny_registry, monkeypatch, truth, status, accuracy
):
    """The true label of every mirrored paper is production's answer (the candidate, which disagrees on some papers,
    is less accurate: fails), or the candidate's (as accurate or more: passes); none arrived, or the label source
    is down: accuracy is not judged and the other criteria decide."""
    load = ModelPredictor.from_registry.__func__
    monkeypatch.setattr(
        ModelPredictor,
        "from_registry",
        classmethod(lambda cls, registry, version, *args: load(
            DisagreeingPredictor if version == CANDIDATE else cls, registry, version, *args
        )),
    )  # fmt: skip
    clock = Clock()
    service = service_on(tiny_registry, clock, warmup=False)
    arrived: dict[str, str] = {}
    asked: list[list[str]] = []

    def labels(ids):
        asked.append(list(ids))
        if truth == "unreadable":
            raise ConnectionError("the quality database is down")
        return {arxiv_id: arrived[arxiv_id] for arxiv_id in ids if arxiv_id in arrived}

    controller = DeploymentController(service, clock=clock, labels=labels)
    criteria = replace(LENIENT, min_requests=16, min_labelled=16, max_accuracy_drop=0.0)
    try:
        request_deployment(tiny_registry, "shadow", CANDIDATE, share=1.0, stage_seconds=10, criteria=criteria)
        controller.tick()
        for paper, arxiv_id in zip(PAPERS, ARXIV_IDS, strict=True):
            service.predict({**paper, "arxiv_id": arxiv_id})
            settle(service)  # one paper at a time: the shadow's one-batch queue never sheds one on a busy machine
        pairs = service.shadow.snapshot()["samples"]["pairs"]
        assert sorted(pair[4] for pair in pairs) == sorted(ARXIV_IDS)
        assert 0 < sum(pair[0] != pair[1] for pair in pairs) < len(pairs)  # the candidate disagrees on some papers
        if truth in ("production", "candidate"):
            arrived.update({pair[4]: pair[0 if truth == "production" else 1] for pair in pairs})
        clock.advance(11)
        [decision] = controller.tick()
    finally:
        service.close()
    verdict = controller.store.load().shadow_results[CANDIDATE]
    assert verdict["status"] == status and decision.action == f"shadow_{status}", verdict
    assert asked[-1] == sorted(ARXIV_IDS)
    assert re.fullmatch(accuracy, verdict["reasons"][4]), verdict["reasons"]
    assert verdict["numbers"]["labelled"] == (16 if truth in ("production", "candidate") else 0)
    unread = [reason for reason in verdict["reasons"] if reason.startswith("true labels could not be read")]
    assert unread == (["true labels could not be read (ConnectionError: the quality database is down): accuracy "
                       "not judged"] if truth == "unreadable" else [])  # fmt: skip
