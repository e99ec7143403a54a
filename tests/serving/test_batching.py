"""Tests for clf/serving/batching.py: concurrent requests share forward passes; failures reach every caller."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from clf.serving.batching import DynamicBatcher
from clf.serving.errors import ServiceClosedError


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
    assert first.result(5) == [{"label": "A"}]
    assert [f.result(5) for f in waiting] == [[{"label": f"T{i}"}, {"label": f"U{i}"}] for i in range(10)]
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
    assert [f.result(5)[0]["label"] for f in futures] == [str(i) for i in range(10)]
    assert predict.sizes == [1, 4, 4, 2]
    batcher.close()


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
        results = list(pool.map(lambda i: batcher.submit([f"r{i}", f"s{i}"]).result(5), range(200)))
    assert results == [[{"label": f"R{i}"}, {"label": f"S{i}"}] for i in range(200)]
    assert batcher.batches_run < 200
    batcher.close()


def test_a_failing_pass_fails_every_request_in_it_and_the_worker_goes_on():
    calls = []

    def flaky(texts: list[str]) -> list[dict]:
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("CUDA error: device-side assert")
        return [{"label": t} for t in texts]

    batcher = DynamicBatcher(flaky, max_wait_ms=0)
    with pytest.raises(RuntimeError, match="device-side assert"):
        batcher.submit(["boom"]).result(5)
    assert batcher.submit(["fine"]).result(5) == [{"label": "fine"}]
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
    assert [f.result(0)[0]["label"] for f in queued] == [str(i) for i in range(5)]
    with pytest.raises(ServiceClosedError, match="retry"):
        batcher.submit(["late"])


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"max_batch_size": 0}, "--max-batch-size"), ({"max_wait_ms": -1}, "--max-wait-ms")]
)
def test_bad_settings_name_the_option(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DynamicBatcher(Recorder(), **kwargs)
