"""Metric gates: when a canary may go on, and when production must be rolled back.

A canary passes a stage when, over the stage, its error rate is below production's × 1.5 and its **model latency**
p95 below production's × 1.2. Both have a floor, so that a production error rate of 0 or a 3 ms p95 does not turn
one stray error or 1 ms of noise into a rollback: the canary may always have `error_rate_floor` errors and
`p95_slack_ms` more latency.

Errors are failures of the model or the server only: client errors, shed load and timeouts are never predictions
(`PredictionMonitor.log_rejection`). Latency is the model's, not the queue's: the service time of the batches a
version ran, compared at comparable load — within the batch-size bucket both versions ran most (a canary at 5 % of
traffic runs small batches, production full ones), or per paper when they share none. End-to-end latency, queue
included, grows with load whatever the model, so it only raises an alert (`clf.monitoring.alerts`); it rolls
production back only when the operator opts in (`RollbackThresholds.rollback_on_latency`), and then on model latency.

>>> timing = {"1": {"papers": 60, "p50_ms": 30.0, "p95_ms": 40.0}}
>>> result = evaluate_gates({"total": 100, "error_rate": 0.0, "model_latency_by_batch": timing},
...                         {"total": 900, "error_rate": 0.0, "model_latency_by_batch": timing}, CanaryGates())
>>> result.verdict, result.latency.basis
(<GateVerdict.PASS: 'pass'>, 'batches of 1 paper')
"""

from __future__ import annotations

import math
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
        max_p95_ratio: the canary's model latency p95 must stay below production's times this (at comparable load).
        error_rate_floor: an error rate the canary may always have (production's may be 0).
        p95_slack_ms: latency the canary may always add to production's p95 (timer noise on fast models).
        min_requests: canary requests a stage needs before it is judged.
        min_latency_samples: papers each version needs in a batch-size bucket before latency is compared there.
    """

    max_error_ratio: float = 1.5
    max_p95_ratio: float = 1.2
    error_rate_floor: float = 0.01
    p95_slack_ms: float = 10.0
    min_requests: int = 50
    min_latency_samples: int = 10

    def __post_init__(self) -> None:
        if self.max_error_ratio < 1 or self.max_p95_ratio < 1:
            raise ValueError("max_error_ratio and max_p95_ratio must be at least 1")
        if self.min_requests < 1:
            raise ValueError(f"min_requests must be at least 1, got {self.min_requests}")


@dataclass(frozen=True)
class RollbackThresholds:
    """When the production version is rolled back on its own.

    Attributes:
        max_error_rate: roll back above this rate of model (or server) errors.
        max_p95_latency_ms: with `rollback_on_latency`, roll back above this model latency p95.
        min_requests: requests the window needs before it is judged.
        window_minutes: the metrics window.
        rollback_on_latency: judge latency at all. Off by default: an overload slows every version alike, and
            rolling back to an older version does not make it faster; the latency alert still fires.
    """

    max_error_rate: float = 0.10
    max_p95_latency_ms: float = 500.0
    min_requests: int = 20
    window_minutes: float = 5.0
    rollback_on_latency: bool = False


@dataclass(frozen=True)
class GateResult:
    """A verdict and the evidence for it.

    Attributes:
        verdict: pass, fail, or wait for more requests.
        reasons: each breached gate (or what is awaited), in words.
        canary: the canary's metrics over the stage.
        production: production's metrics over the same time.
        latency: the model latency that was compared, or None when the two could not be compared.
        limits: the thresholds applied: ``error_rate`` (the canary's must stay below it), ``p95_ms`` (its model
            latency p95 must stay below it; None when latency was not judged) and ``min_requests``.
        live_production: production's own numbers over the stage, when the yardstick is another window (set by the
            canary strategy; empty otherwise).
    """

    verdict: GateVerdict
    reasons: list[str] = field(default_factory=list)
    canary: dict[str, Any] = field(default_factory=dict)
    production: dict[str, Any] = field(default_factory=dict)
    latency: LatencyComparison | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    live_production: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the decision log: the verdict's reasons, or which latency it judged when it passed.

        Returns:
            The reasons joined, or e.g. ``gates passed; model latency p95 at batches of 1 paper 41 ms vs 40 ms``.
        """
        if self.verdict != GateVerdict.PASS:
            return "; ".join(self.reasons)
        if self.latency is None:
            return "gates passed; model latency not compared (no timings on both sides)"
        return f"gates passed; {self.latency}"


