"""Histogram arithmetic shared by every fleet-wide reader of the service metrics.

A replica's `ServiceMetrics.snapshot` holds cumulative counters and histogram bucket counts since it started. The
numbers of a window are the difference of two snapshots (`subtract`), those of a fleet the sum over its replicas
(`add`), and a percentile is read from the summed buckets the way Prometheus's ``histogram_quantile`` reads them
(`quantile`): the gates then judge one arithmetic whether the buckets came from the shared store or from a
Prometheus server.

>>> counts = [0, 8, 2, 0]                      # observations per bucket of upper bounds 0.01, 0.02, 0.05, +Inf
>>> round(quantile(0.95, [0.01, 0.02, 0.05], counts), 4)
0.0425
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

LATENCY_BUCKETS_S: tuple[float, ...] = tuple(round(0.001 * 1.25**k, 6) for k in range(47))
"""Upper bounds of the latency histograms in seconds: 1 ms to about 36 s, each 25 % above the last, so that a
percentile read from them is within a quarter of the true value however the latency is spread."""

CONFIDENCE_BUCKETS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
"""Upper bounds of the top-1 probability histogram (0.5 is the default abstention threshold)."""

BATCH_SIZE_BUCKETS: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
"""Upper bounds of the batch-size histogram."""


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The `q` quantile of a histogram, interpolated within its bucket as Prometheus's ``histogram_quantile`` does.

    Args:
        q: the quantile, in [0, 1].
        bounds: the buckets' finite upper bounds, increasing.
        counts: observations per bucket, one more than `bounds` (the last is the +Inf bucket).

    Returns:
        The estimate (the highest finite bound when it falls in the +Inf bucket); None for an empty histogram.

    Raises:
        ValueError: when `counts` does not have one more entry than `bounds`.
    """
    if len(counts) != len(bounds) + 1:
        raise ValueError(f"{len(counts)} bucket counts for {len(bounds)} bounds; expected {len(bounds) + 1}")
    total = float(sum(counts))
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for index, count in enumerate(counts):
        if count > 0 and seen + count >= rank:
            if index == len(bounds):
                return float(bounds[-1])
            lower = 0.0 if index == 0 else float(bounds[index - 1])
            return lower + (float(bounds[index]) - lower) * max(rank - seen, 0.0) / count
        seen += count
    return float(bounds[-1])


def add(left: Any, right: Any) -> Any:
    """The element-wise sum of two snapshots (nested dicts and lists of numbers; a key missing on one side is 0).

    Args:
        left: a snapshot, or part of one.
        right: another of the same shape.

    Returns:
        Their sum, of the same shape.
    """
    return _combine(left, right, 1.0)


def subtract(later: Any, earlier: Any) -> Any:
    """What happened between two cumulative snapshots of one replica (`later` minus `earlier`, never below 0).

    Args:
        later: the newer snapshot.
        earlier: the older one (None or {} for a replica that started within the window: everything counts).

    Returns:
        The increase, of the shape of `later`.
    """
    return _clip(_combine(later, earlier or {}, -1.0))


def _combine(left: Any, right: Any, sign: float) -> Any:
    if isinstance(left, Mapping) or isinstance(right, Mapping):
        left, right = left or {}, right or {}
        return {key: _combine(left.get(key), right.get(key), sign) for key in {*left, *right}}
    if isinstance(left, list | tuple) or isinstance(right, list | tuple):
        left, right = list(left or []), list(right or [])
        size = max(len(left), len(right))
        left, right = left + [0] * (size - len(left)), right + [0] * (size - len(right))
        return [a + sign * b for a, b in zip(left, right, strict=True)]
    return (left or 0) + sign * (right or 0)


def _clip(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _clip(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clip(item) for item in value]
    return max(value, 0) if isinstance(value, int | float) and not math.isnan(value) else 0
