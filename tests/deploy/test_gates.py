"""Tests for clf/deploy/gates.py: errors are the model's only, latency is the model's at comparable load, and the
rollback monitor judges latency only when the operator opts in."""

from __future__ import annotations

import pytest

from clf.deploy.gates import (
    CanaryGates,
    GateVerdict,
    RollbackThresholds,
    compare_model_latency,
    evaluate_gates,
    production_breaches,
)


def metrics(
    buckets: dict[str, tuple[int, float]] | None = None, total: int = 100, error_rate: float = 0.0, per_paper=None
) -> dict:
    """A version's window in `PredictionMonitor.get_metrics` form; `buckets` maps batch sizes to (papers, p95 ms)."""
    return {
        "total": total,
        "error_rate": error_rate,
        "latency_p95_ms": 5000.0,  # end to end, queue included: no gate may look at it
        "model_latency_by_batch": {
            label: {"papers": n, "p50_ms": p95 / 2, "p95_ms": p95} for label, (n, p95) in (buckets or {}).items()
        },
        "model_ms_per_paper_p95": per_paper,
    }


def test_latency_is_compared_in_the_bucket_the_canary_ran_most():
    canary = metrics({"1": (80, 30.0), "8-15": (20, 900.0)})
    production = metrics({"1": (40, 28.0), "8-15": (500, 200.0)})
    comparison = compare_model_latency(canary, production)
    assert (comparison.basis, comparison.canary_ms, comparison.production_ms) == ("batches of 1 paper", 30.0, 28.0)
    assert evaluate_gates(canary, production, CanaryGates()).verdict == GateVerdict.PASS


def test_a_canary_whose_model_is_slower_fails_at_the_same_batch_size():
    canary, production = metrics({"1": (80, 90.0)}), metrics({"1": (400, 40.0), "8-15": (900, 300.0)})
    result = evaluate_gates(canary, production, CanaryGates())
    assert result.verdict == GateVerdict.FAIL
    assert result.reasons == [
        "canary model latency p95 at batches of 1 paper 90 ms is not below 50 ms (production 40 ms)"
    ]


def test_without_a_shared_batch_size_the_latency_per_paper_is_compared():
    canary = metrics({"1": (60, 12.0)}, per_paper=12.0)
    production = metrics({"8-15": (600, 80.0)}, per_paper=10.0)
    comparison = compare_model_latency(canary, production)
    assert (
        comparison.basis == "per paper"
        and evaluate_gates(canary, production, CanaryGates()).verdict == GateVerdict.PASS
    )
    assert compare_model_latency(metrics(), metrics()) is None, "no timings: nothing to compare"


def test_a_bucket_needs_enough_papers_on_both_sides():
    canary, production = metrics({"1": (60, 5.0)}, per_paper=5.0), metrics({"1": (3, 1.0)}, per_paper=5.0)
    assert compare_model_latency(canary, production, min_samples=10).basis == "per paper"


def test_the_error_gate_reads_model_errors_and_waits_for_enough_requests():
    gates = CanaryGates(min_requests=50)
    assert evaluate_gates(metrics(total=10), metrics(), gates).verdict == GateVerdict.WAIT
    failed = evaluate_gates(metrics(error_rate=0.2), metrics(error_rate=0.0), gates)
    assert failed.verdict == GateVerdict.FAIL and "error rate 20.0%" in failed.reasons[0]


def test_a_passing_verdict_says_which_latency_it_judged():
    result = evaluate_gates(metrics({"2-3": (60, 41.0)}), metrics({"2-3": (60, 40.0)}), CanaryGates())
    assert result.summary() == "gates passed; model latency p95 at batches of 2-3 papers 41 ms vs 40 ms"


@pytest.mark.parametrize("opted_in", [False, True])
def test_production_latency_rolls_back_only_when_the_operator_opts_in(opted_in):
    slow = {"total": 100, "error_rate": 0.0, "latency_p95_ms": 4000.0, "model_latency_p95_ms": 900.0}
    thresholds = RollbackThresholds(max_p95_latency_ms=500.0, rollback_on_latency=opted_in)
    expected = ["model latency p95 900 ms above 500 ms"] if opted_in else []
    assert production_breaches(slow, thresholds) == expected


def test_overload_alone_is_no_rollback_reason():
    overloaded = {"total": 400, "error_rate": 0.0, "latency_p95_ms": 4400.0, "model_latency_p95_ms": 120.0}
    assert production_breaches(overloaded, RollbackThresholds(rollback_on_latency=True)) == []
    assert production_breaches({**overloaded, "error_rate": 0.33}, RollbackThresholds()) == [
        "error rate 33.0% above 10%"
    ]
