"""The shadow mirror in the service: a share of production's answered requests, run on a candidate, never answered."""

from __future__ import annotations

import time

import pytest

from clf.monitoring.shadow import judge_shadow
from clf.serving import ClassificationService
from clf.serving.config import Batching
from clf.serving.shadow import mirrored_share, shadow_observations
from tests.deploy.conftest import PAPERS


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def settled(mirror) -> bool:
    counts = mirror.counts
    return mirror.queued == 0 and counts["answered"] + counts["errors"] == counts["mirrored"]


def test_the_candidate_sees_the_share_and_users_get_production_only(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1, max_queue=1000))
    try:
        mirror = service.start_shadow("v1.1.0", share=0.5, max_queue=1000)
        picked = sum(mirrored_share(service.texts_of(p), "v1.1.0") < 0.5 for p in PAPERS)
        assert 0 < picked < len(PAPERS)  # the share splits these papers, so the test says which ones are mirrored
        for paper in PAPERS:
            [answer] = service.predict(paper)
            assert answer.version == "v1.0.0" and answer.arm == "live"
        wait_for(lambda: settled(mirror))
        assert mirror.counts == {"mirrored": picked, "answered": picked, "errors": 0, "dropped": 0}
        assert service.loaded_versions == ["v1.0.0"] and "v1.1.0" not in service.monitor.get_metrics(5)["by_version"]
        verdict = judge_shadow(mirror.observations())
        assert verdict.numbers["paired"] == picked and verdict.numbers["production_p95_ms"] is not None
        exposition = service.metrics.exposition().decode()
        assert f'clf_shadow_answered_total{{version="v1.1.0"}} {float(picked)}' in exposition
    finally:
        service.close()


def test_a_failing_candidate_counts_errors_and_never_reaches_a_user(tiny_registry):
    service = ClassificationService(
        tiny_registry, batching=Batching(max_wait_ms=1), fault_injection={"v1.1.0": 1.0}, warmup=False
    )
    try:
        mirror = service.start_shadow("v1.1.0", share=1.0, max_queue=1000)
        answers = [service.predict(paper)[0] for paper in PAPERS]
        assert all(a.version == "v1.0.0" and a.label for a in answers)
        wait_for(lambda: settled(mirror))
        assert mirror.counts["errors"] == len(PAPERS) and mirror.counts["answered"] == 0
        assert judge_shadow(mirror.observations()).status == "failed"
    finally:
        service.close()


def test_each_pair_keeps_the_arxiv_id_its_request_sent_for_labels_that_arrive_later(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1, max_queue=1000), warmup=False)
    try:
        mirror = service.start_shadow("v1.1.0", share=1.0, max_queue=1000)
        service.predict([{**PAPERS[0], "arxiv_id": "2401.00001v2"}, PAPERS[1]])
        service.predict(PAPERS[2])
        wait_for(lambda: settled(mirror))
        assert [pair[4] for pair in mirror.snapshot()["samples"]["pairs"]] == ["2401.00001v2", None, None]
        assert mirror.observations().arxiv_ids == ["2401.00001v2", None, None]
    finally:
        service.close()
    published_before_ids = {"answered": 1, "samples": {"pairs": [["cs.CL", "cs.LG", 0.9, 0.8]]}}
    assert shadow_observations([published_before_ids]).arxiv_ids == [None]  # a replica not yet upgraded


def test_a_full_shadow_queue_drops_and_counts_the_mirror(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1, max_queue=1000))
    try:
        mirror = service.start_shadow("v1.1.0", share=1.0, max_queue=1)
        futures = [service.submit([paper] * 4) for paper in PAPERS]
        assert all(f.result(60)[0].version == "v1.0.0" for f in futures)
        wait_for(lambda: settled(mirror))
        counts = mirror.counts
        assert counts["dropped"] > 0
        assert counts["mirrored"] + counts["dropped"] == 4 * len(PAPERS)  # every shadowed paper is counted
    finally:
        service.close()


def test_the_live_version_cannot_be_its_own_shadow(tiny_registry):
    service = ClassificationService(tiny_registry)
    try:
        with pytest.raises(ValueError, match="v1.0.0 is the live version"):
            service.start_shadow("v1.0.0", share=1.0)
        with pytest.raises(ValueError, match="--share must be in"):
            service.start_shadow("v1.1.0", share=0.0)
        assert service.shadow is None
    finally:
        service.close()
