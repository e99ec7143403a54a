"""Dynamic batching with back-pressure: requests that arrive together share one forward pass; a full queue sheds.

One worker thread per loaded version takes requests from a bounded queue. With batching on, it gathers every
request already waiting, then waits up to ``max_wait_ms`` for more while the batch holds fewer than
``max_batch_size`` texts, and runs them through the model together; each request's future gets its own slice of
the results. With batching off, each request runs alone (its own texts still form one batch).

Three promises keep one client (or one paper) from harming the others:

* **a bounded queue**: once ``max_queue`` texts wait, `submit` raises `OverloadedError` with a retry hint instead of
  queueing; latency of what is accepted stays near ``max_queue / max_batch_size`` batches;
* **deadlines**: a request whose deadline passed while it waited, or whose caller cancelled its future, is dropped
  from the queue without being run;
* **failure isolation**: when a batch fails, each of its texts is run again on its own, so one paper that makes the
  model fail fails alone, not the requests that happened to share its pass.

Each answer carries its timings: time waiting in the queue, and time in the model (the service time of its batch),
so latency gates can judge the model apart from the queue.

    batcher = DynamicBatcher(predictor.predict_texts, max_batch_size=32, max_wait_ms=5, max_queue=128)
    answer = batcher.submit(["first text", "second text"], timeout_s=30).result()
    answer.results, answer.queue_ms, answer.service_ms, answer.batch_size
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from clf.inference.prediction import Prediction
from clf.serving.errors import DeadlineExceededError, OverloadedError, ServiceClosedError

log = logging.getLogger(__name__)

PredictFn = Callable[[list[str]], list[Prediction]]


@dataclass(frozen=True)
class BatchAnswer:
    """What one request got from the worker.

    Attributes:
        results: one entry per text, in order: its prediction record, or the exception that text raised when run
            on its own.
        queue_ms: time from `submit` until its batch started.
        service_ms: time its batch spent in the model (tokenising, forward passes, and any reruns of a failed batch).
        batch_size: texts in that batch (this request's and those it shared the pass with).
    """

    results: list[Prediction | Exception]
    queue_ms: float
    service_ms: float
    batch_size: int


@dataclass
class _Request:
    texts: list[str]
    enqueued: float
    timeout_s: float | None
    future: Future[BatchAnswer] = field(default_factory=Future)

    @property
    def deadline(self) -> float | None:
        return None if self.timeout_s is None else self.enqueued + self.timeout_s


_STOP = object()


class DynamicBatcher:
    """Runs `predict` on batches gathered from concurrent `submit` calls, in one worker thread.

    Args:
        predict: classifies a list of texts of any length (chunking it itself), returning one record per text.
        max_batch_size: most texts gathered into one call of `predict` (a larger request runs alone).
        max_wait_ms: how long a partly filled batch waits for more requests.
        batching: False runs one request per forward pass.
        max_queue: most texts waiting at once; a request that would go past it is refused with `OverloadedError`
            (a request is always taken by an empty queue, however large). None: unbounded.
        name: names the worker thread and the errors (the version it serves).

    Raises:
        ValueError: for a batch size or queue below 1, or a negative wait.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        batching: bool = True,
        max_queue: int | None = None,
        name: str = "",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if max_queue is not None and max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.batching = batching
        self.max_queue = max_queue
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._queued = 0
        self._held: _Request | None = None
        """A request taken off the queue that would have overfilled the batch being gathered: it starts the next."""
        self._seconds_per_text: float | None = None
        self.batches_run = 0
        self.texts_run = 0
        self.dropped = 0
        """Requests taken off the queue unrun: cancelled by their caller or past their deadline."""
        self._thread = threading.Thread(target=self._run, name=f"clf-batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str], timeout_s: float | None = None) -> Future[BatchAnswer]:
        """Queues `texts` as one request; the future resolves to a `BatchAnswer` with one result per text.

        Cancelling the future before its batch starts drops the request from the queue.

        Args:
            texts: the model input texts of one request, classified in one batch with other queued requests' texts.
            timeout_s: the request's deadline, from now; if its batch has not started by then, the future fails with
                `DeadlineExceededError` and the texts are never run. None: no deadline.

        Returns:
            A future resolving to the request's `BatchAnswer`.

        Raises:
            ServiceClosedError: after `close`.
            OverloadedError: when the queue is full.
        """
        request = _Request(list(texts), time.monotonic(), timeout_s)
        with self._lock:
            if self._closed:
                raise ServiceClosedError("this model version has been unloaded; retry the request")
            if self.max_queue is not None and self._queued and self._queued + len(texts) > self.max_queue:
                raise OverloadedError(self.name, self._queued, self.max_queue, self._drain_seconds())
            self._queued += len(texts)
            self._queue.put(request)
        return request.future

    @property
    def queued(self) -> int:
        """Texts waiting in the queue now (not counting the batch being run)."""
        return self._queued

    def close(self, wait: bool = True) -> None:
        """Stops taking requests; every request already queued is still answered before the worker ends.

        Args:
            wait: block until the worker thread has answered everything queued and ended.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        if wait and threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def _drain_seconds(self) -> float:
        """How long the queue takes to empty at the recent pace (1 s per batch before anything has run)."""
        if self._seconds_per_text is None:
            return self._queued / self.max_batch_size
        return self._queued * self._seconds_per_text

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first, self._held = (self._held, None) if self._held is not None else (self._queue.get(), None)
            if first is _STOP:
                return
            if not self._take(first):
                continue
            batch = [first]
            if self.batching:
                stopping = self._gather(batch)
            self._answer(batch)

    def _take(self, request: _Request) -> bool:
        """Takes `request` off the queue; False when it is not to be run (cancelled, or past its deadline)."""
        with self._lock:
            self._queued -= len(request.texts)
        if not request.future.set_running_or_notify_cancel():
            self.dropped += 1
            return False
        deadline = request.deadline
        if deadline is not None and time.monotonic() >= deadline:
            self.dropped += 1
            request.future.set_exception(DeadlineExceededError(request.timeout_s or 0.0))
            return False
        return True

    def _gather(self, batch: list[_Request]) -> bool:
        """Adds waiting requests to `batch` while they fit in `max_batch_size` and the wait is not over; True when told
        to stop. A request that would overfill the batch is held back to start the next one (a request larger than a
        batch on its own still runs, alone)."""
        size = len(batch[0].texts)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch_size:
            try:
                # Whatever is already queued joins at once; only a partly filled batch waits for more.
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return True
            if size + len(item.texts) > self.max_batch_size:
                self._held = item  # still counted as queued, and still cancellable, until the next batch takes it
                break
            if self._take(item):
                batch.append(item)
                size += len(item.texts)
        return False

    def _answer(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        started = time.monotonic()
        results: list[Prediction | Exception]
        try:
            results = list(self._predict(texts))
        except Exception as err:
            log.exception("inference failed for a batch of %d texts; running each on its own", len(texts))
            results = [err] if len(texts) == 1 else [self._alone(text) for text in texts]
        else:
            self.batches_run += 1
            self.texts_run += len(texts)
        service_s = time.monotonic() - started
        if texts:
            recent = service_s / len(texts)
            previous = self._seconds_per_text
            self._seconds_per_text = recent if previous is None else 0.8 * previous + 0.2 * recent
        start = 0
        for request in batch:
            answer = BatchAnswer(
                results[start : start + len(request.texts)],
                queue_ms=(started - request.enqueued) * 1000,
                service_ms=service_s * 1000,
                batch_size=len(texts),
            )
            request.future.set_result(answer)
            start += len(request.texts)

    def _alone(self, text: str) -> Prediction | Exception:
        try:
            return self._predict([text])[0]
        except Exception as err:  # this paper fails alone; the others of its batch are answered
            return err
