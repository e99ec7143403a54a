"""Tests for clf/serving/service.py: which version loads, predictions, validation, routing, hot swap, monitoring."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
import torch

from clf.registry import ModelRegistry, RegistryError
from clf.serving import (
    BASE_VERSION,
    ClassificationService,
    InvalidInputError,
    ModelPredictor,
    NoModelError,
    WeightedSplit,
)
from clf.serving.config import Batching
from clf.serving.errors import ClientErrorReason, DeadlineExceededError, OverloadedError
from tests.conftest import load_shared_papers
from tests.helpers.exports import LABELS
from tests.helpers.faults import HeldPredictor, PoisonedPredictor

PAPERS = [{"title": p["title"], "abstract": p["abstract"]} for p in load_shared_papers(limit=12)]


class FailingPredictor(ModelPredictor):
    """A real loaded model whose forward pass fails, as a corrupted GPU state or a bad kernel would."""

    def predict_texts(self, texts, batch_size=32):
        raise RuntimeError("injected inference failure")


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def held_service(registry, **batching) -> tuple[ClassificationService, HeldPredictor]:
    """A service serving v1.1.0 through a `HeldPredictor`; its first request keeps the model busy until released."""
    service = ClassificationService(registry, batching=Batching(max_wait_ms=0, **batching), warmup=False)
    held = HeldPredictor(registry.version_dir("v1.1.0"), "v1.1.0")
    service.load("v1.1.0", predictor=held)
    service.swap("v1.1.0")
    return service, held


@pytest.fixture
def service(tiny_registry):
    service = ClassificationService(tiny_registry, batching=Batching(max_wait_ms=1))
    yield service
    service.close()


def test_serves_the_production_version_by_default_and_logs_it(tiny_registry, caplog):
    with caplog.at_level("INFO", logger="clf.serving"):
        service = ClassificationService(tiny_registry)
    assert service.live_version == "v1.0.0" and service.loaded_versions == ["v1.0.0"]
    assert "serving v1.0.0" in caplog.text
    service.close()


def test_a_named_version_is_served_instead(tiny_registry):
    service = ClassificationService(tiny_registry, version="v1.1.0")
    assert service.live_version == "v1.1.0"
    service.close()


def test_the_base_model_is_used_only_when_the_registry_is_empty(tmp_path, tiny_exports, tiny_registry):
    empty = ModelRegistry(tmp_path / "empty")
    service = ClassificationService(empty, base_model=tiny_exports["v1.1.0"])
    assert service.live_version == BASE_VERSION
    assert service.predict(PAPERS[0])[0].version == BASE_VERSION
    service.close()
    assert ClassificationService(tiny_registry, base_model=tiny_exports["v1.1.0"]).live_version == "v1.0.0"


def test_an_empty_registry_without_a_base_model_says_how_to_fix_it(tmp_path):
    with pytest.raises(NoModelError, match="clf registry create --model-path"):
        ClassificationService(tmp_path / "empty")


def test_versions_but_none_in_production_asks_for_a_promotion(tmp_path, tiny_exports):
    registry = ModelRegistry(tmp_path / "r")
    registry.create_version(tiny_exports["v1.0.0"], "v1.0.0")
    with pytest.raises(RegistryError, match="clf registry promote"):
        ClassificationService(registry)


def test_each_paper_gets_label_probability_top3_version_and_arm(service):
    records = service.predict(PAPERS[:5])
    assert len(records) == 5
    for record in records:
        assert record.label in LABELS.values() and record.version == "v1.0.0" and record.arm == "live"
        probabilities = [entry.probability for entry in record.top3]
        assert probabilities == sorted(probabilities, reverse=True) and record.probability == probabilities[0]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)  # three classes: top-3 is everything


def test_batched_predictions_match_the_registry_model_one_at_a_time(service, tiny_registry):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tiny_registry.version_dir("v1.0.0")
    model = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = service.texts_of(PAPERS)
    batched = service.predict(PAPERS)
    for text, record in zip(texts, batched, strict=True):
        with torch.inference_mode():
            probabilities = model(
                **tokenizer(text, truncation=True, max_length=64, return_tensors="pt")
            ).logits.softmax(-1)
        assert record.label == LABELS[int(probabilities.argmax())]
        assert record.probability == pytest.approx(float(probabilities.max()), abs=1e-4)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "no papers"),
        ({"title": "", "abstract": "   "}, "paper 0: empty text"),
        ([PAPERS[0], {"title": 3, "abstract": "x"}], "paper 1: 'title' must be a string, got int"),
        ([PAPERS[0], 42], "paper 1: expected an object"),
        ({"title": "t", "abstract": "a" * 30_000}, "at most 20000"),
        ([PAPERS[0]] * 65, "at most 64"),
        ({"title": "ab", "abstract": "c \ud800 d"}, "paper 0: 'abstract' holds a lone UTF-16 surrogate"),
        ({"title": "\u202e\u200b", "abstract": "\x00\x07"}, "paper 0: empty text"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(service, inputs, message):
    with pytest.raises(InvalidInputError, match=message):
        service.predict(inputs)
    assert service.monitor.get_metrics(5)["total"] == 0


def test_control_and_bidi_characters_are_cleaned_away_before_the_model(service):
    clean = {"title": PAPERS[0]["title"], "abstract": PAPERS[0]["abstract"]}
    dirty = {"title": "\u202e" + clean["title"] + "\x00", "abstract": clean["abstract"].replace(" ", " \u200b\x07", 5)}
    assert service.texts_of(dirty) == service.texts_of(clean)
    assert service.predict(dirty)[0].label == service.predict(clean)[0].label


def test_refusals_carry_the_reason_they_are_counted_under(service):
    cases = {
        ClientErrorReason.INVALID_ENCODING: {"title": "x", "abstract": "\udfff"},
        ClientErrorReason.EMPTY_TEXT: {"title": " ", "abstract": "$x^2$"},
        ClientErrorReason.TEXT_TOO_LONG: {"text": "word " * 5000},
        ClientErrorReason.TOO_MANY_PAPERS: [PAPERS[0]] * 65,
        ClientErrorReason.INVALID_SHAPE: [{"title": 1}],
    }
    for reason, inputs in cases.items():
        with pytest.raises(InvalidInputError) as refused:
            service.submit(inputs)
        assert refused.value.reason == reason and 400 <= refused.value.status < 500


def test_one_paper_that_breaks_the_model_fails_alone(service, tiny_registry):
    service.load("v1.1.0", predictor=PoisonedPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0"))
    service.swap("v1.1.0")
    records = service.predict([PAPERS[0], {"title": "Poison", "abstract": "x"}, PAPERS[1]])
    assert [r.label is not None for r in records] == [True, False, True]
    assert "TextEncodeInput" in records[1].error and records[1].prediction_id is None
    assert records[0].prediction_id and records[2].prediction_id
    metrics = service.monitor.get_metrics(5)["by_version"]["v1.1.0"]
    assert (metrics["total"], metrics["errors"]) == (3, 1)
    with pytest.raises(TypeError, match="TextEncodeInput"):
        service.predict({"title": "poison", "abstract": "only"})


def test_prediction_ids_are_signed_for_their_version_and_arm(service):
    record = service.predict(PAPERS[0])[0]
    service.prediction_ids.verify(record.prediction_id, record.version, record.arm)
    with pytest.raises(InvalidInputError, match="not issued by this service for v1.0.0 \\(canary\\)"):
        service.prediction_ids.verify(record.prediction_id, "v1.0.0", "canary")


def test_a_full_queue_sheds_instead_of_queueing_and_nothing_counts_as_an_error(tiny_registry):
    service, held = held_service(tiny_registry, max_batch_size=2, max_queue=2)
    running = service.submit(PAPERS[0])
    wait_until(held.running.is_set)
    queued = service.submit(PAPERS[1:3])
    with pytest.raises(OverloadedError, match="v1.1.0 is overloaded") as shed:
        service.submit(PAPERS[3])
    assert shed.value.retry_after_s >= 1 and service.batch_stats()["v1.1.0"]["queued"] == 2
    held.release.set()
    assert len(running.result(30)) == 1 and len(queued.result(30)) == 2
    assert service.monitor.get_metrics(5)["errors"] == 0
    service.close()


def test_a_request_past_its_deadline_is_dropped_from_the_queue_unrun(tiny_registry):
    service, held = held_service(tiny_registry)
    running = service.submit(PAPERS[0])
    wait_until(held.running.is_set)
    with pytest.raises(DeadlineExceededError, match="no answer within 0.05 s"):
        service.predict(PAPERS[1], timeout=0.05)
    late = service.submit(PAPERS[2], timeout_s=0.05)
    time.sleep(0.1)
    held.release.set()
    running.result(30)
    with pytest.raises(DeadlineExceededError):
        late.result(30)
    stats = service.batch_stats()["v1.1.0"]
    assert stats["dropped"] == 2 and stats["texts_run"] == 1
    metrics = service.monitor.get_metrics(5)
    assert (metrics["total"], metrics["errors"]) == (1, 0), "a dropped request is neither a prediction nor an error"
    service.close()


def test_every_prediction_records_its_queue_wait_and_model_latency(service):
    service.predict(PAPERS[:3])
    metrics = service.monitor.get_metrics(5)
    assert metrics["model_latency_by_batch"]["2-3"]["papers"] == 3
    assert metrics["model_latency_p95_ms"] > 0 and metrics["queue_p95_ms"] >= 0


def test_every_answer_is_recorded_with_its_version(service):
    service.predict(PAPERS[:3])
    service.predict(PAPERS[3])
    metrics = service.monitor.get_metrics(5)
    assert metrics["total"] == 4 and metrics["error_rate"] == 0.0
    assert set(metrics["by_version"]) == {"v1.0.0"} and metrics["avg_confidence"] > 1 / 3


def test_a_split_routes_each_user_to_a_sticky_arm(service):
    service.load("v1.1.0")
    service.set_traffic_rule(WeightedSplit("v1.0.0", "v1.1.0", treatment_share=0.5, salt="exp"))
    first = {f"u{i}": service.predict(PAPERS[0], user_id=f"u{i}")[0].version for i in range(40)}
    assert set(first.values()) == {"v1.0.0", "v1.1.0"}
    assert all(service.predict(PAPERS[1], user_id=user)[0].version == version for user, version in first.items())
    assert set(service.monitor.get_metrics(5)["by_version"]) == {"v1.0.0", "v1.1.0"}


def test_rules_and_unloads_that_would_strand_traffic_are_refused(service):
    with pytest.raises(ValueError, match="not loaded"):
        service.set_traffic_rule(WeightedSplit("v1.0.0", "v1.1.0", 0.1))
    with pytest.raises(ValueError, match="still receives traffic"):
        service.unload("v1.0.0")


def test_hot_swap_under_concurrent_requests_answers_every_request(service):
    stop = threading.Event()
    answered: list[str] = []
    failures: list[BaseException] = []

    def client(n: int) -> None:
        while not stop.is_set():
            try:
                answered.append(service.predict(PAPERS[n % len(PAPERS)], user_id=f"c{n}")[0].version)
            except BaseException as err:  # noqa: BLE001 - every failure is the finding
                failures.append(err)

    with ThreadPoolExecutor(8) as pool:
        for n in range(8):
            pool.submit(client, n)
        wait_until(lambda: len(answered) >= 40 or bool(failures))
        assert service.swap("v1.1.0") == "v1.0.0"
        service.unload("v1.0.0")  # answers what was queued on v1.0.0 first
        count_at_swap = len(answered)
        wait_until(lambda: len(answered) >= count_at_swap + 40 or bool(failures))
        stop.set()
    assert failures == []
    # Each of the 8 clients may still record one v1.0.0 answer it got just before the unload returned.
    assert {"v1.0.0", "v1.1.0"} <= set(answered) and answered[count_at_swap:].count("v1.0.0") <= 8
    assert service.loaded_versions == ["v1.1.0"]
    assert service.monitor.get_metrics(5)["total"] == len(answered)


def test_an_inference_failure_reaches_the_caller_and_counts_as_an_error(service, tiny_registry):
    broken = FailingPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0")
    service.warmup = False
    service.load("v1.1.0", predictor=broken)
    service.swap("v1.1.0")
    with pytest.raises(RuntimeError, match="injected inference failure"):
        service.predict(PAPERS[:2])
    metrics = service.monitor.get_metrics(5)
    assert metrics["by_version"]["v1.1.0"]["errors"] == 2 and metrics["error_rate"] == 1.0


def test_weights_changed_on_disk_do_not_reach_a_loaded_model(service, tiny_registry):
    def answers():
        return [replace(record, prediction_id=None) for record in service.predict(PAPERS[:3])]

    before = answers()
    weights = tiny_registry.version_dir("v1.0.0") / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:  # in place: the same inode a memory map would still read
        handle.seek(size // 2)
        handle.write(b"\0" * (size // 2))
    assert answers() == before
    weights.write_bytes(b"")  # truncated: reading a mapped page now would kill the process with SIGBUS
    assert answers() == before


def test_listeners_see_every_request_with_its_route_and_ids(service):
    events = []
    service.add_prediction_listener(events.append)
    service.add_prediction_listener(lambda event: 1 / 0)  # a broken listener must not reach the caller
    service.load("v1.1.0")
    service.set_traffic_rule(WeightedSplit("v1.0.0", "v1.1.0", 0.5, salt="e", experiment="exp-1"))
    records = service.predict(PAPERS[:2], user_id="u-1")
    assert all(record.experiment_id == "exp-1" for record in records)
    assert len({record.prediction_id for record in records}) == 2
    (event,) = events
    assert event.user_id == "u-1" and event.route.experiment == "exp-1" and event.records == records
    assert event.error is None and event.latency_ms > 0 and len(event.texts) == 2


def test_a_version_that_fails_its_warm_up_is_not_loaded(service, tiny_registry):
    from clf.serving import ModelLoadError

    with pytest.raises(ModelLoadError, match="fails its warm-up prediction"):
        service.load("v1.1.0", predictor=FailingPredictor(tiny_registry.version_dir("v1.1.0"), "v1.1.0"))
    assert service.loaded_versions == ["v1.0.0"]


def test_two_concurrent_loads_of_one_version_leave_one_worker(service):
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: service.load("v1.1.0"), range(2))
    assert first is second and service.loaded_versions == ["v1.0.0", "v1.1.0"]
    workers = [t for t in threading.enumerate() if t.name == "clf-batcher-v1.1.0" and t.is_alive()]
    assert len(workers) == 1
