"""Tests for clf/serving/batching.py: concurrent requests share forward passes; a full queue sheds; deadlines and
cancellations drop queued work; one failing text fails alone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from clf.serving.batching import DynamicBatcher
from clf.serving.errors import DeadlineExceededError, OverloadedError, ServiceClosedError


class Recorder:
    """A predict function that echoes its texts and records each call's size, optionally holding the first call."""

    def __init__(self, hold_first: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.hold_first = hold_first
        self.started = threading.Event()

    def __call__(self, texts: list[str]) -> list[dict]:
        self.started.set()
        if self.hold_first is not None and not self.sizes:
            self.hold_first.wait(10)
        self.sizes.append(len(texts))
        return [{"label": text.upper()} for text in texts]


def test_requests_queued_while_the_model_is_busy_share_one_pass():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=32, max_wait_ms=0)
    first = batcher.submit(["a"])
    predict.started.wait(5)
    waiting = [batcher.submit([f"t{i}", f"u{i}"]) for i in range(10)]
    release.set()
    assert first.result(5).results == [{"label": "A"}]
    answers = [f.result(5) for f in waiting]
    assert [a.results for a in answers] == [[{"label": f"T{i}"}, {"label": f"U{i}"}] for i in range(10)]
    assert {a.batch_size for a in answers} == {20} and first.result(5).batch_size == 1
    assert predict.sizes == [1, 20]
    batcher.close()


def test_a_full_batch_leaves_the_rest_for_the_next_pass():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=4, max_wait_ms=0)
    batcher.submit(["x"])
    predict.started.wait(5)
    futures = [batcher.submit([str(i)]) for i in range(10)]
    release.set()
    assert [f.result(5).results[0]["label"] for f in futures] == [str(i) for i in range(10)]
    assert predict.sizes == [1, 4, 4, 2]
    batcher.close()


def test_a_request_that_would_overfill_the_batch_starts_the_next_one():
    # 31 texts then 32: gathered into one pass, they would make 63, twice the configured maximum.
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=32, max_wait_ms=0)
    batcher.submit(["x"])
    predict.started.wait(5)
    first, second = batcher.submit([f"a{i}" for i in range(31)]), batcher.submit([f"b{i}" for i in range(32)])
    third = batcher.submit(["c"])
    release.set()
    assert [len(f.result(5).results) for f in (first, second, third)] == [31, 32, 1]
    assert predict.sizes == [1, 31, 32, 1], "no pass above max_batch_size"
    assert max(predict.sizes) <= batcher.max_batch_size
    batcher.close()


def test_a_held_back_request_can_still_be_cancelled():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=4, max_wait_ms=0)
    batcher.submit(["x"])
    predict.started.wait(5)
    kept, held = batcher.submit(["a", "b", "c"]), batcher.submit(["d", "e"])
    held.cancel()
    release.set()
    assert kept.result(5).results == [{"label": "A"}, {"label": "B"}, {"label": "C"}]
    batcher.close()
    assert predict.sizes == [1, 3] and held.cancelled()


def test_without_batching_each_request_runs_alone():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, batching=False)
    batcher.submit(["x"])
    predict.started.wait(5)
    futures = [batcher.submit(["a", "b"]) for _ in range(5)]
    release.set()
    for future in futures:
        future.result(5)
    assert predict.sizes == [1, 2, 2, 2, 2, 2]
    batcher.close()


def test_concurrent_callers_each_get_their_own_answers():
    batcher = DynamicBatcher(Recorder(), max_batch_size=8, max_wait_ms=2)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: batcher.submit([f"r{i}", f"s{i}"]).result(5).results, range(200)))
    assert results == [[{"label": f"R{i}"}, {"label": f"S{i}"}] for i in range(200)]
    assert batcher.batches_run < 200
    batcher.close()


def test_a_failing_pass_fails_its_request_and_the_worker_goes_on():
    calls = []

    def flaky(texts: list[str]) -> list[dict]:
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: device-side assert")
        return [{"label": t} for t in texts]

    batcher = DynamicBatcher(flaky, max_wait_ms=0)
    [failure] = batcher.submit(["boom"]).result(5).results
    assert isinstance(failure, RuntimeError) and "device-side assert" in str(failure)
    assert batcher.submit(["fine"]).result(5).results == [{"label": "fine"}]
    batcher.close()


