"""Metric gates: when a canary may go on, and when production must be rolled back.

A canary passes a stage when, over the stage, its error rate is below production's × 1.5 and its p95 latency below
production's × 1.2. Both have a floor, so that a production error rate of 0 or a 3 ms p95 does not turn one stray
error or 1 ms of noise into a rollback: the canary may always have `error_rate_floor` errors and
`p95_slack_ms` more latency.

>>> evaluate_gates({"total": 100, "error_rate": 0.0, "latency_p95_ms": 40.0},
...                {"total": 900, "error_rate": 0.0, "latency_p95_ms": 38.0}, CanaryGates()).verdict
<GateVerdict.PASS: 'pass'>
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class GateVerdict(StrEnum):
    """A gate evaluation's outcome."""

    PASS = "pass"
    FAIL = "fail"
    WAIT = "wait"
    """Too few canary requests yet to judge."""


@dataclass(frozen=True)
class CanaryGates:
    """When a canary stage passes.

    Attributes:
        max_error_ratio: the canary's error rate must stay below production's times this.
        max_p95_ratio: the canary's p95 latency must stay below production's times this.
        error_rate_floor: an error rate the canary may always have (production's may be 0).
        p95_slack_ms: latency the canary may always add to production's p95 (timer noise on fast models).
        min_requests: canary requests a stage needs before it is judged.
    """

    max_error_ratio: float = 1.5
    max_p95_ratio: float = 1.2
    error_rate_floor: float = 0.01
    p95_slack_ms: float = 10.0
    min_requests: int = 50

    def __post_init__(self) -> None:
        if self.max_error_ratio < 1 or self.max_p95_ratio < 1:
            raise ValueError("max_error_ratio and max_p95_ratio must be at least 1")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be at least 1, got {self.min_requests}")


@dataclass(frozen=True)
class RollbackThresholds:
    """When the production version is rolled back on its own.

    Attributes:
        max_error_rate: roll back above this error rate.
        max_p95_latency_ms: roll back above this p95 latency.
        min_requests: requests the window needs before it is judged.
        window_minutes: the metrics window.
    """

    max_error_rate: float = 0.10
    max_p95_latency_ms: float = 500.0
    min_requests: int = 20
    window_minutes: float = 5.0


@dataclass(frozen=True)
class GateResult:
    """A verdict and the evidence for it.

    Attributes:
        verdict: pass, fail, or wait for more requests.
        reasons: each breached gate (or what is awaited), in words.
        canary: the canary's metrics over the stage.
        production: production's metrics over the same time.
    """

    verdict: GateVerdict
    reasons: list[str] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    production: dict[str, Any] = field(default_factory=dict)


def evaluate_gates(canary: dict[str, Any], production: dict[str, Any], gates: CanaryGates) -> GateResult:
    """Judges a canary's metrics against production's (both in `PredictionMonitor.get_metrics` form).

    Args:
        canary: the canary's metrics over the stage.
        production: production's metrics over the stage (or its last known ones when it takes no traffic).
        gates: the limits.

    Returns:
        PASS, FAIL (with every breached gate), or WAIT when the canary has fewer than `min_requests` requests.
    """
    total = int(canary.get("total") or 0)
    if total < gates.min_requests:
        return GateResult(GateVerdict.WAIT, [f"{total} of {gates.min_requests} canary requests"], canary, production)
    reasons = []
    error_limit = max(float(production.get("error_rate") or 0.0) * gates.max_error_ratio, gates.error_rate_floor)
    error_rate = float(canary.get("error_rate") or 0.0)
    if error_rate >= error_limit:
        reasons.append(f"canary error rate {error_rate:.1%} is not below {error_limit:.1%}")
    production_p95 = production.get("latency_p95_ms")
    canary_p95 = canary.get("latency_p95_ms")
    if production_p95 is not None and canary_p95 is not None:
        latency_limit = max(production_p95 * gates.max_p95_ratio, production_p95 + gates.p95_slack_ms)
        if canary_p95 >= latency_limit:
            reasons.append(f"canary p95 {canary_p95:.0f} ms is not below {latency_limit:.0f} ms")
    return GateResult(GateVerdict.FAIL if reasons else GateVerdict.PASS, reasons, canary, production)


def production_breaches(metrics: dict[str, Any], thresholds: RollbackThresholds) -> list[str]:
    """The rollback thresholds `metrics` breach (empty with fewer than `min_requests` requests).

    Args:
        metrics: production metrics of the window, as `PredictionMonitor.get_metrics` returns them.
        thresholds: the limits and the fewest requests needed to judge.

    Returns:
        One line per breached threshold, e.g. ``error rate 12.0% above 5%``.
    """
    if int(metrics.get("total") or 0) < thresholds.min_requests:
        return []
    breaches = []
    error_rate = float(metrics.get("error_rate") or 0.0)
    if error_rate > thresholds.max_error_rate:
        breaches.append(f"error rate {error_rate:.1%} above {thresholds.max_error_rate:.0%}")
    p95 = metrics.get("latency_p95_ms")
    if p95 is not None and p95 > thresholds.max_p95_latency_ms:
        breaches.append(f"p95 latency {p95:.0f} ms above {thresholds.max_p95_latency_ms:.0f} ms")
    return breaches
