"""`ShadowMirror`: a share of production's answered requests, run again on a candidate off the response path.

    mirror = ShadowMirror(candidate_forward, "v1.3.0", share=0.25, max_queue=8, metrics=service.metrics)
    mirror.offer(event)                    # after production answered: queued for the candidate, or dropped
    judge_shadow(mirror.observations())    # clf.monitoring.shadow: agreement, confidence, latency, errors

The candidate's answers go nowhere but here: the caller already has production's. Which requests are mirrored is a
function of their texts (`stable_bucket` of the request's texts, salted with the candidate's name), so every replica
mirrors the same share of the same papers. The mirror has its own worker and its own bounded queue (a
`DynamicBatcher`), apart from production's: production's back-pressure never counts shadow work, and a mirror that
finds the queue full — or production's own queue holding more than a batch, the first sign of load — is dropped and
counted, never waited for. Nothing here raises to a user's request.

Counted per paper, since the mirror was started: ``mirrored`` (queued for the candidate), ``answered``, ``errors``,
``dropped``; the same in the Prometheus counters ``clf_shadow_{mirrored,answered,errors,dropped}_total{version}``.
Every paper the share picks is either mirrored or dropped.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from clf.monitoring.shadow import ShadowObservations, check_share
from clf.serving.batching import BatchAnswer, DynamicBatcher, PredictFn
from clf.serving.errors import OverloadedError, ServiceClosedError
from clf.serving.routing import stable_bucket

if TYPE_CHECKING:
    from clf.monitoring.metrics import ServiceMetrics
    from clf.serving.service import PredictionEvent

log = logging.getLogger(__name__)

SHADOW_ARM = "shadow"
"""The arm of a shadow candidate's answers where they are logged (never in a response)."""

MAX_PAIRS = 5000
"""Paired answers (and latency samples) each mirror keeps, the newest; a replica publishes at most `PUBLISHED`."""
PUBLISHED = 2000
"""Paired answers and latency samples of each replica in its heartbeat (what the fleet's judge reads)."""


def mirrored_share(texts: Iterable[str], version: str) -> float:
    """Where a request falls in [0, 1) for the shadow of `version`: it is mirrored when this is below the share.

    Args:
        texts: the request's cleaned model inputs.
        version: the shadow candidate.

    Returns:
        A number fixed by the texts and the version, the same in every replica.
    """
    return stable_bucket("\x1f".join(texts), f"shadow-{version}")


