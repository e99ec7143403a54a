"""Dynamic batching: requests that arrive together share one forward pass.

One worker thread per loaded version takes requests from a queue. With batching on, it gathers every request
already waiting, then waits up to ``max_wait_ms`` for more while the batch holds fewer than ``max_batch_size``
texts, and runs them through the model together; each request's future gets its own slice of the results. With
batching off, each request runs alone (its own texts still form one batch).

    batcher = DynamicBatcher(predictor.predict_texts, max_batch_size=32, max_wait_ms=5)
    records = batcher.submit(["first text", "second text"]).result()
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

from clf.serving.errors import ServiceClosedError

log = logging.getLogger(__name__)

PredictFn = Callable[[list[str]], list[dict[str, Any]]]


@dataclass
class _Request:
    texts: list[str]
    future: Future[list[dict[str, Any]]] = field(default_factory=Future)


_STOP = object()


class DynamicBatcher:
    """Runs `predict` on batches gathered from concurrent `submit` calls, in one worker thread.

    Args:
        predict: classifies a list of texts of any length (chunking it itself), returning one record per text.
        max_batch_size: most texts gathered into one call of `predict` (a larger request runs alone).
        max_wait_ms: how long a partly filled batch waits for more requests.
        batching: False runs one request per forward pass.
        name: names the worker thread (the version it serves).

    Raises:
        ValueError: for a batch size below 1 or a negative wait.
    """

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_size: int = 32,
        max_wait_ms: float = 5.0,
        batching: bool = True,
        name: str = "",
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"--max-batch-size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"--max-wait-ms must be >= 0, got {max_wait_ms}")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000
        self.batching = batching
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self.batches_run = 0
        self.texts_run = 0
        self._thread = threading.Thread(target=self._run, name=f"clf-batcher-{name}", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> Future[list[dict[str, Any]]]:
        """Queues `texts` as one request; the future resolves to their records, in order.

        Args:
            texts: the model input texts of one request, classified in one batch with other queued requests' texts.

        Returns:
            A future resolving to one prediction record per text, or to the exception the model raised.

        Raises:
            ServiceClosedError: after `close`.
        """
        request = _Request(list(texts))
        with self._lock:
            if self._closed:
                raise ServiceClosedError("this model version has been unloaded; retry the request")
            self._queue.put(request)
        return request.future

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

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            if self.batching:
                stopping = self._gather(batch)
            self._answer(batch)

    def _gather(self, batch: list[_Request]) -> bool:
        """Adds waiting requests to `batch` until it is full or the wait is over; True when told to stop."""
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
            batch.append(item)
            size += len(item.texts)
        return False

    def _answer(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        try:
            records = self._predict(texts)
        except Exception as err:  # every waiting request must hear about the failure
            log.exception("inference failed for a batch of %d texts", len(texts))
            for request in batch:
                request.future.set_exception(err)
            return
        self.batches_run += 1
        self.texts_run += len(texts)
        start = 0
        for request in batch:
            request.future.set_result(records[start : start + len(request.texts)])
            start += len(request.texts)