def test_one_text_that_breaks_the_model_fails_alone_not_the_requests_sharing_its_pass():
    release, started = threading.Event(), threading.Event()
    sizes = []

    def predict(texts: list[str]) -> list[dict]:
        if not sizes:
            started.set()
            release.wait(10)
        sizes.append(len(texts))
        if "poison" in texts:
            raise TypeError("TextEncodeInput must be Union[...]")
        return [{"label": t} for t in texts]

    batcher = DynamicBatcher(predict, max_batch_size=32, max_wait_ms=0)
    batcher.submit(["warm"])
    started.wait(5)
    futures = [batcher.submit(["a", "b"]), batcher.submit(["poison", "c"]), batcher.submit(["d"])]
    release.set()
    answers = [f.result(5) for f in futures]
    assert answers[0].results == [{"label": "a"}, {"label": "b"}] and answers[2].results == [{"label": "d"}]
    poisoned, fine = answers[1].results
    assert isinstance(poisoned, TypeError) and fine == {"label": "c"}
    assert sizes == [1, 5, 1, 1, 1, 1, 1], "the failed pass of 5 is rerun one text at a time"
    assert {a.batch_size for a in answers} == {5}
    batcher.close()


def test_a_full_queue_sheds_with_a_retry_hint_and_an_empty_one_takes_any_request():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=2, max_wait_ms=0, max_queue=4, name="v1.0.0")
    batcher.submit(["running"])
    predict.started.wait(5)
    accepted = [batcher.submit(["a", "b"]), batcher.submit(["c", "d"])]
    with pytest.raises(OverloadedError, match="v1.0.0 is overloaded: 4 papers already wait") as shed:
        batcher.submit(["e"])
    assert shed.value.retry_after_s >= 1 and batcher.queued == 4
    release.set()
    assert [f.result(5).results for f in accepted] == [
        [{"label": "A"}, {"label": "B"}],
        [{"label": "C"}, {"label": "D"}],
    ]
    assert len(batcher.submit([str(i) for i in range(10)]).result(5).results) == 10, "larger than the queue, alone"
    batcher.close()


def test_requests_past_their_deadline_or_cancelled_are_dropped_unrun():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_batch_size=32, max_wait_ms=0)
    batcher.submit(["running"])
    predict.started.wait(5)
    expired = batcher.submit(["late"], timeout_s=0.01)
    cancelled = batcher.submit(["gone"])
    kept = batcher.submit(["kept"], timeout_s=60)
    assert cancelled.cancel()
    threading.Event().wait(0.05)  # past the 10 ms deadline, whatever the scheduler does
    release.set()
    assert kept.result(5).results == [{"label": "KEPT"}]
    with pytest.raises(DeadlineExceededError, match="no answer within 0.01 s"):
        expired.result(5)
    assert predict.sizes == [1, 1] and batcher.dropped == 2 and batcher.queued == 0
    batcher.close()


def test_each_answer_carries_its_queue_wait_and_its_batch_service_time():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_wait_ms=0)
    first = batcher.submit(["first"])
    predict.started.wait(5)
    second = batcher.submit(["second"])
    threading.Event().wait(0.05)
    release.set()
    held, waited = first.result(5), second.result(5)
    assert held.service_ms >= 50 and held.queue_ms < held.service_ms
    assert waited.queue_ms >= 50, "it waited for the held batch"
    batcher.close()


def test_close_answers_what_is_queued_then_refuses_new_requests():
    release = threading.Event()
    predict = Recorder(hold_first=release)
    batcher = DynamicBatcher(predict, max_wait_ms=0)
    batcher.submit(["first"])
    predict.started.wait(5)
    queued = [batcher.submit([str(i)]) for i in range(5)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    release.set()
    closer.join(5)
    assert [f.result(0).results[0]["label"] for f in queued] == [str(i) for i in range(5)]
    with pytest.raises(ServiceClosedError, match="retry"):
        batcher.submit(["late"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"max_queue": 0}, "max_queue"),
    ],
)
def test_bad_settings_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(Recorder(), **kwargs)