@dataclass(frozen=True)
class LatencyComparison:
    """Which model latency a gate judged, and the two values.

    Attributes:
        basis: where the two versions were compared: ``batches of 1 paper``, ``batches of 8-15 papers``, or
            ``per paper`` (service time divided by batch size) when they ran no common batch size.
        canary_ms: the canary's p95 there.
        production_ms: production's p95 there.
    """

    basis: str
    canary_ms: float
    production_ms: float

    def __str__(self) -> str:
        return f"model latency p95 at {self.basis} {self.canary_ms:.0f} ms vs {self.production_ms:.0f} ms"


def compare_model_latency(
    canary: dict[str, Any], production: dict[str, Any], min_samples: int = 10
) -> LatencyComparison | None:
    """The two versions' model latency at comparable load (both in `PredictionMonitor.get_metrics` form).

    Batch service time grows with batch size, and a version's batch sizes follow its share of traffic, so the p95s
    are compared within one batch-size bucket: the one with the most canary papers among those where each version
    has at least `min_samples`. Without such a bucket, the per-paper service time is compared instead.

    Args:
        canary: the candidate's metrics.
        production: the baseline's metrics.
        min_samples: papers each needs in a bucket for it to count.

    Returns:
        The comparison, or None when either side has no timings.
    """
    ours, theirs = canary.get("model_latency_by_batch") or {}, production.get("model_latency_by_batch") or {}
    shared = [
        label
        for label in ours
        if label in theirs
        and ours[label]["papers"] >= min_samples
        and theirs[label]["papers"] >= min_samples
        and ours[label]["p95_ms"] is not None
        and theirs[label]["p95_ms"] is not None
    ]
    if shared:
        label = max(shared, key=lambda b: (ours[b]["papers"], -int(b.split("-")[0])))
        papers = "1 paper" if label == "1" else f"{label} papers"
        return LatencyComparison(f"batches of {papers}", float(ours[label]["p95_ms"]), float(theirs[label]["p95_ms"]))
    canary_paper, production_paper = canary.get("model_ms_per_paper_p95"), production.get("model_ms_per_paper_p95")
    if canary_paper is None or production_paper is None:
        return None
    return LatencyComparison("per paper", float(canary_paper), float(production_paper))


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
    error_limit = max(float(production.get("error_rate") or 0.0) * gates.max_error_ratio, gates.error_rate_floor)
    latency = compare_model_latency(canary, production, gates.min_latency_samples)
    p95_limit = None
    if latency is not None and gates.max_p95_ratio != math.inf:
        p95_limit = max(latency.production_ms * gates.max_p95_ratio, latency.production_ms + gates.p95_slack_ms)
    limits = {"error_rate": error_limit, "p95_ms": p95_limit, "min_requests": gates.min_requests}
    if total < gates.min_requests:
        waiting = [f"{total} of {gates.min_requests} canary requests"]
        return GateResult(GateVerdict.WAIT, waiting, canary, production, latency, limits)
    reasons = []
    error_rate = float(canary.get("error_rate") or 0.0)
    if error_rate >= error_limit:
        reasons.append(f"canary error rate {error_rate:.1%} is not below {error_limit:.1%}")
    if latency is not None and p95_limit is not None and latency.canary_ms >= p95_limit:
        reasons.append(
            f"canary model latency p95 at {latency.basis} {latency.canary_ms:.0f} ms is not below {p95_limit:.0f} ms "
            f"(production {latency.production_ms:.0f} ms)"
        )
    verdict = GateVerdict.FAIL if reasons else GateVerdict.PASS
    return GateResult(verdict, reasons, canary, production, latency, limits)


def production_breaches(metrics: dict[str, Any], thresholds: RollbackThresholds) -> list[str]:
    """The rollback thresholds `metrics` breach (empty with fewer than `min_requests` requests).

    Args:
        metrics: production metrics of the window, as `PredictionMonitor.get_metrics` returns them.
        thresholds: the limits and the fewest requests needed to judge.

    Returns:
        One line per breached threshold, e.g. ``error rate 12.0% above 5%`` or, with `rollback_on_latency`,
        ``model latency p95 612 ms above 500 ms``.
    """
    if int(metrics.get("total") or 0) < thresholds.min_requests:
        return []
    breaches = []
    error_rate = float(metrics.get("error_rate") or 0.0)
    if error_rate > thresholds.max_error_rate:
        breaches.append(f"error rate {error_rate:.1%} above {thresholds.max_error_rate:.0%}")
    p95 = metrics.get("model_latency_p95_ms")
    if thresholds.rollback_on_latency and p95 is not None and p95 > thresholds.max_p95_latency_ms:
        breaches.append(f"model latency p95 {p95:.0f} ms above {thresholds.max_p95_latency_ms:.0f} ms")
    return breaches
