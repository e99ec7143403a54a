"""The shadow judge: each criterion passes, fails or is not judged on its own numbers."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clf.monitoring.shadow import ShadowCriteria, ShadowObservations, ShadowVerdict, check_share, judge_shadow

SMALL = ShadowCriteria(min_requests=10, min_labelled=10)


def observations(n: int = 10, disagree: int = 0, **overrides) -> ShadowObservations:
    values = {
        "production_labels": ["cs.CL"] * n,
        "candidate_labels": ["cs.LG"] * disagree + ["cs.CL"] * (n - disagree),
        "production_confidence": [0.9] * n,
        "candidate_confidence": [0.9] * n,
    }
    return ShadowObservations(**(values | overrides))


def reason(verdict: ShadowVerdict, prefix: str) -> str:
    return next(line for line in verdict.reasons if line.startswith(prefix))


def test_an_identical_candidate_passes_with_one_reason_per_criterion():
    verdict = judge_shadow(observations(), SMALL)
    assert verdict.status == "passed" and verdict.passed
    assert len(verdict.reasons) == 5
    assert reason(verdict, "agreement").endswith("pass")
    assert reason(verdict, "model latency").endswith("not judged")
    assert reason(verdict, "accuracy") == "accuracy: 0 of 10 labelled pairs needed: not judged"
    assert verdict.numbers["agreement"] == 1.0 and verdict.numbers["paired"] == 10


def test_too_few_pairs_is_pending_and_says_how_many():
    verdict = judge_shadow(observations(n=9, disagree=9), SMALL)
    assert verdict.status == "pending" and not verdict.passed
    assert verdict.reasons == ("9 of 10 paired answers: not judged yet",)


def test_agreement_below_the_bound_fails_and_at_the_bound_passes():
    failed = judge_shadow(observations(disagree=3), SMALL)
    assert failed.status == "failed"
    assert reason(failed, "agreement") == "agreement 70.0% of 10 paired answers is below 80.0%: fail"
    assert judge_shadow(observations(disagree=2), SMALL).status == "passed"


def test_a_less_confident_candidate_fails_on_its_mean_top1_probability():
    verdict = judge_shadow(observations(candidate_confidence=[0.84] * 10), SMALL)
    assert verdict.status == "failed"
    assert reason(verdict, "mean top-1").endswith("fail")
    assert verdict.numbers["confidence_drop"] == pytest.approx(0.06)
    assert judge_shadow(observations(candidate_confidence=[0.85] * 10), SMALL).passed


def test_a_more_confident_candidate_passes():
    assert judge_shadow(observations(candidate_confidence=[0.99] * 10), SMALL).passed


def test_errors_fail_once_their_rate_passes_the_bound():
    verdict = judge_shadow(observations(n=200, candidate_errors=3), ShadowCriteria())
    assert verdict.status == "failed"
    assert verdict.numbers["mirrored"] == 203 and verdict.numbers["error_rate"] == pytest.approx(3 / 203)
    assert reason(verdict, "error rate").endswith("fail")
    assert judge_shadow(observations(n=200, candidate_errors=2), ShadowCriteria()).passed


def test_errors_fail_early_only_when_no_later_answers_could_save_the_candidate():
    criteria = ShadowCriteria(min_requests=200, max_error_rate=0.01)
    # 2 errors beside 200 answers is 0.99 %: still within, so wait
    assert judge_shadow(observations(n=5, candidate_errors=2), criteria).status == "pending"
    early = judge_shadow(observations(n=5, candidate_errors=3), criteria)
    assert early.status == "failed"
    assert early.reasons[0].startswith("error rate") and "before enough paired answers" in early.reasons[0]


def test_an_always_failing_candidate_fails_without_a_single_answer():
    verdict = judge_shadow(observations(n=0, candidate_errors=50), ShadowCriteria())
    assert verdict.status == "failed" and verdict.numbers["error_rate"] == 1.0


def test_mirrored_counts_given_explicitly_are_the_denominator():
    verdict = judge_shadow(observations(candidate_errors=1, mirrored=200), SMALL)
    assert verdict.numbers["error_rate"] == pytest.approx(0.005) and verdict.passed


def test_dropped_mirrors_are_reported_and_never_held_against_the_candidate():
    verdict = judge_shadow(observations(dropped=10_000), SMALL)
    assert verdict.passed and verdict.numbers["dropped"] == 10_000


def test_a_slower_candidate_fails_on_the_p95_ratio():
    fast, slow = [10.0] * 20, [10.0] * 18 + [30.0, 30.0]
    verdict = judge_shadow(observations(production_latency_ms=fast, candidate_latency_ms=slow), SMALL)
    assert verdict.status == "failed" and verdict.numbers["latency_ratio"] == pytest.approx(3.0)
    assert reason(verdict, "model latency p95 30.0 ms").endswith("fail")
    within = judge_shadow(observations(production_latency_ms=fast, candidate_latency_ms=[14.0] * 20), SMALL)
    assert within.passed


def test_latency_is_not_judged_without_samples_on_both_sides_or_when_switched_off():
    only_candidate = judge_shadow(observations(candidate_latency_ms=[500.0]), SMALL)
    assert only_candidate.passed and reason(only_candidate, "model latency").endswith("not judged")
    off = ShadowCriteria(min_requests=10, max_latency_ratio=math.inf)
    slow = judge_shadow(observations(production_latency_ms=[1.0], candidate_latency_ms=[500.0]), off)
    assert slow.passed and "not asked for" in reason(slow, "model latency")


def test_accuracy_is_judged_on_labelled_pairs_only():
    # production right on all 10 labelled, the candidate wrong on 1: a 10-point drop
    truth = ["cs.CL"] * 10 + [None] * 10
    candidate = ["cs.LG"] + ["cs.CL"] * 19
    verdict = judge_shadow(observations(n=20, candidate_labels=candidate, true_labels=truth), SMALL)
    assert verdict.status == "failed"
    assert verdict.numbers["labelled"] == 10 and verdict.numbers["accuracy_drop"] == pytest.approx(0.1)
    assert reason(verdict, "accuracy 90.0% vs production's 100.0% on 10 labelled pairs").endswith("fail")


def test_accuracy_with_too_few_labels_is_not_judged_and_says_so():
    truth = ["cs.LG"] * 5 + [None] * 15
    verdict = judge_shadow(observations(n=20, true_labels=truth), SMALL)
    assert verdict.passed
    assert reason(verdict, "accuracy") == "accuracy: 5 of 10 labelled pairs needed: not judged"
    assert verdict.numbers["production_accuracy"] == 0.0


def test_a_candidate_better_than_production_on_labels_passes():
    truth = ["cs.LG"] * 10
    verdict = judge_shadow(observations(disagree=2, true_labels=truth), SMALL)
    assert verdict.passed and verdict.numbers["accuracy_drop"] == pytest.approx(-0.2)


def test_the_verdict_round_trips_through_json():
    verdict = judge_shadow(observations(disagree=5, production_latency_ms=[1.0], candidate_latency_ms=[2.0]), SMALL)
    data = verdict.to_json()
    assert data["status"] == "failed" and data["passed"] is False and isinstance(data["reasons"], list)
    assert ShadowVerdict.from_json(data) == verdict


def test_criteria_round_trip_through_json_with_latency_switched_off():
    criteria = ShadowCriteria(min_requests=5, max_latency_ratio=math.inf)
    assert criteria.to_json()["max_latency_ratio"] is None
    assert ShadowCriteria.from_json(criteria.to_json()) == criteria


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("min_requests", 0),
        ("min_labelled", -1),
        ("min_agreement", 1.5),
        ("max_confidence_drop", -0.1),
        ("max_error_rate", math.nan),
        ("max_accuracy_drop", 2),
        ("max_latency_ratio", 0),
        ("max_latency_ratio", math.nan),
    ],
)
def test_criteria_out_of_range_name_the_flag(field, value):
    with pytest.raises(ValueError, match=rf"--criteria\.{field} must"):
        ShadowCriteria(**{field: value})


def test_misaligned_observations_are_refused():
    with pytest.raises(ValueError, match="candidate_confidence has 2 entries for 3"):
        ShadowObservations(["a"] * 3, ["a"] * 3, [0.5] * 3, [0.5] * 2)
    with pytest.raises(ValueError, match="true_labels"):
        ShadowObservations(["a"], ["a"], [0.5], [0.5], true_labels=[])


@given(
    pairs=st.lists(
        st.tuples(st.sampled_from("abc"), st.sampled_from("abc"), st.floats(0, 1), st.floats(0, 1)), max_size=40
    ),
    errors=st.integers(0, 5),
    min_requests=st.integers(1, 30),
)
def test_the_verdict_follows_from_its_numbers(pairs, errors, min_requests):
    criteria = ShadowCriteria(min_requests=min_requests, min_labelled=1)
    obs = ShadowObservations(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        [p[2] for p in pairs],
        [p[3] for p in pairs],
        candidate_errors=errors,
    )
    verdict = judge_shadow(obs, criteria)
    numbers = verdict.numbers
    assert numbers["paired"] == len(pairs) and numbers["mirrored"] == len(pairs) + errors
    if verdict.status == "pending":
        assert len(pairs) < min_requests
    elif len(pairs) < min_requests:
        assert verdict.status == "failed" and numbers["error_rate"] > criteria.max_error_rate
    else:
        breached = (
            numbers["agreement"] < criteria.min_agreement
            or numbers["confidence_drop"] > criteria.max_confidence_drop + 1e-12
            or numbers["error_rate"] > criteria.max_error_rate
        )
        assert verdict.passed is not breached
        assert len(verdict.reasons) == 5


@pytest.mark.parametrize("share", [0, -0.1, 1.5, math.nan])
def test_a_share_outside_0_1_names_the_flag(share):
    with pytest.raises(ValueError, match=r"--share must be in \(0, 1\]"):
        check_share(share)
    assert check_share(1) == 1.0