class ShadowMirror:
    """Runs a share of production's answered requests on a candidate, off the response path (module docstring).

    Args:
        forward: the candidate's classification of a list of texts (one record per text).
        version: the candidate's version.
        share: the share of requests mirrored, in (0, 1].
        max_queue: most papers waiting for the candidate; a mirror beyond it is dropped.
        max_batch_size: most papers in one candidate batch.
        metrics: where the ``clf_shadow_*`` counters go; none when None.
        busy: says whether production is under load; a mirror offered meanwhile is dropped.
        clock: epoch seconds; a test seam.

    Raises:
        ValueError: for a share outside (0, 1].
    """

    def __init__(
        self,
        forward: PredictFn,
        version: str,
        share: float,
        *,
        max_queue: int = 8,
        max_batch_size: int = 8,
        metrics: ServiceMetrics | None = None,
        busy: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.version = version
        self.share = check_share(share)
        self.metrics = metrics
        self.busy = busy
        self.started_at = float(clock())
        self._batcher = DynamicBatcher(
            forward, max_batch_size=max_batch_size, max_wait_ms=0.0, max_queue=max_queue, name=f"shadow-{version}"
        )
        self._lock = threading.Lock()
        self.counts = {"mirrored": 0, "answered": 0, "errors": 0, "dropped": 0}
        self._pairs: deque[tuple[str, str, float, float, str | None]] = deque(maxlen=MAX_PAIRS)
        self._production_ms: deque[float] = deque(maxlen=MAX_PAIRS)
        self._candidate_ms: deque[float] = deque(maxlen=MAX_PAIRS)

    def offer(self, event: PredictionEvent) -> bool:
        """Mirrors production's answered request when the share picks it; never blocks, never raises.

        Args:
            event: production's answer to one request.

        Returns:
            Whether it was queued for the candidate (False: not picked, nothing answered, or dropped).
        """
        arxiv_ids = event.arxiv_ids or (None,) * len(event.texts)
        answered = [
            (text, record, arxiv_id)
            for text, record, arxiv_id in zip(event.texts, event.records, arxiv_ids, strict=False)
            if record.label
        ]
        if not answered or mirrored_share(event.texts, self.version) >= self.share:
            return False
        texts = [text for text, _, _ in answered]
        try:
            future = None if self.busy() else self._batcher.submit(texts)
        except (OverloadedError, ServiceClosedError):
            future = None
        if future is None:
            self._count("dropped", len(texts))
            return False
        self._count("mirrored", len(texts))
        production = [
            (str(record.label), float(record.probability or 0.0), arxiv_id) for _, record, arxiv_id in answered
        ]
        future.add_done_callback(functools.partial(self._answered, production, event.service_ms))
        return True

    def _answered(
        self, production: list[tuple[str, float, str | None]], production_ms: float | None, future: Future[BatchAnswer]
    ) -> None:
        error = future.exception()
        if error is not None:  # the worker failed outside the model, or was closed: every paper counts as an error
            self._count("errors", len(production))
            return
        answer = future.result()
        pairs = [
            (label, result.label, confidence, float(result.probability or 0.0), arxiv_id)
            for (label, confidence, arxiv_id), result in zip(production, answer.results, strict=True)
            if not isinstance(result, Exception) and result.label is not None
        ]
        with self._lock:
            self._pairs.extend(pairs)
            self._candidate_ms.append(answer.service_ms)
            if production_ms is not None:
                self._production_ms.append(production_ms)
        self._count("answered", len(pairs))
        self._count("errors", len(production) - len(pairs))

    def _count(self, outcome: str, papers: int) -> None:
        if papers <= 0:
            return
        with self._lock:
            self.counts[outcome] += papers
        if self.metrics is not None:
            self.metrics.shadowed(self.version, outcome, papers)

    @property
    def queued(self) -> int:
        """Papers waiting for the candidate now."""
        return self._batcher.queued

    def snapshot(self, limit: int = PUBLISHED) -> dict[str, Any]:
        """The mirror's counts and newest paired answers as JSON (a replica's heartbeat; ``GET /shadow``).

        Args:
            limit: most pairs and latency samples included (the newest).

        Returns:
            ``{"version", "share", "started_at", "mirrored", "answered", "errors", "dropped", "queued", "samples"}``,
            the samples ``{"pairs", "production_latency_ms", "candidate_latency_ms"}``; each pair is ``[production
            label, candidate label, production probability, candidate probability, arXiv id]`` (the id as the request
            sent it, None where it sent none).
        """
        with self._lock:
            pairs = list(self._pairs)[-limit:]
            production_ms, candidate_ms = list(self._production_ms)[-limit:], list(self._candidate_ms)[-limit:]
            counts = dict(self.counts)
        return {
            "version": self.version,
            "share": self.share,
            "started_at": self.started_at,
            **counts,
            "queued": self.queued,
            "samples": {
                "pairs": [list(pair) for pair in pairs],
                "production_latency_ms": production_ms,
                "candidate_latency_ms": candidate_ms,
            },
        }

    def observations(self) -> ShadowObservations:
        """What the mirror saw, for `clf.monitoring.shadow.judge_shadow`.

        Returns:
            The paired answers, latency samples and counts.
        """
        return shadow_observations([self.snapshot(MAX_PAIRS)])

    def close(self) -> None:
        """Stops the candidate's worker after what is queued (its answers still count)."""
        self._batcher.close()


def shadow_observations(snapshots: Iterable[dict[str, Any]]) -> ShadowObservations:
    """The observations of several mirrors (one per replica) together, from their `ShadowMirror.snapshot`.

    Args:
        snapshots: the mirrors' snapshots.

    Returns:
        Their pairs and samples concatenated, their counts summed; ``mirrored`` is what reached the candidate
        (answered or failed); each pair's arXiv id in ``arxiv_ids`` (None also for a pair published without one).
    """
    pairs: list[list[Any]] = []
    production_ms: list[float] = []
    candidate_ms: list[float] = []
    errors = answered = dropped = 0
    for snapshot in snapshots:
        samples = snapshot.get("samples") or {}
        pairs += samples.get("pairs") or []
        production_ms += samples.get("production_latency_ms") or []
        candidate_ms += samples.get("candidate_latency_ms") or []
        errors += int(snapshot.get("errors") or 0)
        answered += int(snapshot.get("answered") or 0)
        dropped += int(snapshot.get("dropped") or 0)
    return ShadowObservations(
        production_labels=[pair[0] for pair in pairs],
        candidate_labels=[pair[1] for pair in pairs],
        production_confidence=[float(pair[2]) for pair in pairs],
        candidate_confidence=[float(pair[3]) for pair in pairs],
        production_latency_ms=production_ms,
        candidate_latency_ms=candidate_ms,
        candidate_errors=errors,
        mirrored=max(answered, len(pairs)) + errors,
        dropped=dropped,
        arxiv_ids=[pair[4] if len(pair) > 4 else None for pair in pairs],
    )
